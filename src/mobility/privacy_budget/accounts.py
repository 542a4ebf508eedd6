"""Who has spent what: the ledger's charges per data population, per data month and over a lifetime.

The protected unit is one subscription (SIM) of a data population (one operator's subscribers,
``budget.population`` in the agreement). Every agreement naming the population shares its caps:

* ``rho_per_data_month`` bounds the zCDP loss of one subscription's month of data: the sum of the
  rho of every charge that read that month;
* ``rho_lifetime`` bounds a subscription's whole loss: the sum of every charge on the population.

zCDP composes by addition, so both are plain sums (``accountant.compose``). Entries written before
data months were recorded (ledger format 1) are read as reading the months their query implies
(``legacy_data_months``) and belong to the population their agreement's first ``policy`` entry
names; until then they belong to none and are listed as unassigned.

Pure functions over entries (anything with the ledger entry's attributes): the ledger's cap check,
``mobility ledger verify``, the reports and the budget plan all count the same way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mobility.privacy_budget import accountant, blocks

CHARGED = "charged"
PUBLISHED = "published"
POLICY = "policy"

_FLOWS_STATISTIC = "long-term residence changes"
_FINALITY_DAYS = re.compile(r"\+\s*(\d+)\s*days")


class Entry(Protocol):
    """What accounting reads of a ledger entry (``ledger.LedgerEntry`` has it all)."""

    @property
    def seq(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def agreement_id(self) -> str: ...
    @property
    def period(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def rho(self) -> float: ...
    @property
    def population(self) -> str | None: ...
    @property
    def data_months(self) -> str | None: ...
    @property
    def caps(self) -> str | None: ...
    @property
    def agreement_sha256(self) -> str | None: ...


E = TypeVar("E", bound=Entry)


def legacy_data_months(entry: Entry) -> list[str]:
    """Data months of a format-1 charge: the flows window of its crossing month, else its period."""
    try:
        query = json.loads(entry.query or "{}")
    except ValueError:
        query = {}
    inner = query.get("query") if isinstance(query, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    if str(inner.get("statistic", "")).startswith(_FLOWS_STATISTIC):
        found = _FINALITY_DAYS.search(str(inner.get("finality", "")))
        window = int(found.group(1)) + 1 if found else blocks.WINDOW_DAYS
        return blocks.flow_data_months(entry.period, window)
    return [entry.period]


def data_months_of(entry: Entry) -> list[str]:
    if entry.data_months is None:
        return legacy_data_months(entry)
    return list(json.loads(entry.data_months))


def recorded_caps(entry: Entry) -> dict:
    return json.loads(entry.caps) if entry.caps else {}


def populations(entries: Iterable[Entry]) -> dict[str, str]:
    """agreement_id -> the population its first ``policy`` entry names."""
    found: dict[str, str] = {}
    for e in entries:
        if e.status == POLICY and e.population:
            found.setdefault(e.agreement_id, e.population)
    return found


def population_of(entry: Entry, agreement_populations: dict[str, str]) -> str | None:
    return entry.population or agreement_populations.get(entry.agreement_id)


def latest_policy(entries: Iterable[E], *, population: str | None = None,
                  agreement_id: str | None = None) -> E | None:
    chosen = None
    for e in entries:
        if e.status == POLICY and (population is None or e.population == population) \
                and (agreement_id is None or e.agreement_id == agreement_id):
            chosen = e
    return chosen


@dataclass(frozen=True)
class Spent:
    """rho spent by one population: over its lifetime and per data month (sums in rho, zCDP)."""

    population: str
    lifetime: float
    by_month: dict[str, float]
    charges: int

    def month(self, month: str) -> float:
        return self.by_month.get(month, 0.0)

    def worst(self, months: Sequence[str]) -> tuple[str | None, float]:
        """The most charged of ``months`` and its rho (None, 0 when none was charged)."""
        charged = [(self.month(m), m) for m in months if self.month(m) > 0]
        if not charged:
            return None, 0.0
        rho, month = max(charged)
        return month, rho


def spent(entries: Sequence[Entry], population: str, *, extra: dict[str, str] | None = None,
          through_seq: int | None = None) -> Spent:
    """What ``population`` has spent in ``entries`` (up to ``through_seq``); ``extra`` assigns more
    agreement ids to populations (a policy about to be recorded)."""
    mapping = {**populations(entries), **(extra or {})}
    rhos: list[float] = []
    months: dict[str, list[float]] = {}
    for e in entries:
        if e.status != CHARGED or (through_seq is not None and e.seq > through_seq):
            continue
        if population_of(e, mapping) != population:
            continue
        rhos.append(e.rho)
        for m in data_months_of(e):
            months.setdefault(m, []).append(e.rho)
    return Spent(population, accountant.compose(rhos),
                 {m: accountant.compose(v) for m, v in sorted(months.items())}, len(rhos))


def unassigned(entries: Sequence[E]) -> list[E]:
    """Charges no population claims yet (format-1 entries of agreements without a policy entry)."""
    mapping = populations(entries)
    return [e for e in entries if e.status == CHARGED and population_of(e, mapping) is None]


@dataclass(frozen=True)
class Overrun:
    """A cap a charge would pass: which, what is spent, asked and left."""

    cap: str  # "data month YYYY-MM" or "lifetime"
    cap_rho: float
    spent_rho: float
    asked_rho: float

    @property
    def left_rho(self) -> float:
        return max(self.cap_rho - self.spent_rho, 0.0)


def overruns(current: Spent, asked: float, months: Sequence[str], caps: dict) -> list[Overrun]:
    """Every cap that ``asked`` more rho on ``months`` would pass (lifetime first, then months in order)."""
    found = []
    if not accountant.fits(current.lifetime, asked, caps["rho_lifetime"]):
        found.append(Overrun("lifetime", caps["rho_lifetime"], current.lifetime, asked))
    for m in months:
        if not accountant.fits(current.month(m), asked, caps["rho_per_data_month"]):
            found.append(Overrun(f"data month {m}", caps["rho_per_data_month"], current.month(m), asked))
    return found


def cumulative_epsilon(rho: float, delta: float) -> float:
    """epsilon at ``delta`` of a cumulative rho (OpenDP's conversion; 0 for nothing spent)."""
    return accountant.rho_to_epsilon(rho, delta) if rho > 0 and math.isfinite(rho) else 0.0


def as_record(values: dict[str, Any]) -> str:
    """Canonical JSON for the ledger's JSON columns (sorted keys, no spaces)."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
