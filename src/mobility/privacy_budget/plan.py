"""The budget plan: the rho of each release of the monthly schedule, such that every scheduled release
fits every cap of the agreement's population for N years (``mobility budget plan``, ``--rho plan``).

The monthly schedule (``infra/airflow/mobility_monthly.py``): once data month M is ingested,

* one **flows** release of crossing month ``blocks.flows_period_for(M)`` = M - L (L =
  ``blocks.flows_lag_months()``, 17 months for the 487-day window), reading
  ``blocks.flow_data_months``: 29 or 30 data months (P-12 .. the month its last crossing is decided);
* one **remittance** release of payment month ``blocks.remittances_period_for(M)`` = M - 1, reading
  that one month;
* the **annual** tables: sums of published monthly releases, post-processing that costs nothing.

Each crossing month and each payment month is released once, so a data month is read by at most
``a_f`` flows releases (the most that read any one month over a full 400-year calendar cycle: 30 for
487 days) and by ``a_r`` = 1 remittance release, whatever the start month.

The rule, with N years and the flows share s of each scheduled month's total T::

    T = min(rho_lifetime / (12 N),  rho_per_data_month / (a_f s + a_r (1 - s)))
    rho_flows = s T,  rho_remittances = (1 - s) T,  each rounded DOWN to 4 significant digits

The first term spreads the lifetime cap over the 12 N scheduled months (every release is charged to
the lifetime); the second keeps the most-read data month within its cap, for any number of years
(a data month stops being read 30 months after it). Rounding down keeps both. The rho values depend
only on the caps, N, s and the residence window, never on the start month or the date, so
``--rho plan`` gives the same float (hence the same release id) every time for the same agreement.

The plan then lays the schedule over N years from ``start`` and reports, per data month read, what
the ledger has spent already (when given its entries), what the schedule adds and what is left of
``rho_per_data_month``, and the same for the lifetime cap. Figures are in rho (zCDP, additive) with
epsilon at the agreement's delta and at delta = 1/n^2 for the stated population size n.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from functools import lru_cache
from typing import Any

from mobility.config import Agreement, BudgetCaps
from mobility.errors import ConfigError
from mobility.privacy_budget import accountant, accounts, blocks

FLOWS = "flows"
REMITTANCES = "remittances"
ANNUAL = "annual"
KINDS = (FLOWS, REMITTANCES)
PLAN = "plan"  # the value of --rho that asks for the plan's rho
SIGNIFICANT_DIGITS = 4
REMITTANCE_READS = 1  # a_r: each payment month is read by one remittance release

RULE = ("T = min(rho_lifetime / (12 N), rho_per_data_month / (a_f s + a_r (1 - s))); rho_flows = s T, "
        "rho_remittances = (1 - s) T, each rounded down to 4 significant digits; a_f = most flows releases "
        "reading one data month, a_r = 1, s = flows_share, N = years")


def round_down(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded towards zero to ``digits`` significant digits (never above ``value``)."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected a positive finite number, got {value!r}")
    exact = Decimal(value)
    exponent = exact.adjusted() - (digits - 1)
    rounded = float(exact.scaleb(-exponent).to_integral_value(rounding=ROUND_FLOOR).scaleb(exponent))
    return rounded if rounded <= value else math.nextafter(rounded, 0.0)


@lru_cache(maxsize=None)
def max_flows_reads(window_days: int = blocks.WINDOW_DAYS) -> int:
    """a_f: the most flows releases of the schedule (one per crossing month) that read any one data month.

    Counted over one 400-year Gregorian cycle, which repeats every pattern of month lengths."""
    first, last = blocks.month_index("2000-01"), blocks.month_index("2400-01")
    counts: dict[str, int] = {}
    for index in range(first - 24, last + 24):
        for month in blocks.flow_data_months(blocks.month_at(index), window_days):
            counts[month] = counts.get(month, 0) + 1
    return max(counts[blocks.month_at(i)] for i in range(first, last))


@dataclass(frozen=True)
class Rates:
    """The rho per release kind for the schedule and how it was derived."""

    flows: float
    remittances: float
    total_per_month: float  # T before rounding
    lifetime_bound: float  # rho_lifetime / (12 N)
    data_month_bound: float  # rho_per_data_month / (a_f s + a_r (1 - s))
    flows_reads: int  # a_f
    years: int
    share: float

    @property
    def binding(self) -> str:
        return "lifetime" if self.lifetime_bound <= self.data_month_bound else "data month"

    def of(self, kind: str) -> float:
        if kind == FLOWS:
            return self.flows
        if kind == REMITTANCES:
            return self.remittances
        if kind == ANNUAL:
            return 0.0
        raise ValueError(f"no planned rho for release kind {kind!r}; kinds: {', '.join((*KINDS, ANNUAL))}")


def rates(caps: BudgetCaps, years: int | None = None, window_days: int = blocks.WINDOW_DAYS) -> Rates:
    """The planned rho per release kind under ``caps`` for ``years`` (default: ``caps.plan_years``)."""
    years = caps.plan_years if years is None else years
    if isinstance(years, bool) or not isinstance(years, int) or years < 1:
        raise ConfigError(f"the plan needs a whole number of years >= 1, got {years!r}")
    share = caps.flows_share
    reads = max_flows_reads(window_days)
    lifetime_bound = caps.rho_lifetime / (12 * years)
    month_bound = caps.rho_per_data_month / (reads * share + REMITTANCE_READS * (1 - share))
    total = min(lifetime_bound, month_bound)
    try:
        flows, remittances = round_down(share * total), round_down((1 - share) * total)
    except ValueError:
        raise ConfigError(f"the caps (rho_per_data_month={caps.rho_per_data_month:g}, "
                          f"rho_lifetime={caps.rho_lifetime:g}) leave no positive rho per release over "
                          f"{years} years", hint="raise the caps or plan fewer years") from None
    # rounding down keeps both caps; this only guards against float summation at an exact fit
    while not (accountant.fits(0.0, math.fsum([flows] * reads + [remittances] * REMITTANCE_READS),
                               caps.rho_per_data_month)
               and accountant.fits(0.0, math.fsum([flows, remittances] * (12 * years)), caps.rho_lifetime)):
        flows, remittances = round_down(math.nextafter(flows, 0.0)), round_down(math.nextafter(remittances, 0.0))
    return Rates(flows, remittances, total, lifetime_bound, month_bound, reads, years, share)


def planned_rho(agreement: Agreement, kind: str) -> float:
    """The rho the plan gives one release of ``kind`` under ``agreement`` (its ``plan_years``)."""
    return rates(agreement.budget).of(kind)


def resolve_rho(rho: float | str | None, agreement: Agreement, kind: str) -> float | None:
    """``--rho``: ``"plan"`` -> the planned rho of ``kind``; a number (or None) as given."""
    if isinstance(rho, str):
        if rho.strip().lower() == PLAN:
            return planned_rho(agreement, kind)
        try:
            return float(rho)
        except ValueError:
            raise ConfigError(f"--rho must be a number or {PLAN!r}, got {rho!r}") from None
    return rho


@dataclass(frozen=True)
class Scheduled:
    """One release of the monthly schedule: run once data month ``run_month`` is in."""

    run_month: str
    kind: str
    period: str
    data_months: tuple[str, ...]
    rho: float
    charged: bool = False  # already in the ledger (same agreement, period and data months)


def schedule(start: str, months: int, window_days: int = blocks.WINDOW_DAYS,
             rho: Rates | None = None) -> list[Scheduled]:
    """The releases of ``months`` consecutive runs from data month ``start``: flows then remittances."""
    out = []
    for index in range(blocks.month_index(start), blocks.month_index(start) + months):
        month = blocks.month_at(index)
        flows_period = blocks.flows_period_for(month, window_days)
        remit_period = blocks.remittances_period_for(month)
        out.append(Scheduled(month, FLOWS, flows_period,
                             tuple(blocks.flow_data_months(flows_period, window_days)), rho.flows if rho else 0.0))
        out.append(Scheduled(month, REMITTANCES, remit_period, tuple(blocks.payment_data_months(remit_period)),
                             rho.remittances if rho else 0.0))
    return out


@dataclass(frozen=True)
class Loss:
    """A rho with its epsilon at the agreement's delta and at delta = 1/n^2 (None without n)."""

    rho: float
    epsilon: float
    epsilon_population: float | None

    def as_dict(self) -> dict:
        return {"rho": self.rho, "epsilon": self.epsilon, "epsilon_at_1_over_n2": self.epsilon_population}


@dataclass(frozen=True)
class MonthLine:
    """One data month: what the ledger spent, what the schedule adds, against ``rho_per_data_month``."""

    month: str
    spent: float
    planned: float
    cap: float
    flows_releases: int
    remittance_releases: int

    @property
    def total(self) -> float:
        return math.fsum([self.spent, self.planned])

    @property
    def left(self) -> float:
        return max(self.cap - self.total, 0.0)

    @property
    def fits(self) -> bool:
        return accountant.fits(self.spent, self.planned, self.cap)

    def as_dict(self) -> dict:
        return {"month": self.month, "spent": self.spent, "planned": self.planned, "total": self.total,
                "left": self.left, "cap": self.cap, "flows_releases": self.flows_releases,
                "remittance_releases": self.remittance_releases, "fits": self.fits}


@dataclass(frozen=True)
class BudgetPlan:
    agreement_id: str | None
    caps: BudgetCaps
    rates: Rates
    start: str  # first run month (data month ingested)
    end: str  # last run month
    window_days: int
    kinds: dict[str, Loss]
    per_month: Loss  # one scheduled month: a flows and a remittance release
    months: list[MonthLine]
    lifetime_spent: float
    lifetime_planned: float
    worst: Loss  # the most charged data month, spent + planned
    worst_month: str | None
    lifetime: Loss  # spent + planned
    schedule: list[Scheduled] = field(repr=False)

    @property
    def years(self) -> int:
        return self.rates.years

    @property
    def population(self) -> str:
        return self.caps.population

    @property
    def delta_population(self) -> float | None:
        return population_delta(self.caps)

    @property
    def lifetime_total(self) -> float:
        return math.fsum([self.lifetime_spent, self.lifetime_planned])

    @property
    def lifetime_left(self) -> float:
        return max(self.caps.rho_lifetime - self.lifetime_total, 0.0)

    @property
    def already_charged(self) -> int:
        return sum(1 for s in self.schedule if s.charged)

    @property
    def overruns(self) -> list[str]:
        """Every cap the plan passes ([] when every scheduled release fits)."""
        found = []
        if not accountant.fits(self.lifetime_spent, self.lifetime_planned, self.caps.rho_lifetime):
            found.append(f"lifetime: spent {self.lifetime_spent:.6g} + planned {self.lifetime_planned:.6g} > "
                         f"cap {self.caps.rho_lifetime:g}")
        found.extend(f"data month {m.month}: spent {m.spent:.6g} + planned {m.planned:.6g} > cap {m.cap:g}"
                     for m in self.months if not m.fits)
        return found

    @property
    def fits(self) -> bool:
        return not self.overruns

    @property
    def further_months(self) -> int:
        """Scheduled months after ``end`` the lifetime cap still has room for (the rest stay refused)."""
        step = math.fsum([self.rates.flows, self.rates.remittances])
        left = self.caps.rho_lifetime - self.lifetime_total
        return max(int(left / step * (1 + accountant.CAP_TOLERANCE)), 0) if step > 0 else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "agreement_id": self.agreement_id, "population": self.population,
            "population_size": self.caps.population_size,
            "caps": {**self.caps.recorded(), "plan_years": self.caps.plan_years,
                     "flows_share": self.caps.flows_share},
            "delta": self.caps.delta, "delta_population": self.delta_population,
            "years": self.years, "start": self.start, "end": self.end, "window_days": self.window_days,
            "flows_lag_months": blocks.flows_lag_months(self.window_days),
            "rule": RULE,
            "derivation": {"flows_reads_per_data_month": self.rates.flows_reads,
                           "remittance_reads_per_data_month": REMITTANCE_READS, "flows_share": self.rates.share,
                           "lifetime_bound": self.rates.lifetime_bound,
                           "data_month_bound": self.rates.data_month_bound,
                           "total_per_month": self.rates.total_per_month, "binding": self.rates.binding},
            "releases": {kind: {**loss.as_dict(), "per_year": 12 if kind != ANNUAL else 1,
                                "data_months_read": _reads_text(kind, self.window_days)}
                         for kind, loss in self.kinds.items()},
            "per_month": self.per_month.as_dict(),
            "data_months": [m.as_dict() for m in self.months],
            "most_charged_data_month": {"month": self.worst_month, **self.worst.as_dict(),
                                        "cap": self.caps.rho_per_data_month},
            "lifetime": {"spent": self.lifetime_spent, "planned": self.lifetime_planned,
                         "total": self.lifetime_total, "left": self.lifetime_left, "cap": self.caps.rho_lifetime,
                         **{k: v for k, v in self.lifetime.as_dict().items() if k != "rho"}},
            "already_charged_releases": self.already_charged,
            "further_months_within_lifetime": self.further_months,
            "fits": self.fits, "overruns": self.overruns,
        }

    def describe(self) -> str:
        """What an operator reads: the rho per release, per data month and over the lifetime."""
        caps, r = self.caps, self.rates
        n = f", stated size n = {caps.population_size:,}" if caps.population_size else ""
        who = f"agreement {self.agreement_id}, " if self.agreement_id else ""
        lines = [
            f"budget plan: {who}population {self.population}{n}",
            f"  caps: rho {caps.rho_per_data_month:g} per data month, rho {caps.rho_lifetime:g} lifetime, "
            f"delta {caps.delta:g}; schedule: {self.years} year(s) of monthly runs {self.start} .. {self.end}, "
            f"flows share {r.share:g}",
            f"  rule: T = min({caps.rho_lifetime:g} / (12 x {self.years}), {caps.rho_per_data_month:g} / "
            f"({r.flows_reads} x {r.share:g} + {REMITTANCE_READS} x {1 - r.share:g})) = min({r.lifetime_bound:.6g}, "
            f"{r.data_month_bound:.6g}) = {r.total_per_month:.6g} per month ({r.binding} cap binds), split by the "
            "flows share and rounded down to 4 significant digits",
            f"  per release (epsilon at delta {caps.delta:g}"
            + (f" and at delta = 1/n^2 = {self.delta_population:.3g}" if self.delta_population else "") + "):",
        ]
        for kind, loss in self.kinds.items():
            what = ("post-processing of published monthly releases, charges nothing" if kind == ANNUAL
                    else f"12 a year, each reads {_reads_text(kind, self.window_days)}")
            lines.append(f"    {kind:12s} rho={loss.rho:<8.4g} {_eps(loss)}  {what}")
        lines.append(f"    {'one month':12s} rho={self.per_month.rho:<8.4g} {_eps(self.per_month)}  "
                     "a flows and a remittance release")
        lines.append(f"  per data month read by the schedule (cap rho {caps.rho_per_data_month:g}); "
                     "flows/remittance releases reading it:")
        lines.append(f"    {'months':19s} {'spent':>9s} {'planned':>9s} {'total':>9s} {'left':>9s}  releases")
        for first, last, m in _runs(self.months):
            span = first if first == last else f"{first} .. {last}"
            mark = "" if m.fits else "  OVER THE CAP"
            lines.append(f"    {span:19s} {m.spent:9.4g} {m.planned:9.4g} {m.total:9.4g} {m.left:9.4g}  "
                         f"{m.flows_releases}/{m.remittance_releases}{mark}")
        if self.worst_month:
            lines.append(f"  most charged data month {self.worst_month}: rho {self.worst.rho:.6g} of "
                         f"{caps.rho_per_data_month:g}, {_eps(self.worst)}")
        lines.append(f"  lifetime: spent {self.lifetime_spent:.6g} + planned {self.lifetime_planned:.6g} = "
                     f"{self.lifetime_total:.6g} of {caps.rho_lifetime:g}, left {self.lifetime_left:.6g}; "
                     f"{_eps(self.lifetime)}")
        if self.already_charged:
            lines.append(f"  {self.already_charged} scheduled release(s) are in the ledger already (counted as spent)")
        more = self.further_months
        lines.append(f"  after {self.end}: the lifetime cap has room for {more} more scheduled month(s) at this rho; "
                     "the releases after those are refused")
        if self.fits:
            lines.append("  every scheduled release fits every cap")
        else:
            lines.append("  DOES NOT FIT (what the ledger has spent leaves too little):")
            lines.extend(f"    {o}" for o in self.overruns[:20])
            if len(self.overruns) > 20:
                lines.append(f"    ... and {len(self.overruns) - 20} more")
        return "\n".join(lines)


def population_delta(caps: BudgetCaps) -> float | None:
    """delta = 1/n^2 for the stated population size n (None when the agreement states none)."""
    return 1.0 / caps.population_size ** 2 if caps.population_size else None


def loss(rho: float, caps: BudgetCaps) -> Loss:
    small = population_delta(caps)
    return Loss(rho, accounts.cumulative_epsilon(rho, caps.delta),
                accounts.cumulative_epsilon(rho, small) if small else None)


def plan(agreement_or_caps: Agreement | BudgetCaps, years: int | None = None, start: str | None = None, *,
         ledger_entries: Sequence[accounts.Entry] | None = None,
         window_days: int = blocks.WINDOW_DAYS) -> BudgetPlan:
    """The budget plan of the monthly schedule for ``years`` (default: the agreement's ``plan_years``)
    of runs from data month ``start`` (default: the current month).

    With ``ledger_entries`` (the ledger's entries) what the population has spent is counted too, and
    scheduled releases already charged under this agreement (same period and data months) are not
    counted twice. The rho per release never depends on ``start`` or on the ledger.
    """
    if isinstance(agreement_or_caps, Agreement):
        agreement_id: str | None = agreement_or_caps.agreement_id
        caps = agreement_or_caps.budget
    elif isinstance(agreement_or_caps, BudgetCaps):
        agreement_id, caps = None, agreement_or_caps
    else:
        raise TypeError(f"expected an Agreement or BudgetCaps, got {type(agreement_or_caps).__name__}")
    rho = rates(caps, years, window_days)
    start = blocks.check_month(start) if start is not None else blocks.month_of(dt.date.today())
    runs = 12 * rho.years
    entries = list(ledger_entries or [])
    done = _charged_keys(entries, caps.population, agreement_id)
    scheduled = [s if (s.period, s.data_months) not in done.get(s.kind, set())
                 else Scheduled(s.run_month, s.kind, s.period, s.data_months, s.rho, charged=True)
                 for s in schedule(start, runs, window_days, rho)]
    extra = {agreement_id: caps.population} if agreement_id else None
    spent = accounts.spent(entries, caps.population, extra=extra)

    planned: dict[str, list[float]] = {}
    readers: dict[str, list[int]] = {}
    for s in scheduled:
        for m in s.data_months:
            readers.setdefault(m, [0, 0])[0 if s.kind == FLOWS else 1] += 1
            if not s.charged:
                planned.setdefault(m, []).append(s.rho)
    months = [MonthLine(m, spent.month(m), accountant.compose(planned.get(m, [])), caps.rho_per_data_month,
                        *readers[m]) for m in sorted(readers, key=blocks.month_index)]
    worst = max(months, key=lambda line: (line.total, -blocks.month_index(line.month)), default=None)
    lifetime_planned = accountant.compose(s.rho for s in scheduled if not s.charged)
    kinds = {FLOWS: loss(rho.flows, caps), REMITTANCES: loss(rho.remittances, caps), ANNUAL: loss(0.0, caps)}
    return BudgetPlan(
        agreement_id=agreement_id, caps=caps, rates=rho, start=start,
        end=blocks.shift_month(start, runs - 1), window_days=window_days, kinds=kinds,
        per_month=loss(math.fsum([rho.flows, rho.remittances]), caps), months=months,
        lifetime_spent=spent.lifetime, lifetime_planned=lifetime_planned,
        worst=loss(worst.total if worst else 0.0, caps), worst_month=worst.month if worst else None,
        lifetime=loss(math.fsum([spent.lifetime, lifetime_planned]), caps), schedule=scheduled)


def _charged_keys(entries: Sequence[accounts.Entry], population: str,
                  agreement_id: str | None) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """(period, data months) of this agreement's charges, by the release kind their data months imply."""
    if agreement_id is None:
        return {}
    mapping = {**accounts.populations(entries), agreement_id: population}
    found: dict[str, set[tuple[str, tuple[str, ...]]]] = {FLOWS: set(), REMITTANCES: set()}
    for e in entries:
        if e.status != accounts.CHARGED or e.agreement_id != agreement_id \
                or accounts.population_of(e, mapping) != population:
            continue
        months = tuple(accounts.data_months_of(e))
        found[REMITTANCES if months == (e.period,) else FLOWS].add((e.period, months))
    return found


def _reads_text(kind: str, window_days: int) -> str:
    if kind == FLOWS:
        return f"{_flows_lengths(window_days)} data months (12 before the crossing month to its decision)"
    if kind == REMITTANCES:
        return "1 data month (the payment month)"
    return "no data month"


@lru_cache(maxsize=None)
def _flows_lengths(window_days: int) -> str:
    lengths = {len(blocks.flow_data_months(blocks.month_at(i), window_days))
               for i in range(blocks.month_index("2000-01"), blocks.month_index("2400-01"))}
    low, high = min(lengths), max(lengths)
    return str(low) if low == high else f"{low}-{high}"


def _eps(value: Loss) -> str:
    text = f"epsilon={value.epsilon:.4g}"
    return text + (f" (at 1/n^2: {value.epsilon_population:.4g})" if value.epsilon_population is not None else "")


def _runs(months: list[MonthLine]):
    """Consecutive months with the same figures, as (first, last, line)."""
    group: list[MonthLine] = []

    def key(m: MonthLine):
        return (round(m.spent, 12), round(m.planned, 12), m.flows_releases, m.remittance_releases)

    for m in months:
        if group and key(m) == key(group[-1]) \
                and blocks.month_index(m.month) == blocks.month_index(group[-1].month) + 1:
            group.append(m)
            continue
        if group:
            yield group[0].month, group[-1].month, group[-1]
        group = [m]
    if group:
        yield group[0].month, group[-1].month, group[-1]
