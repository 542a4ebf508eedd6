"""Accuracy of remittance releases against the synthetic truth (no Spark, no ledger).

    .venv/bin/python -m bench.remittance_accuracy [--subscribers 20000] [--months 3] [--runs 50] [--rho 0.5]

Generates a synthetic operator extract, reads its raw payments files, and for each month compares
(a) the truth: every corridor transfer aggregated with the release's core, without bounding or
clamping, with (b) N releases drawn in memory: the same core with the agreement's bounds, then the
OpenDP measurements that ``publish`` would use (``plan_noise`` + ``draw``, negatives set to 0),
then the cost ratios. Nothing is written to a ledger; sender numbers stay in memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mobility.aggregate import domains as D
from mobility.aggregate import remittances as R
from mobility.config import load_agreement
from mobility.privacy_budget.mechanisms import plan_noise
from mobility.reference import PACKAGE_DATA

CORRIDOR = ["sender_country", "receiver_country"]


def raw_transfers(folder: Path, time_zone: str) -> pd.DataFrame:
    frames = []
    for path in sorted((folder / "payments").glob("part-*.csv*")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        text = frame["txn_time"]
        aware = text.str.contains(r"(?:Z|[+-]\d\d:\d\d)$", regex=True)
        local = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        local[aware] = pd.to_datetime(text[aware], utc=True, format="ISO8601").dt.tz_convert(time_zone) \
            .dt.tz_localize(None)
        local[~aware] = pd.to_datetime(text[~aware], format="ISO8601")
        frames.append(pd.DataFrame({
            R.SENDER: frame["sender_msisdn"].str.replace(r"\D", "", regex=True).str[-10:],  # one spelling per SIM
            "txn_time": local, "date": local.dt.date, "month": local.dt.strftime("%Y-%m"),
            "sender_country": frame["sender_country"], "receiver_country": frame["receiver_country"],
            "channel": frame["channel"], "amount": frame["amount"].astype(float), "currency": frame["currency"],
            "fee": frame["fee"].astype(float),
            "fx_margin": pd.to_numeric(frame["fx_margin"].replace("", np.nan))}))
    return pd.concat(frames, ignore_index=True)


def errors(noisy: pd.Series, truth: pd.Series) -> tuple[float, float]:
    """(mean absolute error, mean relative error over cells with a true value >= 1)."""
    diff = (noisy - truth).abs()
    some = truth >= 1
    return float(diff.mean()), float((diff[some] / truth[some]).mean()) if some.any() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rho", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    from mobility.synth import generate

    agreement = load_agreement(PACKAGE_DATA / "demo-phl-2026.yaml")
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="remit-bench-"))
    generate(work, subscribers=args.subscribers, months=args.months, start="2024-06", home_country="PHL",
             seed=args.seed, fault_rate=0.0, events_per_day=0.2)
    transfers = raw_transfers(work, agreement.time_zone)
    fx = R.load_fx()
    bounds = R.Bounds.of(agreement.remittance_bounds)
    corridors = R.corridor_list(agreement.corridors)
    plan = plan_noise(shares=R.SHARES, sensitivity=bounds.max_transfers, delta=agreement.budget.delta,
                      rho=args.rho, sensitivities=bounds.sensitivities())
    error_bounds = {n: t.error_bound_95 for n, t in plan.tables.items()}
    pairs = set(corridors)
    results = []
    for month in sorted(transfers["month"].unique()):
        on_corridor = np.array([p in pairs for p in zip(transfers["sender_country"], transfers["receiver_country"])])
        chunk = transfers[(transfers["month"] == month).to_numpy() & on_corridor]
        rates, missing = fx.rates_for(set(zip(chunk["currency"], chunk["date"])))
        assert not missing, missing
        per_sender = chunk.groupby(R.SENDER).size()
        spec = R.RemittanceSpec(corridors, month, (), D.AGE_BANDS, bounds)
        truth = R.exact_tables(chunk, R.RemittanceSpec(corridors, month, (), D.AGE_BANDS, None), rates)
        exact = R.exact_tables(chunk, spec, rates)
        cost_true = truth[R.COST][D.COUNT] / R.BP_PER_PCT / truth[R.TRANSFERS][D.COUNT].replace(0, np.nan)
        stats = {k: [] for k in ("cell_count", "corridor_count", "cell_usd", "corridor_usd", "cost_pp",
                                 "cost_given", "cost_covered")}
        for _ in range(args.runs):
            noisy = {}
            for name, frame in exact.items():
                drawn = plan.tables[name].draw(frame[D.COUNT].tolist())
                noisy[name] = frame.assign(**{D.COUNT: [max(v, 0) for v in drawn]})
            ratios = R.cost_ratios(noisy, spec, error_bounds)
            overall = ratios[ratios["amount_band"] == R.ALL_BAND].reset_index(drop=True)
            for what, name in (("count", R.TRANSFERS), ("usd", R.VOLUME)):
                t, n = truth[name][D.COUNT], noisy[name][D.COUNT].astype(float)
                stats[f"cell_{what}"].append(errors(n, t))
                tc = truth[name].groupby(CORRIDOR)[D.COUNT].sum()
                nc = noisy[name].assign(**{D.COUNT: n}).groupby(CORRIDOR)[D.COUNT].sum()
                stats[f"corridor_{what}"].append(errors(nc, tc))
            given = overall["mean_cost_pct"].notna() & cost_true.notna()
            stats["cost_pp"].append(float((overall["mean_cost_pct"][given] - cost_true[given]).abs().mean())
                                    if given.any() else float("nan"))
            stats["cost_given"].append(float(given.sum()))
            inside = (overall["cost_pct_low"] <= cost_true + 1e-9) & (cost_true <= overall["cost_pct_high"] + 1e-9)
            stats["cost_covered"].append(float(inside[cost_true.notna()].mean()))
        mean = lambda xs, i=None: float(np.nanmean([x[i] if i is not None else x for x in xs]))  # noqa: E731
        results.append({
            "month": month, "transfers": int(len(chunk)), "senders": int(len(per_sender)),
            "senders_over_k": int((per_sender > bounds.max_transfers).sum()),
            "bounding_loss_transfers": int(truth[R.TRANSFERS][D.COUNT].sum() - exact[R.TRANSFERS][D.COUNT].sum()),
            "bounding_loss_usd": round(float(truth[R.VOLUME][D.COUNT].sum() - exact[R.VOLUME][D.COUNT].sum()), 0),
            "true_volume_usd": round(float(truth[R.VOLUME][D.COUNT].sum()), 0),
            "cells_with_transfers": int((truth[R.TRANSFERS][D.COUNT] > 0).sum()), "cells": len(spec.domain()),
            "cell_count_mae": mean(stats["cell_count"], 0), "cell_count_mre": mean(stats["cell_count"], 1),
            "corridor_count_mae": mean(stats["corridor_count"], 0),
            "corridor_count_mre": mean(stats["corridor_count"], 1),
            "cell_usd_mae": mean(stats["cell_usd"], 0), "cell_usd_mre": mean(stats["cell_usd"], 1),
            "corridor_usd_mae": mean(stats["corridor_usd"], 0), "corridor_usd_mre": mean(stats["corridor_usd"], 1),
            "cost_pp_mae": mean(stats["cost_pp"]), "cost_cells_with_estimate": mean(stats["cost_given"]),
            "cost_interval_coverage": mean(stats["cost_covered"]),
            "true_mean_cost_pct": round(float(truth[R.COST][D.COUNT].sum() / R.BP_PER_PCT
                                              / truth[R.TRANSFERS][D.COUNT].sum()), 3),
        })
    report = {"machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
              "date": dt.date.today().isoformat(), "subscribers": args.subscribers, "months": args.months,
              "runs": args.runs, "rho": args.rho, "bounds": bounds.describe(),
              "error_bounds_95": error_bounds, "seconds": round(time.time() - started, 1), "months_detail": results}
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
