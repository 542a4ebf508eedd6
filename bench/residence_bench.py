"""Child process: residence inference throughput on a synthetic daily-presence table.

``python -m bench.residence_bench --subjects N --months 24 --out DIR --result FILE [--path fast]``

Presence is built directly in Spark (no events): one row per pseudonym and known day, at home
except for up to two stays abroad whose start, length and country come from hashes of the
subject number, with about 10 % of days unknown (absent rows). It is persisted and counted
first, so the timed part is only ``detect_in_spark`` (shuffle by pseudonym, the rule per subject
in ``applyInPandas``, batched by pseudonym hash) and the Parquet write of the changes.

``--path fast`` (issue #20) times the rule over spells instead, in two phases: daily presence ->
spells (``spells_in_spark``, persisted and counted) and the rule over the persisted spells
(``detect_spells_in_spark`` and the Parquet write; ``subjects_per_s`` is this phase). Each phase
reports wall and CPU seconds of the process tree and its peak resident memory (sampled every
0.25 s, as bench/monitor.py). It also times the compiled rule alone on the driver
(``detect_from_spells`` on the spells of up to 100 000 subjects) and numba's compile time, cold
and from the on-disk cache, each in a fresh interpreter. ``--compare`` also runs the reference
``detect_in_spark`` and counts the rows that differ (both directions; 0 and 0 is equality).

Large sizes in parts: ``--spells-out DIR --first-subject A --subjects N`` builds and writes the
spells of subjects A .. A+N-1 only (the generator is deterministic per subject, so five parts of
200 000 are the table of 1 000 000); ``--spells-in DIR...`` then times the rule over all parts.
``--no-persist`` skips caching the presence table (its generation is then inside the spells phase).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bench.monitor import SAMPLE_S, process_tree, tree_cpu_s

HOME = "PHL"
ABROAD = ["SAU", "ARE", "QAT", "KWT", "HKG", "SGP", "MYS", "JPN", "USA"]
STAYERS_PER_10 = 4  # subjects with no long stay abroad (short trips only)


def presence_frame(spark, subjects: int, start: dt.date, days: int, first_subject: int = 0):
    """Daily presence as Spark expressions; deterministic in the subject number (subjects
    first_subject .. first_subject + subjects - 1, so a large table can be built in parts)."""
    from pyspark.sql import functions as F

    def draw(tag: str, modulo: int):  # a uniform integer in [0, modulo) per subject
        return F.pmod(F.xxhash64(F.col("sid"), F.lit(tag)), F.lit(modulo))

    countries = F.array(*[F.lit(c) for c in ABROAD])
    people = spark.range(first_subject, first_subject + subjects).withColumnRenamed("id", "sid").select(
        "sid",
        F.sha2(F.concat(F.lit("bench-subject-"), F.col("sid").cast("string")), 256).alias("pseudonym"),
        # a long stay for 6 in 10 subjects: 2..700 days (trips, temporary moves, migrations, open stays)
        F.when(draw("kind", 10) >= STAYERS_PER_10, draw("s1", days)).alias("s1"),
        (draw("l1", 699) + 2).alias("l1"),
        F.element_at(countries, (draw("c1", len(ABROAD)) + 1).cast("int")).alias("c1"),
        # a short trip for everyone: 1..30 days
        draw("s2", days).alias("s2"),
        (draw("l2", 30) + 1).alias("l2"),
        F.element_at(countries, (draw("c2", len(ABROAD)) + 1).cast("int")).alias("c2"),
    )
    day = F.col("day")
    inside = lambda s, n: (day >= F.col(s)) & (day < F.col(s) + F.col(n))  # noqa: E731
    return (people.withColumn("day", F.explode(F.sequence(F.lit(0), F.lit(days - 1))))
            # about one day in ten without any event: the day is unknown, so it has no row
            .where(F.pmod(F.xxhash64(F.col("sid"), F.col("day")), F.lit(10)) != 0)
            .select("pseudonym",
                    F.date_add(F.lit(start), F.col("day").cast("int")).alias("date"),
                    F.when(F.col("s1").isNotNull() & inside("s1", "l1"), F.col("c1"))
                    .when(inside("s2", "l2"), F.col("c2")).otherwise(F.lit(HOME)).alias("country")))


def pure_rate(presence, params, data_end: dt.date, sample: int = 300) -> dict:
    """The rule alone, one call per subject on the driver, as applyInPandas calls it."""
    from mobility.residence.rules import detect_changes

    some = presence.select("pseudonym").distinct().orderBy("pseudonym").limit(sample)
    frame = presence.join(some, "pseudonym").toPandas().rename(columns={"pseudonym": "subject_id"})
    groups = [g for _, g in frame.groupby("subject_id", sort=False)]
    started = time.perf_counter()
    for g in groups:
        detect_changes(g, HOME, params, data_end=data_end)
    seconds = time.perf_counter() - started
    return {"subjects": len(groups), "seconds": round(seconds, 2),
            "ms_per_subject": round(1000 * seconds / max(len(groups), 1), 2)}


@contextmanager
def phase(into: dict, name: str):
    """Wall and CPU seconds of this process tree over the block, and its peak RSS (sampled)."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(rss for _, _, rss, _ in process_tree(os.getpid())))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    t, cpu0 = time.perf_counter(), tree_cpu_s()
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        into[f"{name}_s"] = round(time.perf_counter() - t, 2)
        into[f"{name}_cpu_s"] = round(tree_cpu_s() - cpu0, 1)
        into[f"{name}_peak_rss_mb"] = round(peak[0] / 2**20)


def compile_seconds() -> dict:
    """numba's compile of the rule in a fresh interpreter: cold (empty cache) and from the cache."""
    code = "import time; from mobility.residence.spells import warm; print(warm())"
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("cold", "cached"):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out[f"compile_{name}_s"] = round(float(done.stdout.split()[-1]), 2)
            out[f"interpreter_{name}_s"] = round(time.perf_counter() - t, 2)  # start, imports, compile or load
    return out


def kernel_rate(spells, params, data_end: dt.date, sample: int = 100_000) -> dict:
    """The compiled rule alone on the driver: one ``detect_from_spells`` call over many subjects."""
    from pyspark.sql import functions as F

    from mobility.residence.spells import detect_from_spells, warm

    warm()
    some = spells.select("pseudonym").distinct().orderBy("pseudonym").limit(sample)
    frame = (spells.join(some, "pseudonym").select("pseudonym", "country", F.col("first_date"), F.col("last_date"))
             .toPandas().rename(columns={"pseudonym": "subject_id"}))
    subjects = frame["subject_id"].nunique()
    started, cpu0 = time.perf_counter(), time.process_time()
    found = detect_from_spells(frame, HOME, params, data_end=data_end)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {"subjects": subjects, "spells": len(frame), "changes": len(found), "seconds": round(seconds, 3),
            "cpu_s": round(cpu, 3), "us_per_subject": round(1e6 * seconds / max(subjects, 1), 2),
            "subjects_per_s": round(subjects / seconds)}


def fast_path(spark, presence, args, params, data_end: dt.date) -> dict:
    """Presence -> persisted spells, then the rule over spells (the timed target).

    With ``--spells-out`` only the spells are built and written as Parquet (one part of a large
    table); with ``--spells-in`` the spells are read from such Parquet files (cached and counted
    before the clock starts) and only the rule is timed.
    """
    from pyspark import StorageLevel

    from mobility.residence.spells import detect_spells_in_spark, spells_in_spark

    out: dict = {"path": "fast"}
    if args.spells_out:
        with phase(out, "spells"):
            spells_in_spark(presence, params).write.mode("overwrite").parquet(str(args.spells_out))
        out["spells_rows"] = spark.read.parquet(str(args.spells_out)).count()
        out["spells_per_subject"] = round(out["spells_rows"] / args.subjects, 2)
        return out
    if args.spells_in:
        t = time.perf_counter()
        spells = spark.read.parquet(*[str(p) for p in args.spells_in]).persist(StorageLevel.MEMORY_AND_DISK)
        out["spells_rows"] = spells.count()
        out["spells_read_cache_s"] = round(time.perf_counter() - t, 2)
    else:
        with phase(out, "spells"):
            spells = spells_in_spark(presence, params).persist(StorageLevel.MEMORY_AND_DISK)
            out["spells_rows"] = spells.count()
        if not args.keep_presence:
            presence.unpersist()
    shutil.rmtree(args.out, ignore_errors=True)
    with phase(out, "rule"):
        changes = detect_spells_in_spark(spells, HOME, params, data_end, subjects=args.subjects)
        changes.write.mode("overwrite").parquet(str(args.out))
    out["subjects_per_s"] = round(args.subjects / out["rule_s"], 1)
    out["rule_cpu_ms_per_subject"] = round(1000 * out["rule_cpu_s"] / args.subjects, 3)
    out["spells_per_subject"] = round(out["spells_rows"] / args.subjects, 2)
    if "spells_s" in out:
        out["end_to_end_subjects_per_s"] = round(args.subjects / (out["spells_s"] + out["rule_s"]), 1)
    out["kernel_on_driver"] = kernel_rate(spells, params, data_end)
    if args.compare:
        from mobility.residence.job import detect_in_spark

        reference = args.out.with_name(args.out.name + "-reference")
        with phase(out, "reference"):
            detect_in_spark(presence, HOME, params, data_end, args.subjects).write.mode("overwrite").parquet(
                str(reference))
        mine, theirs = spark.read.parquet(str(args.out)), spark.read.parquet(str(reference))
        out["compare"] = {"fast_rows": mine.count(), "reference_rows": theirs.count(),
                          "only_in_fast": mine.exceptAll(theirs).count(),
                          "only_in_reference": theirs.exceptAll(mine).count()}
        shutil.rmtree(reference, ignore_errors=True)
    spells.unpersist()
    out.update(compile_seconds())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, required=True)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--path", choices=("reference", "fast"), default="reference",
                    help="reference: job.detect_in_spark on daily presence; fast: spells, then the rule over "
                         "spells (issue #20)")
    ap.add_argument("--compare", action="store_true",
                    help="fast path: also run the reference and count the rows that differ")
    ap.add_argument("--keep-presence", action="store_true",
                    help="fast path: keep the presence cache after the spells are built (--compare sets it)")
    ap.add_argument("--skip-pure", action="store_true", help="reference path: skip the rule alone on the driver")
    ap.add_argument("--first-subject", type=int, default=0,
                    help="number of the first generated subject (build a large table in parts)")
    ap.add_argument("--spells-out", type=Path,
                    help="fast path: only build the spells and write them here as Parquet (implies --no-persist)")
    ap.add_argument("--spells-in", type=Path, nargs="+",
                    help="fast path: read the spells from these Parquet folders instead of building them")
    ap.add_argument("--no-persist", action="store_true",
                    help="fast path: do not build and cache the presence table first; the spells phase then "
                         "includes generating it (saves memory and disk at 1M subjects and more)")
    args = ap.parse_args()
    args.keep_presence = args.keep_presence or args.compare
    if args.spells_out or args.spells_in:
        args.path, args.no_persist = "fast", True
        if args.compare:
            ap.error("--compare needs the presence table: not with --spells-in or --spells-out")

    from pyspark import StorageLevel

    from mobility.residence.job import detect_in_spark
    from mobility.residence.rules import ResidenceParams
    from mobility.spark import get_spark

    t = time.perf_counter()
    spark = get_spark("bench-residence")
    session_s = time.perf_counter() - t
    start = dt.date(2024, 1, 1)
    data_end = (dt.datetime(2024 + args.months // 12, 1 + args.months % 12, 1) - dt.timedelta(days=1)).date()
    days = (data_end - start).days + 1

    t = time.perf_counter()
    presence = presence_frame(spark, args.subjects, start, days, args.first_subject)
    rows = None
    if not (args.no_persist and args.path == "fast"):
        presence = presence.persist(StorageLevel.MEMORY_AND_DISK)
        rows = presence.count()
    build_s = time.perf_counter() - t

    params = ResidenceParams()
    shutil.rmtree(args.out, ignore_errors=True)
    out = {"subjects": args.subjects, "months": args.months, "days": days, "presence_rows": rows,
           "session_start_s": round(session_s, 2), "build_persist_s": round(build_s, 2) if rows is not None else None,
           "presence_persisted": rows is not None}
    if args.path == "fast":
        out.update(fast_path(spark, presence, args, params, data_end))
    else:
        t, cpu0 = time.perf_counter(), tree_cpu_s()
        detect_in_spark(presence, HOME, params, data_end).write.mode("overwrite").parquet(str(args.out))
        detect_s, detect_cpu_s = time.perf_counter() - t, tree_cpu_s() - cpu0
        out.update({"path": "reference", "detect_write_s": round(detect_s, 2), "detect_cpu_s": round(detect_cpu_s, 1),
                    "subjects_per_s": round(args.subjects / detect_s, 1)})
    out["shuffle_partitions"] = spark.conf.get("spark.sql.shuffle.partitions")
    if not args.spells_out:
        counted = spark.read.parquet(str(args.out)).groupBy("direction", "kind").count().collect()
        kinds = {f"{r['direction']}_{r['kind']}": r["count"] for r in counted}
        out.update({"changes": kinds, "changes_rows": sum(kinds.values())})
    if args.path == "reference" and not args.skip_pure:
        out["pure_function"] = pure_rate(presence, params, data_end)
    spark.stop()
    shutil.rmtree(args.out, ignore_errors=True)
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
