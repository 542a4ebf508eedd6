"""The release boundary: the only code path that writes under ``LAKE/releases/``.

Order of operations (each step only after the previous one succeeded):
validate -> reuse a stored release if present -> charge the ledger (atomic; refusal writes
nothing) -> draw OpenDP noise for every cell, one invocation per measurement -> stage the noisy
measurements as drawn (``releases/.stage-RELEASE_ID``, renamed into place whole: ADR 0012) -> keep
them in the release (``TABLE_noisy``: integers, negatives included) -> post-process them into
consistent tables (``TABLE``: non-negative integers that add up, ``privacy_budget.consistency``)
and the national ``totals`` -> write CSV + Parquet + manifest.json into a temporary directory ->
rename it to ``releases/RELEASE_ID`` -> append the ``published`` ledger entry with the manifest's
SHA-256 -> remove the stage. Exact counts are never written.

A crash anywhere after the charge is completed by running the same request again: from the stage
when one was written (the noise is never drawn again once it was persisted), by drawing the noise
under the existing charge when nothing was persisted, never by a second charge.

On a lake on object storage nothing is renamed (ADR 0014): the stage and the release are written
file by file, ``stage.json`` and ``manifest.json`` last, each the commit marker of its folder; a
release folder without its manifest is an interrupted write, removed and written again from the stage.

Every published figure carries its 95% interval (``low_95``, ``high_95``): for a measurement, the
exact interval of its noise law (``privacy_budget.intervals``); for a consistent cell, the same
interval of the cell's measurement widened to include the consistent value; for a total, the
exact interval of its weighted least-squares estimate from the measurements, likewise widened.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from mobility import faults, storage
from mobility.config import Agreement
from mobility.errors import LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake
from mobility.privacy_budget import accountant, accounts, blocks
from mobility.privacy_budget.consistency import Part, Total
from mobility.privacy_budget.intervals import Term
from mobility.privacy_budget.ledger import (
    MANIFEST,
    NOT_PUBLISHED,
    ChargeRequest,
    Ledger,
    LedgerEntry,
    Policy,
    canonical_json,
    sha256_file,
    sha256_hex,
)
from mobility.privacy_budget.mechanisms import (
    ALPHA,
    DISCRETE_LAPLACE,
    Budget,
    NoisePlan,
    plan_noise,
)
from mobility.privacy_budget.postprocess import (
    CONSISTENT,
    COUNT,
    DERIVED_ROLE,
    HIGH,
    LOW,
    MEASUREMENT,
    MEASUREMENT_SUFFIX,
    NOISY,
    TOTALS,
    cell_half_width,
    cell_terms,
    consistency_description,
    measurement_table,
    reconcile,
    with_intervals,
)
from mobility.privacy_budget.stored import open_release, refuse_problems

MANIFEST_FORMAT = "mobility-release-manifest/2"
POST_PROCESSING = ("TABLE_noisy holds the noisy measurements exactly as OpenDP drew them (integers, negative "
                   "values included; nothing clamped, rounded or suppressed): sums of them are unbiased and their "
                   "intervals exact. TABLE is post-processing of the measurements and public domains only: "
                   "weighted least squares onto the constraints that hold for exact counts (subtables add up to "
                   "the totals they share), then a non-negative integer allocation from each total down to the "
                   "cells that keeps every sum exact. Post-processing costs no privacy.")


_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# column names that denote a person or a device rather than a public category
_IDENTIFIER_NAME = re.compile(r"pseudonym|msisdn|imsi|imei|subject|subscriber|phone|account|iban|"
                              r"card_?n|customer|caller|callee|person|user_?id|device|token", re.I)
# values shaped like a phone number / IMSI / IMEI (9+ digits) or a digest-based pseudonym (20+ hex)
_IDENTIFIER_VALUE = re.compile(r"^\+?\d{9,}$|^[0-9a-fA-F]{20,}$")


@dataclass(frozen=True)
class ReleaseRequest:
    """One release: exactly one budget (epsilon -> discrete Laplace, rho -> discrete Gaussian)."""

    release_id: str
    agreement_id: str
    period: str  # YYYY-MM
    purpose: str
    requested_by: str
    query: Mapping[str, Any]
    privacy_unit: str
    epsilon: float | None = None
    rho: float | None = None
    input_versions: Mapping[str, int] = field(default_factory=dict)
    max_contributions: int = 1
    table_shares: Mapping[str, float] | None = None  # None: equal split across tables
    table_sensitivities: Mapping[str, int] | None = None  # None: every table moves by max_contributions
    data_months: tuple[str, ...] = ()  # the months of data read: the blocks the ledger charges
    # measurement name -> tables measured jointly (no contributor in two of them); shares and
    # sensitivities are then keyed by measurement name
    table_groups: Mapping[str, tuple[str, ...]] | None = None
    # what the consistent tables add up to (None: each table on its own total)
    totals: tuple[Total, ...] | None = None

    def __post_init__(self):
        def refuse(msg: str, hint: str | None = None):
            raise ReleaseRefusedError(f"release {self.release_id!r}: {msg}; nothing was charged", hint=hint)

        if not isinstance(self.release_id, str) or not _RELEASE_ID.match(self.release_id):
            refuse("release_id must be 1-128 letters, digits, '.', '_' or '-' and not start with '.'")
        for name in ("agreement_id", "purpose", "requested_by", "privacy_unit"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                refuse(f"{name} must be a non-empty string")
        try:
            accountant.year_of(self.period)
        except ValueError as exc:
            refuse(str(exc))
        try:
            Budget(self.epsilon, self.rho)
        except ValueError as exc:
            refuse(str(exc), hint="request epsilon > 0 or rho > 0")
        if isinstance(self.max_contributions, bool) or not isinstance(self.max_contributions, int) \
                or self.max_contributions < 1:
            refuse(f"max_contributions must be a positive integer, got {self.max_contributions!r}")
        if not isinstance(self.query, Mapping):
            refuse("query must be a mapping (table names, group-by keys, period, domain sizes)")
        try:
            canonical_json(dict(self.query))
        except (TypeError, ValueError) as exc:
            refuse(f"query is not plain JSON: {exc}")
        for path, value in _walk(self.query):
            if isinstance(value, str) and _IDENTIFIER_VALUE.match(value.strip()):
                refuse(f"query field {path} holds a value that looks like an identifier")
        if not self.data_months:
            refuse("declare the data months the release reads (data_months); the ledger charges each of them")
        for month in self.data_months:
            try:
                blocks.check_month(month)
            except ValueError as exc:
                refuse(f"data_months: {exc}")
        for key, value in dict(self.input_versions).items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int) or value < 0:
                refuse(f"input_versions must map Delta table paths to versions >= 0, got {key!r}: {value!r}")

    @property
    def budget(self) -> Budget:
        return Budget(self.epsilon, self.rho)

    @property
    def mechanism(self) -> str:
        return self.budget.mechanism


@dataclass(frozen=True)
class ReleaseResult:
    release_id: str
    path: Path
    manifest: dict
    charge: LedgerEntry
    publication: LedgerEntry
    tables: dict[str, pd.DataFrame]
    reused: bool  # True when a stored release was returned (no new noise, no new charge)


def _walk(value: Any, path: str = "query"):
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def _validate_table(name: str, frame: pd.DataFrame, request: ReleaseRequest) -> tuple[list[str], pd.DataFrame]:
    """Key columns and the frame sorted by them; refuses identifiers, bad counts and partial domains."""
    def refuse(msg: str, hint: str | None = None):
        raise ReleaseRefusedError(f"release {request.release_id!r}, table {name!r}: {msg}; nothing was charged",
                                  hint=hint)

    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        refuse("table names must be lower-case letters, digits and '_' (they become file names)")
    if not isinstance(frame, pd.DataFrame):
        refuse(f"expected a pandas DataFrame, got {type(frame).__name__}")
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns) or COUNT not in columns:
        refuse(f"needs unique column names and a '{COUNT}' column of exact counts, got {columns}")
    keys = [c for c in columns if c != COUNT]
    named = [c for c in keys if _IDENTIFIER_NAME.search(c)]
    if named:
        refuse(f"column(s) {named} look like personal identifiers", hint="release only public category keys")
    counts = frame[COUNT]
    if not pd.api.types.is_integer_dtype(counts.dtype) or counts.isna().any():
        refuse(f"'{COUNT}' must be integers without missing values, got dtype {counts.dtype}")
    if (counts < 0).any():
        refuse(f"'{COUNT}' has negative values; exact counts are never negative")
    for key in keys:
        column = frame[key]
        if column.isna().any():
            refuse(f"key column {key!r} has missing values; every cell needs a public key value")
        values = column.drop_duplicates()
        if pd.api.types.is_integer_dtype(column.dtype) and (values.abs() >= 10**8).any():
            refuse(f"key column {key!r} has integers of 9+ digits that look like phone numbers or IMSIs",
                   hint="publish keys as public codes")
        if any(isinstance(v, str) and _IDENTIFIER_VALUE.match(v.strip()) for v in values):
            refuse(f"key column {key!r} has values that look like identifiers (long digit or hex strings)")
    if keys and frame.duplicated(keys).any():
        refuse("duplicate key rows; each cell must appear once")
    declared = request.query.get("domain_sizes")
    if not isinstance(declared, Mapping):
        declared = {}
    expected = declared.get(name)
    if expected is None:  # no declared size: the domain must be the full cross product of its keys
        expected = math.prod(frame[k].nunique() for k in keys) if keys else 1
    if len(frame) != expected or len(frame) == 0:
        refuse(f"has {len(frame)} cells but its domain has {expected}; include every public cell, zeros too",
               hint="build the full cross product of public keys (or declare query.domain_sizes)")
    ordered = frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame.reset_index(drop=True)
    return keys, ordered


def _measurement_names(request: ReleaseRequest, names: list[str]) -> list[str]:
    """One name per OpenDP measurement: each group, then each table measured alone."""
    groups = {str(g): tuple(t) for g, t in (request.table_groups or {}).items()}
    grouped = {t for tables in groups.values() for t in tables}
    unknown = sorted(grouped - set(names))
    if unknown or any(g in names for g in groups):
        named = unknown or sorted(groups)
        raise ReleaseRefusedError(f"release {request.release_id!r}: table_groups name tables {named} that are not "
                                  "(only) tables of the release; nothing was charged")
    return [*groups, *(n for n in names if n not in grouped)]


def _shares(request: ReleaseRequest, names: list[str]) -> dict[str, float]:
    measured = _measurement_names(request, names)
    if request.table_shares is None:
        return {n: 1.0 / len(measured) for n in measured}
    shares = {str(k): float(v) for k, v in request.table_shares.items()}
    if sorted(shares) != sorted(measured):
        raise ReleaseRefusedError(f"table_shares names {sorted(shares)} but the measurements are {sorted(measured)}; "
                                  "nothing was charged")
    return shares


def _plan(request: ReleaseRequest, shares: dict[str, float], delta: float) -> NoisePlan:
    try:
        return plan_noise(shares=shares, sensitivity=request.max_contributions, delta=delta,
                          epsilon=request.epsilon, rho=request.rho, sensitivities=request.table_sensitivities,
                          groups=request.table_groups)
    except ValueError as exc:
        raise ReleaseRefusedError(f"release {request.release_id!r}: {exc}; nothing was charged") from None


def _totals(request: ReleaseRequest, names: list[str]) -> tuple[Total, ...]:
    totals = tuple(request.totals) if request.totals else tuple(Total(n, (Part(n),)) for n in names)
    clash = sorted({measurement_table(n) for n in names} & set(names) | ({TOTALS} & set(names)))
    if clash:
        raise ReleaseRefusedError(f"release {request.release_id!r}: table names {clash} are reserved for noisy "
                                  f"measurements (*{MEASUREMENT_SUFFIX}) and the totals; nothing was charged")
    return totals


def _measured(checked: dict[str, tuple[list[str], pd.DataFrame]], plan: NoisePlan) -> dict[str, pd.DataFrame]:
    """The noisy measurements as drawn (one OpenDP call per measurement) with each cell's exact 95% interval."""
    drawn = plan.draw({name: frame[COUNT].tolist() for name, (_, frame) in checked.items()})
    out = {}
    for name, (key_columns, frame) in checked.items():
        table = frame[key_columns].copy()
        table[NOISY] = pd.Series(drawn[name], dtype="int64")
        out[name] = with_intervals(table, cell_terms(plan, name))
    return out


def privacy_claims(charge: LedgerEntry, entries: list[LedgerEntry], policy: Policy) -> dict:
    """What holds for a person after this charge: the unit, the blocks read, the release's loss and the
    cumulative loss per subscription over the ledger through this charge (for the blocks it read)."""
    spent = accounts.spent(entries, policy.population, through_seq=charge.seq)
    months = charge.months
    worst_month, worst_rho = spent.worst(months)
    delta = policy.caps.delta

    def loss(rho: float, cap: float) -> dict:
        return {"rho": rho, "epsilon": accounts.cumulative_epsilon(rho, delta), "delta": delta, "cap_rho": cap}

    return {
        "protected_unit": f"one subscription (SIM) of population {policy.population}; a person with k SIMs of "
                          "this operator is protected as a group of k: up to k^2 times the rho figures (zCDP), "
                          "k times epsilon for pure epsilon-DP",
        "population": policy.population,
        "data_months": months,
        "this_release": {"rho": charge.rho, "epsilon": charge.epsilon, "delta": charge.delta},
        "cumulative_through_seq": charge.seq,
        "cumulative_per_data_month": {"most_charged_month": worst_month,
                                      **loss(worst_rho, policy.caps.rho_per_data_month)},
        "cumulative_lifetime": loss(spent.lifetime, policy.caps.rho_lifetime),
        "meaning": "zCDP composes by addition: the loss of one subscription's month of data is at most the "
                   "per-data-month rho, and of its whole data the lifetime rho, over every release charged so far",
    }


def _describe_tables(request: ReleaseRequest, plan: NoisePlan, keys: dict[str, list[str]],
                     totals: tuple[Total, ...]) -> dict[str, dict]:
    """The manifest entry of every measurement, consistent table and the totals table (files added later)."""
    out: dict[str, dict] = {}
    intervals = {"interval_columns": [LOW, HIGH], "confidence": 1 - ALPHA}
    for name in keys:
        out[measurement_table(name)] = {
            "role": MEASUREMENT, "measures": name, "key_columns": keys[name], "value_column": NOISY,
            **plan.tables[name].describe(), "error_bound_95": cell_half_width(plan, name), **intervals,
            "interval": "noisy_count -/+ error_bound_95, the exact 95% half-width of one cell's noise, lower end "
                        "at least 0 (exact counts are never negative)"}
    for name in keys:
        parts = [p for total in totals for p in total.parts if p.table == name]
        with_it = sorted({measurement_table(p.table) for total in totals if any(q.table == name for q in total.parts)
                          for p in total.parts})
        out[name] = {
            "role": CONSISTENT, "key_columns": keys[name], "count_column": COUNT, **intervals,
            "from_measurements": with_it, "totals": [t.name for t in totals if any(p.table == name for p in t.parts)],
            "levels": [list(level) for p in parts for level in p.levels],
            "measurement": {"table": measurement_table(name), "noise_scale": plan.tables[name].scale,
                            "error_bound_95": cell_half_width(plan, name)},
            "interval": "the 95% interval of the cell's own measurement, widened to include the consistent value: "
                        "it holds the exact count whenever the measurement's interval does (probability >= 95%)"}
    out[TOTALS] = {"role": CONSISTENT, "key_columns": ["total"], "count_column": COUNT, **intervals,
                   "from_measurements": sorted(measurement_table(n) for n in keys),
                   "interval": "the exact 95% interval of the weighted least-squares estimate of the total (a "
                               "linear combination of measurement sums, privacy_budget.intervals), widened to "
                               "include the consistent value"}
    return out


def _write_release(work: Path, request: ReleaseRequest, plan: NoisePlan, frames: dict[str, pd.DataFrame],
                   described: dict[str, dict], charge: LedgerEntry, ledger_query: dict,
                   consistency: dict, claims: dict | None = None, witnessed: bool = False,
                   resumed: bool = False) -> dict:
    """Write CSV + Parquet per table and manifest.json into ``work``; returns the manifest."""
    tables = {}
    for name, frame in frames.items():
        csv_path, parquet_path = work / f"{name}.csv", work / f"{name}.parquet"
        frame.to_csv(csv_path, index=False, lineterminator="\n")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet_path)
        tables[name] = {"rows": len(frame), **described[name],
                        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                                  for p in (csv_path, parquet_path)}}
    measurements = {name: {"tables": list(unit.group_tables or (unit.table,)), "mechanism": plan.mechanism,
                           "noise_scale": unit.scale, "sensitivity": unit.describe()["sensitivity"],
                           "budget_share": unit.share, "rho": unit.rho, "epsilon": unit.epsilon}
                    for name, unit in plan.measurements().items()}
    manifest = {
        "format": MANIFEST_FORMAT, "release_id": request.release_id, "agreement_id": request.agreement_id,
        "period": request.period, "purpose": request.purpose, "requested_by": request.requested_by,
        "query": dict(request.query), "privacy_unit": request.privacy_unit,
        "max_contributions": request.max_contributions, "mechanism": plan.mechanism,
        "noise_source": f"OpenDP {package_version('opendp')} "
                        f"{'make_laplace' if plan.mechanism == DISCRETE_LAPLACE else 'make_gaussian'} "
                        "on an i64 count vector (contrib features only), one invocation per measurement",
        "privacy": {"epsilon": charge.epsilon, "delta": charge.delta, "rho": charge.rho,
                    "requested": ledger_query["budget"], "accounting": "zCDP; rho adds across measurements and "
                                                                       "releases",
                    "measurements": measurements,
                    "opendp_rho": plan.opendp_loss(),
                    "opendp_rho_meaning": "the sum over measurements of OpenDP's own privacy map at each "
                                          "measurement's d_in (for discrete Laplace, of its zCDP conversion); the "
                                          "ledger charges rho",
                    "epsilon_conversion": ("pure epsilon-DP" if plan.mechanism == DISCRETE_LAPLACE else
                                           "OpenDP make_zCDP_to_approxDP at the agreement's delta"),
                    **(claims or {})},
        "error_bound": {"confidence": 1 - ALPHA,
                        "meaning": "every table has low_95 and high_95 columns: the interval holds the exact value "
                                   "with probability >= 95% (see each table's 'interval'); error_bound_95 of a "
                                   "noisy measurement is the exact half-width for one cell"},
        "consistency": consistency,
        "input_versions": dict(request.input_versions),
        # the head of the chain right after the charge: a published release anchors the ledger too
        "ledger": {"seq": charge.seq, "entry_hash": charge.entry_hash, "table": "ledger",
                   "head": {"seq": charge.seq, "entry_hash": charge.entry_hash}, "witnessed": witnessed},
        "post_processing": POST_PROCESSING, "tables": tables,
        **({"resumed": "published by a later run of the same request from the noisy measurements staged "
                       "under this charge before an interruption; no noise was drawn again"} if resumed else {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (work / MANIFEST).write_text(_manifest_text(manifest), encoding="utf-8")
    return manifest


def _manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


STAGE_RECORD = "stage.json"
def _write_stage(lake: Lake, charge: LedgerEntry, measured: dict[str, pd.DataFrame]) -> None:
    """Persist the measurements as drawn before any other output: written into a temporary folder and
    renamed into place whole, so a stage is either complete or absent (a leftover ``.tmp`` is not one).
    On object storage the files are copied one by one, ``stage.json`` last: without it, no stage."""
    final = lake.release_stage(charge.release_id)
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}@tmp-", dir=lake.releases if lake.local else None))
    for name, frame in measured.items():
        pq.write_table(pa.Table.from_pandas(frame[[c for c in frame.columns if c not in (LOW, HIGH)]],
                                            preserve_index=False), work / f"{name}.parquet")
    record = {"release_id": charge.release_id, "charge_seq": charge.seq, "charge_hash": charge.entry_hash,
              "tables": sorted(measured)}
    (work / STAGE_RECORD).write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    for path in work.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    if lake.local:
        os.rename(work, final)
        return
    try:
        storage.upload_folder(work, final, last=STAGE_RECORD)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read_parquet(path: Path) -> pd.DataFrame:
    if storage.is_local(path):
        return pq.read_table(path).to_pandas()
    with storage.open_binary(path) as handle:
        return pq.read_table(handle).to_pandas()


def _staged(lake: Lake, release_id: str) -> bool:
    """A complete stage (on object storage: its ``stage.json``, written last, is there)."""
    stage = lake.release_stage(release_id)
    return stage.is_dir() if lake.local else (stage / STAGE_RECORD).is_file()


def _written(lake: Lake, release_id: str) -> bool:
    """The release folder is in place (on object storage: its manifest, written last, is there)."""
    target = lake.release_dir(release_id)
    return target.is_dir() if lake.local else (target / MANIFEST).is_file()


def _read_stage(lake: Lake, charge: LedgerEntry, checked: dict[str, tuple[list[str], pd.DataFrame]]
                ) -> dict[str, pd.DataFrame]:
    """The staged measurements of ``charge``, on the same cells as this request (else refused)."""
    stage = lake.release_stage(charge.release_id)
    try:
        record = json.loads((stage / STAGE_RECORD).read_text(encoding="utf-8"))
        frames = {name: _read_parquet(stage / f"{name}.parquet") for name in checked}
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise LedgerIntegrityError(f"the stage of release {charge.release_id!r} cannot be read: {exc}",
                                   where=str(stage), hint="run `mobility ledger verify`; do not delete the stage "
                                                          "(it holds noise already drawn); investigate") from None
    if record.get("charge_seq") != charge.seq or record.get("charge_hash") != charge.entry_hash \
            or sorted(record.get("tables") or []) != sorted(checked):
        raise LedgerIntegrityError(f"the stage of release {charge.release_id!r} does not belong to its charge "
                                   f"(seq {charge.seq})", where=str(stage), hint="run `mobility ledger verify`")
    for name, (keys, frame) in checked.items():
        if not frames[name][keys].astype(str).reset_index(drop=True).equals(
                frame[keys].astype(str).reset_index(drop=True)):
            raise LedgerIntegrityError(f"the staged cells of table {name!r} differ from this request's cells",
                                       where=str(stage), hint="re-run the request exactly as it was charged")
    return frames


def _unfinished_stages(lake: Lake, release_id: str) -> list[Path]:
    """Stages of ``release_id`` whose writing was interrupted ('@' is never part of a release id; on object
    storage: files of the stage without its ``stage.json``)."""
    if not lake.local:
        stage = lake.release_stage(release_id)
        return [stage] if stage.is_dir() and not _staged(lake, release_id) else []
    return sorted(lake.releases.glob(f"{lake.release_stage(release_id).name}@tmp-*"))


def _stored(lake: Lake, ledger: Ledger, charge: LedgerEntry) -> ReleaseResult:
    """Return an existing release after checking it against the ledger (completing a crashed publish)."""
    stored = open_release(lake, charge.release_id, verify=False)
    publication = stored.publication
    if publication is None and stored.problems == [NOT_PUBLISHED]:  # renamed into place, then interrupted
        publication = ledger.record_publication(charge.release_id, sha256_file(stored.path / MANIFEST))
    else:
        refuse_problems(stored.release_id, stored.path, stored.problems)
    assert publication is not None  # a release without its published entry has problems, refused above
    return ReleaseResult(stored.release_id, stored.path, stored.manifest, charge, publication,
                         stored.tables, reused=True)


@contextmanager
def _one_publisher_per_host(lake: Lake, timeout: float, shared: bool) -> Iterator[None]:
    """One publisher at a time on this host, so "charged but no directory" means an interrupted release.

    On a lake several hosts share (``MOBILITY_SHARED_LAKE=1``) no host lock is taken: the ledger's
    commit against the version it checked makes the charge atomic, and a release id charged by another
    process meanwhile is refused, not noised a second time."""
    if shared:
        yield
        return
    lock = FileLock(str(lake.releases_lock), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise ReleaseRefusedError(f"another release held {lake.releases_lock} for {timeout:.0f} s; "
                                  "nothing was charged", hint="retry when the other release has finished") from None
    try:
        yield
    finally:
        lock.release()


def publish(lake_root: str | os.PathLike, request: ReleaseRequest, tables: Mapping[str, pd.DataFrame],
            policy: Policy | Agreement, *, lock_timeout: float = 600.0,
            derive: Callable[[Mapping[str, pd.DataFrame], Mapping[str, pd.DataFrame], Mapping[str, list[Term]]],
                             Mapping[str, tuple[pd.DataFrame, dict]]] | None = None,
            ) -> ReleaseResult:
    """Charge the ledger, add OpenDP noise to every cell and publish ``releases/RELEASE_ID``.

    ``derive`` (optional) is post-processing: it receives only the noisy measurements (table name ->
    key columns, ``noisy_count``, ``low_95``, ``high_95``), the consistent tables computed from them
    (the ``totals`` table included) and the noise of one cell of each measurement (public laws), and
    returns extra tables (name -> (frame, description for the manifest)), such as ratios of two noisy
    counts or estimates of people, written and hashed beside them at no privacy cost.

    Re-running a published release_id returns the stored files without new noise or charge.
    A release_id charged but not published (a crash after the charge) is completed by re-running
    the same request: from its stage when the noise was staged (never drawn again), else by drawing
    it under the existing charge; only an interrupted stage, or a shared lake without a stage, is
    refused (its budget stays spent).
    """
    lake = Lake(lake_root)
    policy = policy if isinstance(policy, Policy) else Policy.of(policy)
    if not tables:
        raise ReleaseRefusedError(f"release {request.release_id!r} has no tables; nothing was charged")
    checked = {name: _validate_table(name, frame, request) for name, frame in tables.items()}
    keys = {name: k for name, (k, _) in checked.items()}
    shares = _shares(request, list(checked))
    totals = _totals(request, list(checked))
    plan = _plan(request, shares, policy.caps.delta)  # measurements only: no noise is drawn here
    ledger_query: dict[str, Any] = {
        "query": dict(request.query), "max_contributions": request.max_contributions,
        "budget": request.budget.as_dict(),
        "tables": {n: {"key_columns": keys[n], "cells": len(checked[n][1]),
                       "budget_share": plan.tables[n].share} for n in checked}}
    if request.table_sensitivities:  # only then, so earlier releases keep matching their charges
        for n in checked:
            ledger_query["tables"][n]["sensitivity"] = plan.tables[n].sensitivity
    if request.table_groups:
        for n in checked:
            if plan.tables[n].group:
                ledger_query["tables"][n]["joint_measurement"] = plan.tables[n].group
    charge_request = ChargeRequest(
        release_id=request.release_id, agreement_id=request.agreement_id, period=request.period,
        purpose=request.purpose, requested_by=request.requested_by, query=ledger_query,
        privacy_unit=request.privacy_unit, mechanism=plan.mechanism, epsilon=plan.epsilon, delta=plan.delta,
        rho=plan.rho, input_versions=dict(request.input_versions), data_months=tuple(request.data_months))

    storage.makedirs(lake.releases)
    ledger = Ledger(lake.ledger, witness=policy.witness)
    target = lake.release_dir(request.release_id)
    with _one_publisher_per_host(lake, lock_timeout, ledger.shared):
        existing = ledger.find(request.release_id)
        if existing is not None:
            diff = charge_request.matches(existing)
            if diff:
                raise ReleaseRefusedError(
                    f"release_id {request.release_id!r} was already charged (seq {existing.seq}) for a different "
                    f"request; differing fields: {', '.join(diff)}", hint="use a new release_id")
            if _written(lake, request.release_id):
                result = _stored(lake, ledger, existing)
                storage.remove_tree(lake.release_stage(request.release_id))
                return result
            stage = lake.release_stage(request.release_id)
            staged = _staged(lake, request.release_id)
            if not staged and (ledger.shared or _unfinished_stages(lake, request.release_id)):
                raise ReleaseRefusedError(
                    f"release_id {request.release_id!r} was charged (seq {existing.seq}) but "
                    + ("is not published and has no stage: another host may be publishing it now"
                       if ledger.shared else "its noise was being staged when it was interrupted")
                    + "; its budget stays spent and it will not be noised again",
                    hint="publish under a new release_id" + (", or run the same request again once the other host "
                                                             "has published it" if ledger.shared else ""))
            # completed from its stage (no new noise), or, when nothing was persisted, drawn now under
            # the existing charge (no second charge)
            return _publish_charged(lake, ledger, request, plan, checked, keys, totals, ledger_query, existing,
                                    policy, derive, stage if staged else None)
        if target.exists():
            raise LedgerIntegrityError("release directory exists without a ledger entry", where=str(target),
                                       hint="run `mobility ledger verify`; remove the directory only after review")

        # refusal raises before anything is written; a charge another process made meanwhile is refused
        # too, so noise is drawn only by the process whose charge this is
        charge = ledger.charge(charge_request, policy, existing_ok=False)
        faults.point("release:after-charge")
        return _publish_charged(lake, ledger, request, plan, checked, keys, totals, ledger_query, charge, policy,
                                derive, None)


def _publish_charged(lake: Lake, ledger: Ledger, request: ReleaseRequest, plan: NoisePlan,
                     checked: dict[str, tuple[list[str], pd.DataFrame]], keys: dict[str, list[str]],
                     totals: tuple[Total, ...], ledger_query: dict, charge: LedgerEntry, policy: Policy,
                     derive, stage: Path | None) -> ReleaseResult:
    """Everything after the charge: noise (drawn and staged, or read from ``stage``), post-processing,
    files, the rename into place, the ``published`` entry, the stage removed."""
    target = lake.release_dir(request.release_id)
    if lake.local:
        for leftover in lake.releases.glob(f".tmp-{request.release_id}@*"):  # a crashed write, from the stage
            shutil.rmtree(leftover, ignore_errors=True)
    else:  # files of a write interrupted before its manifest (the commit marker): written again below
        storage.remove_tree(target)
    claims = privacy_claims(charge, ledger.read()[0], policy)
    if stage is None:
        measured = _measured(checked, plan)
        _write_stage(lake, charge, measured)
        faults.point("release:after-stage")
    else:
        measured = {n: with_intervals(f, cell_terms(plan, n)) for n, f in _read_stage(lake, charge, checked).items()}
    consistent, totals_frame, estimates = reconcile(measured, {n: cell_terms(plan, n) for n in measured}, totals)
    frames = {**{measurement_table(n): f for n, f in measured.items()}, **consistent, TOTALS: totals_frame}
    described = _describe_tables(request, plan, keys, totals)
    derived = dict(derive({n: f.copy() for n, f in measured.items()},
                          {**{n: f.copy() for n, f in consistent.items()}, TOTALS: totals_frame.copy()},
                          {n: cell_terms(plan, n) for n in measured})) if derive is not None else {}
    clash = sorted(n for n in derived if n in frames or not isinstance(n, str) or not _TABLE_NAME.match(n))
    if clash:
        raise LedgerIntegrityError(f"derived table names {clash} clash with noisy tables or are not file names; "
                                   f"release {request.release_id!r} is charged but unpublished",
                                   hint="fix the derive function and run the same request again")
    frames.update({name: frame for name, (frame, _) in derived.items()})
    described.update({name: {"role": DERIVED_ROLE, **({"key_columns": list(info["key_columns"])}
                                                      if "key_columns" in info else {}), "derived": dict(info)}
                      for name, (_, info) in derived.items()})
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{request.release_id}@", dir=lake.releases if lake.local else None))
    try:
        manifest = _write_release(work, request, plan, frames, described, charge, ledger_query,
                                  consistency_description(totals, estimates), claims,
                                  witnessed=ledger.witness is not None, resumed=stage is not None)
        if lake.local:
            os.rename(work, target)
        else:  # one object per file, the manifest last: readers trust a release only with its manifest
            storage.upload_folder(work, target, last=MANIFEST)
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    faults.point("release:after-rename")
    publication = ledger.record_publication(request.release_id, sha256_hex((target / MANIFEST).read_bytes()))
    faults.point("release:after-publication")
    storage.remove_tree(lake.release_stage(request.release_id))
    return ReleaseResult(request.release_id, target, manifest, charge, publication, frames, reused=stage is not None)
