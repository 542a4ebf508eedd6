"""Benchmark harness: ``python -m bench.run [--sizes 1m,10m] [--out bench/out]``.

For each size: generate (or reuse) the synthetic extract, run the Spark anonymization job in a
fresh process, run the DuckDB floor on the same files with the same key, check that both wrote
the same events, and report wall time, CPU time, events/s, peak memory and the Spark/DuckDB
ratio; then the scaling exponent between the smallest and largest size, and residence inference
throughput in subjects/s. Results go to ``OUT/results-<time>.json`` and ``OUT/results.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import secrets
import shutil
from pathlib import Path

import yaml

from bench import data, machine, report
from bench.monitor import run_child

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "MOBILITY_KEY_BENCH"


def write_agreement(out: Path) -> Path:
    """The demo agreement with a benchmark key id, a key from the environment and a 20 % gate."""
    base = yaml.safe_load((ROOT / "src/mobility/data/demo-phl-2026.yaml").read_text())
    base.update({"agreement_id": "bench-phl", "key": {"env": KEY_ENV, "key_id": "k-bench"},
                 "max_invalid_share": 0.2})
    path = out / "agreements" / "bench-phl.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base))
    return path


def compare_outputs(spark_events: Path, duck_events: Path) -> dict:
    """Both engines' accepted events, row for row on the columns both derive from the input."""
    import duckdb

    cols = "pseudonym, event_hour, event_type, h3_cell, country"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    def files(folder: Path) -> str:  # data files only: a fresh lake's Delta log has no removed files
        return "[" + ", ".join(f"'{p}'" for p in sorted(folder.rglob("*.parquet")) if "_delta_log" not in p.parts) + "]"

    s = f"read_parquet({files(spark_events)}, hive_partitioning = false)"
    d = f"read_parquet({files(duck_events)}, hive_partitioning = false)"
    one = lambda q: con.execute(q).fetchone()[0]  # noqa: E731
    return {
        "spark_rows": one(f"SELECT count(*) FROM {s}"), "duckdb_rows": one(f"SELECT count(*) FROM {d}"),
        "spark_pseudonyms": one(f"SELECT count(DISTINCT pseudonym) FROM {s}"),
        "duckdb_pseudonyms": one(f"SELECT count(DISTINCT pseudonym) FROM {d}"),
        "only_spark_rows": one(f"SELECT count(*) FROM (SELECT {cols} FROM {s} EXCEPT ALL SELECT {cols} FROM {d})"),
        "only_duckdb_rows": one(f"SELECT count(*) FROM (SELECT {cols} FROM {d} EXCEPT ALL SELECT {cols} FROM {s})"),
    }


def bench_size(out: Path, size: str, agreement: Path, env: dict, profile: bool, keep: bool) -> dict:
    info = data.ensure(out, size)
    inputs = data.input_dir(out, size)
    lake, duck_out = out / "work" / f"lake-{size}", out / "work" / f"duckdb-{size}"
    shutil.rmtree(lake, ignore_errors=True)  # a fresh lake: a rerun of the same files would be skipped
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"[bench] {size}: Spark anonymization of {info['cdr_rows']:,} CDR rows", flush=True)
    common = ["--agreement", str(agreement), "--input", str(inputs), "--lake", str(lake)]
    spark = run_child("bench.spark_ingest", common, out / "work" / f"spark-{size}.json",
                      logs / f"spark-{size}.log", env)
    print(f"[bench] {size}: Spark job {spark['job_s']} s; DuckDB floor", flush=True)
    duck = run_child("bench.duckdb_ingest",
                     ["--agreement", str(agreement), "--input", str(inputs), "--out", str(duck_out)],
                     out / "work" / f"duckdb-{size}.json", logs / f"duckdb-{size}.log", env)
    print(f"[bench] {size}: DuckDB {duck['total_s']} s; comparing outputs", flush=True)
    same = compare_outputs(lake / "office" / "events", duck_out)
    if profile:
        print(f"[bench] {size}: timing parts of the Spark pipeline", flush=True)
        spark["profile"] = run_child("bench.spark_ingest", [*common, "--profile-only"],
                                     out / "work" / f"profile-{size}.json", logs / f"profile-{size}.log",
                                     env)["profile"]
    if not keep:
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(duck_out, ignore_errors=True)
    rows = info["cdr_rows"]
    return {"size": size, "data": info, "cdr_rows": rows, "spark": spark, "duckdb": duck, "outputs": same,
            "spark_events_per_s": round(rows / spark["job_s"]),
            "duckdb_events_per_s": round(rows / duck["total_s"]),
            "ratio_spark_duckdb": round(spark["job_s"] / duck["total_s"], 2),
            "ratio_cpu": round(spark["job_cpu_s"] / max(duck["job_cpu_s"], 0.1), 2)}


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    """b in t ~ n^b from two sizes: 1 is linear, below 1 means fixed costs still weigh."""
    return round(math.log(t2 / t1) / math.log(n2 / n1), 3)


def bench_residence(out: Path, estimate: int, target: int, budget_s: float, months: int) -> dict:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = []

    def one(n: int) -> dict:
        print(f"[bench] residence: {n:,} subjects over {months} months", flush=True)
        r = run_child("bench.residence_bench", ["--subjects", str(n), "--months", str(months),
                                                "--out", str(out / "work" / f"residence-{n}")],
                      out / "work" / f"residence-{n}.json", logs / f"residence-{n}.log")
        runs.append(r)
        return r

    first = one(estimate)
    projected = target / first["subjects_per_s"]
    decision = {"target_subjects": target, "budget_s": budget_s, "projected_target_s": round(projected)}
    if target > estimate and projected <= budget_s:
        one(target)
        decision["ran_target"] = True
    else:
        decision["ran_target"] = target <= estimate
    return {"runs": runs, **decision}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1m,10m", help=f"comma-separated, from {', '.join(data.SIZES)}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--profile-size", default=None,
                    help="size whose Spark run also times pipeline parts (default: the smallest; 'none')")
    ap.add_argument("--residence-subjects", type=int, default=20_000, help="first (estimating) residence run")
    ap.add_argument("--residence-target", type=int, default=200_000)
    ap.add_argument("--residence-budget-s", type=float, default=900,
                    help="run the target size only if the first run projects it under this many seconds")
    ap.add_argument("--residence-months", type=int, default=24)
    ap.add_argument("--skip-anonymize", action="store_true")
    ap.add_argument("--skip-residence", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the lakes and Parquet outputs under OUT/work")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        data.parameters(s)  # fail early on an unknown size
    started = dt.datetime.now(dt.UTC)
    results: dict = {"started": started.isoformat(timespec="seconds"), "machine": machine.describe(),
                     "sizes": [], "scaling": {}}
    if not args.skip_anonymize:
        # A fresh random key per harness run: synthetic data, and no key is written anywhere.
        env = {KEY_ENV: os.environ.get(KEY_ENV) or secrets.token_hex(32)}
        agreement = write_agreement(out)
        profile_size = args.profile_size or min(sizes, key=lambda s: data.parameters(s)["subscribers"]
                                                 * data.parameters(s)["months"])
        for size in sizes:
            results["sizes"].append(bench_size(out, size, agreement, env, size == profile_size, args.keep))
        if len(results["sizes"]) >= 2:
            a, b = results["sizes"][0], results["sizes"][-1]
            n1, n2 = a["cdr_rows"], b["cdr_rows"]
            results["scaling"] = {
                "from": a["size"], "to": b["size"],
                "spark_job": exponent(a["spark"]["job_s"], b["spark"]["job_s"], n1, n2),
                "spark_cpu": exponent(a["spark"]["job_cpu_s"], b["spark"]["job_cpu_s"], n1, n2),
                "duckdb": exponent(a["duckdb"]["total_s"], b["duckdb"]["total_s"], n1, n2),
                "duckdb_cpu": exponent(a["duckdb"]["job_cpu_s"], b["duckdb"]["job_cpu_s"], n1, n2)}
    if not args.skip_residence:
        results["residence"] = bench_residence(out, args.residence_subjects, args.residence_target,
                                               args.residence_budget_s, args.residence_months)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"results-{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = report.markdown(results)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
