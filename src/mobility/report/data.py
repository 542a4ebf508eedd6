"""What a report reads besides the stored release itself: the ledger, the budget path and the caps.

Reports only read public material: the release directory and the ledger. They never open the
office or operator zones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mobility.config import BudgetCaps, as_agreement, load_agreement
from mobility.errors import ConfigError, InputContractError, MobilityError
from mobility.lake import Lake
from mobility.privacy_budget import accountant
from mobility.privacy_budget.ledger import CHARGED, Ledger, LedgerEntry, chain_problems
from mobility.privacy_budget.stored import StoredRelease


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


def read_ledger(lake: Lake) -> tuple[list[LedgerEntry], int | None]:
    """The ledger's entries in seq order and its Delta version, or a clear error when it cannot be read."""
    ledger = Ledger(lake.ledger)
    try:
        return ledger.read()
    except MobilityError:
        raise
    except Exception as exc:  # an unreadable Delta table: say so rather than crash the report
        raise ConfigError(f"cannot read the ledger: {exc}", where=str(ledger.path),
                          hint="run `mobility ledger verify --lake ...`") from None


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
    points: list[BudgetPoint] = []
    per_year: dict[int, list[float]] = {}
    lifetime: list[float] = []
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


def ledger_position(stored: StoredRelease, entries: list[LedgerEntry]) -> LedgerPosition:
    """Where the release's entries sit in the ledger, and every chain or directory problem to show."""
    charge = stored.charge
    problems = [f"ledger seq {e.seq}: {reason}" for e, reason in chain_problems(entries)] + stored.problems
    later = sum(1 for e in entries if charge and e.status == CHARGED and e.seq > charge.seq
                and e.agreement_id == charge.agreement_id)
    return LedgerPosition(charge, stored.publication, len(entries), later, problems)
