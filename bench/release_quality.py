"""Quality of the consistent flows release: interval coverage, error per cell, national margins, bias.

``python -m bench.release_quality [--repeats 300] [--changes 20000] [--months 12] [--out bench/out/quality]
[--result FILE] [--tumult-repeats 30] [--old-repeats 100] [--threads 2]``

**Truths.** Twelve fixed monthly truths of the flows release of the Philippines on the domain of
``bench.peer_accuracy`` (its agreement countries, res-5 cells + UNKNOWN): ``bench.peer_accuracy.
synthetic_changes`` draws ``months * changes`` long-term changes with ONE seed (so the home-cell
geography, i.e. which cells are large, is the same every month, as in a real country) and they are
cut into ``months`` consecutive chunks of ``changes`` rows, one per month (the rows are independent,
so the months are independent realisations of the same population). Each change also gets a sex and
an age band from a fixed numpy seed (data only; every noise draw comes from OpenDP), and the
international table is broken down by sex x age band (``FlowSpec(by=("sex", "age_band"))``, 20 pairs
x 32 = 640 cells; 1,576 cells in each subnational table). The exact tables come from the pipeline's
``aggregate.flows.tables_from_counts`` and are sorted by their keys as ``publish`` sorts them.

**A release, in memory.** What ``privacy_budget.boundary.publish`` does between the charge and the
files, without ledger or files: the flows plan ``plan_noise(shares=flows.SHARES, groups=flows.GROUPS)``
(international alone, the two subnational tables as one joint measurement); the noisy measurements
(keys + ``noisy_count``, intervals by ``postprocess.with_intervals`` and ``cell_terms``); then
``postprocess.reconcile`` with ``flows.flow_totals(spec)``: consistent tables and the ``totals`` frame.
Noise is drawn by each measurement of the plan (``NoisePlan.measurements()``, the OpenDP measurement
``NoisePlan.draw`` invokes) over the 12 months of a redraw concatenated: one invocation per
measurement and redraw, the same i.i.d. law per cell as 12 separate invocations. **Annual**: the
sums of the 12 monthly measurements with the 12 monthly noise terms, then ``reconcile`` on the sums,
as ``publish.annual.sum_months`` does (the first redraw is checked against ``sum_months`` itself, and
the pair sums against ``privacy_budget.sums.sum_cells``).

**The current release (old).** ``plan_noise(shares=1/3 per table)``, negative values set to 0, and
for a sum the "old symmetric bound": the exact 95% bound of the sum of the noise
(``intervals.half_width_95``) around the sum of the clamped values. It is drawn for the first
``--old-repeats`` redraws only (its figures need fewer, and OpenDP's exact discrete Gaussian costs
~20-30 us a cell); the new figures it is compared with (MAE ratios) use the same redraws.

Figures, for rho = 0.5 (discrete Gaussian) and epsilon = 1 (discrete Laplace), ``repeats`` redraws of
12 months each: (1) coverage of the stated 95% intervals, binomial standard errors (the figures of a
redraw are not independent, so these understate the sampling error somewhat); (2) mean absolute error
per cell of the monthly tables, old vs new; (3) the mean absolute error of the monthly national
emigration and immigration totals, ours vs Tumult Analytics answering the same margin (its
international table, a third of the budget, summed over the pairs from / to PHL, as returned:
unclamped) vs the old release; (4) bias of sums of the consistent tables per (monthly) cell summed.
Tumult runs in ``.venv-tumult`` through ``bench.peer_accuracy.tumult`` on month 1 for the international
table with and without the breakdowns (two tables of one worker run, each at a third of the budget;
the worker groups by whatever columns the domain file has, so the breakdown table only needs ``sex``
and ``age_band`` added to its input rows). Its margin error is also computed exactly from its noise
law (the old plan's international law: same budget per table), free of the few repetitions' sampling
error. Also measured: the same month released without breakdowns (ours, 10 cells per margin): a
margin summed from 320 breakdown cells carries 32 times the noise variance of one from 10 pairs.

Wall time: the consistency step (``reconcile``) of every monthly release and annual table is timed;
the machine (``bench.machine.describe``) and date are recorded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from bench import machine
from bench import peer_accuracy as peer
from bench.peer_accuracy import (
    BUDGETS,
    COUNTRIES,
    HOME,
    PERIOD,
    RESOLUTION,
    TUMULT_PYTHON,
    exact,
    synthetic_changes,
    tumult,
    tumult_inputs,
)
from mobility.aggregate import domains as D
from mobility.aggregate.flows import (
    EMIGRANTS,
    GROUPS,
    IMMIGRANTS,
    INTERNATIONAL,
    MAX_CONTRIBUTIONS,
    SHARES,
    SUBNATIONAL,
    TABLES,
    FlowSpec,
    flow_totals,
    tables_from_counts,
)
from mobility.config import BudgetCaps
from mobility.privacy_budget.boundary import MANIFEST_FORMAT
from mobility.privacy_budget.intervals import Term, half_width_95, sum_pmf
from mobility.privacy_budget.mechanisms import NoisePlan, plan_noise
from mobility.privacy_budget.postprocess import (
    CONSISTENT,
    HIGH,
    LOW,
    MEASUREMENT,
    NOISY,
    cell_terms,
    consistency_description,
    measurement_table,
    reconcile,
    with_intervals,
)

ROOT = Path(__file__).resolve().parents[1]
BY = ("sex", "age_band")
SUBNATIONAL_TABLES = (EMIGRANTS, IMMIGRANTS)
TOTAL_NAMES = ("emigration", "immigration")
DATA_SEED = 20261207  # sex and age band of each change (data, not noise)
SEX_P = {"F": 0.44, "M": 0.50, "X": 0.002, "U": 0.058}
AGE_P = dict(zip(D.AGE_BAND_VALUES, (0.03, 0.17, 0.33, 0.24, 0.13, 0.06, 0.02, 0.02)))
TUMULT_BY = "international_by"  # the breakdown table's name in the Tumult worker's inputs
TARGET_COVERAGE, COVERAGE_TOL = 0.95, 0.02
TARGET_MAE_RATIO = 0.7  # subnational MAE new / old: at least 30% lower
TARGET_MARGIN_RATIO = 0.8  # national-margin MAE ours / Tumult
TARGET_BIAS = 0.1  # |bias| per cell summed


# ------------------------------------------------------------------------------------------------ data


def monthly_changes(n: int, months: int, cells: list[str]) -> list[pd.DataFrame]:
    """``months`` chunks of ``n`` changes from one draw of the peer generator, with sex and age band."""
    pool = synthetic_changes(n * months, cells)
    rng = np.random.default_rng(DATA_SEED)
    pool["sex"] = rng.choice(list(SEX_P), size=len(pool), p=list(SEX_P.values()))
    pool["age_band"] = rng.choice(list(AGE_P), size=len(pool), p=list(AGE_P.values()))
    return [pool.iloc[m * n:(m + 1) * n].reset_index(drop=True) for m in range(months)]


def exact_by(changes: pd.DataFrame, spec: FlowSpec) -> dict[str, pd.DataFrame]:
    """``peer_accuracy.exact`` with the breakdowns added to the group keys."""
    keys = ["direction", "from_country", "to_country", "h3_cell", *spec.by]
    counts = changes.groupby(keys, dropna=False).size().rename(D.COUNT).reset_index()
    return tables_from_counts(counts, spec)


def sorted_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Sorted by the key columns, as ``boundary._validate_table`` orders a release's tables."""
    return {name: f.sort_values([c for c in f.columns if c != D.COUNT], kind="stable").reset_index(drop=True)
            for name, f in tables.items()}


class Domain:
    """Key frames, truths (months x cells) and the groupings the figures need."""

    def __init__(self, truths: list[dict[str, pd.DataFrame]], truths_free: list[dict[str, pd.DataFrame]]):
        first = truths[0]
        self.keys = {t: first[t].drop(columns=D.COUNT) for t in TABLES}
        for month in truths:
            for t in TABLES:
                assert month[t].drop(columns=D.COUNT).equals(self.keys[t]), "months on different domains"
        self.y = {t: np.stack([m[t][D.COUNT].to_numpy(np.int64) for m in truths]) for t in TABLES}
        self.months = len(truths)
        intl = self.keys[INTERNATIONAL]
        pair = intl.groupby([D.FROM, D.TO], sort=True).ngroup().to_numpy()
        self.pairs = int(pair.max()) + 1
        self.pair_matrix = np.zeros((len(intl), self.pairs), dtype=np.int64)
        self.pair_matrix[np.arange(len(intl)), pair] = 1
        self.breakdown_cells = int(self.pair_matrix.sum(axis=0)[0])
        assert (self.pair_matrix.sum(axis=0) == self.breakdown_cells).all()
        # cells of the international table in each national total (departures, arrivals)
        self.margin_matrix = np.stack([(intl[D.FROM] == HOME).to_numpy(), (intl[D.TO] == HOME).to_numpy()],
                                      axis=1).astype(np.int64)
        self.margin_cells = int(self.margin_matrix[:, 0].sum())
        self.totals_y = self.y[INTERNATIONAL] @ self.margin_matrix  # months x 2
        for i, table in enumerate(SUBNATIONAL_TABLES):  # exact tables add up
            assert (self.y[table].sum(axis=1) == self.totals_y[:, i]).all()
        self.keys_free = truths_free[0][INTERNATIONAL].drop(columns=D.COUNT)
        self.y_free = np.stack([m[INTERNATIONAL][D.COUNT].to_numpy(np.int64) for m in truths_free])
        self.margin_free = np.stack([(self.keys_free[D.FROM] == HOME).to_numpy(),
                                     (self.keys_free[D.TO] == HOME).to_numpy()], axis=1).astype(np.int64)
        assert (self.y_free @ self.margin_free == self.totals_y).all()
        assert (self.y[INTERNATIONAL] @ self.pair_matrix == self.y_free).all()


# -------------------------------------------------------------------------------------- one release


def measured_frames(keys: dict[str, pd.DataFrame], noisy: dict[str, np.ndarray], terms: dict[str, list[Term]]
                    ) -> dict[str, pd.DataFrame]:
    """``boundary._measured`` on drawn values: keys, ``noisy_count``, the cell's exact 95% interval."""
    out = {}
    for name, values in noisy.items():
        table = keys[name].copy()
        table[NOISY] = pd.Series(values, dtype="int64")
        out[name] = with_intervals(table, terms[name])
    return out


def timed_reconcile(measured, terms, totals, clock: list[float]):
    started = time.perf_counter()
    consistent, totals_frame, estimates = reconcile(measured, terms, totals)
    clock.append(time.perf_counter() - started)
    return consistent, totals_frame, estimates


class Noise:
    """OpenDP draws of one redraw (``months`` months): the new plan, the old plan, the breakdown-free
    international table under both. Runs in worker threads (OpenDP releases the GIL in its calls)."""

    def __init__(self, new: NoisePlan, old: NoisePlan, new_free: NoisePlan, old_free: NoisePlan, dom: Domain,
                 old_repeats: int):
        self.new, self.old, self.new_free, self.old_free = new, old, new_free, old_free
        self.dom, self.old_repeats = dom, old_repeats

    @staticmethod
    def _unit(plan: NoisePlan, counts: dict[str, np.ndarray], months: int) -> dict[str, np.ndarray]:
        """Every measurement of ``plan`` invoked once over all months' cells (a group's tables concatenated
        month by month in the plan's order, as ``NoisePlan.draw`` concatenates them), split back."""
        out: dict[str, np.ndarray] = {}
        for unit in plan.measurements().values():
            members = unit.group_tables or (unit.table,)
            stacked = np.concatenate([counts[t] for t in members], axis=1)  # months x (cells of all members)
            drawn = np.asarray(unit.measurement([int(v) for v in stacked.ravel()]), dtype=np.int64)
            drawn = drawn.reshape(months, -1)
            start = 0
            for t in members:
                width = counts[t].shape[1]
                out[t] = drawn[:, start:start + width]
                start += width
        return out

    def draw(self, r: int) -> dict:
        dom, m = self.dom, self.dom.months
        out = {"new": self._unit(self.new, dom.y, m)}
        out["old"] = self._unit(self.old, dom.y, m) if r < self.old_repeats else {}
        out["new_free"] = self._unit(_subplan(self.new_free, {INTERNATIONAL: 0}), {INTERNATIONAL: dom.y_free[:1]}, 1)
        out["old_free"] = self._unit(_subplan(self.old_free, {INTERNATIONAL: 0}), {INTERNATIONAL: dom.y_free}, m)
        return out


def _subplan(plan: NoisePlan, tables) -> NoisePlan:
    """The plan restricted to the measurements of ``tables`` (all of a measurement's tables must be named)."""
    kept = {t: n for t, n in plan.tables.items() if t in tables}
    return NoisePlan(plan.mechanism, plan.sensitivity, kept, plan.epsilon, plan.delta, plan.rho)


# --------------------------------------------------------------------------------- one budget, R redraws


def run_budget(budget: dict, dom: Domain, spec: FlowSpec, spec_free: FlowSpec, repeats: int, old_repeats: int,
               threads: int, shares: dict[str, float], check: bool = True) -> dict:
    """Draw ``repeats`` redraws of 12 monthly releases and their annual table; return the raw arrays."""
    delta = BudgetCaps.model_fields["delta"].default
    kw = {budget["kind"]: budget["value"]}
    new = plan_noise(shares=shares, sensitivity=MAX_CONTRIBUTIONS, delta=delta, groups=GROUPS, **kw)
    old = plan_noise(shares={t: 1 / 3 for t in TABLES}, sensitivity=MAX_CONTRIBUTIONS, delta=delta, **kw)
    totals, totals_free = flow_totals(spec), flow_totals(spec_free)
    terms = {t: cell_terms(new, t) for t in TABLES}
    annual_terms = {t: [Term(1, new.tables[t].mechanism, new.tables[t].scale, 1) for _ in range(dom.months)]
                    for t in TABLES}
    noise = Noise(new, old, new, old, dom, old_repeats)
    M, R = dom.months, repeats
    n = {t: dom.y[t].shape[1] for t in TABLES}
    arr = {  # everything a figure needs, as drawn / as published
        "noisy": {t: np.zeros((R, M, n[t]), np.int32) for t in TABLES},
        "meas_low": {t: np.zeros((R, M, n[t]), np.int32) for t in TABLES},
        "meas_high": {t: np.zeros((R, M, n[t]), np.int32) for t in TABLES},
        "cons": {t: np.zeros((R, M, n[t]), np.int32) for t in TABLES},
        "cons_low": {t: np.zeros((R, M, n[t]), np.int32) for t in TABLES},
        "cons_high": {t: np.zeros((R, M, n[t]), np.int32) for t in TABLES},
        "ann_noisy": {t: np.zeros((R, n[t]), np.int64) for t in TABLES},
        "ann_meas_low": {t: np.zeros((R, n[t]), np.int64) for t in TABLES},
        "ann_meas_high": {t: np.zeros((R, n[t]), np.int64) for t in TABLES},
        "ann_cons": {t: np.zeros((R, n[t]), np.int64) for t in TABLES},
        "ann_cons_low": {t: np.zeros((R, n[t]), np.int64) for t in TABLES},
        "ann_cons_high": {t: np.zeros((R, n[t]), np.int64) for t in TABLES},
        "totals": np.zeros((R, M, 2, 3), np.int64),  # count, low_95, high_95
        "ann_totals": np.zeros((R, 2, 3), np.int64),
        "free_totals": np.zeros((R, 2, 3), np.int64),  # breakdown-free release of month 1
        "old": {t: np.zeros((old_repeats, M, n[t]), np.int32) for t in TABLES},
        "old_free": np.zeros((R, M, len(dom.keys_free)), np.int32),
    }
    clock_month: list[float] = []
    clock_annual: list[float] = []
    clock_noise: list[float] = []
    keys_free = {INTERNATIONAL: dom.keys_free, **{t: dom.keys[t] for t in SUBNATIONAL_TABLES}}

    def drawn(r: int) -> dict:
        started = time.perf_counter()
        out = noise.draw(r)
        clock_noise.append(time.perf_counter() - started)
        return out

    started = time.perf_counter()
    checks = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ahead = deque(pool.submit(drawn, r) for r in range(min(2 * threads, R)))
        for r in range(R):
            d = ahead.popleft().result()
            if r + len(ahead) + 1 < R:
                ahead.append(pool.submit(drawn, r + len(ahead) + 1))
            for m in range(M):
                measured = measured_frames(dom.keys, {t: d["new"][t][m] for t in TABLES}, terms)
                consistent, totals_frame, estimates = timed_reconcile(measured, terms, totals, clock_month)
                for t in TABLES:
                    arr["noisy"][t][r, m] = measured[t][NOISY].to_numpy()
                    arr["meas_low"][t][r, m] = measured[t][LOW].to_numpy()
                    arr["meas_high"][t][r, m] = measured[t][HIGH].to_numpy()
                    arr["cons"][t][r, m] = consistent[t][D.COUNT].to_numpy()
                    arr["cons_low"][t][r, m] = consistent[t][LOW].to_numpy()
                    arr["cons_high"][t][r, m] = consistent[t][HIGH].to_numpy()
                arr["totals"][r, m] = _totals_array(totals_frame)
                if m == 0:  # the same month released without breakdowns (only its totals are used)
                    free = measured_frames(keys_free, {INTERNATIONAL: d["new_free"][INTERNATIONAL][0],
                                                       **{t: d["new"][t][0] for t in SUBNATIONAL_TABLES}}, terms)
                    arr["free_totals"][r] = _totals_array(reconcile(free, terms, totals_free)[1])
                if check and r == 0 and m == 0:
                    first_month = (measured, consistent, estimates)
            summed = {t: d["new"][t].sum(axis=0) for t in TABLES}
            annual = measured_frames(dom.keys, summed, annual_terms)
            consistent, totals_frame, estimates = timed_reconcile(annual, annual_terms, totals, clock_annual)
            for t in TABLES:
                arr["ann_noisy"][t][r] = annual[t][NOISY].to_numpy()
                arr["ann_meas_low"][t][r] = annual[t][LOW].to_numpy()
                arr["ann_meas_high"][t][r] = annual[t][HIGH].to_numpy()
                arr["ann_cons"][t][r] = consistent[t][D.COUNT].to_numpy()
                arr["ann_cons_low"][t][r] = consistent[t][LOW].to_numpy()
                arr["ann_cons_high"][t][r] = consistent[t][HIGH].to_numpy()
            arr["ann_totals"][r] = _totals_array(totals_frame)
            for t, values in d["old"].items():
                arr["old"][t][r] = values
            arr["old_free"][r] = d["old_free"][INTERNATIONAL]
            if check and r == 0:
                checks = cross_check(new, dom, d["new"], first_month, (annual, consistent, totals_frame), totals)
    elapsed = time.perf_counter() - started
    scales = {"new": {u: plan.scale for u, plan in new.measurements().items()},
              "old": {u: plan.scale for u, plan in old.measurements().items()}}
    return {"arrays": arr, "new": new, "old": old, "scales": scales, "mechanism": new.mechanism, "checks": checks,
            "seconds": elapsed, "clock_month": clock_month, "clock_annual": clock_annual,
            "clock_noise": clock_noise}


def _totals_array(frame: pd.DataFrame) -> np.ndarray:
    frame = frame.set_index("total").loc[list(TOTAL_NAMES)]
    return frame[[D.COUNT, LOW, HIGH]].to_numpy(np.int64)


def cross_check(plan: NoisePlan, dom: Domain, drawn: dict[str, np.ndarray], first_month, annual_result,
                totals) -> dict:
    """The in-memory annual path against ``publish.annual.sum_months`` on 12 in-memory monthly "releases",
    and the vectorised pair sums against ``privacy_budget.sums.sum_cells`` (first redraw only)."""
    from mobility.privacy_budget.sums import sum_cells
    from mobility.publish.annual import sum_months
    from mobility.publish.sources import RELEASE, Source

    measured0, consistent0, estimates0 = first_month
    manifest = {
        "format": MANIFEST_FORMAT, "mechanism": plan.mechanism,
        "consistency": consistency_description(totals, estimates0),
        "tables": {**{measurement_table(t): {"role": MEASUREMENT, "measures": t, "noise_scale": plan.tables[t].scale,
                                             "key_columns": list(dom.keys[t].columns)} for t in TABLES},
                   **{t: {"role": CONSISTENT, "key_columns": list(dom.keys[t].columns)} for t in TABLES}}}
    sources = {}
    for m in range(dom.months):
        source = Source(f"bench-{m + 1:02d}", ROOT, manifest, RELEASE)
        tables = {}
        for t in TABLES:
            frame = dom.keys[t].copy()
            frame[NOISY] = pd.Series(drawn[t][m], dtype="int64")
            tables[measurement_table(t)] = frame
        source.__dict__["tables"] = tables  # the cached_property, filled in memory instead of from Parquet
        sources[f"2025-{m + 1:02d}"] = source
    reference = sum_months(sources)
    annual, consistent, totals_frame = annual_result
    differ = [f"{kind} {t}" for t in TABLES for kind, ref, ours in (("measured", reference.measured, annual),
                                                                    ("consistent", reference.consistent, consistent))
              if not _same(ref[t], ours[t])]
    differ += [] if _same(reference.totals, totals_frame) else ["totals"]
    ok_annual = not differ
    if differ:
        raise AssertionError(f"the in-memory annual path differs from publish.annual.sum_months: {differ}")
    # pair sums of month 1 through sums.sum_cells
    tables = {INTERNATIONAL: consistent0[INTERNATIONAL], measurement_table(INTERNATIONAL): measured0[INTERNATIONAL]}
    ref = sum_cells(manifest, tables, INTERNATIONAL, by=[D.FROM, D.TO])
    cons = consistent0[INTERNATIONAL][D.COUNT].to_numpy() @ dom.pair_matrix
    noisy = measured0[INTERNATIONAL][NOISY].to_numpy() @ dom.pair_matrix
    low, high = pair_interval(noisy, cons, half_width(plan, INTERNATIONAL, dom.breakdown_cells))
    order = dom.keys[INTERNATIONAL][[D.FROM, D.TO]].drop_duplicates().sort_values([D.FROM, D.TO])
    ref = order.merge(ref, on=[D.FROM, D.TO], how="left")
    ok_pairs = (ref[D.COUNT].to_numpy() == cons).all() and (ref[LOW].to_numpy() == low).all() \
        and (ref[HIGH].to_numpy() == high).all()
    if not ok_pairs:
        raise AssertionError("the vectorised pair sums differ from privacy_budget.sums.sum_cells")
    return {"annual_equals_sum_months": bool(ok_annual), "pair_sums_equal_sum_cells": bool(ok_pairs)}


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same columns, values and order (dtypes of the values compared as int64)."""
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    return all((a[c].astype("int64") == b[c].astype("int64")).all() if c in (D.COUNT, NOISY, LOW, HIGH)
               else (a[c].astype(str) == b[c].astype(str)).all() for c in a.columns)


def half_width(plan: NoisePlan, table: str, cells: int) -> int:
    t = plan.tables[table]
    return int(half_width_95([Term(1, t.mechanism, t.scale, cells)]))


def pair_interval(noisy_sum, cons_sum, a: int):
    """``sums.sum_cells``' rule: noisy sum -/+ a, lower end at least 0, widened to include the consistent sum."""
    low = np.maximum(noisy_sum - a, 0)
    high = np.maximum(noisy_sum + a, 0)
    return np.minimum(low, cons_sum), np.maximum(high, cons_sum)


# ------------------------------------------------------------------------------------------------ figures


def coverage(low, high, truth, law: float | None = None) -> dict:
    """Share of figures whose interval holds the truth, its binomial SE, and (``law``) what the noise law
    gives the measurement interval of the same half-width (before its lower end is set to at least 0)."""
    hit = (np.asarray(low) <= truth) & (truth <= np.asarray(high))
    p, n = float(hit.mean()), int(hit.size)
    return {"coverage": p, "se": float(np.sqrt(p * (1 - p) / n)), "n": n, "law": law,
            "met": bool(abs(p - TARGET_COVERAGE) <= COVERAGE_TOL)}


def mae(estimate, truth) -> dict:
    err = np.abs(np.asarray(estimate, dtype=np.float64) - truth)
    return {"mae": float(err.mean()), "se": float(err.std() / np.sqrt(err.size)), "n": int(err.size)}


def _outside(value: float, se: float | None) -> bool:
    """Outside the bias target by more than 3 standard errors (sampling noise alone would rarely do that)."""
    return abs(value) - TARGET_BIAS > 3 * (se or 0.0)


def bias(estimate, truth, cells: int, classes: dict[str, np.ndarray] | None = None) -> dict:
    """Bias of each figure (a total, a pair sum, a cell: mean over redraws of estimate - truth), per monthly
    cell summed, with its standard error from the spread over redraws (axis 0).

    Target: no figure outside +-TARGET_BIAS by more than 3 standard errors (the worst of hundreds of figures
    is otherwise mostly sampling noise); with ``classes`` (name -> mask over the figures, e.g. true zeros)
    the target is checked on the mean of each class instead (single cells)."""
    err = (np.asarray(estimate, dtype=np.float64) - truth).reshape(len(estimate), -1)
    r = err.shape[0]
    per_figure = err.mean(axis=0) / cells
    se_figure = err.std(axis=0, ddof=1) / np.sqrt(r) / cells if r > 1 else np.zeros(err.shape[1])
    worst = int(np.argmax(np.abs(per_figure)))
    outside = (np.abs(per_figure) - TARGET_BIAS) > 3 * se_figure
    out = {"cells_summed": cells, "figures": int(err.shape[1]), "net_bias_per_cell": float(per_figure.mean()),
           "worst_bias_per_cell": float(per_figure[worst]), "worst_se_per_cell": float(se_figure[worst]),
           "mean_abs_bias_per_cell": float(np.abs(per_figure).mean()),
           "figures_beyond_target": int((np.abs(per_figure) > TARGET_BIAS).sum()),
           "figures_beyond_target_by_3_se": int(outside.sum())}
    if err.shape[1] <= 48:
        out["bias_per_cell"] = [float(v) for v in per_figure]
    if classes is None:
        out["met"] = not outside.any()
        return out
    out["classes"] = {}
    for name, mask in classes.items():
        mask = np.asarray(mask).ravel()
        if not mask.any():
            continue
        per_redraw = err[:, mask].mean(axis=1) / cells
        out["classes"][name] = {"figures": int(mask.sum()), "bias_per_cell": float(per_redraw.mean()),
                                "se_per_cell": float(per_redraw.std(ddof=1) / np.sqrt(r)) if r > 1 else 0.0}
    out["met"] = not any(_outside(c["bias_per_cell"], c["se_per_cell"]) for c in out["classes"].values())
    return out


def mean_abs_sum(mechanism: str, scale: float, cells: int) -> float:
    """E|sum of ``cells`` draws|: the mean absolute error of an unclamped sum of noisy cells."""
    support, pmf = sum_pmf(mechanism, scale, cells)
    return float(np.dot(np.abs(support), pmf))


def law_coverage(mechanism: str, scale: float, cells: int, half_width_: int) -> float:
    """P(|sum of ``cells`` draws| <= half_width_): the coverage the noise law gives an interval of that
    half-width around a noisy sum. Integer noise makes it jump between integers: with sigma = 1.41 one
    cell has P(|N| <= 2) = 92.9 % and P(|N| <= 3) = 98.9 %, so a 95 % interval covers 98.9 %."""
    support, pmf = sum_pmf(mechanism, scale, cells)
    return float(pmf[np.abs(support) <= half_width_].sum())


def figures(run: dict, dom: Domain, tumult_margins: dict | None, label: str) -> dict:
    a, new, old = run["arrays"], run["new"], run["old"]
    R, M = a["totals"].shape[:2]
    Ro = a["old"][INTERNATIONAL].shape[0]
    y, ya = dom.y, {t: dom.y[t].sum(axis=0) for t in TABLES}
    P, k = dom.pair_matrix, dom.breakdown_cells
    out: dict = {"budget": label, "mechanism": run["mechanism"], "scales": run["scales"], "redraws": R,
                 "months": M, "old_redraws": Ro, "checks": run["checks"]}

    # 1. coverage ----------------------------------------------------------------------------------
    cov: dict = {}

    def law(t: str, cells: int) -> float:
        unit = new.tables[t]
        return law_coverage(unit.mechanism, unit.scale, cells, half_width(new, t, cells))
    for t in TABLES:
        cov[f"monthly measurement cell: {t}"] = coverage(a["meas_low"][t], a["meas_high"][t], y[t], law(t, 1))
        cov[f"monthly consistent cell: {t}"] = coverage(a["cons_low"][t], a["cons_high"][t], y[t])
    for t in TABLES:
        cov[f"annual measurement cell: {t}"] = coverage(a["ann_meas_low"][t], a["ann_meas_high"][t], ya[t],
                                                        law(t, M))
        cov[f"annual consistent cell: {t}"] = coverage(a["ann_cons_low"][t], a["ann_cons_high"][t], ya[t])
    intl = INTERNATIONAL
    pair_y, pair_ya = y[intl] @ P, ya[intl] @ P
    low, high = pair_interval(a["noisy"][intl].astype(np.int64) @ P, a["cons"][intl].astype(np.int64) @ P,
                              half_width(new, intl, k))
    cov[f"monthly pair over {k} breakdown cells (consistent)"] = coverage(low, high, pair_y, law(intl, k))
    low, high = pair_interval(a["ann_noisy"][intl] @ P, a["ann_cons"][intl] @ P, half_width(new, intl, k * M))
    cov[f"annual pair over {k * M} breakdown cells (consistent)"] = coverage(low, high, pair_ya, law(intl, k * M))
    cov["monthly national total (totals)"] = coverage(a["totals"][..., 1], a["totals"][..., 2], dom.totals_y)
    cov["annual national total (totals)"] = coverage(a["ann_totals"][..., 1], a["ann_totals"][..., 2],
                                                     dom.totals_y.sum(axis=0))
    old_cov: dict = {}
    clamped = {t: np.maximum(a["old"][t], 0).astype(np.int64) for t in TABLES}
    for t in TABLES:
        a1, a12 = half_width(old, t, 1), half_width(old, t, M)
        old_cov[f"monthly cell: {t}"] = coverage(clamped[t] - a1, clamped[t] + a1, y[t])
        s = clamped[t].sum(axis=1)
        old_cov[f"annual cell ({M} months): {t}"] = coverage(s - a12, s + a12, ya[t])
    s = clamped[intl] @ P
    a32 = half_width(old, intl, k)
    old_cov[f"monthly pair over {k} cells"] = coverage(s - a32, s + a32, pair_y)
    s = clamped[intl].sum(axis=1) @ P
    a384 = half_width(old, intl, k * M)
    old_cov[f"annual pair over {k * M} cells"] = coverage(s - a384, s + a384, pair_ya)
    for c in old_cov.values():
        c.pop("met")
    out["coverage"], out["coverage_old"] = cov, old_cov

    # 2. MAE per cell (monthly) ----------------------------------------------------------------------
    err: dict = {}
    for t in TABLES:
        rows = slice(0, Ro)  # the old plan is drawn for the first Ro redraws
        err[t] = {"new_consistent": mae(a["cons"][t], y[t]), "new_measurement": mae(a["noisy"][t], y[t]),
                  "old_clamped": mae(clamped[t], y[t]),
                  "new_consistent_same_redraws_as_old": mae(a["cons"][t][rows], y[t]),
                  "zero_cells": float((y[t] == 0).mean())}
        err[t]["ratio_new_old"] = err[t]["new_consistent_same_redraws_as_old"]["mae"] / err[t]["old_clamped"]["mae"]
    sub_new = np.concatenate([np.abs(a["cons"][t][:Ro].astype(np.float64) - y[t]).ravel() for t in SUBNATIONAL_TABLES])
    sub_old = np.concatenate([np.abs(clamped[t] - y[t]).ravel() for t in SUBNATIONAL_TABLES])
    err["subnational"] = {"new_consistent": float(sub_new.mean()), "old_clamped": float(sub_old.mean()),
                          "new_se": float(sub_new.std() / np.sqrt(sub_new.size)),
                          "old_se": float(sub_old.std() / np.sqrt(sub_old.size)),
                          "ratio_new_old": float(sub_new.mean() / sub_old.mean())}
    err["subnational"]["met"] = bool(err["subnational"]["ratio_new_old"] <= TARGET_MAE_RATIO)
    out["mae_per_cell"] = err

    # 3. national margins (monthly) ---------------------------------------------------------------------
    margins: dict = {"cells_per_margin": dom.margin_cells,
                     "cells_per_margin_breakdown_free": int(dom.margin_free[:, 0].sum())}
    margins["ours"] = mae(a["totals"][..., 0], dom.totals_y)
    margins["ours_month1"] = mae(a["totals"][:, 0, :, 0], dom.totals_y[0])
    margins["ours_breakdown_free_month1"] = mae(a["free_totals"][..., 0], dom.totals_y[0])
    margins["old_sum_of_clamped"] = mae(clamped[intl] @ dom.margin_matrix, dom.totals_y)
    margins["old_breakdown_free_sum_of_clamped"] = mae(np.maximum(a["old_free"], 0).astype(np.int64)
                                                       @ dom.margin_free, dom.totals_y)
    # Tumult's counts at a third of the budget carry the same noise law as the old plan's international
    # table (discrete Gaussian sigma^2 = 3 for rho / 3, discrete Laplace b = 3 for epsilon / 3): the exact
    # mean absolute error of its margin, free of the sampling error of its few repetitions
    law = old.tables[intl]
    margins["tumult_law_breakdown_free"] = {"mae": mean_abs_sum(law.mechanism, law.scale,
                                                                margins["cells_per_margin_breakdown_free"]), "se": 0.0}
    margins["tumult_law_breakdowns"] = {"mae": mean_abs_sum(law.mechanism, law.scale, dom.margin_cells), "se": 0.0}
    if tumult_margins:
        margins["tumult_breakdown_free"] = tumult_margins[label]["breakdown_free"]
        margins["tumult_breakdowns"] = tumult_margins[label]["breakdowns"]
    ours_keys = {"breakdowns": "ours", "breakdown_free": "ours_breakdown_free_month1"}
    for source in ("tumult", "tumult_law"):
        for ours_tables, tables in (("breakdowns", "breakdowns"), ("breakdowns", "breakdown_free"),
                                    ("breakdown_free", "breakdown_free")):
            theirs = margins.get(f"{source}_{tables}")
            if theirs is None:
                continue
            ours = margins[ours_keys[ours_tables]]
            ratio = ours["mae"] / theirs["mae"]
            se = ratio * float(np.hypot(ours["se"] / ours["mae"], theirs["se"] / theirs["mae"]))
            margins[f"ratio_ours_{ours_tables}_{source}_{tables}"] = {
                "ratio": ratio, "se": se, "met": bool(ratio <= TARGET_MARGIN_RATIO)}
    margins["ratio_ours_old"] = margins["ours"]["mae"] / margins["old_sum_of_clamped"]["mae"]
    out["national_margins"] = margins

    # 4. bias per cell summed ---------------------------------------------------------------------------
    b: dict = {}
    b["annual national total"] = bias(a["ann_totals"][..., 0], dom.totals_y.sum(axis=0), dom.margin_cells * M)
    b["annual pair sum over breakdowns"] = bias(a["ann_cons"][intl] @ P, pair_ya, k * M)
    b["monthly national total"] = bias(a["totals"][..., 0], dom.totals_y, dom.margin_cells)
    b["monthly pair sum over breakdowns"] = bias(a["cons"][intl].astype(np.int64) @ P, pair_y, k)
    for t in TABLES:
        b[f"annual cell: {t}"] = bias(a["ann_cons"][t], ya[t], M, {"true zeros": ya[t] == 0, "non-zero": ya[t] > 0})
    old_b: dict = {}
    old_b["annual national total"] = bias((clamped[intl] @ dom.margin_matrix).sum(axis=1), dom.totals_y.sum(axis=0),
                                          dom.margin_cells * M)
    old_b["annual pair sum over breakdowns"] = bias(clamped[intl].sum(axis=1) @ P, pair_ya, k * M)
    old_b["monthly national total"] = bias(clamped[intl] @ dom.margin_matrix, dom.totals_y, dom.margin_cells)
    old_b["monthly pair sum over breakdowns"] = bias(clamped[intl] @ P, pair_y, k)
    for t in TABLES:
        old_b[f"annual cell: {t}"] = bias(clamped[t].sum(axis=1), ya[t], M,
                                          {"true zeros": ya[t] == 0, "non-zero": ya[t] > 0})
    for v in old_b.values():
        v.pop("met")
    out["bias"], out["bias_old"] = b, old_b

    # timing ---------------------------------------------------------------------------------------------
    def stats(xs):
        return {"mean_s": statistics.fmean(xs), "median_s": statistics.median(xs), "max_s": max(xs), "n": len(xs)}

    out["timing"] = {"consistency_monthly_release": stats(run["clock_month"]),
                     "consistency_annual": stats(run["clock_annual"]),
                     "noise_per_redraw_thread": stats(run["clock_noise"]), "budget_wall_s": run["seconds"]}
    return out


# ------------------------------------------------------------------------------------------------ Tumult


def tumult_margins(out: Path, changes: pd.DataFrame, spec_free: FlowSpec, spec: FlowSpec, truth_free: dict,
                   truth: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Tumult's answers of the international table of one month, without and with the breakdowns (one
    worker run; each table a third of the budget), summed over the pairs from / to PHL."""
    folder = out / "tumult-in"
    intl_free, intl_by = truth_free[INTERNATIONAL], truth[INTERNATIONAL]
    tumult_inputs(folder, changes, spec_free, {INTERNATIONAL: intl_free}, repeats, "replicated")
    rows = pd.read_parquet(folder / "changes.parquet")
    assert (rows["pseudonym"].to_numpy() == changes["pseudonym"].to_numpy()).all()
    rows["sex"] = [D.sex_value(s) for s in changes["sex"]]
    rows["age_band"] = changes["age_band"].to_numpy()
    rows.to_parquet(folder / "changes.parquet", index=False)
    intl_by.drop(columns=D.COUNT).to_parquet(folder / f"domain-{TUMULT_BY}.parquet", index=False)
    params = json.loads((folder / "params.json").read_text())
    query_by = {"filter": None, "keys": [D.FROM, D.TO, *spec.by]}
    params["tables"] = {INTERNATIONAL: params["tables"][INTERNATIONAL], TUMULT_BY: query_by}
    params["shares"] = {INTERNATIONAL: 1 / 3, TUMULT_BY: 1 / 3}
    (folder / "params.json").write_text(json.dumps(params, indent=2))
    started = time.perf_counter()
    with mock.patch.dict(peer.TABLE_QUERIES, {TUMULT_BY: query_by}):
        per_cell, info = tumult(folder, {INTERNATIONAL: intl_free, TUMULT_BY: intl_by}, out / "tumult.log")
    info["seconds"] = round(time.perf_counter() - started, 1)
    answers = pd.read_parquet(folder / "tumult-answers.parquet")
    truth_margin = np.array([intl_free.loc[intl_free[D.FROM] == HOME, D.COUNT].sum(),
                             intl_free.loc[intl_free[D.TO] == HOME, D.COUNT].sum()])
    result = {}
    for budget in BUDGETS:
        entry = {}
        for table, name in ((INTERNATIONAL, "breakdown_free"), (TUMULT_BY, "breakdowns")):
            got = answers[(answers["budget"] == budget["label"]) & (answers["table"] == table)]
            dep = got[got[D.FROM] == HOME].groupby("rep")["count"].sum()
            arr = got[got[D.TO] == HOME].groupby("rep")["count"].sum()
            entry[name] = mae(np.stack([dep.to_numpy(), arr.to_numpy()], axis=1), truth_margin)
            entry[name]["cells_per_margin"] = int((got[D.FROM] == HOME).sum() / info["repeats"])
        result[budget["label"]] = entry
    return result, info, {"per_cell": per_cell}


# ------------------------------------------------------------------------------------------------ driver


def measure(repeats: int, n_changes: int, months: int, out: Path, tumult_repeats: int, old_repeats: int,
            threads: int, subnational_share: float | None = None) -> dict:
    started = time.perf_counter()
    cells = D.cell_domain(HOME, RESOLUTION)[:-1]
    spec = FlowSpec(home=HOME, countries=COUNTRIES, period=PERIOD, cells=tuple(cells), by=BY)
    spec_free = FlowSpec(home=HOME, countries=COUNTRIES, period=PERIOD, cells=tuple(cells))
    changes = monthly_changes(n_changes, months, cells)
    truths = [sorted_tables(exact_by(c, spec)) for c in changes]
    truths_free = [sorted_tables(exact(c, spec_free)) for c in changes]
    dom = Domain(truths, truths_free)
    old_repeats = min(old_repeats, repeats)
    shares = dict(SHARES) if subnational_share is None else \
        {INTERNATIONAL: 1 - subnational_share, SUBNATIONAL: subnational_share}
    result: dict = {
        "machine": machine.describe(), "period_layout": PERIOD, "changes_per_month": n_changes, "months": months,
        "repeats": repeats, "old_repeats": old_repeats, "threads": threads,
        "truths": (f"one draw of bench.peer_accuracy.synthetic_changes({months} x {n_changes}) cut into {months} "
                   "consecutive months (same geography every month, independent rows); sex and age band from "
                   f"numpy seed {DATA_SEED}"),
        "cells": {t: int(dom.y[t].shape[1]) for t in TABLES},
        "zero_cells_monthly": {t: float((dom.y[t] == 0).mean()) for t in TABLES},
        "zero_cells_annual": {t: float((dom.y[t].sum(axis=0) == 0).mean()) for t in TABLES},
        "national_totals_monthly_mean": {name: float(dom.totals_y[:, i].mean()) for i, name in enumerate(TOTAL_NAMES)},
        "shares": {"new": shares, "flows_SHARES": dict(SHARES), "new_groups": {g: list(ts) for g, ts in GROUPS.items()},
                   "old": {t: 1 / 3 for t in TABLES}},
    }
    tm = None
    if tumult_repeats > 0 and TUMULT_PYTHON.is_file():
        out.mkdir(parents=True, exist_ok=True)
        print(f"[quality] Tumult: {tumult_repeats} repetitions of month 1", file=sys.stderr)
        tm, result["tumult_info"], per_cell = tumult_margins(out, changes[0], spec_free, spec, truths_free[0],
                                                             truths[0], tumult_repeats)
        result["tumult_per_cell"] = per_cell["per_cell"]
    elif tumult_repeats > 0:
        result["tumult_missing"] = f"{TUMULT_PYTHON} not found: create it with `make bench-tumult-env`"
    result["budgets"] = []
    for budget in sorted(BUDGETS, key=lambda b: b["kind"] != "rho"):
        print(f"[quality] {budget['label']}: {repeats} redraws x {months} months", file=sys.stderr)
        run = run_budget(budget, dom, spec, spec_free, repeats, old_repeats, threads, shares)
        result["budgets"].append(figures(run, dom, tm, budget["label"]))
        del run
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


# ------------------------------------------------------------------------------------------------ markdown


def _pct(c: dict, target: bool = True) -> str:
    text = f"{100 * c['coverage']:.1f} % ± {100 * c['se']:.2f}"
    if c.get("law") is not None:
        text += f" (law {100 * c['law']:.1f})"
    if target:
        text += " met" if c["met"] else (" **missed** (over)" if c["coverage"] > TARGET_COVERAGE else
                                         " **missed** (under)")
    return text


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(result: dict) -> list[str]:
    budgets = result["budgets"]
    labels = [b["budget"] for b in budgets]
    m = result["machine"]
    M = result["months"]
    lines = [
        f"Flows release quality, {result['machine']['date']}: {result['months']} monthly truths "
        f"({result['changes_per_month']:,} synthetic long-term changes each; {result['truths']}); cells per month "
        f"{result['cells']} (zero: "
        + ", ".join(f"{t} {100 * v:.0f} %" for t, v in result["zero_cells_monthly"].items())
        + "); international by sex x age band. "
        f"{result['repeats']} redraws of {M} months per budget (the old plan: the first "
        f"{result['old_repeats']} redraws). New: shares {result['shares']['new']} "
        f"(subnational tables one joint measurement), consistent tables by `postprocess.reconcile`; old: a third per "
        f"table, clamped at 0. Machine: {m['cpu']}, {m['cores']} cores, load {m['load_average']}; "
        f"commit {m['commit']}; wall {result['wall_s']:.0f} s.", "",
        "**Coverage** of the stated 95 % intervals (share of (redraw, figure) pairs holding the exact value, "
        f"± binomial standard error; target 95 ± {100 * COVERAGE_TOL:.0f} %; law: the coverage the noise law gives "
        "an interval of that half-width, exactly):", "",
        "| figure | figures per redraw | " + " | ".join(labels) + " |", "|---|---:|" + "---:|" * len(labels)]
    for key in budgets[0]["coverage"]:
        n = budgets[0]["coverage"][key]["n"] // budgets[0]["redraws"]
        lines.append(f"| {key} | {n:,} | " + " | ".join(_pct(b["coverage"][key]) for b in budgets) + " |")
    for key in budgets[0]["coverage_old"]:
        n = budgets[0]["coverage_old"][key]["n"] // budgets[0]["old_redraws"]
        lines.append(f"| old: clamped, symmetric bound of the noise sum: {key} | {n:,} | "
                     + " | ".join(_pct(b["coverage_old"][key], target=False) for b in budgets) + " |")
    lines += ["", "**Error** (mean absolute error, monthly; ± standard error):", "",
              "| figure | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]

    def cell(b, t):
        e = b["mae_per_cell"][t]
        return (f"new {e['new_consistent']['mae']:.3f} vs old {e['old_clamped']['mae']:.3f} "
                f"(ratio {e['ratio_new_old']:.2f}; raw measurement {e['new_measurement']['mae']:.3f})")
    for t in TABLES:
        lines.append(f"| MAE per cell, {t} | " + " | ".join(cell(b, t) for b in budgets) + " |")
    sub = [b["mae_per_cell"]["subnational"] for b in budgets]
    lines.append(f"| **MAE per subnational cell, new / old** (target ≤ {TARGET_MAE_RATIO}) | " + " | ".join(
        f"{e['new_consistent']:.3f} / {e['old_clamped']:.3f} = **{e['ratio_new_old']:.3f}** {_met(e['met'])}"
        for e in sub) + " |")

    def mg(e):
        return f"{e['mae']:.2f} ± {e['se']:.2f}" if e["se"] else f"{e['mae']:.2f} (exact)"
    first = budgets[0]["national_margins"]
    k, k_free = first["cells_per_margin"], first["cells_per_margin_breakdown_free"]
    rows = [(f"national total (monthly): ours, consistent `totals` ({k} international cells per margin), "
             "all months", "ours"),
            ("national total: ours, month 1", "ours_month1"),
            (f"national total: ours if released without breakdowns ({k_free} cells), month 1",
             "ours_breakdown_free_month1"),
            ("national total: old release (sum of clamped international cells)", "old_sum_of_clamped"),
            ("national total: old release without breakdowns", "old_breakdown_free_sum_of_clamped")]
    if "tumult_info" in result:
        n = result["tumult_info"]["repeats"]
        rows += [(f"national total: Tumult, international table without breakdowns, month 1 ({n} repetitions)",
                  "tumult_breakdown_free"),
                 (f"national total: Tumult, international table by sex x age band, month 1 ({n} repetitions)",
                  "tumult_breakdowns")]
    rows += [("national total: Tumult's noise law (exact), without breakdowns", "tumult_law_breakdown_free"),
             ("national total: Tumult's noise law (exact), by sex x age band", "tumult_law_breakdowns")]
    for name, key in rows:
        lines.append(f"| {name} | " + " | ".join(mg(b["national_margins"][key]) for b in budgets) + " |")
    ratios = [("ours (by sex x age) / Tumult by sex x age", "breakdowns", "breakdowns"),
              ("ours (by sex x age) / Tumult without breakdowns", "breakdowns", "breakdown_free"),
              ("ours without breakdowns / Tumult without breakdowns", "breakdown_free", "breakdown_free")]
    for source, what in (("tumult", "Tumult measured"), ("tumult_law", "Tumult's exact law")):
        for name, ours_tables, tables in ratios:
            key = f"ratio_ours_{ours_tables}_{source}_{tables}"
            if key not in first:
                continue
            lines.append(f"| **national-total MAE {name}** ({what}; target ≤ {TARGET_MARGIN_RATIO}) | " + " | ".join(
                f"**{b['national_margins'][key]['ratio']:.3f}**"
                + (f" ± {b['national_margins'][key]['se']:.3f}" if b['national_margins'][key]['se'] else "")
                + f" {_met(b['national_margins'][key]['met'])}" for b in budgets) + " |")
    if "tumult_info" not in result:
        lines.append(f"| Tumult measured | {result.get('tumult_missing', 'not run (--tumult-repeats 0)')} |")
    lines += ["", "**Bias** of sums of the consistent tables: mean over redraws of (estimate − truth) per monthly "
                  "cell summed, for the worst figure (± its standard error), net = mean over the figures, and how many "
                  f"figures are beyond ± {TARGET_BIAS} (target: none by more than 3 standard errors); single cells: "
                  "the mean over true-zero and over non-zero cells (target: each within ± "
                  f"{TARGET_BIAS}, up to 3 standard errors):", "",
              "| figure | monthly cells summed | figures | " + " | ".join(labels) + " | "
              + " | ".join(f"old (clamped), {lab}" for lab in labels) + " |",
              "|---|---:|---:|" + "---|" * (2 * len(labels))]

    def bias_cell(e: dict, old: bool = False) -> str:
        if "classes" in e:
            text = ", ".join(f"{name} {c['bias_per_cell']:+.3f}" + ("" if old else f" ± {c['se_per_cell']:.3f}")
                             for name, c in e["classes"].items())
            return text if old else f"{text} {_met(e['met'])}"
        text = f"worst {e['worst_bias_per_cell']:+.4f}" + ("" if old else f" ± {e['worst_se_per_cell']:.4f}")
        text += f", net {e['net_bias_per_cell']:+.4f}"
        if not old:
            text += (f", {e['figures_beyond_target']} beyond ±{TARGET_BIAS} "
                     f"({e['figures_beyond_target_by_3_se']} by > 3 SE) {_met(e['met'])}")
        return text
    for key, first in budgets[0]["bias"].items():
        lines.append(f"| {key} | {first['cells_summed']:,} | {first['figures']:,} | "
                     + " | ".join(bias_cell(b["bias"][key]) for b in budgets) + " | "
                     + " | ".join(bias_cell(b["bias_old"][key], old=True) for b in budgets) + " |")
    lines += ["", "Consistency step (`postprocess.reconcile`) wall time per release: " + "; ".join(
        f"{b['budget']}: monthly {1000 * b['timing']['consistency_monthly_release']['mean_s']:.0f} ms mean "
        f"(max {1000 * b['timing']['consistency_monthly_release']['max_s']:.0f} ms), annual "
        f"{1000 * b['timing']['consistency_annual']['mean_s']:.0f} ms" for b in budgets) + "."]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.release_quality", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300, help="redraws of the 12 months per budget")
    ap.add_argument("--changes", type=int, default=20_000, help="changes per month")
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "quality")
    ap.add_argument("--result", type=Path, default=None, help="write the JSON here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the markdown here")
    ap.add_argument("--tumult-repeats", type=int, default=30, help="0: no Tumult")
    ap.add_argument("--old-repeats", type=int, default=100,
                    help="redraws of the old plan (the first ones; at most --repeats)")
    ap.add_argument("--threads", type=int, default=2, help="threads drawing OpenDP noise")
    ap.add_argument("--subnational-share", type=float, default=None,
                    help="budget share of the joint subnational measurement (default: aggregate.flows.SHARES)")
    args = ap.parse_args(argv)
    result = measure(args.repeats, args.changes, args.months, args.out.resolve(), args.tumult_repeats,
                     args.old_repeats, args.threads, args.subnational_share)
    text = json.dumps(result, indent=2, default=str)
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(text + "\n")
    lines = markdown(result)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
