"""Flowminder's FlowDB tables, delivered as CSV, read into the native contract (docs/contracts.md, "FlowDB").

A FlowDB delivery is what FlowETL ingests: one CSV file per event table and day, named
``<table>_YYYYMMDD.csv[.gz]`` (``calls``, ``sms``, ``mds``, ``topups``; any case, in any sub-folder),
with the columns of FlowDB's ``events.<table>``, and the cell table ``infrastructure.cells`` as
``cells.csv[.gz]``. Optional ``subscribers/`` and ``payments/`` folders follow the native contract:
FlowDB has no table for either.

Mapping (every value stays text; ``validate`` parses and checks it afterwards):

* ``msisdn`` -> ``msisdn`` (a phone number: ``ID_KIND`` is numbers, the E.164 check applies);
  ``msisdn_counterpart`` -> ``counterpart_msisdn`` (calls, sms);
* ``datetime`` -> ``event_time``;
* the table and ``outgoing`` -> ``event_type``: calls ``call_out``/``call_in``, sms ``sms_out``/``sms_in``,
  mds ``data``, topups ``topup`` (a recharge at a cell: the subscriber was there);
* ``duration`` (numeric seconds; calls, mds) -> ``duration_s`` rounded to whole seconds;
* ``location_id`` -> ``cell_id``; ``visited_plmn`` stays empty: FlowDB holds the operator's own network.

``imei``, ``imsi``, ``tac``, ``id``, ``network``, ``operator_code``, ``country_code``, volumes and top-up
amounts are never selected: they are not read into any frame (a malformed line is kept whole, as
delivered, in the operator's quarantine only).

Cells: ``id`` -> ``cell_id``; the position from ``geom_point`` (WKT or EWKT ``POINT(lon lat)``, or the
hex EWKB a ``COPY ... TO`` of the geometry column writes; SRID 4326) or from ``longitude`` and ``latitude``
columns (FlowKit's own test data); ``date_of_first_service``/``date_of_last_service`` -> ``valid_from``/
``valid_to`` (both inclusive, as FlowDB's versions of a cell are).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import re
from collections import defaultdict
from functools import reduce
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility.anonymize import inputs as inp
from mobility.anonymize.formats import SOURCE_REASON
from mobility.anonymize.validate import blank, parse_time
from mobility.errors import InputContractError
from mobility.schemas import CDR, CELLS, PAYMENTS, SUBSCRIBERS, InputContract

ID_KIND = "numbers"  # FlowDB's msisdn as the operator exports it before pseudonymization (module docstring)

_IDENTIFIERS = ("imsi", "imei", "tac")  # never read
_COMMON = ("id", "network", "imsi", "imei", "tac", "operator_code", "country_code")
TABLES = {  # FlowDB's events.<table> columns (flowdb/bin/build/0020_schema_events.sql)
    "calls": InputContract("calls", required=("msisdn", "datetime", "outgoing", "location_id"),
                           optional=("duration", "msisdn_counterpart", *_COMMON),
                           description="FlowDB events.calls: one row per party of a call"),
    "sms": InputContract("sms", required=("msisdn", "datetime", "outgoing", "location_id"),
                         optional=("msisdn_counterpart", *_COMMON),
                         description="FlowDB events.sms: one row per party of a text message"),
    "mds": InputContract("mds", required=("msisdn", "datetime", "location_id"),
                         optional=("duration", "volume_total", "volume_upload", "volume_download", *_COMMON),
                         description="FlowDB events.mds: mobile data sessions"),
    "topups": InputContract("topups", required=("msisdn", "datetime", "location_id"),
                            optional=("type", "recharge_amount", "airtime_fee", "tax_and_fee", "pre_event_balance",
                                      "post_event_balance", *_COMMON),
                            description="FlowDB events.topups: credit recharges"),
}
CELLS_TABLE = InputContract("cells", required=("id",),
                            optional=("version", "site_id", "geom_point", "longitude", "latitude",
                                      "date_of_first_service", "date_of_last_service"),
                            description="FlowDB infrastructure.cells: the operator's cells, one row per version")

# What is read out of each file: the identifiers above are not among these columns.
_EVENT_READ = InputContract("flowdb events", required=(),
                            optional=("msisdn", "datetime", "outgoing", "duration", "msisdn_counterpart",
                                      "location_id"))
_CELLS_READ = InputContract("flowdb cells", required=(),
                            optional=("id", "geom_point", "longitude", "latitude", "date_of_first_service",
                                      "date_of_last_service"))

# PostgreSQL's boolean input forms (what a COPY of a BOOLEAN column writes is t/f)
TRUE_WORDS = ("t", "true", "y", "yes", "on", "1")
FALSE_WORDS = ("f", "false", "n", "no", "off", "0")
_EVENT_TYPE = {"calls": ("call_out", "call_in"), "sms": ("sms_out", "sms_in"), "mds": ("data", "data"),
               "topups": ("topup", "topup")}
_WGS84 = 4326

_EVENT_NAME = re.compile(r"^(calls|sms|mds|topups?)_(\d{8})\.csv(\.gz)?$", re.IGNORECASE)
_CELLS_NAME = re.compile(r"^cells(_[^/]*)?\.csv(\.gz)?$", re.IGNORECASE)
_LOOKS_FLOWDB = re.compile(r"^(calls|sms|mds|topups?|forwards|cells)([_.]|$)", re.IGNORECASE)
_NATIVE = ("subscribers", "payments")  # FlowDB has neither: native contract, sections 5 and 6


def table_of(name: str) -> str:
    """The FlowDB table an input file feeds (``calls``, ``sms``, ``mds``, ``topups`` or ``cells``)."""
    base = Path(name).name
    if _CELLS_NAME.match(base):
        return "cells"
    found = _EVENT_NAME.match(base)
    if not found:
        raise ValueError(f"{name} is not a FlowDB file name")
    table = found.group(1).lower()
    return "topups" if table == "topup" else table


# ---- discover ---------------------------------------------------------------------------------

def _refuse_name(path: Path, base: str) -> None:
    if base.lower().startswith("forwards"):
        raise InputContractError(
            "FlowDB call forwards (events.forwards) are not read: a forward does not place the subscriber",
            where=str(path), hint="move the forwards_*.csv files out of the input folder and run again")
    if base.lower().endswith(".parquet"):
        raise InputContractError("a FlowDB delivery is CSV (as FlowETL ingests it), not Parquet", where=str(path),
                                 hint="export the table as CSV (gzip allowed), one file per table and day")
    raise InputContractError(
        "the file's name does not say its FlowDB table and day", where=str(path),
        hint="name event files <table>_YYYYMMDD.csv or .csv.gz (FlowETL's convention), with <table> one of calls, "
             "sms, mds, topups, and the cell table cells.csv; see docs/contracts.md, 'FlowDB'")


def _check_date(path: Path, base: str) -> None:
    found = _EVENT_NAME.match(base)
    assert found is not None
    try:
        dt.datetime.strptime(found.group(2), "%Y%m%d")
    except ValueError:
        raise InputContractError(f"{found.group(2)} in the file's name is not a date", where=str(path),
                                 hint="name the file after the day its events belong to, as YYYYMMDD") from None


def _check_header(table: InputContract, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in table.required if c not in columns]
    positioned = "geom_point" in columns or {"longitude", "latitude"} <= set(columns)
    if table is CELLS_TABLE and not positioned:
        missing.append("geom_point (or longitude and latitude)")
    if missing:
        accepted = [c for c in table.optional if c not in _IDENTIFIERS]
        hint = (f"FlowDB's {table.description.split(':')[0].removeprefix('FlowDB ')} needs {list(table.required)}"
                + (" and geom_point or longitude and latitude" if table is CELLS_TABLE else "")
                + f" and accepts {accepted}; see docs/contracts.md, 'FlowDB'")
        by_case = {c.lower().strip().replace(" ", "_"): c for c in columns}
        near = [f"{by_case[m]!r} for {m!r}" for m in missing if m in by_case]
        if "datetime" in missing and "start_time" in columns:  # the name in FlowKit's own test CSVs
            near.append("'start_time' for 'datetime'")
        if near:
            hint = f"rename {', '.join(near)} in the CSV header; {hint}"
        raise InputContractError(f"missing required column(s) {missing} for {table.description}; "
                                 f"found {list(columns)}", where=str(path), hint=hint)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputContractError(f"duplicate column(s) {dupes}", where=str(path),
                                 hint="name each column once (which of the two holds the values is not guessed)")


_SAMPLE_ROWS = 20


def _check_numbers(path: Path, columns: tuple[str, ...]) -> None:
    """Refuse an extract whose ``msisdn`` holds ids rather than numbers (FlowDB deployments often hold the
    operator's hashed ids): every row would be quarantined as ``invalid_msisdn``. Looks at the first rows
    of one file only; no value is repeated in the message."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    at = columns.index("msisdn")
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            rows = [r for _, r in zip(range(_SAMPLE_ROWS + 1), csv.reader(fh))][1:]
    except (OSError, UnicodeDecodeError, EOFError, csv.Error):
        return  # the rows' own problems are found (and counted) when they are read
    values = [r[at].strip() for r in rows if len(r) > at and r[at].strip()]
    if values and all(re.search(r"[A-Za-z]", v) for v in values):
        raise InputContractError(
            f"the first {len(values)} msisdn values are not phone numbers (they hold letters): the extract's msisdn "
            "looks already pseudonymized, which a FlowDB delivery to mobility cannot be yet", where=str(path),
            hint="export FlowDB's tables with the subscribers' numbers (mobility keys them with the agreement's "
                 "key), or deliver the native contract; see docs/contracts.md, 'FlowDB'")


def _native_files(root: Path, name: str) -> list[inp.InputFile]:
    """A native dataset delivered alongside (subscribers/, payments/), checked as ``inputs.discover`` does."""
    contract = {"subscribers": SUBSCRIBERS, "payments": PAYMENTS}[name]
    sub = root / name
    candidates = sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))) \
        if sub.is_dir() else []
    candidates += sorted(p for p in root.glob(f"{name}.*") if p.is_file())
    found = []
    for path in candidates:
        fmt = inp._fmt(path)
        if fmt is None:
            raise InputContractError(f"unsupported file type in {name}/", where=str(path),
                                     hint="use .csv, .csv.gz or .parquet")
        types: tuple[str, ...] = ()
        if fmt == "csv":
            cols = inp._csv_header(path)
        else:
            schema = inp._parquet_schema(path)
            cols, types = tuple(schema.names), tuple(str(t) for t in schema.types)
        inp._check_columns(contract, path, cols)
        if fmt == "parquet":
            inp._check_parquet_types(contract, path, schema)
        found.append(inp.make_input_file(root, name, path, fmt, cols, types))
    return found


def _candidates(root: Path) -> list[Path]:
    """Files under ``root`` that may be FlowDB tables: not hidden, not in a native dataset's folder."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith((".", "_")) for part in rel.parts):
            continue
        if rel.parts[0] in _NATIVE or (len(rel.parts) == 1 and path.name.split(".")[0] in _NATIVE):
            continue
        if _LOOKS_FLOWDB.match(path.name):
            out.append(path)
    return out


def discover(root: str | Path) -> dict[str, list[inp.InputFile]]:
    """FlowDB files per native dataset (``cdr``: every event table; ``cells``), headers checked.

    Files whose names do not begin with a FlowDB table name are not FlowDB's and are left alone (a
    README, a checksum list); one that does but is not named ``<table>_YYYYMMDD.csv[.gz]`` or
    ``cells.csv[.gz]`` is refused, so that no delivered table is silently passed over."""
    root = Path(root)
    if not root.is_dir():
        raise InputContractError("input folder not found", where=str(root),
                                 hint="pass --input the folder holding the FlowDB CSV files (calls_YYYYMMDD.csv.gz, "
                                      "..., cells.csv)")
    tables = []
    for path in _candidates(root):  # names first: cheap, and they decide what else is needed
        if not (_EVENT_NAME.match(path.name) or _CELLS_NAME.match(path.name)):
            _refuse_name(path, path.name)
        table = table_of(path.name)
        if table != "cells":
            _check_date(path, path.name)
        tables.append((path, table))
    found: dict[str, list[inp.InputFile]] = defaultdict(list)
    for name in _NATIVE:
        native = _native_files(root, name)
        if native:
            found[name] = native
    has_events = any(t != "cells" for _, t in tables)
    if not has_events and not found.get("payments"):
        native_hint = " (this folder has cdr/: a delivery in the native contract needs input_format: native)" \
            if (root / "cdr").is_dir() else ""
        raise InputContractError(
            "no FlowDB event files found", where=str(root),
            hint="put the calls_YYYYMMDD.csv[.gz], sms_..., mds_... and topups_... files in the input folder (any "
                 f"sub-folder), or set the agreement's input_format to the delivery's format{native_hint}")
    if has_events and not any(t == "cells" for _, t in tables):
        raise InputContractError(
            "FlowDB event files found but no cell table", where=str(root),
            hint="add infrastructure.cells as cells.csv (id, version, date_of_first_service, date_of_last_service, "
                 "geom_point or longitude and latitude); see docs/contracts.md, 'FlowDB'")
    sampled = False
    for path, table in tables:
        columns = inp._csv_header(path)
        if len(columns) == 1 and any(d in columns[0] for d in ";\t|"):
            raise InputContractError("the header is not separated by commas", where=str(path),
                                     hint="write the file as comma-separated CSV (COPY ... WITH (FORMAT csv, "
                                          "HEADER true)); see docs/contracts.md, 'FlowDB'")
        _check_header(CELLS_TABLE if table == "cells" else TABLES[table], path, columns)
        if table != "cells" and not sampled:
            _check_numbers(path, columns)
            sampled = True
        dataset = "cells" if table == "cells" else "cdr"
        found[dataset].append(inp.make_input_file(root, dataset, path, "csv", columns))
    return dict(found)


# ---- read -------------------------------------------------------------------------------------

def _read_csv(spark: SparkSession, files: list[inp.InputFile], wanted: InputContract) -> DataFrame:
    """The ``wanted`` columns of CSV files (as text; null where a file lacks one), ``CORRUPT`` and ``SOURCE_FILE``.

    Every column of a file's header is parsed (Spark's CSV column pruning is off): otherwise a line with
    too many or too few fields is not recognised as malformed when only some columns are selected. The
    columns not wanted (IMEI, IMSI, TAC, ...) are dropped right after the scan."""
    names = inp.source_names(spark, files)
    by_header: dict[tuple[str, ...], list[inp.InputFile]] = defaultdict(list)
    for f in files:
        by_header[f.columns].append(f)
    frames = []
    for columns, group in by_header.items():
        schema = ", ".join(f"`{c}` STRING" for c in columns) + f", `{inp.CORRUPT}` STRING"
        df = (spark.read.schema(schema)
              .option("header", True).option("enforceSchema", True).option("columnPruning", False)
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", inp.CORRUPT)
              .option("multiLine", False).option("escape", '"')
              .csv([str(f.path) for f in group]))
        df = inp.attach_source(df, names)
        frames.append(df.select(*[F.col(f"`{c}`") if c in columns else F.lit(None).cast("string").alias(c)
                                  for c in wanted.columns], inp.CORRUPT, inp.SOURCE_FILE))
    return reduce(DataFrame.unionByName, frames)


def _per_file(files: list[inp.InputFile], value) -> Column:
    """A per-file constant, looked up by the row's ``SOURCE_FILE`` position."""
    return F.element_at(F.array(*[F.lit(value(n)) for n in inp.file_names(files)]), F.col(inp.SOURCE_FILE) + 1)


def _root_of(f: inp.InputFile) -> Path:
    """The input folder a discovered file was found under (its name is its path relative to it)."""
    return f.path.parents[len(PurePosixPath(f.name).parts) - 1]


def _cell_ids(spark: SparkSession, root: Path) -> DataFrame:
    """Every id in the delivery's cell table, once: a ``location_id`` not among them is unknown to FlowDB."""
    files = [inp.InputFile("cells", p.resolve(), "csv", inp._csv_header(p), "", p.relative_to(root).as_posix())
             for p in _candidates(root) if _CELLS_NAME.match(p.name)]
    ids = _read_csv(spark, files, InputContract("cell ids", required=(), optional=("id",)))
    return ids.select(F.trim(F.col("id")).alias("_known_id")).where(~blank(F.col("_known_id"))).distinct()


def _events(spark: SparkSession, files: list[inp.InputFile]) -> DataFrame:
    df = _read_csv(spark, files, _EVENT_READ).withColumn("_table", _per_file(files, table_of))
    df = df.join(F.broadcast(_cell_ids(spark, _root_of(files[0]))), F.trim(F.col("location_id")) == F.col("_known_id"),
                 "left")
    table = F.col("_table")
    out = F.lower(F.trim(F.col("outgoing")))
    outgoing = F.when(out.isin(*TRUE_WORDS), True).when(out.isin(*FALSE_WORDS), False)
    directed = table.isin("calls", "sms")
    event_type = F.lit(None).cast("string")
    for name, (out_type, in_type) in _EVENT_TYPE.items():
        typed = F.when(outgoing, out_type).when(~outgoing, in_type) if name in ("calls", "sms") else F.lit(out_type)
        event_type = F.when(table == name, typed).otherwise(event_type)
    seconds = F.expr("try_cast(trim(duration) AS DECIMAL(38, 6))")
    timed = table.isin("calls", "mds")
    duration = F.when(timed & ~blank(F.col("duration")),
                      F.coalesce(F.round(seconds, 0).cast("decimal(38,0)").cast("string"), F.col("duration")))
    reason = (F.when(F.col(inp.CORRUPT).isNotNull(), F.lit(None))  # the native check names it: malformed_row
              .when(blank(F.col("msisdn")), "missing_msisdn")
              .when(parse_time(F.col("datetime")).isNull(), "invalid_datetime")
              .when(directed & outgoing.isNull(), "invalid_outgoing")
              .when(timed & ~blank(F.col("duration")) & (seconds.isNull() | (seconds < 0)), "invalid_duration")
              .when(blank(F.col("location_id")), "missing_location_id")
              .when(F.col("_known_id").isNull(), "unknown_location_id"))
    return df.select(
        F.col("msisdn").alias("msisdn"),
        F.col("datetime").alias("event_time"),
        event_type.alias("event_type"),
        F.col("location_id").alias("cell_id"),
        F.lit(None).cast("string").alias("visited_plmn"),
        duration.alias("duration_s"),
        F.when(directed, F.col("msisdn_counterpart")).alias("counterpart_msisdn"),
        F.lit(None).cast("string").alias("imei"),
        F.col(inp.CORRUPT), F.col(inp.SOURCE_FILE), reason.alias(SOURCE_REASON),
    )


_WKT = re.compile(r"^\s*(?:SRID=(\d+)\s*;\s*)?POINT\s*\(\s*(\S+)\s+(\S+)\s*\)\s*$", re.IGNORECASE)
# a 2-D point as hex (E)WKB, either byte order, with or without its SRID (what a COPY of a PostGIS column writes)
_WKB = re.compile(r"^(?:(0101000000)|0101000020([0-9A-F]{8})|(0000000001)|0020000001([0-9A-F]{8}))([0-9A-F]{32})$")


def parse_points(geom: pd.Series) -> pd.DataFrame:
    """``lon``, ``lat`` and ``srid`` of points given as WKT, EWKT or hex (E)WKB; nulls where a value is none
    of these (the SRID defaults to 4326, the SRID of FlowDB's geometry columns). Vectorised: no loop per row."""
    text = geom.astype(object).where(geom.notna(), "").astype(str).str.strip()
    n = len(text)
    lon, lat = np.full(n, np.nan), np.full(n, np.nan)
    srid = np.full(n, -1, dtype=np.int64)
    wkt = text.str.extract(_WKT)
    is_wkt = wkt[1].notna().to_numpy()
    lon[is_wkt] = pd.to_numeric(wkt[1][is_wkt], errors="coerce").to_numpy(dtype=float)
    lat[is_wkt] = pd.to_numeric(wkt[2][is_wkt], errors="coerce").to_numpy(dtype=float)
    srid[is_wkt] = pd.to_numeric(wkt[0][is_wkt], errors="coerce").fillna(_WGS84).to_numpy(dtype=np.int64)
    wkb = text.str.upper().str.extract(_WKB)
    for order, plain, with_srid in (("<", 0, 1), (">", 2, 3)):
        rows = ((wkb[plain].notna() | wkb[with_srid].notna()).to_numpy()) & ~is_wkt
        if not rows.any():
            continue
        xy = np.frombuffer(bytes.fromhex("".join(wkb[4][rows])), dtype=f"{order}f8").reshape(-1, 2)
        lon[rows], lat[rows] = xy[:, 0], xy[:, 1]
        given = wkb[with_srid][rows].fillna("").to_numpy(dtype=str)
        ids = np.full(len(given), _WGS84, dtype=np.int64)
        has = given != ""
        if has.any():
            ids[has] = np.frombuffer(bytes.fromhex("".join(given[has])), dtype=f"{order}u4")
        srid[rows] = ids
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    lon[bad], lat[bad] = np.nan, np.nan
    return pd.DataFrame({"lon": lon, "lat": lat, "srid": pd.array(srid, dtype="Int64")},
                        index=geom.index).assign(srid=lambda d: d["srid"].mask(srid < 0))


def _cells(spark: SparkSession, files: list[inp.InputFile]) -> DataFrame:
    df = _read_csv(spark, files, _CELLS_READ)

    # pyspark's stubs lack the decorator form whose UDF type comes from the function's type hints
    @F.pandas_udf("lon double, lat double, srid int")  # type: ignore[call-overload]
    def _points(geom: pd.Series) -> pd.DataFrame:
        return parse_points(geom)

    geom = F.col("geom_point")
    has_geom = ~blank(geom)
    df = df.withColumn("_p", F.when(has_geom, _points(geom)))
    lon, lat, srid = F.col("_p.lon"), F.col("_p.lat"), F.col("_p.srid")
    reason = (F.when(F.col(inp.CORRUPT).isNotNull(), F.lit(None))  # the native check names it: malformed_row
              .when(blank(F.col("id")), "missing_id")
              .when(has_geom & (lon.isNull() | lat.isNull()), "invalid_geom_point")
              .when(has_geom & (srid != _WGS84), "unsupported_srid"))
    return df.select(
        F.trim(F.col("id")).alias("cell_id"),
        F.when(has_geom, lat.cast("string")).otherwise(F.col("latitude")).alias("latitude"),
        F.when(has_geom, lon.cast("string")).otherwise(F.col("longitude")).alias("longitude"),
        F.col("date_of_first_service").alias("valid_from"),
        F.col("date_of_last_service").alias("valid_to"),
        F.lit(None).cast("string").alias("technology"),
        F.col(inp.CORRUPT), F.col(inp.SOURCE_FILE), reason.alias(SOURCE_REASON),
    )


def read(spark: SparkSession, files: list[inp.InputFile], contract: InputContract) -> DataFrame:
    """The rows of ``files`` as the native ``contract``'s columns, with ``CORRUPT``, ``SOURCE_FILE`` and
    ``SOURCE_REASON`` in FlowDB's terms (``missing_msisdn``, ``invalid_datetime``, ``invalid_outgoing``,
    ``invalid_duration``, ``missing_location_id``, ``unknown_location_id``; cells: ``missing_id``,
    ``invalid_geom_point``, ``unsupported_srid``). One row out per row read."""
    if contract.name == CDR.name:
        return _events(spark, files)
    if contract.name == CELLS.name:
        return _cells(spark, files)
    return inp.read(spark, files, contract).withColumn(SOURCE_REASON, F.lit(None).cast("string"))
