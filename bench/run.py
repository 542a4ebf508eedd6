"""Benchmark harness: ``python -m bench.run [--sizes 1m,10m] [--out bench/out] [--skip-STAGE ...]``.

Stages, each per size on the same fixed synthetic extract (24 months), each in fresh processes
whose wall time, CPU seconds and peak memory are measured:

1. anonymize: the Spark job, and the DuckDB ingest floor on the same files with the same key
   (outputs compared row for row); the lake is kept under ``OUT/work/lake-SIZE``;
2. residence: the Spark residence job on that lake, and the DuckDB daily-presence floor on the
   same office-zone events (compared row for row with the job's presence table);
3. release: a flows release through ``publish`` from the job's residence changes;
4. peer: the flows query's accuracy against Tumult Analytics (``bench.peer_accuracy``);
and, on request (``--rule-scale``), the 12/16 rule on a synthetic presence table of 200,000 subjects,
and (``--presence``) the presence phase alone (daily presence and home cells, issue #20) for each
implementation named in ``--presence-impls``, each followed by the DuckDB floor of both tables on the
same events, compared row for row with what that implementation wrote.

The scaling exponent of each stage between the smallest and largest size; the machine and load
with every run. ``OUT/latest.json`` keeps the latest run of each stage, so one stage can be re-run
alone (``--skip-...``) and merged; ``--write-benchmarks`` rewrites the generated blocks of
BENCHMARKS.md from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import secrets
import shutil
import statistics
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


def anonymize_size(out: Path, size: str, agreement: Path, env: dict, profile: bool, keep: bool,
                   pairs: int = 1) -> dict:
    """Spark anonymization and the DuckDB ingest floor on the same files; leaves the lake for later stages.

    With ``pairs`` > 1 the two engines run alternately that many times. Each engine's headline run
    is its fastest, and every pair is kept: on a shared machine the slower runs mostly measure the
    neighbours (the same Python loop has taken 2.9 to 4.1 CPU-s within minutes here)."""
    info = data.ensure(out, size)
    inputs = data.input_dir(out, size)
    lake, duck_out = lake_dir(out, size), out / "work" / f"duckdb-{size}"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    common = ["--agreement", str(agreement), "--input", str(inputs), "--lake", str(lake)]
    runs = []
    for i in range(1, pairs + 1):
        of = f" (pair {i} of {pairs})" if pairs > 1 else ""
        shutil.rmtree(lake, ignore_errors=True)  # a fresh lake: a rerun of the same files would be skipped
        print(f"[bench] {size}: Spark anonymization of {info['cdr_rows']:,} CDR rows{of}", flush=True)
        spark = run_child("bench.spark_ingest", common, out / "work" / f"spark-{size}.json",
                          logs / f"spark-{size}.log", env)
        print(f"[bench] {size}: Spark job {spark['job_s']} s; DuckDB floor{of}", flush=True)
        duck = run_child("bench.duckdb_ingest",
                         ["--agreement", str(agreement), "--input", str(inputs), "--out", str(duck_out)],
                         out / "work" / f"duckdb-{size}.json", logs / f"duckdb-{size}.log", env)
        print(f"[bench] {size}: DuckDB {duck['total_s']} s", flush=True)
        runs.append((spark, duck))
    print(f"[bench] {size}: comparing outputs", flush=True)
    same = compare_outputs(lake / "office" / "events", duck_out)  # the last pair's
    spark = min((s for s, _ in runs), key=lambda r: r["job_s"])
    duck = min((d for _, d in runs), key=lambda r: r["total_s"])
    if profile:
        print(f"[bench] {size}: timing parts of the Spark pipeline", flush=True)
        spark["profile"] = run_child("bench.spark_ingest", [*common, "--profile-only"],
                                     out / "work" / f"profile-{size}.json", logs / f"profile-{size}.log",
                                     env)["profile"]
    if not keep:
        shutil.rmtree(duck_out, ignore_errors=True)
    rows = info["cdr_rows"]
    entry = {"size": size, "data": info, "cdr_rows": rows, "spark": spark, "duckdb": duck, "outputs": same,
             "spark_events_per_s": round(rows / spark["job_s"]),
             "duckdb_events_per_s": round(rows / duck["total_s"]),
             "ratio_spark_duckdb": round(spark["job_s"] / duck["total_s"], 2),
             "ratio_cpu": round(spark["job_cpu_s"] / max(duck["job_cpu_s"], 0.1), 2)}
    if pairs > 1:
        entry["pairs"] = [{"spark_s": s["job_s"], "spark_cpu_s": s["job_cpu_s"], "duckdb_s": d["total_s"],
                           "duckdb_cpu_s": d["job_cpu_s"], "ratio": round(s["job_s"] / d["total_s"], 2),
                           "ratio_cpu": round(s["job_cpu_s"] / max(d["job_cpu_s"], 0.1), 2),
                           "load_before": s["load_before"][0]} for s, d in runs]
        entry["ratio_median_pair"] = round(statistics.median(r["ratio"] for r in entry["pairs"]), 2)
    return entry


def lake_dir(out: Path, size: str) -> Path:
    return out / "work" / f"lake-{size}"


def _lake_ready(out: Path, size: str) -> Path:
    lake = lake_dir(out, size)
    if not (lake / "office" / "events" / "_delta_log").is_dir():
        raise SystemExit(f"no anonymized lake for size {size} at {lake}: run the anonymize stage first "
                         f"(python -m bench.run --sizes {size} without --skip-anonymize)")
    return lake


def _phase(entry: dict, prefix: str) -> dict:
    hit = [p for p in entry["phases"] if p["phase"].startswith(prefix)]
    return hit[0] if hit else {"seconds": None, "cpu_s": None}


def residence_size(out: Path, size: str, agreement: Path, keep: bool) -> dict:
    """The residence job on the anonymized lake, and the DuckDB daily-presence floor on the same events."""
    info = data.ensure(out, size)
    lake = _lake_ready(out, size)
    for stale in ("presence", "home_cells", "residence_changes", "residence_manifests"):
        shutil.rmtree(lake / "office" / stale, ignore_errors=True)
    logs = out / "logs"
    print(f"[bench] {size}: Spark residence job", flush=True)
    spark = run_child("bench.spark_stages", ["--stage", "residence", "--agreement", str(agreement),
                                              "--lake", str(lake)],
                      out / "work" / f"residence-{size}.json", logs / f"residence-{size}.log")
    print(f"[bench] {size}: residence {spark['job_s']} s; DuckDB daily presence", flush=True)
    duck_file = out / "work" / f"duckdb-presence-{size}.parquet"
    duck = run_child("bench.duckdb_presence", ["--agreement", str(agreement), "--lake", str(lake),
                                               "--out", str(duck_file)],
                     out / "work" / f"duckdb-presence-{size}.json", logs / f"duckdb-presence-{size}.log")
    if not keep:
        duck_file.unlink(missing_ok=True)
    presence = _phase(spark, "daily presence")
    rows = info["cdr_rows"]
    return {"size": size, "cdr_rows": rows, "spark": spark, "duckdb": duck,
            "presence_s": presence["seconds"], "presence_cpu_s": presence["cpu_s"],
            "spark_events_per_s": round(rows / spark["job_s"]),
            "presence_events_per_s": round(rows / presence["seconds"]) if presence["seconds"] else None,
            "duckdb_events_per_s": round(rows / duck["total_s"]),
            "ratio_presence": round(presence["seconds"] / duck["total_s"], 2) if presence["seconds"] else None,
            "ratio_presence_cpu": (round(presence["cpu_s"] / max(duck["job_cpu_s"], 0.1), 2)
                                   if presence["cpu_s"] is not None else None)}


def presence_size(out: Path, size: str, agreement: Path, impls: list[str], before: Path | None, repeat: int,
                  keep: bool) -> dict:
    """The presence phase alone (``bench.spark_stages --stage presence``) per implementation, each followed by
    the DuckDB floor of presence and home cells, compared with the tables that implementation wrote."""
    info = data.ensure(out, size)
    lake = _lake_ready(out, size)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = []
    for impl in impls:
        args = ["--stage", "presence", "--agreement", str(agreement), "--lake", str(lake), "--repeat", str(repeat)]
        if impl == "before":
            if before is None:
                raise SystemExit("--presence-impls before needs --presence-before FILE (presence.py of that version)")
            args += ["--impl", "separate", "--module", str(before)]
        else:
            args += ["--impl", impl]
        print(f"[bench] {size}: Spark presence phase ({impl}, {repeat} runs in one session)", flush=True)
        spark = run_child("bench.spark_stages", args, out / "work" / f"presence-{impl}-{size}.json",
                          logs / f"presence-{impl}-{size}.log")
        duck_file = out / "work" / f"duckdb-presence-home-{size}.parquet"
        print(f"[bench] {size}: {impl}: first run {spark['first']['cpu_s']} CPU-s; DuckDB floor", flush=True)
        duck = run_child("bench.duckdb_presence", ["--agreement", str(agreement), "--lake", str(lake),
                                                   "--out", str(duck_file), "--home-cells"],
                         out / "work" / f"duckdb-presence-home-{impl}-{size}.json",
                         logs / f"duckdb-presence-home-{impl}-{size}.log")
        if not keep:
            duck_file.unlink(missing_ok=True)
            duck_file.with_name(duck_file.stem + "-home-cells.parquet").unlink(missing_ok=True)
        floor = max(duck["job_cpu_s"], 0.1)
        runs.append({"impl": impl, "spark": spark, "duckdb": duck,
                     "ratio_first_cpu": round(spark["first"]["cpu_s"] / floor, 2),
                     "ratio_steady_cpu": (round(spark["steady_cpu_s"] / floor, 2)
                                          if spark.get("steady_cpu_s") is not None else None),
                     "ratio_first_cpu_presence_floor": round(spark["first"]["cpu_s"]
                                                             / max(duck.get("presence_cpu_s") or 0.0, 0.1), 2)})
    head = runs[-1]  # the last implementation named is the headline (the one the scaling exponents follow)
    return {"size": size, "cdr_rows": info["cdr_rows"], "runs": runs, "impl": head["impl"],
            "spark_first_cpu_s": head["spark"]["first"]["cpu_s"], "spark_steady_cpu_s": head["spark"]["steady_cpu_s"],
            "duckdb_cpu_s": head["duckdb"]["job_cpu_s"]}


def release_size(out: Path, size: str, agreement: Path) -> dict:
    """A flows release (through publish) from the residence changes of the same lake."""
    info = data.ensure(out, size)
    lake = _lake_ready(out, size)
    if not (lake / "office" / "residence_changes" / "_delta_log").is_dir():
        raise SystemExit(f"no residence changes in {lake}: run the residence stage for {size} first")
    for stale in ("releases", "ledger", "releases.lock"):  # a fresh first release on every run
        target = lake / stale
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    print(f"[bench] {size}: flows release", flush=True)
    spark = run_child("bench.spark_stages", ["--stage", "release", "--agreement", str(agreement),
                                              "--lake", str(lake)],
                      out / "work" / f"release-{size}.json", out / "logs" / f"release-{size}.log")
    rows = info["cdr_rows"]
    return {"size": size, "cdr_rows": rows, "spark": spark, "spark_events_per_s": round(rows / spark["job_s"])}


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


def scaling(entries: list[dict], times: dict[str, tuple[str, str]]) -> dict:
    """Exponents between the smallest and the largest size, for each named (sub-dict, key) time."""
    if len(entries) < 2:
        return {}
    a, b = min(entries, key=lambda e: e["cdr_rows"]), max(entries, key=lambda e: e["cdr_rows"])
    out = {"from": a["size"], "to": b["size"]}
    for name, (part, key) in times.items():
        t1 = a[part][key] if part else a[key]
        t2 = b[part][key] if part else b[key]
        if t1 and t2:
            out[name] = exponent(t1, t2, a["cdr_rows"], b["cdr_rows"])
    return out


SCALING = {
    "anonymize": {"spark_job": ("spark", "job_s"), "spark_cpu": ("spark", "job_cpu_s"),
                  "duckdb": ("duckdb", "total_s"), "duckdb_cpu": ("duckdb", "job_cpu_s")},
    "residence": {"spark_job": ("spark", "job_s"), "spark_cpu": ("spark", "job_cpu_s"),
                  "spark_presence": ("", "presence_s"), "spark_presence_cpu": ("", "presence_cpu_s"),
                  "duckdb": ("duckdb", "total_s"), "duckdb_cpu": ("duckdb", "job_cpu_s")},
    "release": {"spark_job": ("spark", "job_s"), "spark_cpu": ("spark", "job_cpu_s")},
    "presence": {"spark_first_cpu": ("", "spark_first_cpu_s"), "spark_steady_cpu": ("", "spark_steady_cpu_s"),
                 "duckdb_cpu": ("", "duckdb_cpu_s")},
}
STAGES = ("anonymize", "residence", "release", "rule_scale", "peer", "presence")


def merge(out: Path, results: dict) -> dict:
    """OUT/latest.json keeps the latest run of every stage: re-running one stage replaces only it."""
    path = out / "latest.json"
    latest = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    for stage in STAGES:
        if stage in results["stages"]:
            latest["stages"][stage] = results["stages"][stage]
    path.write_text(json.dumps(latest, indent=2, default=str) + "\n")
    return latest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1m,10m", help=f"comma-separated, from {', '.join(data.SIZES)}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--profile-size", default="none",
                    help="size whose Spark anonymization run also times pipeline parts (default: none)")
    ap.add_argument("--pairs", type=int, default=1,
                    help="anonymization: run Spark and DuckDB alternately this many times per size; each "
                         "engine's fastest run is its headline and every pair is reported (default: 1)")
    ap.add_argument("--skip-anonymize", action="store_true",
                    help="reuse the lakes under OUT/work from an earlier run for the later stages")
    ap.add_argument("--skip-residence", action="store_true")
    ap.add_argument("--skip-release", action="store_true")
    ap.add_argument("--skip-peer", action="store_true", help="no accuracy comparison with Tumult Analytics")
    ap.add_argument("--peer-repeats", type=int, default=300)
    ap.add_argument("--peer-tumult-repeats", type=int, default=30,
                    help="Tumult's repetitions (each draws all 3,172 cells; its noise is slow on 2 busy cores)")
    ap.add_argument("--peer-from", type=Path, default=None,
                    help="take the peer comparison from this bench.peer_accuracy JSON instead of measuring")
    ap.add_argument("--rule-scale", action="store_true",
                    help="also time the 12/16 rule on a synthetic presence table of many subjects")
    ap.add_argument("--residence-subjects", type=int, default=20_000, help="rule-scale: first (estimating) run")
    ap.add_argument("--residence-target", type=int, default=200_000, help="rule-scale: target size")
    ap.add_argument("--residence-budget-s", type=float, default=900,
                    help="rule-scale: run the target size only if the first run projects it under this")
    ap.add_argument("--residence-months", type=int, default=24)
    ap.add_argument("--presence", action="store_true",
                    help="also the presence phase alone (daily presence and home cells) against DuckDB")
    ap.add_argument("--presence-impls", default="one-pass",
                    help="presence: comma-separated, from one-pass, separate, before (default: one-pass)")
    ap.add_argument("--presence-before", type=Path, default=None,
                    help="presence: presence.py of the version to time as 'before' (e.g. from git show)")
    ap.add_argument("--presence-repeat", type=int, default=2,
                    help="presence: runs per Spark session; the first is what a job pays, later ones the steady "
                         "state (default: 2)")
    ap.add_argument("--keep", action="store_true", help="keep the DuckDB outputs under OUT/work")
    ap.add_argument("--write-benchmarks", action="store_true",
                    help="rewrite the generated blocks of BENCHMARKS.md for the stages in OUT/latest.json")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        data.parameters(s)  # fail early on an unknown size
    started = dt.datetime.now(dt.UTC)
    results: dict = {"started": started.isoformat(timespec="seconds"), "machine": machine.describe(),
                     "stages": {}}
    agreement = write_agreement(out)

    def stage(name: str, entries) -> None:
        results["stages"][name] = {"machine": results["machine"], "started": results["started"],
                                   "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                   "load_at_end": [round(x, 2) for x in os.getloadavg()], **entries}

    def per_size(name: str, measure) -> None:
        """Every size in turn, merged into latest.json as soon as it is measured, so an interrupted
        run keeps what it finished."""
        runs = []
        for size in sizes:
            runs.append(measure(size))
            stage(name, {"sizes": runs, "scaling": scaling(runs, SCALING[name])})
            merge(out, {"stages": {name: results["stages"][name]}})

    if not args.skip_anonymize:
        # A fresh random key per harness run: synthetic data, and no key is written anywhere.
        env = {KEY_ENV: os.environ.get(KEY_ENV) or secrets.token_hex(32)}
        per_size("anonymize", lambda size: anonymize_size(out, size, agreement, env, size == args.profile_size,
                                                          args.keep, args.pairs))
    if not args.skip_residence:
        per_size("residence", lambda size: residence_size(out, size, agreement, args.keep))
    if not args.skip_release:
        per_size("release", lambda size: release_size(out, size, agreement))
    if args.presence:
        impls = [i.strip() for i in args.presence_impls.split(",") if i.strip()]
        before = args.presence_before.resolve() if args.presence_before else None
        per_size("presence", lambda size: presence_size(out, size, agreement, impls, before, args.presence_repeat,
                                                        args.keep))
    if args.rule_scale:
        stage("rule_scale", bench_residence(out, args.residence_subjects, args.residence_target,
                                            args.residence_budget_s, args.residence_months))
    if args.peer_from:
        stage("peer", json.loads(args.peer_from.read_text()))
    elif not args.skip_peer:
        print(f"[bench] accuracy against Tumult Analytics ({args.peer_repeats} repetitions)", flush=True)
        peer = run_child("bench.peer_accuracy", ["--repeats", str(args.peer_repeats),
                                                 "--tumult-repeats", str(args.peer_tumult_repeats),
                                                 "--out", str(out / "peer")],
                         out / "work" / "peer.json", out / "logs" / "peer.log")
        stage("peer", peer)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"results-{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    latest = merge(out, results)
    text = report.markdown(latest)
    (out / "results.md").write_text(text)
    if args.write_benchmarks:
        changed = report.write_benchmarks(ROOT / "BENCHMARKS.md", latest)
        print(f"[bench] BENCHMARKS.md: rewrote the generated blocks {', '.join(changed) or '(none found)'}")
    print(text)


if __name__ == "__main__":
    main()
