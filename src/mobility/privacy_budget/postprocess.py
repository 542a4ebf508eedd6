"""Post-processing of noisy measurements: each cell's interval, the consistent tables and the totals.

Reads only noisy measurements (key columns and ``noisy_count``), their public noise laws and the
public domains; draws nothing and charges nothing. The release boundary applies it to a month's
measurements as it publishes them, ``mobility release annual`` to the sums of twelve months.

* ``with_intervals``: a measurement cell's exact 95% interval (``intervals.half_width_95`` of its
  noise law), the lower end at least 0.
* ``reconcile``: consistent tables (``consistency.make_consistent``: weighted least squares onto the
  totals, then a non-negative integer allocation that keeps every sum exact), each consistent cell
  with its measurement's interval widened to include it, and the ``totals`` table with the exact
  interval of each weighted least-squares total.
* ``totals_of`` / ``consistency_description``: the totals as a manifest records and reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from mobility.privacy_budget.consistency import Part, Total, make_consistent, part_label
from mobility.privacy_budget.intervals import Term, half_width_95, interval_95, noise_variance
from mobility.privacy_budget.mechanisms import NoisePlan

COUNT = "count"
NOISY = "noisy_count"  # the value column of a noisy measurement table
LOW, HIGH = "low_95", "high_95"  # every published figure's 95% interval
MEASUREMENT_SUFFIX = "_noisy"
TOTALS = "totals"  # the consistent totals of a release, with their intervals
MEASUREMENT, CONSISTENT, DERIVED_ROLE = "noisy_measurement", "consistent", "derived"


def measurement_table(table: str) -> str:
    """The name of a table's noisy measurement in a release (format 2)."""
    return table + MEASUREMENT_SUFFIX


def cell_terms(plan: NoisePlan, table: str) -> list[Term]:
    """The noise of one cell of ``table``: one draw of its measurement."""
    t = plan.tables[table]
    return [Term(1, t.mechanism, t.scale, 1)]


def cell_half_width(plan: NoisePlan, table: str) -> int:
    """Exact 95% half-width of one cell's noise (an integer: the noise is integer-valued)."""
    return int(half_width_95(cell_terms(plan, table)))


def around(values: pd.Series, half: int | pd.Series) -> tuple[pd.Series, pd.Series]:
    """The interval ``values`` -/+ ``half``, both ends at least 0 (exact counts and sums never are negative)."""
    return (values - half).clip(lower=0).astype("int64"), (values + half).clip(lower=0).astype("int64")


def widened(low: pd.Series, high: pd.Series, value: pd.Series) -> tuple[pd.Series, pd.Series]:
    """An interval stretched to include ``value`` (a consistent figure beside its measurement's interval)."""
    return (pd.concat([low, value], axis=1).min(axis=1).astype("int64"),
            pd.concat([high, value], axis=1).max(axis=1).astype("int64"))


def with_intervals(measured: pd.DataFrame, terms: list[Term]) -> pd.DataFrame:
    """A measurement table (keys + ``noisy_count``) with each cell's exact 95% interval, ``terms`` being
    the noise of one cell (the same for every cell of the table)."""
    out = measured.copy()
    out[LOW], out[HIGH] = around(out[NOISY], int(half_width_95(terms)))
    return out


def reconcile(measured: Mapping[str, pd.DataFrame], terms: Mapping[str, list[Term]], totals: tuple[Total, ...]
              ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, list[dict]]:
    """Consistent tables with intervals, the totals table and how each total was estimated.

    ``measured``: measurement tables with their intervals (``with_intervals``); ``terms``: the noise
    of one cell of each table. Reads nothing else: post-processing of measurements and public domains.
    """
    def variance(ts: list[Term]) -> float:
        return math.fsum(t.cells * t.weight ** 2 * noise_variance(t.mechanism, t.scale) for t in ts)

    result = make_consistent({n: f.drop(columns=[LOW, HIGH]) for n, f in measured.items()},
                             {n: variance(terms[n]) for n in measured}, totals, value=NOISY)
    tables = {}
    for name, frame in result.tables.items():
        out = frame.copy()
        out[COUNT] = out[COUNT].astype("int64")
        out[LOW], out[HIGH] = widened(measured[name][LOW], measured[name][HIGH], out[COUNT])
        tables[name] = out
    rows, described = [], []
    by_label = {part_label(p): p.table for total in totals for p in total.parts}
    for est in result.totals:
        combination = [Term(w * t.weight, t.mechanism, t.scale, t.cells * est.cells[label])
                       for label, w in est.weights.items() if w != 0 for t in terms[by_label[label]]]
        low, high = interval_95(est.wls, combination)
        low, high = min(low, est.value), max(high, est.value)
        rows.append((est.name, est.value, low, high))
        described.append({"total": est.name, "parts": {label: {"cells": est.cells[label], "weight": est.weights[label]}
                                                      for label in est.weights}})
    frame = pd.DataFrame(rows, columns=["total", COUNT, LOW, HIGH])
    for column in (COUNT, LOW, HIGH):
        frame[column] = frame[column].astype("int64")
    return tables, frame, described


def totals_of(manifest: dict, keys: Mapping[str, list[str]] | None = None) -> tuple[Total, ...]:
    """The totals a format-2 manifest's consistent tables add up to (``consistency.totals``); with
    ``keys`` (table -> key columns still present), levels on other columns are left out."""
    out = []
    for total in (manifest.get("consistency") or {}).get("totals", []):
        parts = []
        for p in total["parts"]:
            kept = [tuple(level) for level in p.get("levels", [])
                    if keys is None or set(level) <= set(keys.get(p["table"], level))]
            kept = [level for level in kept if keys is None or set(level) != set(keys.get(p["table"], ()))]
            parts.append(Part(p["table"], dict(p.get("where") or {}), tuple(kept)))
        out.append(Total(total["name"], tuple(parts)))
    return tuple(out)


def consistency_description(totals: tuple[Total, ...], estimates: list[dict]) -> dict:
    return {
        "method": "weighted least squares onto the constraints (every part of a total adds up to the same total; "
                  "weights 1 / variance of each part's sum), the total rounded and set to at least 0, then a "
                  "non-negative allocation down each part's levels to the cells (the least-squares projection onto "
                  "the non-negative values that add up to the parent, weighted by 1 / cells), rounded to integers "
                  "by largest remainder so every sum stays exact",
        "reads": "the noisy measurements and the public domains only",
        "totals": [{"name": t.name,
                    "parts": [{"label": part_label(p), "table": p.table, "where": dict(p.where),
                               "levels": [list(level) for level in p.levels]} for p in t.parts],
                    "weights": next(e["parts"] for e in estimates if e["total"] == t.name)} for t in totals],
    }
