"""Child process: one office-side stage in a fresh Spark session, on the lake the anonymization wrote.

``python -m bench.spark_stages --stage residence|release --agreement A --lake DIR --result FILE``

* ``residence``: ``mobility.residence.job.run`` unchanged (daily presence, monthly home cells,
  the 12/16-month rule, Delta writes), its phases split by the job's own progress marks.
* ``release``: ``mobility.release.flows.release_flows`` for the latest crossing month that is final
  with this data, at epsilon = 1, through ``publish`` (ledger charge, OpenDP noise, files). The
  parent clears the lake's releases and ledger first, so every run is a fresh first release.

Session start is timed apart from the stage, as in ``bench.spark_ingest``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=("residence", "release"), required=True)
    ap.add_argument("--agreement", type=Path, required=True)
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    args = ap.parse_args()

    from mobility.spark import get_spark

    t = time.perf_counter()
    spark = get_spark(f"bench-{args.stage}")
    session_s = time.perf_counter() - t
    marks: list = []
    start = [time.perf_counter()]
    _mark_phases(marks, start)
    cpu0 = tree_cpu_s()
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
