"""Child process: the DuckDB floor for the CDR ingest, on the same files with the same key.

``python -m bench.duckdb_ingest --agreement A --input DIR --out DIR --result FILE``

One SQL statement does what the Spark job does to an accepted event, in the plain way: read the
gzip CSVs as text, drop exact copies, normalize the number to E.164 by pattern (not with
phonenumbers), parse the time (naive times in the agreement's zone), join the binned cell table
and the roaming network table, keep rows that pass the basic checks, key the pseudonym with
HMAC-SHA256, coarsen the time to the hour and write Parquet partitioned by month. It writes no
quarantine and no per-file reconciliation: it is the lower bound of the work, not a replacement.

The key reaches DuckDB only as the two HMAC pads, bound as parameters into a one-row table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import pandas as pd

from bench.monitor import tree_cpu_s
from mobility.anonymize import inputs as inp
from mobility.anonymize.pseudonymize import PseudonymKey, load_key, to_e164
from mobility.anonymize.spatial import bin_cells, plmn_table
from mobility.config import Agreement, load_agreement
from mobility.reference import load_boundaries
from mobility.schemas import CDR, CELLS, EVENT_TYPES

TRUNK = {"PHL": "63"}  # country calling code for the home country's national (0-prefixed) numbers

# HMAC-SHA256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || m)); DuckDB's sha256 returns hex.
HMAC_SQL = "sha256(pads.opad || unhex(sha256(pads.ipad || encode({m}))))"


def e164_sql(raw: str, calling_code: str) -> str:
    """E.164 by pattern: keep digits (and a leading +), 00 -> +, national 0 -> +CC, bare CC -> +CC."""
    d = f"regexp_replace(trim(coalesce({raw}, '')), '[^0-9+]', '', 'g')"
    e = (f"CASE WHEN {d} LIKE '+%' THEN '+' || replace({d}, '+', '') "
         f"WHEN {d} LIKE '00%' THEN '+' || substr({d}, 3) "
         f"WHEN {d} LIKE '0%' THEN '+{calling_code}' || substr({d}, 2) "
         f"WHEN {d} LIKE '{calling_code}%' THEN '+' || {d} END")
    # A home number has 10 national digits starting with 9 (mobile); others 8-15 digits in all.
    return (f"CASE WHEN regexp_full_match({e}, '\\+{calling_code}9[0-9]{{9}}') "
            f"OR (NOT {e} LIKE '+{calling_code}%' AND regexp_full_match({e}, '\\+[1-9][0-9]{{7,14}}')) "
            f"THEN {e} END")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ingest_sql(files: list[Path], agreement: Agreement, key_id: str, run_id: str, out_dir: Path) -> str:
    tz = _quote(agreement.time_zone)
    csvs = "[" + ", ".join(_quote(str(f)) for f in files) + "]"
    cols = ", ".join(CDR.columns)
    types = ", ".join(_quote(t) for t in EVENT_TYPES)
    cc = TRUNK[agreement.home_country]
    coarse = "day" if agreement.time_resolution == "day" else "hour"
    return f"""
COPY (
  WITH raw AS (
    SELECT DISTINCT {cols}
    FROM read_csv({csvs}, header = true, all_varchar = true, compression = 'gzip', ignore_errors = true)
  ),
  parsed AS (
    SELECT *, {e164_sql('msisdn', cc)} AS e164,
           replace(trim(event_time), ' ', 'T') AS t,
           coalesce(trim(cell_id), '') <> '' AS has_cell,
           coalesce(trim(visited_plmn), '') <> '' AS roaming
    FROM raw
  ),
  timed AS (
    SELECT *, CASE WHEN regexp_matches(t, 'T.*(Z|z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$')  -- an offset only after a time
                   THEN try_cast(t AS TIMESTAMPTZ)
                   ELSE timezone({tz}, try_cast(t AS TIMESTAMP)) END AS ts
    FROM parsed
  ),
  located AS (
    SELECT timed.*, CAST(timezone({tz}, ts) AS DATE) AS local_date FROM timed
  ),
  joined AS (
    SELECT l.*, c.h3_cell, c.country AS cell_country, coalesce(p.plmn_country, m.plmn_country) AS plmn_country
    FROM located l
    LEFT JOIN cells c ON trim(l.cell_id) = c.cell_id
         AND (c.valid_from IS NULL OR c.valid_from <= l.local_date)
         AND (c.valid_to IS NULL OR c.valid_to >= l.local_date)
    LEFT JOIN plmn_full p ON trim(l.visited_plmn) = p.plmn
    LEFT JOIN plmn_mcc m ON substr(trim(l.visited_plmn), 1, 3) = m.plmn
  ),
  accepted AS (
    SELECT * FROM joined
    WHERE e164 IS NOT NULL AND ts IS NOT NULL
      AND lower(trim(event_type)) IN ({types})
      AND (coalesce(trim(duration_s), '') = '' OR try_cast(trim(duration_s) AS INTEGER) >= 0)
      AND ((has_cell AND NOT roaming AND cell_country IS NOT NULL)
        OR (roaming AND NOT has_cell AND regexp_full_match(trim(visited_plmn), '[0-9]{{5,6}}')
            AND plmn_country IS NOT NULL))
  ),
  keyed AS (
    SELECT {HMAC_SQL.format(m='e164')} AS pseudonym,
           timezone({tz}, date_trunc('{coarse}', timezone({tz}, ts))) AS event_hour,
           strftime(timezone({tz}, ts), '%Y-%m') AS month,  -- the local month, as the job partitions
           lower(trim(event_type)) AS event_type,
           CASE WHEN roaming THEN NULL ELSE h3_cell END AS h3_cell,
           CASE WHEN roaming THEN plmn_country ELSE cell_country END AS country
    FROM accepted CROSS JOIN pads
  )
  SELECT pseudonym, {_quote(key_id)} AS key_id, event_hour, event_type, h3_cell, country,
         CAST(NULL AS VARCHAR) AS counterpart_pseudonym, {_quote(agreement.agreement_id)} AS agreement_id,
         {_quote(run_id)} AS run_id, month
  FROM keyed
) TO {_quote(str(out_dir))} (FORMAT parquet, PARTITION_BY (month))
"""


def load_reference_tables(con: duckdb.DuckDBPyConnection, cell_files: list[Path], agreement: Agreement,
                          key: PseudonymKey) -> int:
    """Cells binned once by the project's own ``bin_cells``; the roaming table; the HMAC pads."""
    raw = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in cell_files], ignore_index=True)
    for c in CELLS.columns:  # optional columns absent from the file
        if c not in raw:
            raw[c] = ""
    binned, _ = bin_cells(raw, agreement.h3_resolution, load_boundaries())
    cells = pd.DataFrame({"cell_id": binned["cell_id"].astype(str), "h3_cell": binned["h3_cell"],
                          "country": binned["country"],
                          "valid_from": pd.to_datetime(binned["valid_from"]).dt.date,
                          "valid_to": pd.to_datetime(binned["valid_to"]).dt.date})
    con.register("cells_df", cells)
    con.execute("CREATE TEMP TABLE cells AS SELECT cell_id, h3_cell, country, CAST(valid_from AS DATE) AS valid_from, "
                "CAST(valid_to AS DATE) AS valid_to FROM cells_df")
    table = plmn_table()
    con.register("plmn_df", table)
    con.execute("CREATE TEMP TABLE plmn_full AS SELECT plmn, plmn_country FROM plmn_df WHERE length(plmn) > 3")
    con.execute("CREATE TEMP TABLE plmn_mcc AS SELECT plmn, plmn_country FROM plmn_df WHERE length(plmn) = 3")
    ipad, opad = key.pads()
    con.execute("CREATE TEMP TABLE pads (ipad BLOB, opad BLOB)")
    con.execute("INSERT INTO pads VALUES ($1, $2)", [ipad, opad])
    return len(cells)


def check_pseudonyms(con: duckdb.DuckDBPyConnection, first_file: Path, agreement: Agreement,
                     key: PseudonymKey, sample: int = 500) -> dict:
    """DuckDB's HMAC must equal Python's ``hmac`` on the same E.164 text (asserted), and its
    pattern E.164 is compared with the job's phonenumbers normalization (reported)."""
    cc = TRUNK[agreement.home_country]
    rows = con.execute(f"""
        WITH n AS (SELECT DISTINCT msisdn FROM read_csv({_quote(str(first_file))}, header = true,
                                                        all_varchar = true, ignore_errors = true)
                   ORDER BY msisdn LIMIT {int(sample)}),
             e AS (SELECT msisdn, {e164_sql('msisdn', cc)} AS e164 FROM n)
        SELECT msisdn, e164, CASE WHEN e164 IS NOT NULL THEN {HMAC_SQL.format(m='e164')} END
        FROM e CROSS JOIN pads""").fetchall()
    mismatched = [m for m, e, p in rows if e is not None and p != key.pseudonym(e)]
    assert not mismatched, f"DuckDB HMAC differs from Python hmac for {len(mismatched)} of {len(rows)} numbers"
    same_e164 = sum(e == to_e164(m, agreement.home_region) for m, e, _ in rows)
    return {"hmac_checked": sum(e is not None for _, e, _ in rows), "hmac_equal": True,
            "e164_sampled": len(rows), "e164_same_as_phonenumbers": same_e164}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agreement", type=Path, required=True)
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    started, cpu0 = time.perf_counter(), tree_cpu_s()
    agreement = load_agreement(args.agreement)
    key = load_key(agreement.key)
    files = inp.discover(args.input)
    cdr_files = [f.path for f in files["cdr"]]
    shutil.rmtree(args.out, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(args.threads)}")
    con.execute("SET preserve_insertion_order = false")  # as Spark: no row order promised
    n_cells = load_reference_tables(con, [f.path for f in files["cells"]], agreement, key)
    prepare_s = time.perf_counter() - started

    t = time.perf_counter()
    written = con.execute(ingest_sql(cdr_files, agreement, key.key_id, "bench-duckdb", args.out)).fetchone()[0]
    sql_s = time.perf_counter() - t
    total_s, total_cpu_s = time.perf_counter() - started, tree_cpu_s() - cpu0
    check = check_pseudonyms(con, cdr_files[0], agreement, key)
    out = {"engine": "duckdb", "duckdb_version": duckdb.__version__, "threads": args.threads,
           "prepare_s": round(prepare_s, 2), "sql_s": round(sql_s, 2), "total_s": round(total_s, 2),
           "job_cpu_s": round(total_cpu_s, 1),
           "rows_written": written, "cells": n_cells, "check": check}
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
