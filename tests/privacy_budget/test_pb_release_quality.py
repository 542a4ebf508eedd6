"""The published figures of a flows-shaped release over repeated noise: intervals that hold, sums
built from the measurements, consistent tables that add up (a small version of bench/release_quality)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mobility.aggregate import domains as D
from mobility.aggregate.flows import EMIGRANTS, GROUPS, IMMIGRANTS, INTERNATIONAL, SHARES, FlowSpec, flow_totals
from mobility.privacy_budget.intervals import Term, half_width_95
from mobility.privacy_budget.mechanisms import plan_noise
from mobility.privacy_budget.postprocess import NOISY, cell_terms, reconcile, with_intervals
from mobility.privacy_budget.sums import HIGH, LOW

HOME, COUNTRIES = "PHL", ("PHL", "SAU", "ARE", "USA")
CELLS = tuple(f"85{i:02d}fffffffffff" for i in range(40))  # stand-in cell ids: the step never parses them
REDRAWS = 100


def _truth(by=("sex",)) -> tuple[FlowSpec, dict[str, pd.DataFrame]]:
    """Fixed exact tables that add up like real ones: many zeros, a few large cells."""
    spec = FlowSpec(HOME, COUNTRIES, "2025-06", by, CELLS)
    rng = np.random.default_rng(11)  # the truth only; noise is OpenDP's
    domains = spec.domains()
    international = domains[INTERNATIONAL].copy()
    international["count"] = np.where(rng.random(len(international)) < 0.4, 0, rng.integers(0, 40, len(international)))
    departures = int(international.loc[international[D.FROM] == HOME, "count"].sum())
    arrivals = int(international.loc[international[D.TO] == HOME, "count"].sum())

    def spread(frame: pd.DataFrame, total: int) -> pd.DataFrame:
        weights = np.where(rng.random(len(frame)) < 0.8, 0.0, rng.random(len(frame)))
        frame = frame.copy()
        frame["count"] = rng.multinomial(total, weights / weights.sum())
        return frame

    return spec, {INTERNATIONAL: international, EMIGRANTS: spread(domains[EMIGRANTS], departures),
                  IMMIGRANTS: spread(domains[IMMIGRANTS], arrivals)}


def _release(plan, truth, totals):
    drawn = plan.draw({n: f["count"].tolist() for n, f in truth.items()})
    measured = {}
    for name, frame in truth.items():
        table = frame.drop(columns="count").copy()
        table[NOISY] = pd.Series(drawn[name], dtype="int64")
        measured[name] = with_intervals(table, cell_terms(plan, name))
    consistent, totals_frame, _ = reconcile(measured, {n: cell_terms(plan, n) for n in truth}, totals)
    return measured, consistent, totals_frame


@pytest.mark.parametrize("budget", [{"rho": 0.5}, {"epsilon": 1.0}])
def test_intervals_hold_and_tables_add_up_over_repeated_noise(budget):
    spec, truth = _truth()
    totals = flow_totals(spec)
    plan = plan_noise(shares=SHARES, sensitivity=1, delta=1e-7, groups=GROUPS, **budget)
    exact_totals = {"emigration": int(truth[EMIGRANTS]["count"].sum()),
                    "immigration": int(truth[IMMIGRANTS]["count"].sum())}
    hits = {"cells": [], "consistent cells": [], "totals": [], "pair sums": []}
    errors_total = []
    for _ in range(REDRAWS):
        measured, consistent, totals_frame = _release(plan, truth, totals)
        for name, frame in truth.items():
            m, c = measured[name], consistent[name]
            hits["cells"].append(((m[LOW] <= frame["count"]) & (frame["count"] <= m[HIGH])).mean())
            hits["consistent cells"].append(((c[LOW] <= frame["count"]) & (frame["count"] <= c[HIGH])).mean())
            assert (c["count"] >= 0).all() and ((c[LOW] <= c["count"]) & (c["count"] <= c[HIGH])).all()
        # exact consistency in every published table
        t = totals_frame.set_index("total")
        inter = consistent[INTERNATIONAL]
        assert inter.loc[inter[D.FROM] == HOME, "count"].sum() == t.loc["emigration", "count"]
        assert inter.loc[inter[D.TO] == HOME, "count"].sum() == t.loc["immigration", "count"]
        assert consistent[EMIGRANTS]["count"].sum() == t.loc["emigration", "count"]
        assert consistent[IMMIGRANTS]["count"].sum() == t.loc["immigration", "count"]
        for name, value in exact_totals.items():
            hits["totals"].append(t.loc[name, LOW] <= value <= t.loc[name, HIGH])
            errors_total.append(t.loc[name, "count"] - value)
        # a pair summed over sex: the measurement sum's exact interval, widened to the consistent sum
        keys = [D.FROM, D.TO]
        noisy_pairs = measured[INTERNATIONAL].groupby(keys)[NOISY].sum()
        exact_pairs = truth[INTERNATIONAL].groupby(keys)["count"].sum()
        consistent_pairs = inter.groupby(keys)["count"].sum()
        t0 = cell_terms(plan, INTERNATIONAL)[0]
        a = half_width_95([Term(1, t0.mechanism, t0.scale, len(D.SEX_VALUES))])
        low = np.minimum((noisy_pairs - a).clip(lower=0), consistent_pairs)
        high = np.maximum((noisy_pairs + a).clip(lower=0), consistent_pairs)
        hits["pair sums"].append(((low <= exact_pairs) & (exact_pairs <= high)).mean())
    for figure, values in hits.items():
        # cells: hundreds per redraw; totals: two per redraw, so 4 binomial standard errors below 95%
        floor = 0.95 - 4 * np.sqrt(0.95 * 0.05 / len(values)) if figure == "totals" else 0.92
        assert np.mean(values) >= floor, (figure, np.mean(values))
    # the national totals from the consistent tables are not biased by the clamping at 0 any more:
    # their mean error is small against their spread
    errors = np.asarray(errors_total, dtype=float)
    assert abs(errors.mean()) < 4 * errors.std() / np.sqrt(len(errors)) + 1.0
