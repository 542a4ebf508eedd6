"""Child process: the DuckDB floor for daily presence, on the office-zone events the Spark job wrote.

``python -m bench.duckdb_presence --agreement A --lake DIR --out FILE --result FILE [--home-cells]``

The same definition as ``mobility.residence.presence.daily_presence``: a local day's country is
the one with most night-time events (the night of day D runs from ``night_start`` on D to
``night_end`` on D+1, local time), then most daytime events, ties broken by country code;
``source`` is night when that country had a night event; ``night_events`` counts every night
event of the day; days after the last complete month are dropped, as the job does. One SQL
statement reads the Delta table's current data files, computes the table and writes Parquet.

With ``--home-cells`` (issue #20: the Spark phase now builds both tables in one pass) the timed part
also computes ``monthly_home_cells``: night events in the home country with a cell, per pseudonym,
month (of the presence day) and cell; the distinct cells are mapped to their parents at the home-cell
resolution on the driver with the same ``h3`` call as the Spark job, joined back, and the modal parent
per pseudonym and month is kept (ties: cell id), written to ``OUT`` with ``-home-cells`` in its name.

After the timed part, the output is compared row for row (``EXCEPT ALL`` both ways) with the
Spark job's ``office/presence`` table of the same lake (and ``office/home_cells``).
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
HOME_COLUMNS = "pseudonym, month, h3_cell, night_events"


def delta_files(table: Path) -> str:
    """A DuckDB list of the table's current data files (from the Delta log, so removed files are skipped)."""
    from deltalake import DeltaTable

    files = DeltaTable(str(table)).file_uris()
    return "[" + ", ".join("'" + f.replace("file://", "").replace("'", "''") + "'" for f in files) + "]"


def dated_sql(events: str, agreement_id: str, time_zone: str, params: ResidenceParams) -> str:
    """The common table expressions ``e`` (the agreement's events in local time), ``limits`` (the data
    end) and ``d`` (each event's presence day and whether it is a night one), for a ``WITH`` clause."""
    ns, ne = int(params.night_start), int(params.night_end)
    hour = "hour(local)"
    night = f"({hour} >= {ns} OR {hour} < {ne})" if ns > ne else f"({hour} >= {ns} AND {hour} < {ne})"
    tz = "'" + time_zone.replace("'", "''") + "'"
    aid = "'" + agreement_id.replace("'", "''") + "'"
    return f"""
e AS (
  SELECT pseudonym, country, h3_cell, month, timezone({tz}, CAST(event_hour AS TIMESTAMPTZ)) AS local
  FROM read_parquet({events}, hive_partitioning = false)
  WHERE agreement_id = {aid}
),
limits AS (  -- the job's data_end: the last day of the latest month with events
  SELECT CAST(last_day(CAST(max(month) || '-01' AS DATE)) AS DATE) AS data_end FROM e
),
d AS (
  SELECT pseudonym, country, h3_cell, {night} AS is_night,
         -- early-morning hours belong to the night that began the evening before
         CAST(local AS DATE) - CAST(CASE WHEN {night} AND {hour} < {ne} THEN 1 ELSE 0 END AS INTEGER) AS date
  FROM e
)"""


def presence_sql(events: str, agreement_id: str, time_zone: str, params: ResidenceParams) -> str:
    return "WITH " + dated_sql(events, agreement_id, time_zone, params) + """,
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


def home_cells(con: duckdb.DuckDBPyConnection, events: str, agreement_id: str, time_zone: str, home: str,
               params: ResidenceParams, out: Path) -> int:
    """``monthly_home_cells`` in DuckDB: night counts per (pseudonym, month, cell), the parents of the
    distinct cells from ``h3`` on the driver, the modal parent per pseudonym and month. Rows written."""
    import h3
    import pyarrow as pa

    res = int(params.home_cell_resolution)
    country = "'" + home.replace("'", "''") + "'"
    con.execute("CREATE OR REPLACE TEMP TABLE nights AS WITH " + dated_sql(events, agreement_id, time_zone, params)
                + f"""
SELECT pseudonym, strftime(date, '%Y-%m') AS month, h3_cell, count(*) AS n
FROM d WHERE is_night AND country = {country} AND h3_cell IS NOT NULL GROUP BY ALL""")
    cells = [r[0] for r in con.execute("SELECT DISTINCT h3_cell FROM nights").fetchall()]
    parents = pa.table({"h3_cell": cells, "home_cell": [h3.cell_to_parent(c, res) if h3.get_resolution(c) > res
                                                        else c for c in cells]})
    con.register("parents", parents)
    return con.execute(f"""COPY (
  SELECT pseudonym, month, home_cell AS h3_cell, night_events FROM (
    SELECT pseudonym, month, home_cell, CAST(sum(n) AS BIGINT) AS night_events
    FROM nights JOIN parents USING (h3_cell) GROUP BY ALL)
  QUALIFY row_number() OVER (PARTITION BY pseudonym, month ORDER BY night_events DESC, home_cell ASC) = 1
) TO '{out}' (FORMAT parquet)""").fetchone()[0]


def compare(con: duckdb.DuckDBPyConnection, ours: Path, spark_table: Path, columns: str = COLUMNS) -> dict:
    d = f"read_parquet('{ours}')"
    s = f"(SELECT {columns} FROM read_parquet({delta_files(spark_table)}))"
    one = lambda q: con.execute(q).fetchone()[0]  # noqa: E731
    return {"spark_rows": one(f"SELECT count(*) FROM {s}"), "duckdb_rows": one(f"SELECT count(*) FROM {d}"),
            "only_spark_rows": one(f"SELECT count(*) FROM (SELECT {columns} FROM {s} EXCEPT ALL "
                                   f"SELECT {columns} FROM {d})"),
            "only_duckdb_rows": one(f"SELECT count(*) FROM (SELECT {columns} FROM {d} EXCEPT ALL "
                                    f"SELECT {columns} FROM {s})"),
            "pseudonyms": one(f"SELECT count(DISTINCT pseudonym) FROM {d}")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agreement", type=Path, required=True)
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--home-cells", action="store_true", help="also monthly home cells, in the timed part")
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
    presence_cpu_s = tree_cpu_s() - cpu0
    home_out = args.out.with_name(args.out.stem + "-home-cells" + args.out.suffix)
    if args.home_cells:
        home_out.unlink(missing_ok=True)
        home_written = home_cells(con, files, agreement.agreement_id, agreement.time_zone, agreement.home_country,
                                  ResidenceParams(), home_out)
    total_s, cpu_s = time.perf_counter() - started, tree_cpu_s() - cpu0
    check = compare(con, args.out, args.lake / "office" / "presence")
    out = {"engine": "duckdb", "duckdb_version": duckdb.__version__, "threads": args.threads,
           "total_s": round(total_s, 2), "job_cpu_s": round(cpu_s, 1), "rows_written": written,
           "check": check, "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if args.home_cells:
        out.update({"presence_cpu_s": round(presence_cpu_s, 1), "home_cells_rows_written": home_written,
                    "home_cells_check": compare(con, home_out, args.lake / "office" / "home_cells", HOME_COLUMNS)})
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
