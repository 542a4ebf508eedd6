"""Child process: residence inference throughput on a synthetic daily-presence table.

``python -m bench.residence_bench --subjects N --months 24 --out DIR --result FILE``

Presence is built directly in Spark (no events): one row per pseudonym and known day, at home
except for up to two stays abroad whose start, length and country come from hashes of the
subject number, with about 10 % of days unknown (absent rows). It is persisted and counted
first, so the timed part is only ``detect_in_spark`` (shuffle by pseudonym, the rule per subject
in ``applyInPandas``, batched by pseudonym hash) and the Parquet write of the changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
from pathlib import Path

from bench.monitor import tree_cpu_s

HOME = "PHL"
ABROAD = ["SAU", "ARE", "QAT", "KWT", "HKG", "SGP", "MYS", "JPN", "USA"]
STAYERS_PER_10 = 4  # subjects with no long stay abroad (short trips only)


def presence_frame(spark, subjects: int, start: dt.date, days: int):
    """Daily presence as Spark expressions; deterministic in the subject number."""
    from pyspark.sql import functions as F

    def draw(tag: str, modulo: int):  # a uniform integer in [0, modulo) per subject
        return F.pmod(F.xxhash64(F.col("sid"), F.lit(tag)), F.lit(modulo))

    countries = F.array(*[F.lit(c) for c in ABROAD])
    people = spark.range(subjects).withColumnRenamed("id", "sid").select(
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, required=True)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    args = ap.parse_args()

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
    presence = presence_frame(spark, args.subjects, start, days).persist(StorageLevel.MEMORY_AND_DISK)
    rows = presence.count()
    build_s = time.perf_counter() - t

    params = ResidenceParams()
    shutil.rmtree(args.out, ignore_errors=True)
    t, cpu0 = time.perf_counter(), tree_cpu_s()
    detect_in_spark(presence, HOME, params, data_end).write.mode("overwrite").parquet(str(args.out))
    detect_s, detect_cpu_s = time.perf_counter() - t, tree_cpu_s() - cpu0
    changes = spark.read.parquet(str(args.out))
    counted = changes.groupBy("direction", "kind").count().collect()
    kinds = {f"{r['direction']}_{r['kind']}": r["count"] for r in counted}
    pure = pure_rate(presence, params, data_end)
    out = {"subjects": args.subjects, "months": args.months, "days": days, "presence_rows": rows,
           "session_start_s": round(session_s, 2), "build_persist_s": round(build_s, 2),
           "detect_write_s": round(detect_s, 2), "detect_cpu_s": round(detect_cpu_s, 1),
           "subjects_per_s": round(args.subjects / detect_s, 1),
           "changes": kinds, "changes_rows": sum(kinds.values()), "pure_function": pure,
           "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions")}
    spark.stop()
    shutil.rmtree(args.out, ignore_errors=True)
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
