"""What a report reads besides the stored release itself: the ledger, the budget per population and the caps.

Reports only read public material: the release directory and the ledger. They never open the
office or operator zones.

Budget is accounted per data population (one operator's subscribers, ``budget.population``): every
charge counts against each data month it read and against the population's lifetime total
(``privacy_budget.accounts``). Caps come from the ledger's ``policy`` entries first, else from the
agreement files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from mobility.config import BudgetCaps, as_agreement, load_agreement
from mobility.errors import ConfigError, InputContractError, MobilityError
from mobility.lake import Lake
from mobility.privacy_budget import accountant, accounts, blocks
from mobility.privacy_budget.ledger import CHARGED, Ledger, LedgerEntry, chain_problems
from mobility.privacy_budget.stored import StoredRelease

NOT_RECORDED = "not recorded in this release's manifest"


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
            notes.append(f"caps of agreement {agreement_id} not found in the ledger nor in "
                         f"conf/agreements/{agreement_id}.yaml; pass --agreement with its file to show them")
    return caps, notes


@lru_cache(maxsize=4096)
def epsilon_of(rho: float, delta: float | None) -> float | None:
    """(epsilon, delta) equivalent of a cumulative rho; None when no delta is known."""
    if rho <= 0:
        return 0.0
    if not delta or not 0 < delta < 1:
        return None
    return accounts.cumulative_epsilon(rho, delta)


@dataclass(frozen=True)
class PopulationCaps:
    """The caps a population's charges are held to, and where they were read."""

    population: str
    rho_per_data_month: float
    rho_lifetime: float
    delta: float
    population_size: int | None
    source: str  # "ledger policy entry seq N (agreement A)" or "agreement file of A (...)"
    policy_seq: int | None  # the policy entry, when the caps come from the ledger

    def left(self, cap_rho: float, spent_rho: float) -> accountant.Remaining:
        return accountant.remaining(cap_rho, spent_rho, self.delta)


def agreement_populations(entries: list[LedgerEntry], file_caps: dict[str, BudgetCaps]) -> dict[str, str]:
    """agreement_id -> population: the ledger's policy entries first, else the agreement files."""
    return {**{a: c.population for a, c in file_caps.items()}, **accounts.populations(entries)}


def population_of(entry: LedgerEntry, mapping: dict[str, str]) -> str | None:
    return accounts.population_of(entry, mapping)


def population_caps(entries: list[LedgerEntry], population: str,
                    file_caps: dict[str, BudgetCaps]) -> PopulationCaps | None:
    """Caps of ``population``: its latest ``policy`` entry in the ledger, else an agreement file naming it."""
    policy = accounts.latest_policy(entries, population=population)
    if policy is not None:
        caps = accounts.recorded_caps(policy)
        try:
            size = next((c.population_size for a, c in sorted(file_caps.items())
                         if a == policy.agreement_id and c.population == population), None)
            return PopulationCaps(population, float(caps["rho_per_data_month"]), float(caps["rho_lifetime"]),
                                  float(caps["delta"]), size,
                                  f"ledger policy entry seq {policy.seq} (agreement {policy.agreement_id})",
                                  policy.seq)
        except (KeyError, TypeError, ValueError):
            pass  # a policy entry without readable caps: fall back to the files
    for agreement_id, cap in sorted(file_caps.items()):
        if cap.population == population:
            return PopulationCaps(population, cap.rho_per_data_month, cap.rho_lifetime, cap.delta,
                                  cap.population_size,
                                  f"agreement file of {agreement_id} (not yet recorded in the ledger)", None)
    return None


def policy_entries(entries: list[LedgerEntry], population: str) -> list[LedgerEntry]:
    """The ``policy`` entries recording caps of ``population`` (cap changes), in seq order."""
    return [e for e in entries if e.status == accounts.POLICY and e.population == population]


def charges_of(entries: list[LedgerEntry], population: str, mapping: dict[str, str]) -> list[LedgerEntry]:
    return [e for e in entries if e.status == CHARGED and population_of(e, mapping) == population]


@dataclass(frozen=True)
class BudgetPoint:
    """A population's budget right after one charge entry."""

    entry: LedgerEntry
    months: list[str]  # the data months the charge read
    lifetime_rho: float  # the population's lifetime total through this charge
    worst_month: str | None  # the most charged of the months it read, through this charge
    worst_month_rho: float


def budget_path(entries: list[LedgerEntry], population: str, mapping: dict[str, str]) -> list[BudgetPoint]:
    """Cumulative rho of ``population`` over its lifetime and per data month, charge by charge in seq order."""
    points: list[BudgetPoint] = []
    lifetime: list[float] = []
    per_month: dict[str, list[float]] = {}
    for e in sorted(charges_of(entries, population, mapping), key=lambda e: e.seq):
        months = accounts.data_months_of(e)
        lifetime.append(e.rho)
        for m in months:
            per_month.setdefault(m, []).append(e.rho)
        totals = [(accountant.compose(per_month[m]), m) for m in months]
        worst_rho, worst = max(totals) if totals else (0.0, None)
        points.append(BudgetPoint(e, months, accountant.compose(lifetime), worst, worst_rho))
    return points


def spent_by(entries: list[LedgerEntry], population: str, mapping: dict[str, str], *,
             through_seq: int | None = None) -> accounts.Spent:
    """What ``population`` has spent (through ``through_seq``), agreements assigned by ``mapping`` too."""
    return accounts.spent(entries, population, extra=mapping, through_seq=through_seq)


def month_span(months: list[str]) -> str:
    """"2023-05 to 2025-09 (29 months)", or the one month."""
    if not months:
        return "none"
    if len(months) == 1:
        return months[0]
    return f"{months[0]} to {months[-1]} ({len(months)} months)"


def month_runs(values: list[tuple[str, tuple]]) -> list[tuple[list[str], tuple]]:
    """Consecutive months (in order) with equal values, merged: one table row per run instead of per month."""
    runs: list[tuple[list[str], tuple]] = []
    for month, value in values:
        if runs and runs[-1][1] == value and blocks.month_index(month) == blocks.month_index(runs[-1][0][-1]) + 1:
            runs[-1][0].append(month)
        else:
            runs.append(([month], value))
    return runs


def months_label(months: list[str]) -> str:
    """A table row's label for a run of data months."""
    return f"data month {months[0]}" if len(months) == 1 else f"data months {month_span(months)}, each"


def entry_time(entry: LedgerEntry) -> str:
    """The entry's UTC time to the minute (the ledger keeps no finer time since format 2)."""
    return entry.entry_time.replace("T", " ")[:16]


@dataclass(frozen=True)
class LedgerPosition:
    charge: LedgerEntry | None
    publication: LedgerEntry | None
    entries: int
    later_charges: int  # later charges on the same population (else the same agreement)
    problems: list[str]


def ledger_position(stored: StoredRelease, entries: list[LedgerEntry],
                    mapping: dict[str, str] | None = None) -> LedgerPosition:
    """Where the release's entries sit in the ledger, and every chain or directory problem to show."""
    charge = stored.charge
    mapping = mapping or {}
    problems = [f"ledger seq {e.seq}: {reason}" for e, reason in chain_problems(entries)] + stored.problems
    mine = population_of(charge, mapping) if charge else None

    def same(e: LedgerEntry, charge: LedgerEntry) -> bool:
        return population_of(e, mapping) == mine if mine else e.agreement_id == charge.agreement_id

    later = sum(1 for e in entries if charge and e.status == CHARGED and e.seq > charge.seq and same(e, charge))
    return LedgerPosition(charge, stored.publication, len(entries), later, problems)
