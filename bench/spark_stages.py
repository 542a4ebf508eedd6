"""Child process: one office-side stage in a fresh Spark session, on the lake the anonymization wrote.

``python -m bench.spark_stages --stage residence|release|presence --agreement A --lake DIR --result FILE``

* ``residence``: ``mobility.residence.job.run`` unchanged (daily presence, monthly home cells,
  the 12/16-month rule, Delta writes), its phases split by the job's own progress marks.
* ``release``: ``mobility.release.flows.release_flows`` for the latest crossing month that is final
  with this data, at epsilon = 1, through ``publish`` (ledger charge, OpenDP noise, files). The
  parent clears the lake's releases and ledger first, so every run is a fresh first release.
* ``presence`` (issue #20): the presence phase alone, as a rebuild of the residence job runs it: daily
  presence and monthly home cells of every event of the agreement, written with ``Lake.overwrite``
  to ``office/presence`` (days up to the data's last month end, with their ``month``) and
  ``office/home_cells``. ``--impl one-pass`` is ``presence_and_home_cells``; ``--impl separate`` is
  ``daily_presence`` then ``monthly_home_cells``; ``--module FILE`` takes the functions from another
  version of ``presence.py`` (``git show 5351e94:src/mobility/residence/presence.py`` is the code
  before issue #20, which has only ``separate``). The phase runs ``--repeat`` times in the same
  session: the first run is what a job pays (the JVM still compiles its hot code), later runs are
  the steady state. The data end comes from the events table's Delta log, outside the timed part.

Session start is timed apart from the stage, as in ``bench.spark_ingest``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

from bench.monitor import tree_cpu_s

PURPOSE = "migration-statistics"  # declared in the demo agreement the harness derives its own from
EPSILON = 1.0


def _mark_phases(marks: list, start: list[float]) -> None:
    """Timestamp (wall and tree CPU) the job's own progress lines, so its code runs unchanged."""
    from mobility import progress

    original = progress.say

    def say(stage: str, message: str, *args, **kwargs) -> None:  # whatever extra the job passes goes on
        marks.append((time.perf_counter() - start[0], tree_cpu_s(), message))
        original(stage, message, *args, **kwargs)

    progress.say = say


def _phases(marks: list, total: float, cpu_start: float, cpu_end: float) -> list[dict]:
    # before the first mark: reading the lake, pinning versions, finding the data's last month
    marks = [(0.0, cpu_start, "before the first progress mark (read, versions, data end)")] + marks
    ends = marks + [(total, cpu_end, "end")]
    return [{"phase": m, "start_s": round(t, 2), "seconds": round(ends[i + 1][0] - t, 2),
             "cpu_s": round(ends[i + 1][1] - c, 1)} for i, (t, c, m) in enumerate(marks)]


def latest_final_period(data_end: dt.date, window_days: int) -> str:
    """The latest month whose last day plus the decision window still fits in the data."""
    from mobility.release.flows import final_from

    month = dt.date(data_end.year, data_end.month, 1)
    while final_from(f"{month:%Y-%m}", window_days) > data_end:
        month = (month - dt.timedelta(days=1)).replace(day=1)
    return f"{month:%Y-%m}"


def residence(spark, agreement: Path, lake: Path) -> dict:
    from mobility.residence import job

    result = job.run(agreement, lake, spark=spark)
    return {"data_end": result.manifest["data_end"]}


def residence_counts(spark, lake: Path) -> dict:
    """Sizes for the report, read from the office tables after the timed run (the job's manifest
    carries no counts of people or changes)."""
    read = lambda name: spark.read.format("delta").load(str(lake / "office" / name))  # noqa: E731
    presence, changes = read("presence"), read("residence_changes")
    kinds = {f"{r['direction']}_{r['kind']}": r["count"]
             for r in changes.groupBy("direction", "kind").count().collect()}
    return {"subjects": presence.select("pseudonym").distinct().count(), "presence_rows": presence.count(),
            "changes": kinds, "changes_rows": sum(kinds.values())}


def release(spark, agreement: Path, lake: Path) -> dict:
    from mobility.config import load_agreement
    from mobility.lake import Lake, delta_version
    from mobility.release.flows import release_flows, residence_manifest
    from mobility.residence.rules import ResidenceParams

    lk = Lake(lake)
    ag = load_agreement(agreement)
    manifest = residence_manifest(lk, ag.agreement_id, delta_version(lk.office_table("residence_changes")))
    window = int(manifest["params"].get("window_days", ResidenceParams().window_days))
    period = latest_final_period(dt.date.fromisoformat(manifest["data_end"]), window)
    result = release_flows(ag, lake, period, purpose=PURPOSE, requested_by="bench", epsilon=EPSILON,
                           release_id=f"bench-flows-{period}", spark=spark)
    return {"period": period, "epsilon": EPSILON, "release_id": result.release_id,
            "cells": {name: info["rows"] for name, info in result.manifest["tables"].items()}}


def _presence_module(path: Path | None):
    if path is None:
        from mobility.residence import presence as module

        return module
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_presence_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log_months(table: Path) -> list[str]:
    """``month`` partitions of the table's current files, from its Delta log (no data read)."""
    from deltalake import DeltaTable

    return sorted({part[len("month="):] for f in DeltaTable(str(table)).file_uris() for part in f.split("/")
                   if part.startswith("month=")})


def presence(spark, agreement: Path, lake: Path, impl: str, module_path: Path | None, repeat: int) -> dict:
    from pyspark.sql import functions as F

    from bench.monitor import tree_cpu_s
    from mobility.config import load_agreement
    from mobility.lake import Lake
    from mobility.residence.rules import ResidenceParams
    from mobility.schemas import EVENTS_TABLE, HOME_CELLS_TABLE, PRESENCE_TABLE

    module = _presence_module(module_path)
    ag, lk, params = load_agreement(agreement), Lake(lake), ResidenceParams()
    last = _log_months(lk.table(EVENTS_TABLE))[-1]
    data_end = (dt.date.fromisoformat(last + "-01") + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
    tz, home = ag.time_zone, ag.home_country
    runs = []
    for i in range(repeat):
        t0, c0 = time.perf_counter(), tree_cpu_s()
        events = lk.committed(spark, EVENTS_TABLE, ag.agreement_id)
        if impl == "one-pass":
            daily, cells = module.presence_and_home_cells(spark, events, home, tz, params)
        else:
            daily = module.daily_presence(events, tz, params)
        daily = daily.withColumn("month", F.date_format("date", "yyyy-MM")).where(F.col("date") <= F.lit(data_end))
        c1 = tree_cpu_s()
        lk.overwrite(daily, PRESENCE_TABLE)
        c2 = tree_cpu_s()
        if impl != "one-pass":
            cells = module.monthly_home_cells(spark, events, home, tz, params)
        lk.overwrite(cells, HOME_CELLS_TABLE)
        t3, c3 = time.perf_counter(), tree_cpu_s()
        runs.append({"run": i + 1, "seconds": round(t3 - t0, 2), "cpu_s": round(c3 - c0, 1),
                     "build_cpu_s": round(c1 - c0, 1), "presence_write_cpu_s": round(c2 - c1, 1),
                     "home_cells_cpu_s": round(c3 - c2, 1), "load": round(os.getloadavg()[0], 2)})
        print(f"[presence] run {i + 1}: {runs[-1]}", flush=True)
    read = lambda spec: lk.read(spark, spec)  # noqa: E731
    return {"impl": impl, "module": str(module_path) if module_path else "mobility.residence.presence",
            "data_end": data_end.isoformat(), "runs": runs, "first": runs[0],
            "steady_cpu_s": min(r["cpu_s"] for r in runs[1:]) if len(runs) > 1 else None,
            "presence_rows": read(PRESENCE_TABLE).count(), "home_cells_rows": read(HOME_CELLS_TABLE).count()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=("residence", "release", "presence"), required=True)
    ap.add_argument("--agreement", type=Path, required=True)
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--impl", choices=("one-pass", "separate"), default="one-pass", help="presence stage only")
    ap.add_argument("--module", type=Path, default=None, help="presence stage: presence.py of another version")
    ap.add_argument("--repeat", type=int, default=2, help="presence stage: runs in the same session")
    args = ap.parse_args()

    from mobility.spark import get_spark

    t = time.perf_counter()
    spark = get_spark(f"bench-{args.stage}")
    session_s = time.perf_counter() - t
    marks: list = []
    start = [time.perf_counter()]
    _mark_phases(marks, start)
    cpu0 = tree_cpu_s()
    if args.stage == "presence":
        detail = presence(spark, args.agreement, args.lake, args.impl, args.module, args.repeat)
    else:
        detail = (residence if args.stage == "residence" else release)(spark, args.agreement, args.lake)
    job_s, cpu_end = time.perf_counter() - start[0], tree_cpu_s()
    job_cpu = cpu_end - cpu0
    if args.stage == "residence":
        detail.update(residence_counts(spark, args.lake))
    out = {"engine": "spark", "stage": args.stage, "spark_version": spark.version,
           "session_start_s": round(session_s, 2), "job_s": round(job_s, 2), "job_cpu_s": round(job_cpu, 1),
           "phases": _phases(marks, job_s, cpu0, cpu_end), **detail}
    spark.stop()
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
