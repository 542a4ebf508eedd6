"""Accuracy against a peer: the flows release query through Tumult Analytics and through this pipeline.

``python -m bench.peer_accuracy [--repeats 300] [--changes 20000] [--out bench/out/peer]``

One crossing month of long-term residence changes for the Philippines (synthetic, fixed seed; at
most one change per pseudonym, as the 12/16-month rule produces), the three tables of a flows
release (international pairs; emigrants by origin H3 cell; immigrants by destination cell; every
public domain cell, zeros included), one budget split equally across the three tables:

* **ours**: the exact tables mapped onto the domains by the pipeline's own
  ``aggregate.flows.tables_from_counts``, then the noise layer of ``privacy_budget.boundary.publish``
  (``mechanisms.plan_noise``: OpenDP discrete Laplace for epsilon, discrete Gaussian for rho,
  sensitivity ``MAX_CONTRIBUTIONS``) redrawn ``repeats`` times in memory and clamped at zero as
  ``publish`` does. The ledger is not written: these draws are measurements, not releases.
* **Tumult Analytics**: the same rows and domains as Parquet, ``AddRowsWithID("pseudonym")``,
  ``MaxRowsPerID(1)`` per table, the same per-table budget, in ``.venv-tumult`` through
  ``bench.tumult_worker`` (see there for how repetitions are drawn).

Mean absolute error over every cell and repetition, per table and overall, and the ratio
ours / Tumult. Without ``.venv-tumult`` it says how to create it (``make bench-tumult-env``) and
reports only our side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mobility.aggregate import domains as D
from mobility.aggregate.flows import (
    EMIGRANTS,
    IMMIGRANTS,
    INTERNATIONAL,
    MAX_CONTRIBUTIONS,
    FlowSpec,
    tables_from_counts,
)
from mobility.config import BudgetCaps
from mobility.privacy_budget.mechanisms import plan_noise
from mobility.residence.rules import ARRIVAL, DEPARTURE, KIND_LONG_TERM

ROOT = Path(__file__).resolve().parents[1]
TUMULT_PYTHON = ROOT / ".venv-tumult" / "bin" / "python"
HOME = "PHL"
COUNTRIES = ("PHL", "SAU", "ARE", "QAT", "KWT", "HKG", "SGP", "MYS", "JPN", "USA")  # the demo agreement's list
PERIOD = "2025-06"
RESOLUTION = 5  # ResidenceParams().home_cell_resolution: the release's cell resolution
# Destination weights of departures (and origins of arrivals); CAN/ITA/GBR fall into OTHER.
PARTNERS = {"SAU": 25, "ARE": 20, "QAT": 8, "KWT": 7, "HKG": 8, "SGP": 7, "MYS": 5, "JPN": 6, "USA": 8,
            "CAN": 3, "ITA": 2, "GBR": 1}
DEPARTURE_SHARE = 0.7
NO_CELL_SHARE = 0.1  # changes without a usable home cell (roaming-only evidence): the UNKNOWN cell
BUDGETS = [{"label": "epsilon = 1 (discrete Laplace)", "kind": "epsilon", "value": 1.0},
           {"label": "rho = 0.5 (discrete Gaussian)", "kind": "rho", "value": 0.5}]
TABLE_QUERIES = {  # Tumult side: which rows each table counts, on which key columns
    INTERNATIONAL: {"filter": None, "keys": [D.FROM, D.TO]},
    EMIGRANTS: {"filter": f"direction = '{DEPARTURE}'", "keys": [D.ORIGIN_CELL]},
    IMMIGRANTS: {"filter": f"direction = '{ARRIVAL}'", "keys": [D.DESTINATION_CELL]},
}


def synthetic_changes(n: int, cells: list[str], seed: int = 20261129) -> pd.DataFrame:
    """Residence changes of one month in the layout of ``office/residence_changes``.

    numpy draws the fixed *data* only (bench code, not the pipeline); all noise comes from OpenDP
    or Tumult. Home cells follow a Zipf-like weight over a shuffled cell list, so a few cells are
    large and most are zero or small, as in a real country.
    """
    rng = np.random.default_rng(seed)
    partners = list(PARTNERS)
    weights = np.array(list(PARTNERS.values()), dtype=float)
    order = rng.permutation(len(cells))
    cell_w = 1.0 / (1 + np.arange(len(cells))) ** 1.1
    departure = rng.random(n) < DEPARTURE_SHARE
    partner = rng.choice(partners, size=n, p=weights / weights.sum())
    cell = np.array(cells, dtype=object)[order][rng.choice(len(cells), size=n, p=cell_w / cell_w.sum())]
    cell[rng.random(n) < NO_CELL_SHARE] = None
    day = rng.integers(1, 31, size=n)
    return pd.DataFrame({
        "pseudonym": [f"{i:08x}" for i in rng.permutation(n * 4)[:n]],
        "from_country": np.where(departure, HOME, partner), "to_country": np.where(departure, partner, HOME),
        "crossing_date": pd.to_datetime([f"{PERIOD}-{d:02d}" for d in day]).date,
        "kind": KIND_LONG_TERM, "direction": np.where(departure, DEPARTURE, ARRIVAL), "h3_cell": cell,
    })


def exact(changes: pd.DataFrame, spec: FlowSpec) -> dict[str, pd.DataFrame]:
    """The pipeline's exact tables: group counts (each pseudonym has one change, so bounding is a
    no-op here) mapped onto every public domain cell by ``tables_from_counts``."""
    keys = ["direction", "from_country", "to_country", "h3_cell"]
    counts = changes.groupby(keys, dropna=False).size().rename(D.COUNT).reset_index()
    return tables_from_counts(counts, spec)


def ours(truth: dict[str, pd.DataFrame], repeats: int) -> list[dict]:
    """MAE of the publish noise layer, before and after the boundary's clamping at zero."""
    delta = BudgetCaps.model_fields['delta'].default
    out = []
    for budget in BUDGETS:
        plan = plan_noise(shares={t: 1 / 3 for t in truth}, sensitivity=MAX_CONTRIBUTIONS, delta=delta,
                          **{budget["kind"]: budget["value"]})
        started = time.perf_counter()
        for table, frame in truth.items():
            counts = frame[D.COUNT].to_numpy()
            raw = np.array([plan.tables[table].draw(counts) for _ in range(repeats)])
            err, clamped = np.abs(raw - counts), np.abs(np.maximum(raw, 0) - counts)
            out.append({"budget": budget["label"], "table": table, "cells": len(counts),
                        "scale": round(plan.tables[table].scale, 4), "draws": int(err.size),
                        "mae": float(err.mean()), "mae_se": float(err.std() / np.sqrt(err.size)),
                        "mae_clamped": float(clamped.mean())})
        out[-1]["seconds_all_tables"] = round(time.perf_counter() - started, 1)
    return out


def tumult_inputs(folder: Path, changes: pd.DataFrame, spec: FlowSpec, truth: dict, repeats: int,
                  mode: str) -> None:
    """The same rows with keys already in public values, the domains, and the query parameters."""
    folder.mkdir(parents=True, exist_ok=True)
    known = set(spec.cells)
    cell = [c if c in known else D.UNKNOWN for c in changes["h3_cell"]]
    dep = changes["direction"] == DEPARTURE
    frame = pd.DataFrame({
        "pseudonym": changes["pseudonym"], "direction": changes["direction"],
        D.FROM: [D.country_value(c, spec.countries) for c in changes["from_country"]],
        D.TO: [D.country_value(c, spec.countries) for c in changes["to_country"]],
        D.ORIGIN_CELL: np.where(dep, cell, ""), D.DESTINATION_CELL: np.where(~dep, cell, "")})
    frame.to_parquet(folder / "changes.parquet", index=False)
    for table, t in truth.items():
        t.drop(columns=D.COUNT).to_parquet(folder / f"domain-{table}.parquet", index=False)
    (folder / "params.json").write_text(json.dumps({
        "budgets": BUDGETS, "repeats": repeats, "mode": mode, "rows_per_id": MAX_CONTRIBUTIONS,
        "shares": {t: 1 / 3 for t in truth}, "tables": TABLE_QUERIES}, indent=2))


def tumult(folder: Path, truth: dict[str, pd.DataFrame], log: Path) -> tuple[list[dict], dict]:
    out_file = folder / "tumult-answers.parquet"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_HOME", "VIRTUAL_ENV"))}
    env["PYSPARK_PYTHON"] = str(TUMULT_PYTHON)
    with open(log, "w") as fh:
        done = subprocess.run([str(TUMULT_PYTHON), "-m", "bench.tumult_worker", "--in", str(folder),
                               "--out", str(out_file)], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"Tumult worker failed (exit {done.returncode}); last lines of {log}:\n{tail}")
    info = json.loads(out_file.with_suffix(".json").read_text())
    answers = pd.read_parquet(out_file)
    rows = []
    for budget in BUDGETS:
        for table, frame in truth.items():
            keys = TABLE_QUERIES[table]["keys"]
            got = answers[(answers["budget"] == budget["label"]) & (answers["table"] == table)]
            merged = got[[*keys, "rep", "count"]].merge(frame.rename(columns={D.COUNT: "truth"}), on=keys,
                                                        how="left", validate="many_to_one")
            expected = len(frame) * info["repeats"]
            if len(merged) != expected or merged["truth"].isna().any():
                raise RuntimeError(f"Tumult returned {len(merged)} answers for {table}, expected {expected} "
                                   "on the same domain")
            err = (merged["count"] - merged["truth"]).abs()
            clamped = (merged["count"].clip(lower=0) - merged["truth"]).abs()
            rows.append({"budget": budget["label"], "table": table, "cells": len(frame), "draws": len(err),
                         "mae": float(err.mean()), "mae_se": float(err.std() / np.sqrt(len(err))),
                         "mae_clamped": float(clamped.mean())})
    return rows, info


def overall(rows: list[dict], label: str, column: str) -> float:
    """MAE over every cell of the three tables (weighted by cells)."""
    sel = [r for r in rows if r["budget"] == label]
    return sum(r[column] * r["cells"] for r in sel) / sum(r["cells"] for r in sel)


def overall_se(rows: list[dict], label: str) -> float:
    """Standard error of the cell-weighted MAE (tables drawn independently)."""
    sel = [r for r in rows if r["budget"] == label]
    total = sum(r["cells"] for r in sel)
    return float(np.sqrt(sum((r["cells"] / total * r["mae_se"]) ** 2 for r in sel)))


def measure(repeats: int, n_changes: int, out: Path, mode: str = "replicated", check_separate: int = 0,
            tumult_repeats: int | None = None) -> dict:
    cells = D.cell_domain(HOME, RESOLUTION)[:-1]
    spec = FlowSpec(home=HOME, countries=COUNTRIES, period=PERIOD, cells=tuple(cells))
    changes = synthetic_changes(n_changes, cells)
    truth = exact(changes, spec)
    result: dict = {"period": PERIOD, "changes": n_changes, "repeats": repeats,
                    "cells": {t: len(f) for t, f in truth.items()},
                    "nonzero_cells": {t: int((f[D.COUNT] > 0).sum()) for t, f in truth.items()},
                    "ours": ours(truth, repeats)}
    if not TUMULT_PYTHON.is_file():
        result["tumult"] = None
        result["tumult_missing"] = (f"{TUMULT_PYTHON} not found: create it with `make bench-tumult-env` "
                                    "(Python 3.11, tmlt.analytics 0.21, pyspark 3.5, pandas 1.5)")
        print(f"[peer] {result['tumult_missing']}", file=sys.stderr)
        return result
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tumult_inputs(out / "tumult-in", changes, spec, truth, tumult_repeats or repeats, mode)
    result["tumult"], result["tumult_info"] = tumult(out / "tumult-in", truth, out / "tumult.log")
    result["tumult_s"] = round(time.perf_counter() - started, 1)
    if check_separate:
        tumult_inputs(out / "tumult-sep", changes, spec, truth, check_separate, "separate")
        result["tumult_separate"], result["tumult_separate_info"] = tumult(out / "tumult-sep", truth,
                                                                            out / "tumult-sep.log")
    result["summary"] = []
    for b in BUDGETS:
        lab = b["label"]
        row = {"budget": lab,
               "ours_mae": overall(result["ours"], lab, "mae"),
               "ours_mae_clamped": overall(result["ours"], lab, "mae_clamped"),
               "tumult_mae": overall(result["tumult"], lab, "mae"),
               "tumult_mae_clamped": overall(result["tumult"], lab, "mae_clamped"),
               "ours_mae_se": overall_se(result["ours"], lab), "tumult_mae_se": overall_se(result["tumult"], lab)}
        row["ratio_published"] = row["ours_mae_clamped"] / row["tumult_mae"]  # each as it publishes by default
        row["ratio_raw"] = row["ours_mae"] / row["tumult_mae"]  # the noise alone
        row["ratio_both_clamped"] = row["ours_mae_clamped"] / row["tumult_mae_clamped"]
        if check_separate:
            row["tumult_separate_mae"] = overall(result["tumult_separate"], lab, "mae")
        result["summary"].append(row)
    return result


def markdown(result: dict) -> list[str]:
    lines = [f"Flows release of crossing month {result['period']}: {result['changes']:,} synthetic long-term changes "
             f"(at most one per pseudonym); cells per table {result['cells']} (non-zero {result['nonzero_cells']}); "
             "each table gets a third of the budget.", ""]
    if not result.get("tumult"):
        return lines + [f"Tumult Analytics not measured: {result.get('tumult_missing')}"]
    info = result["tumult_info"]
    lines += [f"Tumult Analytics {info['tmlt_analytics']} (pyspark {info['pyspark']}, pandas {info['pandas']}), "
              f"{info['repeats']} repetitions drawn in mode `{info['mode']}`; ours {result['repeats']} repetitions. "
              "± is the standard error of the mean absolute error.", "",
              "| budget | ours MAE (raw noise) | ours MAE as published (clamped at 0) | Tumult MAE (as returned) "
              "| Tumult MAE clamped at 0 | **ratio ours published / Tumult** | ratio raw / raw "
              "| ratio both clamped |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["summary"]:
        lines.append(f"| {r['budget']} | {r['ours_mae']:.3f} ± {r['ours_mae_se']:.3f} | {r['ours_mae_clamped']:.3f} | "
                     f"{r['tumult_mae']:.3f} ± {r['tumult_mae_se']:.3f} | "
                     f"{r['tumult_mae_clamped']:.3f} | **{r['ratio_published']:.3f}** | {r['ratio_raw']:.3f} | "
                     f"{r['ratio_both_clamped']:.3f} |")
    lines += ["", "Per table (MAE raw / clamped):", "", "| budget | table | cells | ours | Tumult |",
              "|---|---|---:|---|---|"]
    for o, t in zip(result["ours"], result["tumult"]):
        lines.append(f"| {o['budget']} | {o['table']} | {o['cells']:,} | {o['mae']:.3f} / {o['mae_clamped']:.3f} | "
                     f"{t['mae']:.3f} / {t['mae_clamped']:.3f} |")
    if result.get("tumult_separate"):
        n = result["tumult_separate_info"]["repeats"]
        lines += ["", f"Check of the replicated repetitions against {n} separate `Session.evaluate` calls per table: "
                      + "; ".join(f"{r['budget']}: MAE {r['tumult_separate_mae']:.3f} (separate) vs "
                                  f"{r['tumult_mae']:.3f} (replicated)" for r in result["summary"]) + "."]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.peer_accuracy", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--tumult-repeats", type=int, default=None,
                    help="Tumult repetitions if fewer than --repeats (its noise is slow on a busy machine)")
    ap.add_argument("--mode", choices=("replicated", "separate"), default="replicated")
    ap.add_argument("--check-separate", type=int, default=10,
                    help="also draw this many Tumult repetitions one evaluate at a time (0: no check)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "peer")
    ap.add_argument("--result", type=Path, default=None, help="write the JSON here")
    args = ap.parse_args(argv)
    result = measure(args.repeats, args.changes, args.out.resolve(), args.mode, args.check_separate,
                     args.tumult_repeats)
    text = json.dumps(result, indent=2, default=str)
    if args.result:
        args.result.write_text(text + "\n")
    print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
