"""Operator-side anonymization: read, validate, pseudonymize, minimize, bin, write.

Reads whichever of CDRs, cells, subscribers and payments exist under the input folder and
writes pseudonymized, minimized Delta tables to the office zone; rejected rows go to the
operator-zone quarantine with a reason. Every row read is accounted for per source file.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType
from pyspark.util import inheritable_thread_target

from mobility import progress
from mobility.anonymize import inputs as inp
from mobility.anonymize import validate as v
from mobility.anonymize.pseudonymize import (PseudonymKey, drop_key_pads, e164_column, hmac_sha256, load_key,
                                             with_key_pads)
from mobility.anonymize.spatial import bin_cells, locate_points, plmn_table
from mobility.config import Agreement, as_agreement
from mobility.errors import QualityGateError
from mobility.lake import Lake, delta_version, is_delta, read_json, write_json_atomic
from mobility.reference import load_boundaries
from mobility.schemas import (CDR, CELLS, CELLS_BINNED, OFFICE_EVENTS, OFFICE_PAYMENTS, OFFICE_SUBSCRIBERS, PAYMENTS,
                              PRESENCE_CHANNELS, PSEUDONYM, QUARANTINE, SUBSCRIBERS, conform)
from mobility.spark import get_spark, session_time_zone

SUPPRESSION_SCHEMA = StructType([StructField(PSEUDONYM, StringType(), False)])


@dataclass
class AnonymizeResult:
    run_id: str
    manifest: dict
    manifest_path: Path
    already_done: bool = False


class _Context:
    def __init__(self, spark: SparkSession, agreement: Agreement, key: PseudonymKey, lake: Lake, run_id: str,
                 boundaries):
        self.spark, self.agreement, self.key, self.lake, self.run_id = spark, agreement, key, lake, run_id
        self.boundaries = boundaries
        self.region = agreement.home_region

    def with_pseudonym(self, df: DataFrame, e164_col: str, out: str) -> DataFrame:
        return df.withColumn(out, hmac_sha256(F.col(e164_col)))


# ---- datasets ----------------------------------------------------------------------------

def _suppression(ctx: _Context, key_id: str) -> DataFrame:
    """Pseudonyms under this key that must never be ingested (erased or opted out)."""
    frames = []
    table = ctx.lake.suppression
    if is_delta(table):
        frames.append(ctx.spark.read.format("delta").load(str(table))
                      .filter(F.col("key_id") == key_id).select(PSEUDONYM))
    path = ctx.agreement.suppression_list
    if path is not None and Path(path).is_file():
        lines = [ln.strip().lower() for ln in Path(path).read_text().splitlines() if ln.strip()
                 and not ln.startswith("#")]
        frames.append(ctx.spark.createDataFrame([(x,) for x in lines], SUPPRESSION_SCHEMA))
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


def _cells(ctx: _Context, files: list[inp.InputFile]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    raw = inp.read(ctx.spark, files, CELLS).toPandas()  # the cell list is small by nature
    raw[inp.SOURCE_FILE] = raw[inp.SOURCE_FILE].map(dict(enumerate(inp.file_names(files))))
    dup = raw.duplicated(subset=list(CELLS.columns), keep="first")
    corrupt = raw[inp.CORRUPT].notna() & ~dup
    binned, rejected = bin_cells(raw[~dup & ~corrupt].reset_index(drop=True), ctx.agreement.h3_resolution,
                                 ctx.boundaries)
    rejected = pd.concat([rejected, raw[corrupt].assign(reason="malformed_row")], ignore_index=True)
    counts = []
    for source, group in raw.groupby(inp.SOURCE_FILE):
        n_dup = int(dup[group.index].sum())
        n_q = int((rejected[inp.SOURCE_FILE] == source).sum())
        counts.append({"dataset": "cells", "file": source, "read": len(group), "duplicates": n_dup,
                       "quarantined": n_q, "suppressed": 0, "accepted": len(group) - n_dup - n_q,
                       "reasons": rejected[rejected[inp.SOURCE_FILE] == source]["reason"].value_counts().to_dict()})
    return binned, rejected, counts


def _cell_lookup(ctx: _Context, binned: pd.DataFrame, rejected: pd.DataFrame) -> DataFrame:
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


def _plmns(ctx: _Context) -> tuple[DataFrame, DataFrame]:
    table = plmn_table()
    full = ctx.spark.createDataFrame(table[table["plmn"].str.len() > 3], "p_key STRING, p_country STRING")
    mcc = ctx.spark.createDataFrame(table[table["plmn"].str.len() == 3], "m_key STRING, m_country STRING")
    return full, mcc


def _kept(contract) -> list:
    """Bookkeeping columns every builder returns: status, reason, source file, the raw row of a
    quarantined record (operator zone only), the row's hashes and an id for finding copies."""
    raw = F.to_json(F.struct(*[F.col(c) for c in contract.columns], F.col(inp.CORRUPT)))
    return [F.col(v.STATUS), F.col(v.REASON), F.col(inp.SOURCE_FILE),
            F.when(F.col(v.STATUS) == v.QUARANTINED, raw).alias("_record"),
            F.col(v.ROW_HASH_1), F.col(v.ROW_HASH_2), F.monotonically_increasing_id().alias(v.ROW_ID)]


# Copies are left out of the office zone through a broadcast table up to this many (about 25
# bytes each in the hash table); beyond it Spark joins them by a shuffle, slower but bounded by
# memory per partition.
MAX_BROADCAST_COPIES = 4_000_000


def _summary(df: DataFrame) -> DataFrame:
    """The fate of every row, from one narrow pass over the frame computed once: counts per file,
    status and reason, and one row for each quarantined row (with its record) and each copy (with
    its row id).

    Only the two row hashes, the file, the id, the status and (for the 1 % quarantined) the reason
    and record are shuffled to find the copies, not the rows: the window that sorted every raw row
    was the largest part of the validation pass, and a second pass to count read the whole frame
    again (BENCHMARKS.md). A copy's own checks do not matter: it is a duplicate."""
    copy = v.is_copy()
    status = F.when(copy, F.lit(v.DUPLICATE)).otherwise(F.col(v.STATUS))
    shown = F.when(copy | (F.col(v.STATUS) == v.QUARANTINED), F.col(v.ROW_ID))
    fates = df.select(inp.SOURCE_FILE, status.alias(v.STATUS), F.when(~copy, F.col(v.REASON)).alias(v.REASON),
                      shown.alias("_row"), F.when(~copy, F.col("_record")).alias("_record"))
    return fates.groupBy(inp.SOURCE_FILE, v.STATUS, v.REASON, "_row", "_record").agg(F.count(F.lit(1)).alias("_n"))


def _without_copies(df: DataFrame, summary: DataFrame, n_copies: int) -> DataFrame:
    """``df`` less the rows its summary names as copies of an earlier row."""
    copies = summary.filter((F.col(v.STATUS) == v.DUPLICATE) & F.col("_row").isNotNull()).select(
        F.col("_row").alias(v.ROW_ID))
    return df.join(F.broadcast(copies) if n_copies <= MAX_BROADCAST_COPIES else copies, v.ROW_ID, "left_anti")


def _quarantine_rows(summary: DataFrame, ctx: _Context, dataset: str, files: list[inp.InputFile]) -> DataFrame:
    return summary.filter(F.col(v.STATUS) == v.QUARANTINED).select(
        F.lit(dataset).alias("dataset"), inp.name_of_file(F.col(inp.SOURCE_FILE), files).alias("source_file"),
        F.col(v.REASON).alias("reason"), F.col("_record").alias("record"),
        F.lit(ctx.agreement.agreement_id).alias("agreement_id"), F.lit(ctx.run_id).alias("run_id"))


def _cdr(ctx: _Context, files, cells: DataFrame, suppression: DataFrame) -> DataFrame:
    df = v.with_row_hashes(inp.read(ctx.spark, files, CDR), CDR)
    df = df.withColumn("_ts", v.parse_time(F.col("event_time")))
    df = df.withColumn("_local_date", F.to_date(F.col("_ts")))  # session zone = the agreement's
    cell_match = ((F.trim(F.col("cell_id")) == F.col("c_id"))
                  & (F.col("c_from").isNull() | (F.col("c_from") <= F.col("_local_date")))
                  & (F.col("c_to").isNull() | (F.col("c_to") >= F.col("_local_date"))))
    df = df.join(F.broadcast(cells), cell_match, "left")
    full, mcc = _plmns(ctx)
    df = df.join(F.broadcast(full), F.trim(F.col("visited_plmn")) == F.col("p_key"), "left")
    df = df.join(F.broadcast(mcc), F.substring(F.trim(F.col("visited_plmn")), 1, 3) == F.col("m_key"), "left")
    plmn_country = F.coalesce(F.col("p_country"), F.col("m_country"))
    # The Python UDF runs between the joins and the keyed hash and checks: Spark's generated code
    # for the stage then comes in two halves instead of one method so large that the JIT spent
    # some 20 CPU-s compiling it, twice over, in every fresh JVM (BENCHMARKS.md).
    df = df.withColumn("_e164", e164_column(F.col("msisdn"), ctx.region))
    df = with_key_pads(ctx.spark, df, ctx.key)
    df = ctx.with_pseudonym(df, "_e164", PSEUDONYM)
    if ctx.agreement.counterpart == "pseudonymize":
        df = df.withColumn("_cp164", e164_column(F.col("counterpart_msisdn"), ctx.region))
        df = ctx.with_pseudonym(df, "_cp164", "counterpart_pseudonym")
        df = _blank_if_suppressed(df, suppression, "counterpart_pseudonym")
    else:
        df = df.withColumn("counterpart_pseudonym", F.lit(None).cast("string"))
    df = drop_key_pads(df)
    df = _flag_suppressed(df, suppression, PSEUDONYM)
    reason = v.first_reason(v.cdr_checks(F.col("_e164"), F.col("_ts"), F.col("c_id").isNotNull(),
                                         F.col("c_reason"), plmn_country))
    df = v.finish(df, reason, F.col("_suppressed"))
    coarse = "day" if ctx.agreement.time_resolution == "day" else "hour"
    roaming = ~v.blank(F.col("visited_plmn"))
    return df.select(
        *_kept(CDR),
        F.col(PSEUDONYM),
        F.date_trunc(coarse, F.col("_ts")).alias("event_hour"), F.lower(F.trim(F.col("event_type"))).alias("event_type"),
        F.when(roaming, F.lit(None)).otherwise(F.col("c_h3")).alias("h3_cell"),
        F.when(roaming, plmn_country).otherwise(F.col("c_country")).alias("country"),
        F.col("counterpart_pseudonym"),
        F.date_format(F.col("_ts"), "yyyy-MM").alias("month"),  # the local month
    )


def _subscribers(ctx: _Context, files, suppression: DataFrame) -> DataFrame:
    df = v.with_row_hashes(inp.read(ctx.spark, files, SUBSCRIBERS), SUBSCRIBERS)
    df = df.withColumn("_e164", e164_column(F.col("msisdn"), ctx.region))
    df = drop_key_pads(ctx.with_pseudonym(with_key_pads(ctx.spark, df, ctx.key), "_e164", PSEUDONYM))
    df = _flag_suppressed(df, suppression, PSEUDONYM)
    checks = v.subscriber_checks(F.col("_e164"), dt.date.today().year)
    # One person, two differing registrations: neither can be trusted (exact copies are not a conflict).
    df = df.withColumn("_conflict", F.col("_e164").isNotNull() & v.differing_rows(F.col("_e164")))
    checks.append((F.col("_conflict"), "conflicting_subscriber_record"))
    df = v.finish(df, v.first_reason(checks), F.col("_suppressed"))
    sex = F.upper(F.trim(F.col("sex")))
    return df.select(
        *_kept(SUBSCRIBERS), F.col(PSEUDONYM),
        F.when(sex == "", None).otherwise(sex).alias("sex"),
        F.expr("try_cast(trim(birth_year) AS INT)").alias("birth_year"),
    )


def _payments(ctx: _Context, files, suppression: DataFrame) -> DataFrame:
    df = v.with_row_hashes(inp.read(ctx.spark, files, PAYMENTS), PAYMENTS)
    df = df.withColumn("_s164", e164_column(F.col("sender_msisdn"), ctx.region))
    df = df.withColumn("_r164", e164_column(F.col("receiver_msisdn"), ctx.region))
    df = df.withColumn("_ts", v.parse_time(F.col("txn_time")))
    df = with_key_pads(ctx.spark, df, ctx.key)
    df = ctx.with_pseudonym(df, "_s164", PSEUDONYM)
    df = drop_key_pads(ctx.with_pseudonym(df, "_r164", "receiver_pseudonym"))
    df = _blank_if_suppressed(df, suppression, "receiver_pseudonym")
    df = _flag_suppressed(df, suppression, PSEUDONYM)
    checks = v.payment_checks(F.col("_s164"), F.col("_r164"), F.col("_ts"))
    df = df.withColumn("_reused_id", v.differing_rows(F.trim(F.col("txn_id"))))  # one id, differing rows
    checks.append((F.col("_reused_id"), "duplicate_txn_id"))
    df = v.finish(df, v.first_reason(checks), F.col("_suppressed"))
    res, boundaries = ctx.agreement.h3_resolution, ctx.boundaries

    @F.pandas_udf("h3_cell string, location_country string")
    def _locate(lat: pd.Series, lon: pd.Series) -> pd.DataFrame:
        return locate_points(lat, lon, res, boundaries)

    loc = _locate(F.col("latitude"), F.col("longitude"))
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



# ---- counting, writing ------------------------------------------------------------------

def _file_counts(summary: DataFrame, dataset: str, files: list[inp.InputFile]) -> list[dict]:
    rows = summary.groupBy(inp.SOURCE_FILE, v.STATUS, v.REASON).agg(F.sum("_n").alias("count")).collect()
    names = inp.file_names(files)
    per: dict[str, dict] = {}
    for r in rows:
        name = names[r[inp.SOURCE_FILE]]
        entry = per.setdefault(name, {"dataset": dataset, "file": name, "read": 0, "accepted": 0, "quarantined": 0,
                                      "duplicates": 0, "suppressed": 0, "reasons": {}})
        n = r["count"]
        entry["read"] += n
        key = {"duplicate": "duplicates"}.get(r[v.STATUS], r[v.STATUS])
        entry[key] += n
        if r[v.REASON]:
            entry["reasons"][r[v.REASON]] = entry["reasons"].get(r[v.REASON], 0) + n
    return sorted(per.values(), key=lambda e: e["file"])


# Columns whose per-file min/max Delta keeps in its log for data skipping. Never an identifier
# (pseudonym, raw record): the log is not where a pseudonym should be found, and collecting
# statistics on every column cost about a third of the office-zone write (BENCHMARKS.md).
STATS_COLUMNS = {
    "events": "event_hour,event_type,country",
    "payments": "txn_hour,sender_country,receiver_country,channel",
    "subscribers": "sex,birth_year",
    "quarantine": "dataset,reason,source_file,run_id",
}


def _new_table_options(path: Path) -> dict[str, str]:
    """Table properties for a table this write creates (existing tables keep theirs)."""
    if is_delta(path):
        return {}
    return {"delta.dataSkippingStatsColumns": STATS_COLUMNS[path.name]}


def _release(df: DataFrame) -> None:
    """Free a local checkpoint's blocks now rather than when the JVM collects the frame.

    ``DataFrame.unpersist`` does not reach them: they belong to the RDD under the checkpoint's
    plan, which PySpark does not expose. Should a Spark version hide it, Spark's context cleaner
    still frees the blocks once the frame is garbage-collected."""
    try:
        df._jdf.queryExecution().analyzed().rdd().unpersist(True)
    except Exception:  # noqa: BLE001 - best effort: see above
        pass


def _append(df: DataFrame, path: Path, run_id: str, partition: str | None = None) -> None:
    """Idempotent append: Delta skips a write whose (txnAppId, txnVersion) it has already committed."""
    writer = (df.write.format("delta").mode("append").options(**_new_table_options(path))
              .option("txnAppId", f"mobility-anonymize:{run_id}").option("txnVersion", 0))
    if partition:
        writer = writer.partitionBy(partition)
    writer.save(str(path))


def _all_at_once(spark: SparkSession, writes: list) -> None:
    """Run independent table writes at the same time, each in its own Spark job.

    The small ones (quarantine, cells) are mostly driver-side Delta bookkeeping: run one after
    another they left the cores idle for 2-5 s of every run (BENCHMARKS.md). Each write is
    idempotent (``_append``), so when one fails the others still finish, the first error is
    raised, no manifest is written, and a rerun completes the run."""
    if not writes:
        return
    with ThreadPoolExecutor(max_workers=len(writes), thread_name_prefix="mobility-write") as pool:
        inherit = inheritable_thread_target(spark)  # job groups, tags and local properties of the caller
        futures = [pool.submit(inherit(write)) for write in writes]
        wait(futures)
    for future in futures:
        future.result()  # the first failure, in the order the writes were listed


def _upsert_subscribers(spark: SparkSession, df: DataFrame, path: Path) -> None:
    from delta.tables import DeltaTable

    if not is_delta(path):
        df.write.format("delta").mode("append").options(**_new_table_options(path)).save(str(path))
        return
    (DeltaTable.forPath(spark, str(path)).alias("t")
     .merge(df.alias("s"), "t.pseudonym = s.pseudonym AND t.key_id = s.key_id")
     # run_id stays the inserting run's: rows must not vanish while a later run is incomplete
     .whenMatchedUpdate(set={"sex": "s.sex", "birth_year": "s.birth_year"})
     .whenNotMatchedInsertAll().execute())


def run(agreement: str | Agreement, input_dir: str | Path, lake_root: str | Path, run_id: str | None = None,
        spark: SparkSession | None = None, boundaries=None) -> AnonymizeResult:
    started = time.time()
    agreement = as_agreement(agreement)
    key = load_key(agreement.key)  # fail before any Spark work when the key is missing
    files = inp.discover(input_dir)
    lake = Lake(lake_root).ensure()
    done_files = lake.ingested_fingerprints()
    all_files = [f for fs in files.values() for f in fs]
    new_files = {name: [f for f in fs if f.fingerprint not in done_files] for name, fs in files.items()}
    skipped = [{"file": f.name, "dataset": f.dataset, "ingested_by": done_files[f.fingerprint]}
               for f in all_files if f.fingerprint in done_files]
    run_id = run_id or inp.derive_run_id(agreement.agreement_id, [f.fingerprint for f in all_files])
    if run_id in lake.completed_runs():
        path = lake.office_manifests / f"{run_id}.json"
        return AnonymizeResult(run_id, read_json(path), path, already_done=True)
    if not any(f.dataset in ("cdr", "payments", "subscribers") for fs in new_files.values() for f in fs):
        progress.say("anonymize", "every input file was already ingested; nothing to do")
    write_json_atomic(lake.operator_manifests / f"{run_id}.started.json",
                      {"run_id": run_id, "agreement_id": agreement.agreement_id,
                       "files": [f.name for f in all_files], "started": dt.datetime.now(dt.UTC).isoformat()})

    spark = spark or get_spark("mobility-anonymize")
    boundaries = load_boundaries() if boundaries is None else boundaries
    ctx = _Context(spark, agreement, key, lake, run_id, boundaries)
    suppression = _suppression(ctx, key.key_id).persist()
    counts: list[dict] = []
    results: dict[str, DataFrame] = {}
    held: list[DataFrame] = []  # the local checkpoints, freed at the end
    quarantine: list[DataFrame] = []
    cells_binned = None

    cell_files = files.get("cells", [])  # the cell table is always re-read: events need it
    if cell_files:
        progress.say("anonymize", f"binning {len(cell_files)} cell file(s) on H3 res {agreement.h3_resolution}")
        cells_binned, cells_rejected, cell_counts = _cells(ctx, cell_files)
        counts += [c for c in cell_counts if any(c["file"] == f.name for f in new_files.get("cells", []))]
        cell_lookup = F.broadcast(_cell_lookup(ctx, cells_binned, cells_rejected))
        if len(cells_rejected) and new_files.get("cells"):
            q = cells_rejected.assign(dataset="cells", agreement_id=agreement.agreement_id, run_id=run_id)
            q["record"] = q[list(CELLS.columns)].astype(object).where(q[list(CELLS.columns)].notna(), None) \
                .apply(lambda r: r.to_json(), axis=1)
            q = q.rename(columns={inp.SOURCE_FILE: "source_file"})[[f.name for f in QUARANTINE.fields]]
            quarantine.append(spark.createDataFrame(q.astype(object).where(q.notna(), None), QUARANTINE))

    try:  # the local checkpoints are freed whether the run commits or the gate stops it
        builders = {"cdr": lambda fs: _cdr(ctx, fs, cell_lookup, suppression),
                    "subscribers": lambda fs: _subscribers(ctx, fs, suppression),
                    "payments": lambda fs: _payments(ctx, fs, suppression)}
        for name, build in builders.items():
            fs = new_files.get(name)
            if not fs:
                continue
            progress.say("anonymize", f"validating and pseudonymizing {name}: {len(fs)} file(s)")
            with session_time_zone(spark, agreement.time_zone):  # naive input times are local times
                df = build(fs)
            # Computed once, for the copies, the counts and then the writes (ADR 0007): a local
            # checkpoint on the executors' disks, filled by the pass that finds the copies (which
            # shuffles only their hashes and ids). Spark's columnar cache cost some 25 more CPU-s per
            # 10M rows to encode (BENCHMARKS.md). The constant columns (key id, agreement, run) are
            # added at write time, not stored per row.
            df = df.localCheckpoint(eager=False, storageLevel=StorageLevel.DISK_ONLY)
            held.append(df)
            # The copies, the counts and the quarantined rows: small beside the frame.
            summary = _summary(df).localCheckpoint(eager=True)
            held.append(summary)
            file_counts = _file_counts(summary, name, fs)
            counts += file_counts
            quarantine.append(_quarantine_rows(summary, ctx, name, fs))
            results[name] = _without_copies(df, summary, sum(c["duplicates"] for c in file_counts))

        _quality_gate(counts, agreement.max_invalid_share)

        writes = []
        if quarantine:
            q = quarantine[0]
            for extra in quarantine[1:]:
                q = q.unionByName(extra)
            writes.append(lambda: _append(q, lake.quarantine, run_id))
        if cells_binned is not None and new_files.get("cells"):
            cells_df = spark.createDataFrame(cells_binned.astype(object).where(cells_binned.notna(), None),
                                             CELLS_BINNED)
            writes.append(lambda: cells_df.write.format("delta").mode("overwrite")
                          .option("txnAppId", f"mobility-anonymize:{run_id}").option("txnVersion", 0)
                          .save(str(lake.cells)))

        def accepted(name: str, schema) -> DataFrame:
            return conform(results[name].filter(F.col(v.STATUS) == v.ACCEPTED).select(
                "*", F.lit(key.key_id).alias("key_id"), F.lit(agreement.agreement_id).alias("agreement_id"),
                F.lit(run_id).alias("run_id")), schema)

        if "cdr" in results:
            writes.append(lambda: _append(accepted("cdr", OFFICE_EVENTS), lake.office_table("events"), run_id,
                                          "month"))
        if "subscribers" in results:
            writes.append(lambda: _upsert_subscribers(spark, accepted("subscribers", OFFICE_SUBSCRIBERS),
                                                      lake.office_table("subscribers")))
        if "payments" in results:
            writes.append(lambda: _append(accepted("payments", OFFICE_PAYMENTS), lake.office_table("payments"),
                                          run_id, "month"))
        progress.say("anonymize", "writing the quarantine and the office zone",
                     rows=sum(c.get("read", 0) for c in counts))
        _all_at_once(spark, writes)
    finally:
        for df in held:
            _release(df)
        suppression.unpersist()

    versions = {name: delta_version(lake.office_table(name)) for name in ("events", "subscribers", "payments")}
    fingerprints = {f.name: f.fingerprint for fs in new_files.values() for f in fs}
    manifest = {
        "run_id": run_id, "agreement_id": agreement.agreement_id, "key_id": key.key_id, "stage": "anonymize",
        "files": [dict(c, fingerprint=fingerprints.get(c["file"], "")) for c in counts],
        "skipped_files": skipped,
        "totals": _totals(counts),
        "office_versions": {k: x for k, x in versions.items() if x is not None},
        "h3_resolution": agreement.h3_resolution, "time_resolution": agreement.time_resolution,
        "duration_s": round(time.time() - started, 1),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
    }
    write_json_atomic(lake.operator_manifests / f"{run_id}.json", manifest)
    path = lake.office_manifests / f"{run_id}.json"
    write_json_atomic(path, manifest)  # the commit marker: last
    (lake.operator_manifests / f"{run_id}.started.json").unlink(missing_ok=True)
    return AnonymizeResult(run_id, manifest, path)


def _totals(counts: list[dict]) -> dict:
    totals: dict[str, dict] = defaultdict(lambda: {"read": 0, "accepted": 0, "quarantined": 0, "duplicates": 0,
                                                   "suppressed": 0})
    for c in counts:
        for k in ("read", "accepted", "quarantined", "duplicates", "suppressed"):
            totals[c["dataset"]][k] += c[k]
    return dict(totals)


def _quality_gate(counts: list[dict], limit: float) -> None:
    for dataset, t in _totals(counts).items():
        if t["read"] and t["quarantined"] / t["read"] > limit:
            worst = sorted(((n, r, c["file"]) for c in counts if c["dataset"] == dataset
                            for r, n in c["reasons"].items()), reverse=True)[:3]
            detail = "; ".join(f"{r}: {n} rows in {f}" for n, r, f in worst)
            raise QualityGateError(
                f"{t['quarantined']} of {t['read']} {dataset} rows ({t['quarantined'] / t['read']:.1%}) are invalid, "
                f"above the agreement's max_invalid_share of {limit:.1%}; nothing was written. Top reasons: {detail}",
                where=dataset,
                hint="fix the input files (see docs/contracts.md for each reason) or, if the data is known to be "
                     "this dirty, raise max_invalid_share in the agreement")
