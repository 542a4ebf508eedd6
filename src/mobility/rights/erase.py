"""Erasure (General Comment No. 16, para. 10: "elimination"): every row about the person, everywhere.

Order matters: the keyed pseudonym goes on the suppression list first (so an ingest running next
cannot bring the person back), then every Delta table of both zones loses the person's rows (or,
where the person is only the other party of someone else's record, that column is blanked), then
superseded files and log statistics are purged (``history.purge``).

A crash anywhere in between is completed by running the same erasure again: the suppression is not
added twice, the rows already deleted are not found again, and the purge and the rights log entry
follow. ``log.Pending`` keeps what the interrupted attempt deleted (noted before each delete) and the
id of its log entry, so the one entry written says what the whole erasure did (docs/reliability.md).

Deletes run as MERGEs against a one-row source table rather than DELETE ... WHERE pseudonym = '...':
Delta records a DELETE's predicate, literal included, in the commit, so the pseudonym would be
written into the very log being cleaned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from mobility import faults
from mobility.config import as_agreement
from mobility.errors import MobilityError
from mobility.lake import Lake, is_delta
from mobility.rights import catalog, log
from mobility.rights.history import purge
from mobility.rights.matching import read, subject_rows
from mobility.rights.subject import RightsRequestError, Subject, resolve, takes_operator_ids

SUPPRESSION_SCHEMA = StructType([StructField("pseudonym", StringType(), False),
                                 StructField("key_id", StringType(), False),
                                 StructField("reason", StringType(), False),
                                 StructField("added_on", StringType(), False)])
ROWS_DELETED, VALUES_BLANKED = "rows_deleted", "values_blanked"  # what log.Pending notes, by table


@dataclass
class ErasureReport:
    agreement_id: str
    subject: str
    rows_deleted: dict[str, int] = field(default_factory=dict)
    values_blanked: dict[str, int] = field(default_factory=dict)
    files_removed: dict[str, int] = field(default_factory=dict)
    suppression: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def erased(self) -> int:
        return sum(self.rows_deleted.values()) + sum(self.values_blanked.values())

    def to_dict(self) -> dict:
        return {"agreement_id": self.agreement_id, "subject": self.subject, "rows_deleted": self.rows_deleted,
                "values_blanked": self.values_blanked, "files_removed": self.files_removed,
                "suppression": self.suppression, "nothing_stored": self.erased == 0, "notes": self.notes}

    def text(self) -> str:
        lines = [f"Erasure under agreement {self.agreement_id} for {self.subject}"]
        if not self.erased:
            lines.append("Nothing was stored about this person; nothing to delete.")
        for table, n in self.rows_deleted.items():
            lines.append(f"  {table:28s} {n:>8,} row(s) deleted")
        for table, n in self.values_blanked.items():
            lines.append(f"  {table:28s} {n:>8,} mention(s) as the other party blanked")
        removed = sum(self.files_removed.values())
        lines.append(f"Superseded data files physically removed: {removed:,} "
                     f"(Delta history older than this erasure is gone).")
        lines.append("Future deliveries of this person's data are dropped on ingestion: "
                     + ", ".join(self.suppression) + ".")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def _suppress(spark, lake: Lake, agreement, subject: Subject) -> list[str]:
    """Record the keyed pseudonym where the anonymize job looks: the lake's table and the agreement's file."""
    where = []
    table = lake.suppression
    known = is_delta(table) and read(spark, catalog.Table("operator", "suppression", table, ())) \
        .where((F.col("pseudonym") == subject.pseudonym) & (F.col("key_id") == subject.key_id)).count() > 0
    if not known:
        row = (subject.pseudonym, subject.key_id, "erasure", dt.date.today().isoformat())
        spark.createDataFrame([row], SUPPRESSION_SCHEMA).write.format("delta").mode("append").save(str(table))
    where.append(str(table))
    path = agreement.suppression_list
    if path is not None:
        path = Path(path)
        if subject.pseudonym not in agreement.listed_suppressions():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(subject.pseudonym + "\n")
        where.append(str(path))
    return where


def _merge_delete(spark, table: catalog.Table, source, on: str) -> None:
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, str(table.path)).alias("t").merge(source.alias("s"), on) \
        .whenMatchedDelete().execute()


def _erase_table(spark, table: catalog.Table, subject: Subject, report: ErasureReport,
                 pending: log.Pending) -> bool:
    from delta.tables import DeltaTable

    touched = False
    rows = subject_rows(spark, table, subject)
    if rows is not None:
        if table.subject_column:
            n = rows.count()
            if n:
                pending.note(ROWS_DELETED, table.label, n)
                source = spark.createDataFrame([(subject.pseudonym,)], "_subject STRING")
                _merge_delete(spark, table, source, f"t.`{table.subject_column}` = s._subject")
        else:  # raw quarantined rows: match the exact stored records, never a literal of the number
            records = rows.select("record").distinct().localCheckpoint()
            n = rows.count()
            if n:
                pending.note(ROWS_DELETED, table.label, n)
                _merge_delete(spark, table, records, "t.record = s.record")
        if n:
            faults.point("erase:after-delete")
            report.rows_deleted[table.label] = n
            touched = True
    for column in table.other_party_columns:
        n = read(spark, table).where(F.col(column) == F.lit(subject.pseudonym)).count()
        if n:
            pending.note(VALUES_BLANKED, f"{table.label}.{column}", n)
            source = spark.createDataFrame([(subject.pseudonym,)], "_subject STRING")
            DeltaTable.forPath(spark, str(table.path)).alias("t") \
                .merge(source.alias("s"), f"t.`{column}` = s._subject") \
                .whenMatchedUpdate(set={column: "CAST(NULL AS STRING)"}).execute()
            faults.point("erase:after-delete")
            report.values_blanked[f"{table.label}.{column}"] = n
            touched = True
    return touched


@log.under_writer_lease("erasure")
def erase(agreement, lake_root: str | Path, *, msisdn: str | None = None, pseudonym: str | None = None,
          operator_id: str | None = None, spark=None) -> ErasureReport:
    """Delete every row about one person in both zones, physically, and keep them out of later ingests.

    By number (or, for an agreement whose deliveries carry the operator's own ids, by operator id) on the
    operator side, quarantined raw rows included; by pseudonym where only the office zone is at hand.
    Run it when no other job writes to the lake (see ``history.purge``).
    """
    agreement = as_agreement(agreement)
    lake = Lake(lake_root)
    try:
        subject = resolve(agreement, msisdn=msisdn, pseudonym=pseudonym, operator_id=operator_id)
        if not lake.root.is_dir():
            raise RightsRequestError("no lake here", where=str(lake.root), hint="check --lake; nothing was changed")
    except MobilityError as exc:
        log.record(lake_root, "erase", agreement.agreement_id, "refused", detail=type(exc).__name__)
        raise
    from mobility.spark import get_spark

    spark = spark or get_spark("mobility-rights")
    report = ErasureReport(agreement.agreement_id, subject.masked)
    # an erasure killed part-way left this record: what it deleted, and the id of its log entry
    pending = log.Pending(lake.root, f"erase-{log.subject_ref(lake, subject)}", "erase", agreement.agreement_id)
    report.suppression = _suppress(spark, lake, agreement, subject)
    faults.point("erase:after-suppression")
    personal = [t for t in catalog.tables(lake) if t.personal]
    touched = [t for t in personal if _erase_table(spark, t, subject, report, pending)]
    earlier = pending.earlier_done()  # deleted before an interruption: not found again now
    report.rows_deleted = _in_table_order({**earlier.get(ROWS_DELETED, {}), **report.rows_deleted}, personal)
    report.values_blanked = _in_table_order({**earlier.get(VALUES_BLANKED, {}), **report.values_blanked}, personal)
    if not subject.has_identifier and any(t.holds_raw_records for t in personal):
        by = ("operator ids, not pseudonyms: erase by --operator-id" if takes_operator_ids(agreement)
              else "numbers, not pseudonyms: erase by --msisdn")
        report.notes.append(f"quarantined raw rows hold {by} on the operator side to remove them too")
    faults.point("erase:before-purge")
    # every personal table is purged, touched or not: earlier versions may still hold the person
    report.files_removed = purge(spark, personal)
    faults.point("erase:after-purge")
    detail = "; ".join([f"{k}: {v} deleted" for k, v in report.rows_deleted.items()]
                       + [f"{k}: {v} blanked" for k, v in report.values_blanked.items()]) or None
    outcome = "done" if touched or report.erased else "nothing_stored"
    pending.finish(lake.root, "erase", agreement.agreement_id, outcome, subject=subject, detail=detail)
    return report


def _in_table_order(counts: dict[str, int], tables: list[catalog.Table]) -> dict[str, int]:
    """``counts`` (keyed by table label, or label.column) in the order of the tables, as one run finds them."""
    rank = {t.label: i for i, t in enumerate(tables)}
    return dict(sorted(counts.items(), key=lambda kv: (rank.get(kv[0].split(".")[0], len(rank)), kv[0])))
