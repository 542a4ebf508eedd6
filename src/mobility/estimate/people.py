"""Estimates of people from one operator's released subscriptions: post-processing with public factors.

Reads only a release's noisy measurements, its consistent tables and totals, their public noise
laws and the agreement's public factors (``factors.Factors``); draws nothing and charges nothing.

* Each cell of a flows table gets the weight ``1 / (m * s)`` of its stratum (``m`` the multi-SIM
  factor; ``s`` the operator's share of the resident population: by sex and age band where the
  table has them, else national, for the international table; of the cell's region for the
  subnational tables). ``people`` is the weighted consistent count; its interval is the consistent
  cell's interval times the weight, rounded outwards. The map is increasing, so it holds the
  weighted exact count whenever the count's interval holds the exact count (>= 95%).
* A national total in people: with one weight for every cell of the international table (no sex
  or age breakdown) the release's total times it, its exact interval scaled; otherwise the weighted
  sum of the noisy measurements (unbiased, where a sum of consistent cells is biased upwards by the
  cells near 0), with its exact 95% interval (``intervals.half_width_95`` of the weighted noise terms).

These estimate people under the factors' model: that the operator's share among movers is its
share of the resident population of their stratum. docs/methodology.md names the biases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd

from mobility.estimate.factors import Factors
from mobility.privacy_budget.intervals import Term, half_width_95

PEOPLE = "people"
SHARE = "share"
LOW, HIGH = "low_95", "high_95"
COUNT, NOISY = "count", "noisy_count"
SUFFIX = "_people"
SHARE_DECIMALS = 6
TOTALS = "totals"
FROM, TO = "from_country", "to_country"
ORIGIN_CELL, DESTINATION_CELL = "origin_h3_cell", "destination_h3_cell"
DIRECTIONS = {"emigration": FROM, "immigration": TO}  # the side of the international table the home country is on


def people_table(name: str) -> str:
    return name + SUFFIX


def cell_shares(frame: pd.DataFrame, factors: Factors) -> pd.Series:
    """The operator's share of the population behind each cell of a flows table (public), to 6 decimals:
    the published share is the one the weights are computed from."""
    return _cell_shares(frame, factors).round(SHARE_DECIMALS)


def _cell_shares(frame: pd.DataFrame, factors: Factors) -> pd.Series:
    if ORIGIN_CELL in frame.columns or DESTINATION_CELL in frame.columns:
        column = ORIGIN_CELL if ORIGIN_CELL in frame.columns else DESTINATION_CELL
        cache = {c: factors.share(region=factors.region_of(c)) for c in frame[column].unique()}
        return frame[column].map(cache).astype(float)
    sex = frame["sex"] if "sex" in frame.columns else pd.Series([None] * len(frame), index=frame.index)
    age = frame["age_band"] if "age_band" in frame.columns else pd.Series([None] * len(frame), index=frame.index)
    cache2 = {(s, a): factors.share(sex=s, age_band=a) for s, a in set(zip(sex, age))}
    return pd.Series([cache2[(s, a)] for s, a in zip(sex, age)], index=frame.index, dtype=float)


def _scaled(values: pd.Series, weights: pd.Series, rounding) -> pd.Series:
    return pd.Series([int(rounding(v * w)) for v, w in zip(values, weights)], index=values.index, dtype="int64")


def cell_estimates(consistent: pd.DataFrame, key_columns: list[str], factors: Factors) -> pd.DataFrame:
    """A consistent flows table (keys, count, low_95, high_95) in people, with the share used."""
    out = consistent[key_columns].copy()
    shares = cell_shares(consistent, factors)
    weights = 1.0 / (factors.multi_sim_factor * shares)
    out[SHARE] = shares
    out[PEOPLE] = _scaled(consistent[COUNT], weights, round)
    out[LOW] = _scaled(consistent[LOW], weights, math.floor).clip(lower=0)
    out[HIGH] = _scaled(consistent[HIGH], weights, math.ceil)
    return out


def interval_of_weighted(center: float, weighted: Iterable[tuple[float, list[Term]]]) -> tuple[int, int]:
    """95% interval, rounded outwards and at least 0, of sum_c w_c (exact_c + noise_c) around its estimate
    ``center``: one (w_c, noise of cell c) pair per cell, the cells' noises independent (several tables or
    operators alike). ``half_width_95`` merges the terms of equal weight and law."""
    terms = [Term(float(w) * t.weight, t.mechanism, t.scale, t.cells) for w, noise in weighted if w != 0
             for t in noise]
    a = half_width_95(terms) if terms else 0.0
    return max(math.floor(center - a), 0), max(math.ceil(center + a), 0)


def weighted_interval(center: float, weights: pd.Series, cell_terms: list[Term]) -> tuple[int, int]:
    """``interval_of_weighted`` for cells of one table, whose noise is ``cell_terms`` each."""
    return interval_of_weighted(center, ((w, cell_terms) for w in weights))


def national_totals(measured: pd.DataFrame, consistent: pd.DataFrame, totals: pd.DataFrame, home: str,
                    by: list[str], cell_terms: list[Term], factors: Factors) -> pd.DataFrame:
    """Emigration and immigration in people, from the international table (``measured``: its noisy
    measurement; ``consistent``: its consistent table; ``totals``: the release's totals table)."""
    rows = []
    for total, side in DIRECTIONS.items():
        part = consistent[side] == home
        shares = cell_shares(consistent[part], factors)
        weights = 1.0 / (factors.multi_sim_factor * shares)
        released = totals.set_index("total").loc[total]
        if not by:  # one weight: the release's own total and its exact interval, scaled
            w = float(weights.iloc[0])
            people, low, high = round(w * released[COUNT]), math.floor(w * released[LOW]), math.ceil(w * released[HIGH])
            how = "the release's total times the national weight; its exact interval scaled"
        else:  # the weighted sum of the noisy cells: unbiased (consistent cells near 0 are biased upwards)
            center = float((measured.loc[part, NOISY].to_numpy() * weights.to_numpy()).sum())
            people = max(round(center), 0)
            low, high = weighted_interval(center, weights, cell_terms)
            how = ("the weighted sum of the noisy measurements of international (unbiased; at least 0) and its "
                   "exact 95% interval")
        rows.append({"total": total, PEOPLE: int(people), LOW: int(max(low, 0)), HIGH: int(high),
                     "weights": f"{weights.nunique()} distinct", "method": how})
    return pd.DataFrame(rows)


def estimate_tables(measured: Mapping[str, pd.DataFrame], consistent: Mapping[str, pd.DataFrame],
                    cell_terms: Mapping[str, list[Term]], key_columns: Mapping[str, list[str]], home: str,
                    by: list[str], factors: Factors, international: str = "international"
                    ) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Every flows table in people, and ``totals_people``: name -> (frame, manifest description)."""
    out: dict[str, tuple[pd.DataFrame, dict]] = {}
    facts = factors.describe()
    for name, keys in key_columns.items():
        frame = cell_estimates(consistent[name], keys, factors)
        out[people_table(name)] = (frame, {
            "estimates": f"people (not subscriptions) behind {name}",
            "from": [name], "key_columns": keys, "value_column": PEOPLE, "interval_columns": [LOW, HIGH],
            "share_by": "region of the cell" if name != international else ("sex and age band" if by else "national"),
            "method": "people = count / (multi_sim_factor * share); interval = the consistent cell's interval "
                      "scaled the same way, rounded outwards", "factors": facts})
    frame = national_totals(measured[international], consistent[international], consistent[TOTALS], home, by,
                            cell_terms[international], factors)
    out[people_table(TOTALS)] = (frame.drop(columns=["method", "weights"]), {
        "estimates": "national emigration and immigration in people", "from": [international, TOTALS],
        "key_columns": ["total"], "value_column": PEOPLE, "interval_columns": [LOW, HIGH],
        "method": dict(zip(frame["total"], frame["method"])), "factors": facts})
    return out
