"""Eurostat's multimno (ESS reference pipeline) bronze data, read into the native contract.

``--input`` holds multimno's bronze folders as multimno lays them out (its general configuration's
``[Paths.Bronze]``): ``mno_events/`` (``BronzeEventDO``) and ``mno_network/`` (``BronzeNetworkDO``), both
Parquet partitioned ``year=/month=/day=``, and optionally ``mcc_iso_tz/`` (``BronzeMccIsoTzMap``; else the
copy shipped in ``mobility/data/mcc_iso_tz.csv``). docs/contracts.md, "Operators' formats", is the contract.

What multimno's configuration says, the agreement says: ``local_timezone`` is the agreement's
``time_zone`` (a bronze timestamp without an offset is a local time there) and ``local_mcc`` the MCCs
of the agreement's ``home_country`` in the MCC table. An event's domain follows multimno's event
cleaning (``assign_domain``): *outbound* when its ``plmn`` (the serving network) is not a home
network, else *domestic* when its ``mcc`` (the SIM's home network) is a home MCC, else *inbound*.

Every row multimno's syntactic and semantic event cleaning would drop gets a quarantine reason named
after multimno's flag (``{column}_{error type}``, ``no_location``, ``cell_id_non_existent``,
``cell_id_not_valid``), in ``SOURCE_REASON``; the native checks then run on the rest.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pycountry
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mobility.anonymize import inputs as inp
from mobility.anonymize.formats import SOURCE_REASON
from mobility.anonymize.validate import blank, first_reason, parse_time
from mobility.config import Agreement
from mobility.errors import InputContractError
from mobility.reference import PACKAGE_DATA
from mobility.schemas import CDR, CELLS, InputContract

ID_KIND = "pseudonyms"  # user_id is already the operator's pseudonym: keyed again, never a number
POINTS = True  # an event may be located by latitude/longitude instead of a cell

EVENTS, NETWORK, MCC_FOLDER = "mno_events", "mno_network", "mcc_iso_tz"
SHIPPED_MCC_TABLE = PACKAGE_DATA / "mcc_iso_tz.csv"
EVENT_TYPE = "signal"  # multimno's events carry no service type
# The timestamp texts accepted: multimno's timestamp_format (yyyy-MM-dd'T'HH:mm:ss in its documentation,
# yyyy-MM-dd HH:mm:ss in its demo configuration), with optional fractions of a second and an optional
# explicit offset (Z or +hh:mm). Anything else (another order, a date alone, epoch numbers) is
# timestamp_cannot_parse, as multimno's to_timestamp with one format would find.
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$"

# Parquet column types each multimno column may have: multimno's schema type first (what its writers produce).
BINARY, TEXT, CODE, NUMBER, TIME = "binary", "text", "code", "number", "time"
EXPECTED = {BINARY: "binary (multimno's BinaryType)", TEXT: "a string", CODE: "an integer or a string of digits",
            NUMBER: "a number (multimno's FloatType)", TIME: "a string (multimno's StringType) or a Parquet TIMESTAMP"}
EVENT_COLUMNS = {"user_id": BINARY, "timestamp": TIME, "mcc": CODE, "mnc": TEXT, "plmn": CODE, "cell_id": CODE,
                 "latitude": NUMBER, "longitude": NUMBER, "loc_error": NUMBER}
EVENT_REQUIRED = ("user_id", "timestamp", "mcc", "mnc", "plmn")
NETWORK_COLUMNS = {"cell_id": CODE, "latitude": NUMBER, "longitude": NUMBER, "technology": TEXT,
                   "valid_date_start": TIME, "valid_date_end": TIME}
NETWORK_REQUIRED = ("cell_id", "latitude", "longitude")  # multimno's MANDATORY_COLUMNS
_PARTITION = (re.compile(r"^year=(\d{4})$"), re.compile(r"^month=(\d{1,2})$"), re.compile(r"^day=(\d{1,2})$"))
_LAYOUT_HINT = ("multimno lays its bronze data out as {folder}/year=YYYY/month=M/day=D/*.parquet (one folder per "
                "day, as its writers partition by year, month and day); move the file under the folder of its day")


# ---- discover ----------------------------------------------------------------------------------

def _refuse(message: str, where: Path | str, hint: str) -> InputContractError:
    return InputContractError(message, where=str(where), hint=hint)


def _type_ok(kind: str, t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    text = pa.types.is_string(t) or pa.types.is_large_string(t)
    return pa.types.is_null(t) or {
        BINARY: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t),
        TEXT: text,
        CODE: text or pa.types.is_integer(t),
        NUMBER: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
        TIME: text or pa.types.is_timestamp(t),
    }[kind]


def _data_files(folder: Path) -> list[Path]:
    """The data files under a bronze folder: hidden and bookkeeping files (``.crc``, ``_SUCCESS``) left out."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part.startswith((".", "_")) for part in path.relative_to(folder).parts):
            continue
        if not path.name.lower().endswith(".parquet"):
            raise _refuse(f"unsupported file type in {folder.name}/: multimno's bronze data is Parquet", path,
                          "deliver the folder as multimno writes it (Parquet files only) or remove the file")
        found.append(path)
    return found


def partition_day(folder: Path, path: Path) -> dt.date:
    """The day of a bronze file from its ``year=/month=/day=`` folders."""
    parts = path.relative_to(folder).parts
    matches = [rx.match(p) for rx, p in zip(_PARTITION, parts[:-1])]
    if len(parts) != 4 or not all(matches):
        raise _refuse(f"a {folder.name} file outside the year=/month=/day= folders "
                      f"(found {'/'.join(parts[:-1]) or 'no partition folder'})", path,
                      _LAYOUT_HINT.format(folder=folder.name))
    year, month, day = (int(m.group(1)) for m in matches if m)
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise _refuse(f"year={year}/month={month}/day={day} is not a date", path,
                      _LAYOUT_HINT.format(folder=folder.name)) from None


def _check_file(path: Path, what: str, schema: pa.Schema, kinds: dict[str, str], required: tuple[str, ...]) -> None:
    names = tuple(schema.names)
    missing = [c for c in required if c not in names]
    if missing:
        raise _refuse(f"missing column(s) {missing} of multimno's {what}; found {list(names)}", path,
                      f"write the file with multimno's schema (its columns {list(kinds)}, names in lower case); "
                      "see docs/contracts.md, 'Operators' formats'")
    if kinds is EVENT_COLUMNS and "cell_id" not in names and not {"latitude", "longitude"} <= set(names):
        raise _refuse(f"neither 'cell_id' nor 'latitude' and 'longitude' in multimno's {what}: no event could be "
                      f"placed; found {list(names)}", path, "deliver the cell_id of each event (or its coordinates)")
    problems = [f"'{c}' is {schema.field(c).type}, expected {EXPECTED[kinds[c]]}"
                for c in names if c in kinds and not _type_ok(kinds[c], schema.field(c).type)]
    if problems:
        hint = "write these columns with multimno's types (BronzeEventDO, BronzeNetworkDO) and deliver the file again"
        if any(p.startswith("'mnc'") for p in problems):
            hint += "; mnc is text because its leading zero matters ('01' is not '1')"
        if any(p.startswith("'user_id'") for p in problems):
            hint += "; user_id is the operator's pseudonymous id as bytes (multimno hashes it with SHA-256)"
        raise _refuse(f"column type(s) multimno's {what} does not have: {'; '.join(problems)}", path, hint)


def _listed(root: Path, folder: str, dataset: str, what: str, kinds: dict[str, str], required: tuple[str, ...],
            fingerprints: bool = True) -> list[inp.InputFile]:
    """The bronze files of one folder, each checked (layout, columns, types)."""
    base = root / folder
    out = []
    for path in _data_files(base):
        partition_day(base, path)
        schema = inp._parquet_schema(path)
        _check_file(path, what, schema, kinds, required)
        columns, types = tuple(schema.names), tuple(str(t) for t in schema.types)
        if fingerprints:
            out.append(inp.make_input_file(root, dataset, path, "parquet", columns, types))
        else:  # read again within a run: only its place and schema matter
            out.append(inp.InputFile(dataset, path.resolve(), "parquet", columns, "", path.relative_to(root).as_posix(),
                                     "", types))
    return out


def discover(root: str | Path) -> dict[str, list[inp.InputFile]]:
    """Events (``cdr``) and cells (``cells``) under ``root``, checked; the MCC table checked when delivered."""
    root = Path(root)
    layout = ("pass --input the folder holding multimno's bronze folders mno_events/ and mno_network/ "
              "(and optionally mcc_iso_tz/), as multimno's [Paths.Bronze] lays them out")
    if not root.is_dir():
        raise _refuse("input folder not found", root, layout)
    if not (root / EVENTS).is_dir():
        raise _refuse("no mno_events/ folder: the agreement's input_format is multimno, whose bronze event data "
                      "(BronzeEventDO) lives there", root / EVENTS, layout)
    if not (root / NETWORK).is_dir():
        raise _refuse("no mno_network/ folder: multimno's bronze network topology (BronzeNetworkDO) places the "
                      "events' cells", root / NETWORK,
                      "deliver mno_network/year=YYYY/month=M/day=D/*.parquet for every day with events")
    events = _listed(root, EVENTS, "cdr", "bronze events (BronzeEventDO)", EVENT_COLUMNS, EVENT_REQUIRED)
    if not events:
        raise _refuse("no event files under mno_events/", root / EVENTS, _LAYOUT_HINT.format(folder=EVENTS))
    cells = _listed(root, NETWORK, "cells", "bronze network topology (BronzeNetworkDO)", NETWORK_COLUMNS,
                    NETWORK_REQUIRED)
    network_days = {partition_day(root / NETWORK, f.path) for f in cells}
    for f in events:  # multimno's semantic cleaning places a day's events on that day's network
        day = partition_day(root / EVENTS, f.path)
        if day not in network_days:
            raise _refuse(f"no network topology for {day} (mno_network/year={day.year}/month={day.month}/"
                          f"day={day.day}/), the day of these events", f.path,
                          "deliver multimno's network topology of every day with events; nothing was read")
    mcc_table(root)
    return {"cdr": events, "cells": cells}


# ---- the MCC table ---------------------------------------------------------------------------------

def _iso3(iso3: object, iso2: object) -> str | None:
    for code in (iso3, iso2):  # pycountry looks a 3-letter code up as alpha_3, a 2-letter one as alpha_2
        if isinstance(code, str) and len(code.strip()) in (2, 3):
            country = pycountry.countries.get(alpha_3=code.strip().upper()) if len(code.strip()) == 3 \
                else pycountry.countries.get(alpha_2=code.strip().upper())
            if country is not None:
                return country.alpha_3
    return None


def mcc_table(root: Path) -> tuple[dict[int, str], str]:
    """MCC -> ISO alpha-3 from the delivered ``mcc_iso_tz/`` (multimno's ``BronzeMccIsoTzMap``), else from
    the shipped copy; and where it was read. An MCC listed twice keeps its first row; a row whose ISO codes
    are not countries is left out (its MCC is then unknown)."""
    folder = root / MCC_FOLDER
    if folder.is_dir():
        files = _data_files(folder)
        if not files:
            raise _refuse("mcc_iso_tz/ holds no Parquet file", folder,
                          "deliver multimno's MCC table there (mcc, iso2, iso3, ...) or remove the empty folder "
                          "to use the table shipped with mobility")
        frames = []
        for path in files:
            schema = inp._parquet_schema(path)
            names = set(schema.names)
            if "mcc" not in names or not names & {"iso3", "iso2"}:
                raise _refuse(f"multimno's MCC table needs 'mcc' and 'iso3' (or 'iso2'); found {sorted(names)}",
                              path, "write it with multimno's BronzeMccIsoTzMap schema")
            if not _type_ok(CODE, schema.field("mcc").type):
                raise _refuse(f"'mcc' is {schema.field('mcc').type}, expected {EXPECTED[CODE]}", path,
                              "write mcc as an integer, as multimno's BronzeMccIsoTzMap does")
            frames.append(pq.read_table(path, columns=[c for c in ("mcc", "iso2", "iso3") if c in names]).to_pandas())
        raw, source = pd.concat(frames, ignore_index=True), str(folder)
    else:
        raw, source = pd.read_csv(SHIPPED_MCC_TABLE, dtype=str, keep_default_na=False), str(SHIPPED_MCC_TABLE)
    out: dict[int, str] = {}
    for mcc, iso2, iso3 in zip(raw["mcc"], raw.get("iso2", pd.Series(None, index=raw.index)),
                               raw.get("iso3", pd.Series(None, index=raw.index))):
        code = pd.to_numeric(str(mcc).strip(), errors="coerce")
        country = _iso3(iso3, iso2)
        if pd.notna(code) and country and int(code) not in out:
            out[int(code)] = country
    return out, source


def home_mccs(table: dict[int, str], source: str, home_country: str) -> list[int]:
    """multimno's ``local_mcc``: every MCC of the agreement's home country in the table."""
    found = sorted(m for m, iso in table.items() if iso == home_country)
    if not found:
        raise _refuse(f"the MCC table names no MCC of the agreement's home_country {home_country}", source,
                      "add the home country's MCC(s) to mcc_iso_tz/ (or remove the folder to use the table shipped "
                      "with mobility), or check home_country in the agreement")
    return found


# ---- read ---------------------------------------------------------------------------------------

def _root(files: list[inp.InputFile]) -> Path:
    f = files[0]
    return f.path.parents[len(PurePosixPath(f.name).parts) - 1]


def _text(df: DataFrame, column: str, kind: str) -> Column:
    if column not in df.columns:
        return F.lit(None).cast("string").alias(column)
    if kind == BINARY:  # the operator's id as lowercase hex; an empty id is no id
        c = F.col(f"`{column}`").cast("binary")
        return F.when(F.length(c) > 0, F.lower(F.hex(c))).alias(column)
    return inp._as_text(df, column)


def _read_text(spark: SparkSession, files: list[inp.InputFile], folder: str, kinds: dict[str, str]) -> DataFrame:
    """Every column of ``kinds`` as text (missing ones null), with ``SOURCE_FILE`` and the file's day ``_day``."""
    root = _root(files)
    position = {name: i for i, name in enumerate(inp.file_names(files))}
    days = spark.createDataFrame([(position[f.name], partition_day(root / folder, f.path)) for f in files],
                                 f"{inp.SOURCE_FILE} INT, _day DATE")
    names = inp.source_names(spark, files)
    groups: dict[tuple, list[inp.InputFile]] = defaultdict(list)
    for f in files:  # files of one schema are read together (Spark reads a group with one file's schema)
        groups[(f.columns, f.types)].append(f)
    frames = []
    for group in groups.values():
        df = spark.read.parquet(*[str(f.path) for f in group])
        df = df.select(*[_text(df, c, k) for c, k in kinds.items()], "_metadata")
        frames.append(inp.attach_source(df, names).select(*kinds, inp.SOURCE_FILE))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out.join(F.broadcast(days), inp.SOURCE_FILE, "left")


def _number(column: str) -> Column:
    return F.expr(f"try_cast(trim(`{column}`) AS DOUBLE)")


def _network_reason() -> Column:
    """multimno's network cleaning of the mandatory columns: null, or out of the world's range."""
    lat, lon = _number("latitude"), _number("longitude")
    return first_reason([
        (blank(F.col("cell_id")), "cell_id_null_value"),
        (blank(F.col("latitude")), "latitude_null_value"),
        (blank(F.col("longitude")), "longitude_null_value"),
        (F.coalesce(~lat.between(-90, 90), F.lit(True)), "latitude_out_of_range"),
        (F.coalesce(~lon.between(-180, 180), F.lit(True)), "longitude_out_of_range"),
    ])


def _valid_time(column: str) -> Column:
    """A validity date as an instant; unparseable -> null, as multimno's network cleaning imputes it."""
    text = F.trim(F.col(column))
    return F.when(text.rlike(TIME_PATTERN), parse_time(text))


def _islands(df: DataFrame, key: list[Column]) -> DataFrame:
    """``_from`` and ``_to``: the first and last day of each run of consecutive days (``_day``) of ``key``."""
    w = Window.partitionBy(*key).orderBy("_day")
    gap = F.datediff(F.col("_day"), F.lag("_day").over(w))
    df = df.withColumn("_new", F.when(F.coalesce(gap, F.lit(2)) > 1, 1).otherwise(0))
    df = df.withColumn("_island", F.sum("_new").over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow)))
    run = Window.partitionBy(*key, F.col("_island"))
    return df.withColumn("_from", F.min("_day").over(run)).withColumn("_to", F.max("_day").over(run))


def _network_cells(spark: SparkSession, files: list[inp.InputFile]) -> DataFrame:
    """The network's rows as the native cells contract. Each day's snapshot repeats the cells of the day before:
    a cell's rows over consecutive days with the same place and technology become one validity period
    (``valid_from``, ``valid_to``), so that the repeated rows are copies of its first."""
    df = _read_text(spark, files, NETWORK, NETWORK_COLUMNS).withColumn(SOURCE_REASON, _network_reason())
    key = [F.trim(F.col("cell_id")), F.col("latitude"), F.col("longitude"), F.col("technology"),
           F.col(SOURCE_REASON).isNull()]
    df = _islands(df, key)
    sound = F.col(SOURCE_REASON).isNull()
    return df.select(
        "cell_id", "latitude", "longitude",
        F.date_format(F.when(sound, F.col("_from")).otherwise(F.col("_day")), "yyyy-MM-dd").alias("valid_from"),
        F.date_format(F.when(sound, F.col("_to")).otherwise(F.col("_day")), "yyyy-MM-dd").alias("valid_to"),
        "technology", F.lit(None).cast("string").alias(inp.CORRUPT), inp.SOURCE_FILE, SOURCE_REASON,
    ).select(*CELLS.columns, inp.CORRUPT, inp.SOURCE_FILE, SOURCE_REASON)


def _network_days(spark: SparkSession, root: Path) -> DataFrame:
    """Cell id -> the runs of days its sound rows are in the network, with its validity instants: one row
    per cell and run (small: broadcast), so that an event matches at most one."""
    files = _listed(root, NETWORK, "cells", "bronze network topology (BronzeNetworkDO)", NETWORK_COLUMNS,
                    NETWORK_REQUIRED, fingerprints=False)
    df = _read_text(spark, files, NETWORK, NETWORK_COLUMNS).filter(_network_reason().isNull())
    start, end = _valid_time("valid_date_start"), _valid_time("valid_date_end")
    incoherent = F.coalesce(start > end, F.lit(False))  # multimno's dates_out_of_range: both dates imputed null
    df = df.select(F.trim(F.col("cell_id")).alias("n_cell"), "_day",
                   F.when(~incoherent, start).alias("_vs"), F.when(~incoherent, end).alias("_ve"))
    # one row per cell and day: the widest validity of that day's rows (a null end is open)
    per_day = df.groupBy("n_cell", "_day").agg(
        F.min("_vs").alias("_vs"),
        F.when(F.count(F.when(F.col("_ve").isNull(), 1)) > 0, F.lit(None)).otherwise(F.max("_ve")).alias("_ve"))
    runs = _islands(per_day, [F.col("n_cell"), F.col("_vs").cast("string"), F.col("_ve").cast("string")])
    return runs.select("n_cell", "_from", "_to", "_vs", "_ve").distinct()


def _events(spark: SparkSession, files: list[inp.InputFile], agreement: Agreement) -> DataFrame:
    root = _root(files)
    table, source = mcc_table(root)
    home = home_mccs(table, source, agreement.home_country)
    countries = F.broadcast(spark.createDataFrame(sorted(table.items()), "_m INT, _iso STRING"))
    df = _read_text(spark, files, EVENTS, EVENT_COLUMNS)

    ts_text = F.trim(F.col("timestamp"))
    ts = F.when(ts_text.rlike(TIME_PATTERN), parse_time(ts_text))  # naive text: the agreement's time zone
    mcc = F.expr("try_cast(trim(mcc) AS INT)")
    plmn = F.trim(F.col("plmn"))
    plmn_mcc = F.substring(plmn, 1, 3).cast("int")
    df = df.withColumns({"_ts": ts, "_mcc": mcc, "_plmn": F.when(plmn != "", plmn), "_plmn_mcc": plmn_mcc})
    # multimno's assign_domain: outbound when the serving network (plmn) is not a home network
    outbound = F.col("_plmn").isNotNull() & F.coalesce(~F.col("_plmn_mcc").isin(*home), F.lit(True))
    df = df.withColumn("_outbound", outbound)
    sim = countries.select(F.col("_m").alias("_sim_m"), F.col("_iso").alias("_sim_iso"))
    net = countries.select(F.col("_m").alias("_net_m"), F.col("_iso").alias("_net_iso"))
    df = df.join(sim, F.col("_mcc") == F.col("_sim_m"), "left").join(net, F.col("_plmn_mcc") == F.col("_net_m"), "left")
    cells = F.broadcast(_network_days(spark, root))
    on_cell = ~F.col("_outbound") & ~blank(F.col("cell_id"))
    df = df.join(cells, on_cell & (F.trim(F.col("cell_id")) == F.col("n_cell"))
                 & F.col("_day").between(F.col("_from"), F.col("_to")), "left")

    day_start = F.to_timestamp(F.col("_day"))
    day_end = F.to_timestamp(F.date_add(F.col("_day"), 1))
    no_location = blank(F.col("cell_id")) & blank(F.col("latitude")) & blank(F.col("longitude"))
    reason = first_reason([  # in the order of multimno's event cleaning, then its semantic cleaning
        (F.col("user_id").isNull(), "user_id_null_value"),
        (blank(F.col("timestamp")), "timestamp_null_value"),
        (blank(F.col("mcc")), "mcc_null_value"),
        (blank(F.col("mnc")), "mnc_null_value"),
        (F.col("_ts").isNull(), "timestamp_cannot_parse"),
        ((F.col("_ts") < day_start) | (F.col("_ts") > day_end), "timestamp_out_of_range"),
        (F.coalesce(~F.col("_mcc").between(100, 999), F.lit(True)), "mcc_out_of_range"),
        (~F.trim(F.col("mnc")).rlike(r"^\d{2,3}$"), "mnc_out_of_range"),
        # 5 or 6 digits: multimno's integer range [10000, 99999] would refuse every 3-digit MNC
        (F.col("_plmn").isNotNull() & ~F.col("_plmn").rlike(r"^\d{5,6}$"), "plmn_out_of_range"),
        (F.col("_sim_iso").isNull() | (F.col("_outbound") & F.col("_net_iso").isNull()), "unknown_mcc"),
        (~F.col("_outbound") & no_location, "no_location"),
        (on_cell & F.col("n_cell").isNull(), "cell_id_non_existent"),
        (on_cell & ((F.col("_ts") < F.col("_vs")) | (F.col("_ts") > F.col("_ve"))), "cell_id_not_valid"),
    ])
    here = ~F.col("_outbound")
    null = F.lit(None).cast("string")
    return df.select(
        F.col("user_id").alias("msisdn"),
        F.col("timestamp").alias("event_time"),
        F.lit(EVENT_TYPE).alias("event_type"),
        F.when(here, F.col("cell_id")).alias("cell_id"),
        F.when(~here, F.col("_plmn")).alias("visited_plmn"),
        null.alias("duration_s"), null.alias("counterpart_msisdn"), null.alias("imei"),
        F.when(here, F.col("latitude")).alias("latitude"),
        F.when(here, F.col("longitude")).alias("longitude"),
        F.when(~here, F.col("_net_iso")).alias("visited_country"),
        null.alias(inp.CORRUPT), F.col(inp.SOURCE_FILE), reason.alias(SOURCE_REASON),
    ).select(*CDR.columns, "latitude", "longitude", "visited_country", inp.CORRUPT, inp.SOURCE_FILE, SOURCE_REASON)


def read(spark: SparkSession, files: list[inp.InputFile], contract: InputContract,
         agreement: Agreement | None = None) -> DataFrame:
    """The events (``cdr``) or the network (``cells``) in the native contract, with ``SOURCE_REASON``."""
    if contract.name == "cells":
        return _network_cells(spark, files)
    if contract.name != "cdr":
        raise ValueError(f"multimno delivers no {contract.name}")
    if agreement is None:
        raise ValueError("the multimno reader needs the agreement (its home country and time zone)")
    return _events(spark, files, agreement)
