"""Data months: the blocks of data a release reads, and so the blocks the ledger charges.

A person's privacy loss is accounted per month of their data (a *data month*, ``YYYY-MM`` in the
agreement's local time), not per release period: a flows release for crossing month P reads the
12 months before P (usual residence before the crossing: most of the last 12 months) and every day
of the 12/16-month window after the last possible crossing day of P; a remittance release for
month P reads the payments of P. The ledger charges a release's rho to each block it reads and to
the population's lifetime total (ADR 0004).

Pure calendar arithmetic, no Spark, so the budget plan, the DAG's schedule and the ledger agree.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from mobility.residence.params import ResidenceParams

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# the usual residence before a crossing is where a person lived for most of the last 12 months
LOOKBACK_MONTHS = 12
WINDOW_DAYS = ResidenceParams().window_days


def check_month(month: str) -> str:
    if not isinstance(month, str) or not _MONTH.match(month):
        raise ValueError(f"{month!r} is not a month in the form YYYY-MM")
    return month


def month_index(month: str) -> int:
    check_month(month)
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_at(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def shift_month(month: str, months: int) -> str:
    return month_at(month_index(month) + months)


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def last_day(month: str) -> dt.date:
    index = month_index(month) + 1
    return dt.date(index // 12, index % 12 + 1, 1) - dt.timedelta(days=1)


def months_between(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, both included ([] when ``last`` is before ``first``)."""
    return [month_at(i) for i in range(month_index(first), month_index(last) + 1)]


def decided_by(period: str, window_days: int = WINDOW_DAYS) -> dt.date:
    """The day by which every crossing of ``period`` is decided: the window counts the crossing day."""
    return last_day(period) + dt.timedelta(days=window_days - 1)


def flow_data_months(period: str, window_days: int = WINDOW_DAYS,
                     lookback_months: int = LOOKBACK_MONTHS) -> list[str]:
    """The data months a flows release of crossing month ``period`` reads: the lookback months before
    it, the month itself and every month up to the day its last crossing is decided."""
    return months_between(shift_month(period, -lookback_months), month_of(decided_by(period, window_days)))


def payment_data_months(period: str) -> list[str]:
    """A remittance release of month ``period`` reads the payments of that month only."""
    return [check_month(period)]


@lru_cache(maxsize=None)
def flows_lag_months(window_days: int = WINDOW_DAYS) -> int:
    """Months L such that data through month P + L decides every crossing of any month P.

    A fixed lag releases each crossing month exactly once, L months after it (the latest final month
    for a given data month jumps by 0 or 2 with the lengths of the months). Computed over one full
    400-year Gregorian cycle, which repeats every pattern of month lengths.
    """
    lag = 0
    for index in range(month_index("2000-01"), month_index("2400-01")):
        period = month_at(index)
        needed = decided_by(period, window_days)
        while last_day(month_at(index + lag)) < needed:
            lag += 1
    return lag


def flows_period_for(data_month: str, window_days: int = WINDOW_DAYS) -> str:
    """The crossing month the monthly schedule releases once data through ``data_month`` is in."""
    return shift_month(data_month, -flows_lag_months(window_days))


def remittances_period_for(data_month: str) -> str:
    """The payment month the monthly schedule releases: the month before the latest one ingested
    (a month is complete once a later month's payments file is in)."""
    return shift_month(data_month, -1)
