"""Injected faults: what real operator data gets wrong, each counted so ingest can be reconciled.

Person-level faults change what people do on the network (silent days, SIM churn, dual SIMs,
border spillover). Row-level faults change records after they are drawn (exact duplicates and
malformed values); half of ``fault_rate`` of rows are duplicated and half are malformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mobility.reference import plmn_countries
from mobility.synth.clock import PAD, Calendar
from mobility.synth.columns import Column
from mobility.synth.population import Population

CDR_MALFORMED = ("unparseable_time", "unknown_event_type", "invalid_msisdn", "unknown_cell_id", "invalid_visited_plmn")
PAYMENT_MALFORMED = ("negative_amount", "unknown_currency")
BAD_EVENT_TYPES = ("mms", "ussd", "video_call", "CALLOUT", "voice")
BAD_PLMNS = ("00000", "1234", "ABCDE", "9999999", "51")
BAD_CURRENCIES = ("PHX", "USX", "AAA", "P", "$")


@dataclass(frozen=True)
class PersonFaults:
    silent: np.ndarray  # (persons, columns) bool: the SIM produces nothing that night
    churn_person: np.ndarray
    churn_day: np.ndarray  # first day on the new SIM
    dual_person: np.ndarray
    spill_person: np.ndarray  # border spillover: one night partly on the neighbour's network
    spill_day: np.ndarray
    spill_events: np.ndarray


def plan_person_faults(rng: np.random.Generator, pop: Population, cal: Calendar, fault_rate: float) -> PersonFaults:
    """Pick people for each fault among stayers, so the truth of where they slept stays simple."""
    n, days = len(pop), cal.n_days
    per_kind = int(round(fault_rate * n))
    stayers = rng.permutation(pop.of("stayer"))
    take = min(per_kind, len(stayers) // 4)
    churn, dual, spill, silent_people = (stayers[i * take:(i + 1) * take] for i in range(4))
    silent = np.zeros((n, cal.n_cols), dtype=bool)
    for _ in range(2):  # two runs of 1-4 silent days per person (they may overlap)
        first = rng.integers(0, max(days - 4, 1), len(silent_people)) + PAD
        length = rng.integers(1, 5, len(silent_people))
        for j in range(4):
            on = j < length
            silent[silent_people[on], np.minimum(first[on] + j, cal.n_cols - 1)] = True
    churn_day = rng.integers(min(30, days // 3), max(days - 30, days // 3 + 1), len(churn))
    spill_day = rng.integers(1, max(days - 2, 2), len(spill))
    return PersonFaults(silent, churn, churn_day, dual, spill, spill_day, rng.integers(2, 6, len(spill)))


def _unknown_plmns() -> tuple[str, ...]:
    known = plmn_countries()
    return tuple(p for p in BAD_PLMNS if p not in known)


def corrupt_rows(rng: np.random.Generator, columns: dict[str, Column], fault_rate: float, kinds: tuple[str, ...],
                 bad_values: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
    """Malform some rows in place and pick rows to duplicate.

    Returns the row order to write (each duplicate right after its original) and counts per kind.
    Malformed rows are never duplicated, so each written row is exactly one of: clean, duplicate, malformed.
    """
    n = len(next(iter(columns.values())))
    n_bad = min(int(rng.binomial(n, fault_rate / 2)), n)
    per_kind = rng.multinomial(n_bad, np.full(len(kinds), 1 / len(kinds)))
    bad_rows = rng.permutation(n)[:n_bad]
    counts: dict[str, int] = {}
    start = 0
    for kind, k in zip(kinds, per_kind):
        rows = np.sort(bad_rows[start:start + k])
        start += k
        counts[kind] = int(k)
        if k:
            _malform(rng, columns, kind, rows, bad_values)
    malformed = np.zeros(n, dtype=bool)
    malformed[bad_rows] = True
    clean = np.flatnonzero(~malformed)
    n_dup = min(int(rng.binomial(n, fault_rate / 2)), len(clean))
    dup_rows = np.sort(clean[rng.choice(len(clean), n_dup, replace=False)])
    counts["duplicate"] = int(n_dup)
    order = np.sort(np.concatenate([np.arange(n), dup_rows]), kind="stable")
    return order, counts


def _malform(rng, columns: dict[str, Column], kind: str, rows: np.ndarray, bad_values) -> None:
    def pick(values):
        return np.asarray(values, dtype=object)[rng.integers(0, len(values), len(rows))]

    nothing = [None] * len(rows)
    if kind == "unparseable_time":
        column = columns[bad_values["time_column"]]
        column.set(rows, [_break_time(t, k) for t, k in zip(column.values(rows), rng.integers(0, 3, len(rows)))])
    elif kind == "unknown_event_type":
        columns["event_type"].set(rows, pick(BAD_EVENT_TYPES))
        columns["duration_s"].set(rows, nothing)
    elif kind == "invalid_msisdn":
        columns[bad_values["msisdn_column"]].set(rows, pick(bad_values["invalid_msisdn"]))
    elif kind == "unknown_cell_id":
        columns["cell_id"].set(rows, pick(bad_values["unknown_cell_id"]))
        columns["visited_plmn"].set(rows, nothing)
    elif kind == "invalid_visited_plmn":
        columns["cell_id"].set(rows, nothing)
        columns["visited_plmn"].set(rows, pick(_unknown_plmns()))
    elif kind == "negative_amount":
        amounts = np.array(columns["amount"].values(rows), dtype=float)
        columns["amount"].set(rows, np.round(-np.abs(amounts) - 1.0, 2))
    elif kind == "unknown_currency":
        columns["currency"].set(rows, pick(BAD_CURRENCIES))
    else:  # pragma: no cover - the kinds are the constants above
        raise ValueError(kind)


def _break_time(text: str, how: int) -> str:
    """An impossible month (+20), day (+40) or hour (+30): one-to-one, so broken rows stay distinct."""
    date, clock = text[:10], text[11:]
    year, month, day = date.split("-")
    if how == 0:
        return f"{year}-{int(month) + 20}-{day}T{clock}"
    if how == 1:
        return f"{year}-{month}-{int(day) + 40}T{clock}"
    return f"{date}T{int(clock[:2]) + 30}{clock[2:]}"


def build_table(columns: dict[str, Column], order: np.ndarray) -> pa.Table:
    return pa.table({name: column.build(order) for name, column in columns.items()})
