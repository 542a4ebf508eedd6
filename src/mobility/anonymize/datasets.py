"""Each dataset's frame: read, validated, pseudonymized and minimized, every row with its fate.

The builders (``cdr_frame``, ``subscribers_frame``, ``payments_frame``) return one row per row
read, with its status and reason (``validate``), its hashes for finding copies and, for the
quarantined, the raw record: what ``fates`` counts and the job writes. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from mobility.anonymize import formats
from mobility.anonymize import inputs as inp
from mobility.anonymize import validate as v
from mobility.anonymize.formats import SOURCE_REASON
from mobility.anonymize.pseudonymize import PseudonymKey, drop_key_pads, e164_column, hmac_sha256, with_key_pads
from mobility.anonymize.spatial import bin_cells, locate_points, plmn_table
from mobility.config import Agreement
from mobility.lake import Lake
from mobility.schemas import CDR, CELLS, PAYMENTS, PRESENCE_CHANNELS, PSEUDONYM, SUBSCRIBERS, SUPPRESSION_TABLE

SUPPRESSION_SCHEMA = StructType([StructField(PSEUDONYM, StringType(), False)])


@dataclass(frozen=True)
class RunContext:
    """What the builders share within one run: the session, the agreement and its key, the lake."""

    spark: SparkSession
    agreement: Agreement
    key: PseudonymKey
    lake: Lake
    run_id: str
    boundaries: object  # country polygons (reference.load_boundaries)
    # the latest plausible event time, fixed once per run so that every pass over a frame agrees
    latest: dt.datetime = field(default_factory=v.latest_plausible)

    @property
    def region(self) -> str:
        return self.agreement.home_region

    def with_pseudonym(self, df: DataFrame, e164_col: str, out: str) -> DataFrame:
        return df.withColumn(out, hmac_sha256(F.col(e164_col)))

    def read(self, files: list[inp.InputFile], contract) -> DataFrame:
        """The rows of ``files`` in the native contract, read by the agreement's ``input_format``."""
        return formats.read(self.spark, files, contract, self.agreement.input_format, self.agreement)

    def subscriber_id(self, raw: Column) -> Column:
        """What is keyed: the number in E.164 (null when not a valid number), or, for a format whose ids
        are the operator's own pseudonyms, the id as delivered (null when blank): no number check."""
        if formats.id_kind(self.agreement.input_format) == formats.PSEUDONYMS:
            return F.when(~v.blank(raw), raw)
        return e164_column(raw, self.region)


# ---- the suppression list -------------------------------------------------------------------

def suppressed_pseudonyms(ctx: RunContext) -> DataFrame:
    """Pseudonyms under the run's key that must never be ingested (erased or opted out)."""
    frames = []
    if ctx.lake.exists(SUPPRESSION_TABLE):
        frames.append(ctx.lake.read(ctx.spark, SUPPRESSION_TABLE)
                      .filter(F.col("key_id") == ctx.key.key_id).select(PSEUDONYM))
    listed = ctx.agreement.listed_suppressions()
    if listed:
        frames.append(ctx.spark.createDataFrame([(x,) for x in listed], SUPPRESSION_SCHEMA))
    if not frames:
        return ctx.spark.createDataFrame([], SUPPRESSION_SCHEMA).withColumn("_suppressed", F.lit(True))
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out.distinct().withColumn("_suppressed", F.lit(True))


def _flag_suppressed(df: DataFrame, suppression: DataFrame, column: str) -> DataFrame:
    s = suppression.withColumnRenamed(PSEUDONYM, "_supp_key")
    return df.join(F.broadcast(s), df[column] == s["_supp_key"], "left").drop("_supp_key")


def _blank_if_suppressed(df: DataFrame, suppression: DataFrame, column: str) -> DataFrame:
    """A suppressed person named as the other party (counterpart, receiver) is removed from the row."""
    s = suppression.select(F.col(PSEUDONYM).alias("_other"), F.lit(True).alias("_other_suppressed"))
    df = df.join(F.broadcast(s), df[column] == s["_other"], "left")
    return df.withColumn(column, F.when(F.col("_other_suppressed").isNull(), F.col(column))) \
        .drop("_other", "_other_suppressed")


# ---- cells and networks ---------------------------------------------------------------------

def binned_cells(ctx: RunContext, files: list[inp.InputFile]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """The cell list binned on H3, its rejected rows (with a reason) and its per-file counts."""
    raw: pd.DataFrame = ctx.read(files, CELLS).toPandas()  # the cell list is small by nature
    # in file-name order, so that the first of a cell's copies is always the same row (the earliest file's)
    raw = raw.sort_values(inp.SOURCE_FILE, kind="stable").reset_index(drop=True)
    raw[inp.SOURCE_FILE] = raw[inp.SOURCE_FILE].map(dict(enumerate(inp.file_names(files))))
    dup = raw.duplicated(subset=[*CELLS.columns, SOURCE_REASON], keep="first")
    flagged = raw[SOURCE_REASON].notna() & ~dup  # the format's own reason comes first
    corrupt = raw[inp.CORRUPT].notna() & ~dup & ~flagged
    text = raw[list(CELLS.columns)].astype("string")
    # the checks on raw text that the other datasets make in Spark (validate.encoding_and_length_checks)
    garbled = text.apply(lambda c: c.str.contains(v.REPLACEMENT_CHAR, regex=False)).any(axis=1) \
        & ~dup & ~flagged & ~corrupt
    too_long = (text.apply(lambda c: c.str.len()).max(axis=1).fillna(0) > v.MAX_FIELD_CHARS) \
        & ~dup & ~flagged & ~corrupt & ~garbled
    usable = ~dup & ~flagged & ~corrupt & ~garbled & ~too_long
    binned, rejected = bin_cells(raw[usable].reset_index(drop=True), ctx.agreement.h3_resolution, ctx.boundaries)
    rejected = pd.concat([rejected, raw[flagged].assign(reason=raw.loc[flagged, SOURCE_REASON]),
                          raw[corrupt].assign(reason="malformed_row"),
                          raw[garbled].assign(reason="invalid_encoding"),
                          raw[too_long].assign(reason="field_too_long")], ignore_index=True)
    counts = []
    for source, group in raw.groupby(inp.SOURCE_FILE):
        n_dup = int(dup[group.index].sum())
        n_q = int((rejected[inp.SOURCE_FILE] == source).sum())
        counts.append({"dataset": "cells", "file": source, "read": len(group), "duplicates": n_dup,
                       "quarantined": n_q, "suppressed": 0, "accepted": len(group) - n_dup - n_q,
                       "reasons": rejected[rejected[inp.SOURCE_FILE] == source]["reason"].value_counts().to_dict()})
    return binned, rejected, counts


def cell_lookup(ctx: RunContext, binned: pd.DataFrame, rejected: pd.DataFrame) -> DataFrame:
    """Cell id -> H3 cell, country and validity dates, or the reason an event's cell is unusable."""
    good = binned.assign(cell_reason=None)[["cell_id", "h3_cell", "country", "cell_reason", "valid_from", "valid_to"]]
    bad_ids = set(rejected["cell_id"].dropna().astype(str).str.strip()) - set(good["cell_id"]) - {""}
    bad = pd.DataFrame({"cell_id": pd.Series(sorted(bad_ids), dtype="object")})
    reasons = rejected.assign(cell_id=rejected["cell_id"].astype(str).str.strip()).drop_duplicates("cell_id")
    bad = bad.merge(reasons.reindex(columns=["cell_id", "reason"]).astype(object), on="cell_id", how="left")
    bad = bad.assign(h3_cell=None, country=None, valid_from=None, valid_to=None,
                     cell_reason=bad["reason"].map(lambda r: "cell_outside_boundaries"
                                                   if r == "cell_outside_boundaries" else "unusable_cell"))
    both = pd.concat([good, bad[good.columns]], ignore_index=True)
    schema = ("c_id STRING, c_h3 STRING, c_country STRING, c_reason STRING, c_from DATE, c_to DATE")
    rows = [tuple(None if pd.isna(x) else x for x in r) for r in both.itertuples(index=False)]
    return ctx.spark.createDataFrame(rows, schema)


def _plmns(ctx: RunContext) -> tuple[DataFrame, DataFrame]:
    table = plmn_table()
    full = ctx.spark.createDataFrame(table[table["plmn"].str.len() > 3], "p_key STRING, p_country STRING")
    mcc = ctx.spark.createDataFrame(table[table["plmn"].str.len() == 3], "m_key STRING, m_country STRING")
    return full, mcc


# ---- the builders -----------------------------------------------------------------------------

def _kept(contract) -> list:
    """Bookkeeping columns every builder returns: status, reason, source file, the raw row of a
    quarantined record (operator zone only), the row's hashes and an id for finding copies."""
    raw = F.to_json(F.struct(*[F.col(c) for c in formats.read_columns(contract)], F.col(inp.CORRUPT)))
    return [F.col(v.STATUS), F.col(v.REASON), F.col(inp.SOURCE_FILE),
            F.when(F.col(v.STATUS) == v.QUARANTINED, raw).alias("_record"),
            F.col(v.ROW_HASH_1), F.col(v.ROW_HASH_2), F.monotonically_increasing_id().alias(v.ROW_ID)]


def _point_locator(ctx: RunContext):
    """A pandas UDF: (latitude, longitude) text -> H3 cell and country, located on the boundaries."""
    res, boundaries = ctx.agreement.h3_resolution, ctx.boundaries

    # pyspark's stubs lack the decorator form whose UDF type comes from the function's type hints
    @F.pandas_udf("h3_cell string, location_country string")  # type: ignore[call-overload]
    def _locate(lat: pd.Series, lon: pd.Series) -> pd.DataFrame:
        return locate_points(lat, lon, res, boundaries)

    return _locate


def _with_reason(checks: list) -> Column:
    """The format's own reason first (``formats.SOURCE_REASON``), then the native checks'."""
    return F.coalesce(F.col(SOURCE_REASON), v.first_reason(checks))


def cdr_frame(ctx: RunContext, files: list[inp.InputFile], cells: DataFrame, suppression: DataFrame) -> DataFrame:
    df = v.with_row_hashes(ctx.read(files, CDR), CDR)
    df = df.withColumn("_ts", v.parse_time(F.col("event_time")))
    df = df.withColumn("_local_date", F.to_date(F.col("_ts")))  # session zone = the agreement's
    cell_match = ((F.trim(F.col("cell_id")) == F.col("c_id"))
                  & (F.col("c_from").isNull() | (F.col("c_from") <= F.col("_local_date")))
                  & (F.col("c_to").isNull() | (F.col("c_to") >= F.col("_local_date"))))
    df = df.join(F.broadcast(cells), cell_match, "left")
    full, mcc = _plmns(ctx)
    df = df.join(F.broadcast(full), F.trim(F.col("visited_plmn")) == F.col("p_key"), "left")
    df = df.join(F.broadcast(mcc), F.substring(F.trim(F.col("visited_plmn")), 1, 3) == F.col("m_key"), "left")
    # the country a format's reader gave for the visited network (its own MCC table), else the public PLMN list's
    plmn_country = F.coalesce(F.col("visited_country"), F.col("p_country"), F.col("m_country"))
    # The Python UDFs run between the joins and the keyed hash and checks: Spark's generated code
    # for the stage then comes in two halves instead of one method so large that the JIT spent
    # some 20 CPU-s compiling it, twice over, in every fresh JVM (BENCHMARKS.md).
    df = df.withColumn("_e164", ctx.subscriber_id(F.col("msisdn")))
    # An event located by its coordinates (no cell, not roaming): only those rows' points go to the
    # UDF, every other row passes nulls, and files without coordinate columns skip it altogether.
    if formats.locates_points(ctx.agreement.input_format):
        lat, lon = v.coordinates()
        usable = v.located_by_point() & lat.isNotNull() & lon.isNotNull()
        df = df.withColumn("_pt", _point_locator(ctx)(F.when(usable, lat), F.when(usable, lon)))
    else:
        df = df.withColumn("_pt", F.lit(None).cast("struct<h3_cell:string,location_country:string>"))
    df = with_key_pads(ctx.spark, df, ctx.key)
    df = ctx.with_pseudonym(df, "_e164", PSEUDONYM)
    if ctx.agreement.counterpart == "pseudonymize":
        df = df.withColumn("_cp164", ctx.subscriber_id(F.col("counterpart_msisdn")))
        df = ctx.with_pseudonym(df, "_cp164", "counterpart_pseudonym")
        df = _blank_if_suppressed(df, suppression, "counterpart_pseudonym")
    else:
        df = df.withColumn("counterpart_pseudonym", F.lit(None).cast("string"))
    df = drop_key_pads(df)
    df = _flag_suppressed(df, suppression, PSEUDONYM)
    checks = v.cdr_checks(F.col("_e164"), F.col("_ts"), F.col("c_id").isNotNull(), F.col("c_reason"),
                          plmn_country, ctx.latest, F.col("_pt.location_country"))
    df = v.finish(df, _with_reason(checks), F.col("_suppressed"))
    coarse = "day" if ctx.agreement.time_resolution == "day" else "hour"
    roaming = ~v.blank(F.col("visited_plmn"))
    return df.select(
        *_kept(CDR),
        F.col(PSEUDONYM),
        F.date_trunc(coarse, F.col("_ts")).alias("event_hour"),
        F.lower(F.trim(F.col("event_type"))).alias("event_type"),
        F.when(roaming, F.lit(None)).otherwise(F.coalesce(F.col("c_h3"), F.col("_pt.h3_cell"))).alias("h3_cell"),
        F.when(roaming, plmn_country).otherwise(F.coalesce(F.col("c_country"), F.col("_pt.location_country")))
        .alias("country"),
        F.col("counterpart_pseudonym"),
        F.date_format(F.col("_ts"), "yyyy-MM").alias("month"),  # the local month
    )


def subscribers_frame(ctx: RunContext, files: list[inp.InputFile], suppression: DataFrame) -> DataFrame:
    df = v.with_row_hashes(ctx.read(files, SUBSCRIBERS), SUBSCRIBERS)
    df = df.withColumn("_e164", ctx.subscriber_id(F.col("msisdn")))
    df = drop_key_pads(ctx.with_pseudonym(with_key_pads(ctx.spark, df, ctx.key), "_e164", PSEUDONYM))
    df = _flag_suppressed(df, suppression, PSEUDONYM)
    checks = v.subscriber_checks(F.col("_e164"), dt.date.today().year)
    # One person, two differing registrations: neither can be trusted (exact copies are not a conflict).
    df = df.withColumn("_conflict", F.col("_e164").isNotNull() & v.differing_rows(F.col("_e164")))
    checks.append((F.col("_conflict"), "conflicting_subscriber_record"))
    df = v.finish(df, _with_reason(checks), F.col("_suppressed"))
    sex = F.upper(F.trim(F.col("sex")))
    return df.select(
        *_kept(SUBSCRIBERS), F.col(PSEUDONYM),
        F.when(sex == "", None).otherwise(sex).alias("sex"),
        F.expr("try_cast(trim(birth_year) AS INT)").alias("birth_year"),
    )


def payments_frame(ctx: RunContext, files: list[inp.InputFile], suppression: DataFrame) -> DataFrame:
    df = v.with_row_hashes(ctx.read(files, PAYMENTS), PAYMENTS)
    df = df.withColumn("_s164", ctx.subscriber_id(F.col("sender_msisdn")))
    df = df.withColumn("_r164", ctx.subscriber_id(F.col("receiver_msisdn")))
    df = df.withColumn("_ts", v.parse_time(F.col("txn_time")))
    df = with_key_pads(ctx.spark, df, ctx.key)
    df = ctx.with_pseudonym(df, "_s164", PSEUDONYM)
    df = drop_key_pads(ctx.with_pseudonym(df, "_r164", "receiver_pseudonym"))
    df = _blank_if_suppressed(df, suppression, "receiver_pseudonym")
    df = _flag_suppressed(df, suppression, PSEUDONYM)
    checks = v.payment_checks(F.col("_s164"), F.col("_r164"), F.col("_ts"), ctx.latest)
    df = df.withColumn("_reused_id", v.differing_rows(F.trim(F.col("txn_id"))))  # one id, differing rows
    checks.append((F.col("_reused_id"), "duplicate_txn_id"))
    df = v.finish(df, _with_reason(checks), F.col("_suppressed"))
    loc = _point_locator(ctx)(F.col("latitude"), F.col("longitude"))
    coarse = "day" if ctx.agreement.time_resolution == "day" else "hour"
    txn_hour = F.date_trunc(coarse, F.col("_ts"))  # local hour (or day) start: session zone is the agreement's
    num = lambda c: F.expr(f"try_cast(trim({c}) AS DOUBLE)")  # noqa: E731
    return df.select(
        *_kept(PAYMENTS),
        F.col(PSEUDONYM).alias("sender_pseudonym"), F.col("receiver_pseudonym"),
        txn_hour.alias("txn_hour"),
        F.upper(F.trim(F.col("sender_country"))).alias("sender_country"),
        F.upper(F.trim(F.col("receiver_country"))).alias("receiver_country"),
        num("amount").alias("amount"), F.upper(F.trim(F.col("currency"))).alias("currency"),
        num("fee").alias("fee"), num("fx_margin").alias("fx_margin"),
        F.lower(F.trim(F.col("channel"))).alias("channel"),
        # Only an agent desk or card terminal places the payer; other channels' positions are dropped.
        F.when((F.col(v.STATUS) == v.ACCEPTED) & F.lower(F.trim(F.col("channel"))).isin(*PRESENCE_CHANNELS),
               loc).alias("_loc"),
        F.date_format(F.col("_ts"), "yyyy-MM").alias("month"),
    ).withColumn("h3_cell", F.col("_loc.h3_cell")).withColumn("location_country", F.col("_loc.location_country")) \
     .drop("_loc")
