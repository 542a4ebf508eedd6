"""Data-sharing-agreement configuration, validated on load. Imports no stage.

Every error names the file, the field and what was expected (``ConfigError``).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mobility.errors import ConfigError
from mobility.reference import bands_from

# The places an agreement lists data categories for (and the register of processing describes).
DataZone = Literal["operator_zone", "office_zone", "releases"]


def iso3(code: str) -> str:
    """Validate an ISO 3166-1 alpha-3 code with pycountry (``OTHER`` is not a country)."""
    code = str(code).strip().upper()
    if pycountry.countries.get(alpha_3=code) is None:
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-3 country code")
    return code


def iso2_of(code3: str) -> str:
    country = pycountry.countries.get(alpha_3=code3)
    if country is None:
        raise ValueError(f"{code3!r} is not an ISO 3166-1 alpha-3 country code")
    return country.alpha_2


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (for example 'Asia/Manila')") from exc
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Controller(_Strict):
    name: str = Field(min_length=1)
    role: Literal["operator", "statistics_office", "processor", "joint_controller", "auditor"]
    contact: str = Field(min_length=3)


class Purpose(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field(min_length=10)


class KeySource(_Strict):
    """Where the pseudonymization key is read from; the key itself never sits in configuration."""

    env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    file: Path | None = None
    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")

    @model_validator(mode="after")
    def _exactly_one(self) -> "KeySource":
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (an environment variable name) or 'file' (a 0600 key file)")
        return self


class BudgetCaps(_Strict):
    """Privacy-budget caps in zero-concentrated DP (rho) for one data population; (epsilon, delta) alongside.

    The protected unit is one subscription (SIM) of ``population``. Each release's rho is charged to
    every data month it reads (``rho_per_data_month`` bounds the loss of one subscription's month of
    data) and to the population's lifetime total (``rho_lifetime`` bounds a subscription's whole loss,
    shared by every agreement that names the same population). See docs/methodology.md and ADR 0004.
    """

    population: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
                            description="whose data: one operator's subscribers; agreements naming it share its caps")
    population_size: int | None = Field(default=None, gt=1,
                                        description="stated size of the population (public figure), for delta = 1/n^2")
    rho_per_data_month: float = Field(gt=0)
    rho_lifetime: float = Field(gt=0)
    delta: float = Field(default=1e-7, gt=0, lt=1e-3)
    # the monthly schedule the budget plan fits into the caps
    plan_years: int = Field(default=5, ge=1, le=50)
    flows_share: float = Field(default=0.5, gt=0, lt=1, description="share of each month's planned rho for flows")
    # how a flows release splits its rho: the two subnational tables (one joint measurement) get this
    # share, the international table the rest (BENCHMARKS.md, "Release quality", has the trade-off)
    flows_subnational_share: float = Field(default=0.5, ge=0.05, le=0.95,
                                           description="share of a flows release's rho for the subnational tables")

    @model_validator(mode="before")
    @classmethod
    def _no_year_cap(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rho_per_year" in data:
            raise ValueError("rho_per_year was replaced by rho_per_data_month (the loss of one month of a "
                             "subscription's data) and a 'population' key shared by agreements over the same "
                             "subscribers; see docs/methodology.md, 'Privacy budget by data month'")
        return data

    @model_validator(mode="after")
    def _month_within_lifetime(self) -> "BudgetCaps":
        if self.rho_per_data_month > self.rho_lifetime:
            raise ValueError("rho_per_data_month cannot exceed rho_lifetime")
        return self

    def recorded(self) -> dict:
        """The caps the ledger records and compares (the plan settings are not caps)."""
        return {"population": self.population, "rho_per_data_month": self.rho_per_data_month,
                "rho_lifetime": self.rho_lifetime, "delta": self.delta}


class Corridor(_Strict):
    sender_country: str
    receiver_country: str

    _c1 = field_validator("sender_country", "receiver_country")(iso3)


class RemittanceBounds(_Strict):
    max_transfers_per_sender_month: int = Field(default=4, ge=1, le=100)
    amount_min_usd: float = Field(default=1.0, gt=0)
    amount_max_usd: float = Field(default=2000.0, gt=0)
    # a transfer's total cost above this share of the amount counts as this share (bounds its sensitivity)
    cost_max_pct: float = Field(default=20.0, gt=0, le=100)

    @model_validator(mode="after")
    def _range(self) -> "RemittanceBounds":
        if self.amount_min_usd > self.amount_max_usd:
            raise ValueError("amount_min_usd cannot exceed amount_max_usd")
        return self


class Agreement(_Strict):
    """One data-sharing agreement between an operator and a statistics office."""

    agreement_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    operator: str = Field(min_length=1)
    home_country: str
    time_zone: str
    controllers: list[Controller] = Field(min_length=1)
    purposes: list[Purpose] = Field(min_length=1)
    data_categories: dict[DataZone, list[str]]
    legal_basis: str = Field(min_length=5)
    retention_days: int = Field(ge=30, le=3650, description="days after which personal data is deleted")
    key: KeySource
    budget: BudgetCaps
    countries: list[str] = Field(min_length=1, description="public country list of release domains")
    corridors: list[Corridor] = Field(default_factory=list)
    counterpart: Literal["pseudonymize", "drop"] = "drop"
    suppression_list: Path | None = None
    max_invalid_share: float = Field(default=0.05, ge=0, le=1)
    time_resolution: Literal["hour", "day"] = "hour"
    h3_resolution: int = Field(default=7, ge=0, le=15)
    payments_as_presence: bool = False
    remittance_bounds: RemittanceBounds = RemittanceBounds()
    # lower bounds of the age bands of --by age_band (None: mobility.reference.AGE_BANDS)
    age_bands: list[int] | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    # a directory outside the lake that another party controls: every ledger append is witnessed there
    ledger_witness: Path | None = None
    # the operator's delivery format (mobility.anonymize.formats; docs/contracts.md, "Operators' formats")
    input_format: Literal["native", "multimno", "flowdb"] = "native"
    # public expansion factors from subscriptions to people (mobility.estimate.factors; conf/population/)
    population_factors: Path | None = None
    # SHA-256 of the file the agreement was loaded from (set by load_agreement)
    _source_sha256: str | None = PrivateAttr(default=None)

    _c_home = field_validator("home_country")(iso3)
    _tz = field_validator("time_zone")(_time_zone)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        codes = [iso3(c) for c in value]
        if len(set(codes)) != len(codes):
            raise ValueError("country list has duplicates")
        return codes

    @field_validator("age_bands")
    @classmethod
    def _age_bands(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            bands_from(value)
        return value

    @model_validator(mode="after")
    def _home_in_countries(self) -> "Agreement":
        if self.home_country not in self.countries:
            raise ValueError(f"home_country {self.home_country} must be in 'countries'")
        return self

    def listed_suppressions(self) -> list[str]:
        """The pseudonyms of the ``suppression_list`` file (one per line, ``#`` comments), lower-case,
        sorted, without repeats; [] when the agreement names no file or it does not exist yet."""
        path = self.suppression_list
        if path is None or not Path(path).is_file():
            return []
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return sorted({ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#")})

    @property
    def home_region(self) -> str:
        """ISO alpha-2 region for national-format phone numbers."""
        return iso2_of(self.home_country)

    def purpose(self, purpose_id: str) -> Purpose | None:
        return next((p for p in self.purposes if p.id == purpose_id), None)

    @property
    def sha256(self) -> str:
        """SHA-256 of the agreement file (of its canonical JSON when it was built in memory)."""
        if self._source_sha256 is not None:
            return self._source_sha256
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
        lines.append(f"  field '{field}': {msg}{shown}")
    return f"{path}: invalid configuration\n" + "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("configuration file not found", where=str(path),
                          hint="check the path, or copy one of the examples under conf/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", where=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of fields at the top level", where=str(path))
    return data


def _resolve_relative(data: dict, base: Path, *keys: str) -> None:
    for key in keys:
        node: Any = data
        leaf = key.split(".")
        for part in leaf[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf[-1]), str):
            p = Path(node[leaf[-1]])
            if not p.is_absolute():
                node[leaf[-1]] = str((base / p).resolve())


def as_agreement(ref: Agreement | str | os.PathLike) -> Agreement:
    """An Agreement as given, or loaded from its file or id: what every stage's entry point accepts."""
    return ref if isinstance(ref, Agreement) else load_agreement(ref)


def load_agreement(ref: str | os.PathLike) -> Agreement:
    """Load an agreement by path, or by id from ``$MOBILITY_CONF/agreements`` or ``./conf/agreements``."""
    path = resolve_agreement_path(ref)
    data = _read_yaml(path)
    _resolve_relative(data, path.parent, "key.file", "suppression_list", "ledger_witness", "population_factors")
    try:
        agreement = Agreement.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    if path.stem != agreement.agreement_id:
        raise ConfigError(f"agreement_id {agreement.agreement_id!r} does not match the file name",
                          where=str(path), hint=f"rename the file to {agreement.agreement_id}.yaml")
    agreement._source_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return agreement


def resolve_agreement_path(ref: str | os.PathLike) -> Path:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    dirs = [Path(os.environ["MOBILITY_CONF"]) / "agreements"] if os.environ.get("MOBILITY_CONF") else []
    dirs.append(Path.cwd() / "conf" / "agreements")
    for d in dirs:
        candidate = d / f"{ref}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no agreement {str(ref)!r}", where=", ".join(str(d) for d in dirs),
                      hint="pass the agreement file path, or set MOBILITY_CONF to the folder holding agreements/")
