"""Public expansion factors of one agreement: from an operator's subscriptions to the resident population.

A reference file per agreement (``conf/population/AGREEMENT.yaml``, named by the agreement's
``population_factors``) states, for a reference date:

* ``multi_sim_factor``: how many of the operator's SIMs (pseudonyms) a person who holds at least one
  has, on average (>= 1; the ESS reference pipeline's de-duplication factor);
* a CSV of ``region, sex, age_band, population, share``: the resident population of each region (H3
  cells of one resolution) by sex and age band, and the share of it holding at least one SIM of the
  operator (a survey, a census question on mobile subscriptions, or the operator's register over the
  census population).

A released count of subscriptions ``c`` in a stratum with share ``s`` estimates ``c / (m * s)``
people (``m`` the multi-SIM factor): the weight of the stratum is ``1 / (m * s)``. Everything here
is public: it is read at the office and written into manifests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mobility.errors import ConfigError
from mobility.reference import age_band_values

SEXES = ("F", "M", "X")
COLUMNS = ("region", "sex", "age_band", "population", "share")
UNKNOWN = "UNKNOWN"  # a release's cell outside every region of the file


class FactorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agreement_id: str = Field(min_length=1)
    reference_date: dt.date
    source: str = Field(min_length=5, description="where the shares and populations come from")
    multi_sim_factor: float = Field(ge=1.0, le=10.0)
    shares: str = Field(min_length=1, description="CSV file, relative to this file")


@dataclass(frozen=True)
class Factors:
    """A validated factors file: the strata table and the weights derived from it."""

    agreement_id: str
    reference_date: dt.date
    source: str
    multi_sim_factor: float
    strata: pd.DataFrame  # region, sex, age_band, population, share
    resolution: int  # H3 resolution of the regions
    path: Path
    sha256: str  # of the YAML and the CSV together, as read

    # ---- shares of strata and margins ---------------------------------------------------------------
    def share(self, sex: str | None = None, age_band: str | None = None, region: str | None = None) -> float:
        """The operator's share of the resident population of a stratum (None: every value of that
        margin; a value the file does not hold, such as sex U: every value too). A stratum with no
        population in the file takes the share of the next coarser one: without the region, then of the
        sex alone, then national."""
        for s, a, r in ((sex, age_band, region), (sex, age_band, None), (sex, None, None), (None, None, None)):
            frame = self.strata
            if s in SEXES:
                frame = frame[frame["sex"] == s]
            if a is not None:
                frame = frame[frame["age_band"] == a] if a in set(self.strata["age_band"]) else frame
            if r is not None:
                frame = frame[frame["region"] == r]
            population = float(frame["population"].sum())
            if population > 0:
                return float((frame["population"] * frame["share"]).sum()) / population
        raise AssertionError("load_factors refuses a file without population")

    def weight(self, share: float) -> float:
        """People per released subscription in a stratum of this share."""
        return 1.0 / (self.multi_sim_factor * share)

    def region_of(self, cell: str) -> str | None:
        """The file's region holding a release cell (an H3 cell of the same or a finer resolution)."""
        import h3

        if cell == UNKNOWN or not h3.is_valid_cell(cell):
            return None
        resolution = h3.get_resolution(cell)
        if resolution < self.resolution:
            return None
        return h3.cell_to_parent(cell, self.resolution) if resolution > self.resolution else cell

    def describe(self) -> dict:
        return {"agreement_id": self.agreement_id, "reference_date": self.reference_date.isoformat(),
                "source": self.source, "multi_sim_factor": self.multi_sim_factor,
                "regions": f"H3 res {self.resolution}", "strata": len(self.strata),
                "national_share": round(self.share(), 6), "file": self.path.name, "sha256": self.sha256}


def _refuse(path: Path, msg: str, hint: str) -> ConfigError:
    return ConfigError(msg, where=str(path), hint=hint)


def load_factors(path: str | Path, agreement_id: str, age_bands) -> Factors:
    """Read and check a factors file for ``agreement_id`` whose releases use ``age_bands``."""
    import h3

    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "population factors file not found",
                      "set the agreement's population_factors to a file like conf/population/demo-phl-2026.yaml")
    raw = path.read_bytes()
    try:
        head = FactorsFile.model_validate(yaml.safe_load(raw))
    except (yaml.YAMLError, ValidationError) as exc:
        raise _refuse(path, f"not a valid population factors file: {exc}",
                      "fields: agreement_id, reference_date (YYYY-MM-DD), source, multi_sim_factor (1 to 10), "
                      "shares (a CSV beside it)") from None
    if head.agreement_id != agreement_id:
        raise _refuse(path, f"the factors are for agreement {head.agreement_id!r}, not {agreement_id!r}",
                      "each agreement names its own factors file")
    csv = (path.parent / head.shares).resolve()
    if not csv.is_file():
        raise _refuse(csv, "the shares CSV named by the factors file is missing",
                      f"write {', '.join(COLUMNS)} rows there")
    csv_bytes = csv.read_bytes()
    try:
        strata = pd.read_csv(csv, dtype={"region": str, "sex": str, "age_band": str}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise _refuse(csv, f"not a readable CSV: {exc}", f"columns {', '.join(COLUMNS)}") from None
    missing = [c for c in COLUMNS if c not in strata.columns]
    if missing:
        raise _refuse(csv, f"column(s) {missing} missing (found {list(strata.columns)})",
                      f"columns {', '.join(COLUMNS)}")
    strata = strata[list(COLUMNS)].copy()
    for column in ("population", "share"):
        values = pd.to_numeric(strata[column], errors="coerce")
        bad = strata.index[values.isna()].tolist()
        if bad:
            raise _refuse(csv, f"field '{column}' is not a number on line(s) {[i + 2 for i in bad[:5]]}",
                          "give a number on every row")
        strata[column] = values
    checks = [
        (~strata["sex"].isin(SEXES), "sex", f"one of {', '.join(SEXES)}"),
        (~strata["age_band"].isin(age_band_values(age_bands)[:-1]), "age_band",
         f"one of the agreement's age bands {', '.join(age_band_values(age_bands)[:-1])}"),
        (~strata["region"].map(lambda c: bool(h3.is_valid_cell(c))), "region", "an H3 cell"),
        ((strata["population"] < 0) | (strata["population"] % 1 != 0), "population", "a whole number >= 0"),
        ((strata["share"] <= 0) | (strata["share"] > 1), "share", "a share above 0 and at most 1"),
    ]
    for bad, column, expected in checks:
        if bad.any():
            lines = [i + 2 for i in strata.index[bad][:5]]
            raise _refuse(csv, f"field '{column}' on line(s) {lines} is not {expected}", "correct those rows")
    if strata.duplicated(["region", "sex", "age_band"]).any():
        raise _refuse(csv, "a region, sex and age band appear more than once", "one row per stratum")
    resolutions = {h3.get_resolution(c) for c in strata["region"]}
    if len(resolutions) != 1:
        raise _refuse(csv, f"regions mix H3 resolutions {sorted(resolutions)}", "use cells of one resolution")
    if strata["population"].sum() <= 0:
        raise _refuse(csv, "the file holds no population", "the shares are weighted by population: give it")
    digest = hashlib.sha256(raw + b"\0" + csv_bytes).hexdigest()
    return Factors(head.agreement_id, head.reference_date, head.source, float(head.multi_sim_factor),
                   strata.reset_index(drop=True), resolutions.pop(), path, digest)
