"""Key rotation: every stored pseudonym renamed to the new key's, one Delta transaction per table.

A new HMAC key gives every subscriber a new pseudonym; without a rotation the office would lose the
16-month history the 12/16-month rule needs (the same person would look like a new subscriber). The
operator computes the old-to-new map from the numbers (or, for an agreement of operator ids such as
multimno's, the ids) it still holds (``anonymize.rotation``); this module completes it and rewrites
both zones with it:

1. **The map.** Every pseudonym stored under the old key (both zones, every column naming a person,
   the suppression list included) gets its new pseudonym from the operator's map. A stored pseudonym
   whose number the operator no longer holds gets a random new one instead: its rows keep their
   continuity inside the lake, and nobody holding the old key can find them any more. A suppression
   entry must be mapped (an erased person would otherwise come back with the next delivery), so the
   rotation refuses when one is not. The completed map is written once, before any table changes, so
   a rotation resumed after a crash uses the very same names.
2. **The tables.** Each table is rewritten in one Delta transaction tagged with the rotation
   (``userMetadata``); a resumed rotation skips the tables whose history has that commit.
3. **The old versions** are removed as erasure removes them (``history.purge``): no file, no log
   statistic keeps an old pseudonym.
4. **The record** (``office/key_rotations/``) names the new key id; the anonymize job refuses any other
   key from then on. The residence state is carried over, so the next monthly run stays incremental.
5. **The map is deleted.** It never reaches a release.

Run it when no other job writes to the lake, like erasure. See docs/operations.md ("Rotating the key").
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility import faults, progress
from mobility.anonymize.pseudonymize import PseudonymKey, load_key
from mobility.anonymize.rotation import NEW, OLD, pseudonym_map
from mobility.config import Agreement, KeySource, as_agreement
from mobility.errors import KeyMaterialError, MobilityError
from mobility.lake import Lake, commit_files, commit_info, read_json, write_json_atomic
from mobility.rights import catalog, log
from mobility.rights.history import purge
from mobility.rights.matching import read
from mobility.rights.subject import takes_operator_ids

MAPPED = "mapped"
RECORD_STAGE = "key_rotation"
# Tables whose row counts are stated: event-level rows. A row count of the others (subscribers, home
# cells, residence changes, suppression) would be an exact count of people or of changes, which no
# record, log or output of the office zone carries (docs/auditor-guide.md).
COUNTED = ("office/events", "office/payments", "office/presence")


class RotationError(MobilityError):
    """A rotation that cannot go on as asked; nothing was changed unless the message says so."""


@dataclass
class RotationReport:
    agreement_id: str
    old_key_id: str
    new_key_id: str
    tables_rewritten: list[str] = field(default_factory=list)
    rows_rewritten: dict[str, int] = field(default_factory=dict)  # COUNTED tables only
    rows_without_number: dict[str, int] = field(default_factory=dict)
    files_removed: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    already_done: bool = False
    duration_s: float = 0.0
    record: str = ""

    def to_dict(self) -> dict:
        return {"agreement_id": self.agreement_id, "old_key_id": self.old_key_id, "new_key_id": self.new_key_id,
                "tables_rewritten": self.tables_rewritten, "rows_rewritten": self.rows_rewritten,
                "rows_without_number": self.rows_without_number, "files_removed": self.files_removed,
                "resumed": self.resumed, "already_done": self.already_done, "duration_s": self.duration_s,
                "record": self.record}

    def text(self) -> str:
        if self.already_done:
            return (f"Key {self.old_key_id} -> {self.new_key_id} of agreement {self.agreement_id}: rotated earlier; "
                    f"nothing to do (record: {self.record}).")
        lines = [f"Key rotation of agreement {self.agreement_id}: {self.old_key_id} -> {self.new_key_id}"
                 + (" (resumed)" if self.resumed else "")]
        for table in self.tables_rewritten:
            n = self.rows_rewritten.get(table)
            lines.append(f"  {table:28s} " + (f"{n:>10,} row(s)" if n is not None else f"{'every row':>17s}")
                         + " rewritten to the new pseudonyms")
        for table, n in self.rows_without_number.items():
            lines.append(f"  {table:28s} {n:>10,} row(s) whose number was not given: renamed to a random "
                         "pseudonym (continuity inside the lake kept; a later delivery starts a new history)")
        lines.append(f"Superseded files physically removed: {sum(self.files_removed.values()):,}; the map was deleted.")
        lines.append(f"Record: {self.record}")
        lines.append(f"Now set key.key_id: {self.new_key_id} (and the new key's env or file) in the agreement; "
                     "the anonymize job refuses the old key from now on. Destroy the old key.")
        return "\n".join(lines)


def tag(agreement_id: str, old: str, new: str) -> str:
    """The ``userMetadata`` of a table's rotation commit: how a resumed rotation knows it is done."""
    return f"mobility key rotation {agreement_id}: {old} -> {new}"


def _tagged_commit(path: Path, label: str) -> dict | None:
    """The commitInfo of the table's commit tagged ``label``, if the log has one."""
    infos = (commit_info(c) for _, c in sorted(commit_files(path).items()))
    return next((info for info in infos if info and info.get("userMetadata") == label), None)


def _rows_written(info: dict | None) -> int:
    metrics = (info or {}).get("operationMetrics") or {}
    return int(metrics.get("numOutputRows", 0))


def targets(lake: Lake) -> list[catalog.Table]:
    """Every table of both zones with a column naming a person by pseudonym (suppression included)."""
    return [t for t in catalog.tables(lake, include_rights=True) if t.subject_column or t.other_party_columns]


def _identifier_columns(table: catalog.Table) -> list[str]:
    return [c for c in (table.subject_column, *table.other_party_columns) if c]


def _ours(table: catalog.Table, agreement_id: str, old_key_id: str):
    """Rows of this agreement under the old key (tables without those columns belong to one agreement)."""
    cond = F.lit(True)
    if "agreement_id" in table.columns:
        cond = cond & F.coalesce(F.col("agreement_id") == agreement_id, F.lit(False))
    if "key_id" in table.columns:
        cond = cond & F.coalesce(F.col("key_id") == old_key_id, F.lit(False))
    return cond


# ---- the map ----------------------------------------------------------------------------------------

def _stored_pseudonyms(spark: SparkSession, tables: list[catalog.Table], agreement_id: str, old: str) -> DataFrame:
    frames = [read(spark, t).where(_ours(t, agreement_id, old)).select(F.col(c).alias(OLD))
              for t in tables for c in _identifier_columns(t)]
    return reduce(DataFrame.unionByName, frames).where(F.col(OLD).isNotNull()).distinct()


def _complete_map(spark: SparkSession, agreement: Agreement, lake: Lake, old: PseudonymKey, new: PseudonymKey,
                  tables: list[catalog.Table], numbers: DataFrame, folder: Path) -> None:
    """Write the completed map (every stored pseudonym -> its new one) to ``folder``, atomically."""
    numbers = numbers.dropDuplicates([OLD]).localCheckpoint(eager=True)
    stored = _stored_pseudonyms(spark, tables, agreement.agreement_id, old.key_id)
    listed = agreement.listed_suppressions()
    if listed:
        stored = stored.unionByName(spark.createDataFrame([(p,) for p in listed], f"{OLD} STRING")).distinct()
    # a suppression entry without its number would let an erased person back in with the next delivery
    suppressed = [read(spark, t).where(_ours(t, agreement.agreement_id, old.key_id))
                  .select(F.col("pseudonym").alias(OLD)) for t in tables if t.name == "suppression"]
    if listed:
        suppressed.append(spark.createDataFrame([(p,) for p in listed], f"{OLD} STRING"))
    if suppressed:
        missing = reduce(DataFrame.unionByName, suppressed).distinct().join(numbers, OLD, "left_anti").count()
        if missing:
            what = "operator id" if takes_operator_ids(agreement) else "number"
            register = ("a CSV with an 'operator_id' column listing the operator's ids (for multimno, user_id in "
                        "hex) of its subscribers, or of the erasure requests," if takes_operator_ids(agreement) else
                        "the operator's subscriber register (or the numbers of the erasure requests)")
            raise RotationError(
                f"{missing} suppression entr(y/ies) (erasures, opt-outs) have no {what} among those given, so "
                "their new pseudonyms cannot be computed and the persons would be ingested again under the new "
                "key; nothing was changed",
                where=str(lake.suppression),
                hint=f"give {register} with --numbers FILE and run the rotation again")
    completed = stored.join(numbers, OLD, "left").select(
        OLD,
        # no number: a random name, unlinkable to the old key (sha2 of two random UUIDs: 64 hex digits)
        F.coalesce(F.col(NEW), F.sha2(F.concat(F.expr("uuid()"), F.expr("uuid()")), 256)).alias(NEW),
        F.col(NEW).isNotNull().alias(MAPPED))
    work = Path(tempfile.mkdtemp(prefix="map@tmp-", dir=folder))
    completed.write.mode("overwrite").parquet(str(work / "map"))
    os.rename(work / "map", folder / "map")  # the random names are fixed from here on
    shutil.rmtree(work, ignore_errors=True)


# ---- the tables -------------------------------------------------------------------------------------

def _renamed(table: catalog.Table, df: DataFrame, mapping: DataFrame, agreement_id: str, old: str,
             new: str) -> DataFrame:
    """The table with every pseudonym of its identifier columns replaced by the map's new one."""
    out = df.withColumn("_ours", _ours(table, agreement_id, old))
    for i, column in enumerate(_identifier_columns(table)):
        o, n = f"_old{i}", f"_new{i}"
        m = mapping.select(F.col(OLD).alias(o), F.col(NEW).alias(n))
        out = out.join(m, (out[column] == m[o]) & out["_ours"], "left")
        missing = F.raise_error(F.concat(F.lit(f"rotation map has no entry for a pseudonym of {table.label}.{column}: "
                                              "a job wrote to the lake during the rotation")))
        out = out.withColumn(column, F.when(~F.col("_ours") | F.col(column).isNull(), F.col(column))
                             .otherwise(F.coalesce(F.col(n), missing.cast("string")))).drop(o, n)
    if "key_id" in table.columns:
        out = out.withColumn("key_id", F.when(F.col("_ours"), F.lit(new)).otherwise(F.col("key_id")))
    return out.select(*table.columns)


def _without_number(table: catalog.Table, df: DataFrame, mapping: DataFrame, agreement_id: str, old: str) -> int:
    """Rows of the table naming someone whose number the operator did not give (renamed at random)."""
    unmapped = F.broadcast(mapping.where(~F.col(MAPPED)).select(F.col(OLD).alias("_u")))
    ours = df.where(_ours(table, agreement_id, old))
    return sum(ours.join(unmapped, ours[c] == unmapped["_u"], "left_semi").count() for c in _identifier_columns(table))


def _rewrite(spark: SparkSession, table: catalog.Table, mapping: DataFrame, agreement_id: str, old: str, new: str,
             label: str) -> None:
    df = read(spark, table)
    renamed = _renamed(table, df, mapping, agreement_id, old, new)
    try:
        # one transaction; Delta keeps the table's partitioning and properties on an overwrite
        renamed.write.format("delta").mode("overwrite").option("userMetadata", label).save(str(table.path))
    except Exception as exc:  # noqa: BLE001 - the map check surfaces as a Spark error
        if "rotation map has no entry" in str(exc):
            raise RotationError(f"{table.label} holds a pseudonym the rotation's map does not: a job wrote to the lake "
                                "after the map was made; this table was not changed", where=str(table.path),
                                hint="stop every other job on this lake, then run the same rotation again") from None
        raise


def _rewrite_suppression_file(agreement: Agreement, mapping: DataFrame) -> None:
    listed = agreement.listed_suppressions()
    if not listed:
        return
    path = Path(agreement.suppression_list)  # type: ignore[arg-type]
    rows = mapping.where(F.col(OLD).isin(listed)).select(OLD, NEW).collect()  # a short list: a few people
    found: dict[str, str] = {row[OLD]: row[NEW] for row in rows}
    lines = [found.get(p, p) for p in listed]  # an entry already renamed (resumed run) is kept as it is
    tmp = path.with_name(f".{path.name}.rotating")
    tmp.write_text("".join(f"{p}\n" for p in lines), encoding="utf-8")
    os.replace(tmp, path)


# ---- the whole rotation -----------------------------------------------------------------------------

def rotate(agreement: str | Agreement, lake_root: str | Path, new_key_id: str, *,
           new_key: KeySource | None = None, inputs: list[Path] | None = None, numbers: list[Path] | None = None,
           spark: SparkSession | None = None) -> RotationReport:
    """Rename every pseudonym of the agreement in both zones from its key to the new key; resumable."""
    started = time.time()
    agreement = as_agreement(agreement)
    lake = Lake(lake_root)
    log.require_file_system(lake, "key rotation")
    if not lake.root.is_dir():
        raise RotationError("no lake here", where=str(lake.root), hint="check --lake; nothing was changed")
    source = new_key or KeySource(env="MOBILITY_NEW_KEY", key_id=new_key_id)
    source = source.model_copy(update={"key_id": new_key_id})
    old, new = load_key(agreement.key), load_key(source)
    report = RotationReport(agreement.agreement_id, old.key_id, new.key_id)
    done = [r for r in lake.key_rotation_records(agreement.agreement_id) if r.get("new_key_id") == new.key_id]
    if done:
        report.already_done, report.old_key_id = True, done[-1]["old_key_id"]
        report.record = str(lake.key_rotations / f"{agreement.agreement_id}-{new.key_id}.json")
        shutil.rmtree(lake.key_rotation_work(new.key_id), ignore_errors=True)  # left by a crash after the record
        return report
    if new.key_id == old.key_id:
        raise KeyMaterialError(f"the new key id {new.key_id!r} is the agreement's current key id", where="--new-key-id",
                               hint="give the new key a new id; pseudonyms under one id must come from one key")
    if new.pads() == old.pads():
        raise KeyMaterialError("the new key is the same as the old key", where=f"key {new.key_id}",
                               hint="generate a new key with `openssl rand -hex 32`")
    stored = lake.key_id(agreement.agreement_id)
    if stored is not None and stored != old.key_id:
        raise KeyMaterialError(f"the lake's pseudonyms are under key id {stored!r}, but the agreement names "
                               f"{old.key_id!r}: the rotation needs the key the pseudonyms were made with",
                               where=str(lake.office_manifests),
                               hint="run the rotation with the agreement as it was before the key change")
    try:
        _rotate(agreement, lake, old, new, inputs or [], numbers or [], spark, report)
    except MobilityError as exc:
        log.record(lake.root, "key_rotation", agreement.agreement_id, "refused", detail=type(exc).__name__)
        raise
    report.duration_s = round(time.time() - started, 1)
    return report


def _rotate(agreement: Agreement, lake: Lake, old: PseudonymKey, new: PseudonymKey, inputs: list[Path],
            numbers: list[Path], spark: SparkSession | None, report: RotationReport) -> None:
    from mobility.residence.job import carry_state, current_state
    from mobility.spark import get_spark

    spark = spark or get_spark("mobility-key-rotation")
    label = tag(agreement.agreement_id, old.key_id, new.key_id)
    folder = lake.key_rotation_work(new.key_id)
    tables = targets(lake)
    report.resumed = (folder / "map").is_dir()
    if not report.resumed:
        if any(_tagged_commit(t.path, label) for t in tables):
            raise RotationError("a table was rewritten by this rotation but its map is gone; the names of pseudonyms "
                                "without a number cannot be made again", where=str(folder),
                                hint="restore the rotation folder from backup, or see docs/operations.md")
        folder.mkdir(parents=True, exist_ok=True)
        progress.say("keys", "computing the new pseudonym of every number held")
        write_json_atomic(folder / "residence_state.json", {"state": current_state(lake, agreement.agreement_id)})
        mapped = pseudonym_map(spark, agreement, old, new, inputs, numbers)
        _complete_map(spark, agreement, lake, old, new, tables, mapped, folder)
        faults.point("rotate:after-map")
    mapping = spark.read.parquet(str(folder / "map"))
    has_unmapped = mapping.where(~F.col(MAPPED)).limit(1).count() > 0
    for table in tables:
        info = _tagged_commit(table.path, label)
        if info is None:
            progress.say("keys", f"rewriting {table.label}")
            if has_unmapped and table.label in COUNTED:
                n = _without_number(table, read(spark, table), mapping, agreement.agreement_id, old.key_id)
                if n:
                    report.rows_without_number[table.label] = n
            _rewrite(spark, table, mapping, agreement.agreement_id, old.key_id, new.key_id, label)
            info = _tagged_commit(table.path, label)
            faults.point("rotate:after-table")
        report.tables_rewritten.append(table.label)
        if table.label in COUNTED:
            report.rows_rewritten[table.label] = _rows_written(info)
    _rewrite_suppression_file(agreement, mapping)
    faults.point("rotate:after-tables")
    progress.say("keys", "removing the old versions of every table")
    report.files_removed = purge(spark, tables)
    faults.point("rotate:after-purge")
    saved = read_json(folder / "residence_state.json") or {}
    carry_state(lake, saved.get("state"), f"rekeyed-{new.key_id}",
                f"pseudonyms renamed from key {old.key_id} to key {new.key_id}; results unchanged")
    record = lake.key_rotations / f"{agreement.agreement_id}-{new.key_id}.json"
    write_json_atomic(record, {
        "stage": RECORD_STAGE, "agreement_id": agreement.agreement_id, "old_key_id": old.key_id,
        "new_key_id": new.key_id, "tables_rewritten": report.tables_rewritten,
        "rows_rewritten": report.rows_rewritten,
        "rows_without_number": report.rows_without_number, "files_removed": report.files_removed,
        "resumed": report.resumed, "finished": dt.datetime.now(dt.UTC).isoformat()})
    report.record = str(record)
    faults.point("rotate:after-record")
    shutil.rmtree(folder)  # the map: linkable old and new names, never kept
    if not any(folder.parent.iterdir()):
        folder.parent.rmdir()
    log.record(lake.root, "key_rotation", agreement.agreement_id, "done",
               detail=f"{old.key_id} -> {new.key_id}; {len(report.tables_rewritten)} tables rewritten")
