"""Child process: the DuckDB floor for daily presence, on the office-zone events the Spark job wrote.

``python -m bench.duckdb_presence --agreement A --lake DIR --out FILE --result FILE``

The same definition as ``mobility.residence.presence.daily_presence``: a local day's country is
the one with most night-time events (the night of day D runs from ``night_start`` on D to
``night_end`` on D+1, local time), then most daytime events, ties broken by country code;
``source`` is night when that country had a night event; ``night_events`` counts every night
event of the day; days after the last complete month are dropped, as the job does. One SQL
statement reads the Delta table's current data files, computes the table and writes Parquet.

After the timed part, the output is compared row for row (``EXCEPT ALL`` both ways) with the
Spark job's ``office/presence`` table of the same lake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import duckdb

from bench.monitor import tree_cpu_s
from mobility.config import load_agreement
from mobility.residence.rules import ResidenceParams

COLUMNS = "pseudonym, date, country, source, night_events"


def delta_files(table: Path) -> str:
    """A DuckDB list of the table's current data files (from the Delta log, so removed files are skipped)."""
    from deltalake import DeltaTable

    files = DeltaTable(str(table)).file_uris()
    return "[" + ", ".join("'" + f.replace("file://", "").replace("'", "''") + "'" for f in files) + "]"


def presence_sql(events: str, agreement_id: str, time_zone: str, params: ResidenceParams) -> str:
    ns, ne = int(params.night_start), int(params.night_end)
    hour = "hour(local)"
    night = f"({hour} >= {ns} OR {hour} < {ne})" if ns > ne else f"({hour} >= {ns} AND {hour} < {ne})"
    tz = "'" + time_zone.replace("'", "''") + "'"
    aid = "'" + agreement_id.replace("'", "''") + "'"
    return f"""
WITH e AS (
  SELECT pseudonym, country, month, timezone({tz}, CAST(event_hour AS TIMESTAMPTZ)) AS local
  FROM read_parquet({events}, hive_partitioning = false)
  WHERE agreement_id = {aid}
),
limits AS (  -- the job's data_end: the last day of the latest month with events
  SELECT CAST(last_day(CAST(max(month) || '-01' AS DATE)) AS DATE) AS data_end FROM e
),
d AS (
  SELECT pseudonym, country, {night} AS is_night,
         -- early-morning hours belong to the night that began the evening before
         CAST(local AS DATE) - CAST(CASE WHEN {night} AND {hour} < {ne} THEN 1 ELSE 0 END AS INTEGER) AS date
  FROM e
),
counts AS (
  SELECT pseudonym, date, country, sum(CAST(is_night AS BIGINT)) AS night_events,
         sum(CAST(NOT is_night AS BIGINT)) AS day_events
  FROM d GROUP BY pseudonym, date, country
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY pseudonym, date
                               ORDER BY night_events DESC, day_events DESC, country ASC) AS r,
         sum(night_events) OVER (PARTITION BY pseudonym, date) AS all_night
  FROM counts
)
SELECT pseudonym, date, country, CASE WHEN night_events > 0 THEN 'night' ELSE 'day' END AS source,
       CAST(all_night AS BIGINT) AS night_events
FROM ranked, limits WHERE r = 1 AND date <= limits.data_end
"""


def compare(con: duckdb.DuckDBPyConnection, ours: Path, spark_presence: Path) -> dict:
    d = f"read_parquet('{ours}')"
    s = f"(SELECT {COLUMNS} FROM read_parquet({delta_files(spark_presence)}))"
    one = lambda q: con.execute(q).fetchone()[0]  # noqa: E731
    return {"spark_rows": one(f"SELECT count(*) FROM {s}"), "duckdb_rows": one(f"SELECT count(*) FROM {d}"),
            "only_spark_rows": one(f"SELECT count(*) FROM (SELECT {COLUMNS} FROM {s} EXCEPT ALL "
                                   f"SELECT {COLUMNS} FROM {d})"),
            "only_duckdb_rows": one(f"SELECT count(*) FROM (SELECT {COLUMNS} FROM {d} EXCEPT ALL "
                                    f"SELECT {COLUMNS} FROM {s})"),
            "pseudonyms": one(f"SELECT count(DISTINCT pseudonym) FROM {d}")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agreement", type=Path, required=True)
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    agreement = load_agreement(args.agreement)
    events = args.lake / "office" / "events"
    started, cpu0 = time.perf_counter(), tree_cpu_s()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(args.threads)}")
    con.execute("SET preserve_insertion_order = false")
    files = delta_files(events)
    args.out.unlink(missing_ok=True)
    sql = presence_sql(files, agreement.agreement_id, agreement.time_zone, ResidenceParams())
    written = con.execute(f"COPY ({sql}) TO '{args.out}' (FORMAT parquet)").fetchone()[0]
    total_s, cpu_s = time.perf_counter() - started, tree_cpu_s() - cpu0
    check = compare(con, args.out, args.lake / "office" / "presence")
    out = {"engine": "duckdb", "duckdb_version": duckdb.__version__, "threads": args.threads,
           "total_s": round(total_s, 2), "job_cpu_s": round(cpu_s, 1), "rows_written": written,
           "check": check, "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
