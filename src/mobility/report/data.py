"""What a report reads: a stored release (manifest + Parquet tables) and its place in the ledger.

Reports only read public material: the release directory and the ledger. They never open the
office or operator zones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from mobility.config import BudgetCaps, as_agreement, load_agreement
from mobility.errors import ConfigError, InputContractError, MobilityError
from mobility.lake import Lake
from mobility.privacy_budget import accountant
from mobility.privacy_budget.ledger import (
    CHARGED, MANIFEST, PUBLISHED, Ledger, LedgerEntry, chain_problems, release_dir_problems,
)


@dataclass(frozen=True)
class StoredRelease:
    release_id: str
    path: Path
    manifest: dict
    tables: dict[str, pd.DataFrame]


def open_lake(lake_root: str | os.PathLike) -> Lake:
    """The lake, or a clear error when the folder is not one."""
    lake = Lake(lake_root)
    if not lake.root.is_dir():
        raise InputContractError("lake folder not found", where=str(lake.root),
                                 hint="pass --lake the folder that holds releases/ and ledger/")
    if not lake.releases.is_dir() and not lake.ledger.exists():
        raise InputContractError("not a lake: it has neither releases/ nor ledger/", where=str(lake.root),
                                 hint="pass --lake the lake root (the folder given to `mobility release`)")
    return lake


def release_ids(lake: Lake) -> list[str]:
    if not lake.releases.is_dir():
        return []
    return sorted(p.name for p in lake.releases.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_release(lake_root: str | os.PathLike, release_id: str) -> StoredRelease:
    """Manifest and tables of a published release; a clear error naming the ids that exist otherwise."""
    lake = open_lake(lake_root)
    known = release_ids(lake)
    target = lake.releases / str(release_id)
    if "/" in str(release_id) or str(release_id).startswith(".") or not (target / MANIFEST).is_file():
        listed = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
        raise InputContractError(f"no release {release_id!r} in this lake (releases here: {listed})",
                                 where=str(lake.releases),
                                 hint="pass --release one of the listed ids (`mobility ledger show` lists them)")
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputContractError(f"manifest is not valid JSON: {exc}", where=str(target / MANIFEST),
                                 hint="run `mobility ledger verify`; the release may have been altered") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables", {}), dict):
        raise InputContractError("manifest has no 'tables' mapping", where=str(target / MANIFEST),
                                 hint="run `mobility ledger verify`; the release may have been altered")
    tables = {}
    for name in sorted(manifest.get("tables", {})):
        parquet, csv = target / f"{name}.parquet", target / f"{name}.csv"
        if parquet.is_file():
            tables[name] = pq.ParquetFile(parquet).read().to_pandas()
        elif csv.is_file():
            tables[name] = pd.read_csv(csv, keep_default_na=False)
        else:
            raise InputContractError(f"table {name!r} listed in the manifest has no file", where=str(target),
                                     hint="run `mobility ledger verify`; the release may be incomplete")
    return StoredRelease(str(release_id), target, manifest, tables)


def caps_for(agreement_ids: list[str], given: tuple = ()) -> tuple[dict[str, BudgetCaps], list[str]]:
    """Caps of the agreements given (objects, files or ids), else found by id; notes say which were not found."""
    caps: dict[str, BudgetCaps] = {}
    for ref in given:
        agreement = as_agreement(ref)  # an explicit agreement that cannot load is an error
        caps[agreement.agreement_id] = agreement.budget
    notes = []
    for agreement_id in agreement_ids:
        if agreement_id in caps:
            continue
        try:
            caps[agreement_id] = load_agreement(agreement_id).budget
        except MobilityError:
            notes.append(f"caps of agreement {agreement_id} not found (conf/agreements/{agreement_id}.yaml); "
                         f"pass --agreement with its file to plot them")
    return caps, notes


@dataclass(frozen=True)
class BudgetPoint:
    """Budget of one agreement after one charge entry."""

    entry: LedgerEntry
    year: int
    year_total_rho: float
    lifetime_total_rho: float


def budget_path(entries: list[LedgerEntry], agreement_id: str) -> list[BudgetPoint]:
    """Cumulative rho per charged calendar year and over the lifetime, entry by entry in seq order."""
    points, per_year, lifetime = [], {}, []
    for e in sorted((e for e in entries if e.status == CHARGED and e.agreement_id == agreement_id),
                    key=lambda e: e.seq):
        per_year.setdefault(e.year, []).append(e.rho)
        lifetime.append(e.rho)
        points.append(BudgetPoint(e, e.year, accountant.compose(per_year[e.year]), accountant.compose(lifetime)))
    return points


@dataclass(frozen=True)
class LedgerPosition:
    charge: LedgerEntry | None
    publication: LedgerEntry | None
    entries: int
    later_charges: int
    problems: list[str]


def ledger_position(lake_root: str | os.PathLike, stored: StoredRelease) -> tuple[LedgerPosition, list[LedgerEntry]]:
    ledger = Ledger.of_lake(lake_root)
    try:
        entries, _ = ledger.read()
    except MobilityError:
        raise
    except Exception as exc:  # an unreadable Delta table: say so rather than crash the report
        raise ConfigError(f"cannot read the ledger: {exc}", where=str(ledger.path),
                          hint="run `mobility ledger verify --lake ...`") from None
    charge = next((e for e in entries if e.status == CHARGED and e.release_id == stored.release_id), None)
    publication = next((e for e in entries if e.status == PUBLISHED and e.release_id == stored.release_id), None)
    problems = [f"ledger seq {e.seq}: {reason}" for e, reason in chain_problems(entries)]
    problems += release_dir_problems(stored.path, charge, publication)
    later = sum(1 for e in entries if charge and e.status == CHARGED and e.seq > charge.seq
                and e.agreement_id == charge.agreement_id)
    return LedgerPosition(charge, publication, len(entries), later, list(problems)), entries
