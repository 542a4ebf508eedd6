"""Retention: delete personal data older than the agreement's ``retention_days``, in both zones.

Each table is cut by its own event time (``catalog.TIME_COLUMNS``: event hour, transaction hour,
presence date, crossing date, month). Quarantined raw rows have no trustworthy time of their own,
so they are kept ``retention_days`` after the run that received them. Subscriber attributes are
kept only while the person still has events or payments. The rights log and the suppression list
are kept: they are the record that requests were honoured. Superseded files are then purged like
an erasure's (``history.purge``), so deleted data does not survive in Delta history.

The summary says, per table, *whether* rows were deleted, never how many: a count of the subscribers
left without activity is a count of people, and the residence changes of the month that expired are
an exact monthly count of changes. It is printed, logged and kept in the rights log.

Killed part-way, the same command run again completes it: expired rows already deleted are not found
again, the purge follows, and ``log.Pending`` (the tables the interrupted attempt deleted from, noted
before each delete) lets the one rights-log entry say what the whole run deleted.

On a lake on object storage (ADR 0014) the run holds the lake's writer lease from its first delete to
the end of its purge (``log.under_writer_lease``).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mobility import faults
from mobility.config import as_agreement
from mobility.errors import MobilityError
from mobility.lake import Lake
from mobility.rights import catalog, log
from mobility.rights.history import purge
from mobility.rights.matching import read, run_finish_dates
from mobility.rights.subject import RightsRequestError

ACTIVITY_TABLES = ("events", "payments")  # what keeps a subscriber record alive
DELETED = "deleted"  # what log.Pending notes: the tables rows were deleted from


def cutoff_of(retention_days: int, today: dt.date) -> dt.date:
    """First day still kept: data dated before it is deleted."""
    return today - dt.timedelta(days=retention_days)


def _old_rows(table: catalog.Table, cutoff: dt.date):
    column = table.time_column
    assert column is not None  # called for tables with a time column only
    if column == "month":  # a month is kept until its last day is older than the cutoff
        return F.col(column) < F.lit(cutoff.strftime("%Y-%m"))
    if column in ("date", "crossing_date"):
        return F.col(column) < F.lit(cutoff)
    return F.col(column) < F.lit(dt.datetime.combine(cutoff, dt.time()))  # timestamps are UTC


def _delete(spark, table: catalog.Table, condition, pending: log.Pending) -> bool:
    """Delete the rows matching ``condition``; whether there were any."""
    from delta.tables import DeltaTable

    if read(spark, table).where(condition).isEmpty():
        return False
    pending.note(DELETED, table.label, True)
    DeltaTable.forPath(spark, str(table.path)).delete(condition)
    faults.point("retention:after-delete")
    return True


@log.under_writer_lease("retention")
def enforce(agreement, lake_root, *, today: dt.date | None = None, spark=None) -> dict:
    """Delete expired rows in every table of both zones, then purge; returns, per table, whether rows were
    deleted and how many files were removed."""
    agreement = as_agreement(agreement)
    lake = Lake(lake_root)
    today = today or dt.date.today()
    cutoff = cutoff_of(agreement.retention_days, today)
    if not lake.root.is_dir():
        raise RightsRequestError("no lake here", where=str(lake.root), hint="check --lake; nothing was changed")
    from mobility.spark import get_spark

    spark = spark or get_spark("mobility-retention")
    pending = log.Pending(lake.root, f"retention-{agreement.agreement_id}", "retention", agreement.agreement_id)
    try:
        summary = _enforce(spark, lake, agreement, cutoff, pending)
    except MobilityError as exc:
        log.record(lake.root, "retention", agreement.agreement_id, "refused", detail=type(exc).__name__)
        raise
    summary.update({"agreement_id": agreement.agreement_id, "today": today.isoformat(),
                    "retention_days": agreement.retention_days})
    deleted = [t for t, v in summary["tables"].items() if v["deleted"]]
    detail = f"cutoff {summary['cutoff']}; " + (f"rows deleted in {', '.join(deleted)}" if deleted
                                                else "nothing older than the cutoff")
    pending.finish(lake.root, "retention", agreement.agreement_id, "done", detail=detail)
    return summary


def _enforce(spark, lake: Lake, agreement, cutoff: dt.date, pending: log.Pending) -> dict:
    tables = [t for t in catalog.tables(lake) if t.personal]
    earlier = pending.earlier_done().get(DELETED, {})  # deleted by an interrupted run: not found again now
    result: dict[str, dict] = {}
    for table in tables:
        if table.time_column:
            deleted = _delete(spark, table, _old_rows(table, cutoff), pending)
            result[table.label] = {"deleted": deleted, "by": table.time_column}
        elif table.holds_raw_records:
            received = run_finish_dates(lake)
            expired = sorted(r for r, day in received.items() if day < cutoff)
            deleted = _delete(spark, table, F.col("run_id").isin(expired), pending) if expired else False
            result[table.label] = {"deleted": deleted, "by": "date received (run finished)"}
    for table in tables:  # after the activity tables, so their deletions count
        if table.name == "subscribers" and table.subject_column == "pseudonym":
            deleted = _orphans(spark, lake, table, tables, pending)
            result[table.label] = {"deleted": deleted, "by": "no events or payments kept"}
    for label, entry in result.items():
        entry["deleted"] = entry["deleted"] or bool(earlier.get(label))
    faults.point("retention:before-purge")
    files = purge(spark, tables)
    faults.point("retention:after-purge")
    for label, n in files.items():
        result.setdefault(label, {"deleted": False, "by": None})["files_removed"] = n
    return {"cutoff": cutoff.isoformat(), "tables": result,
            "deleted": any(v["deleted"] for v in result.values()),
            "files_removed": sum(files.values())}


def _orphans(spark, lake: Lake, subscribers: catalog.Table, tables: list[catalog.Table],
             pending: log.Pending) -> bool:
    from delta.tables import DeltaTable

    activity = [t for t in tables if t.zone == subscribers.zone and t.name in ACTIVITY_TABLES]
    if not activity:
        return False  # nothing to judge by: a subscribers-only delivery is left alone
    active: DataFrame | None = None
    for t in activity:
        column = t.subject_column
        assert column is not None  # events and payments are keyed by the subscriber's pseudonym
        ids = read(spark, t).select(F.col(column).alias("_active"))
        active = ids if active is None else active.unionByName(ids)
    assert active is not None  # activity is not empty
    active = active.distinct()
    orphans = read(spark, subscribers).join(active, F.col("pseudonym") == F.col("_active"), "left_anti") \
        .select(F.col("pseudonym").alias("_orphan")).distinct().localCheckpoint()
    if orphans.isEmpty():
        return False
    pending.note(DELETED, subscribers.label, True)
    DeltaTable.forPath(spark, str(subscribers.path)).alias("t").merge(
        orphans.alias("s"), "t.pseudonym = s._orphan").whenMatchedDelete().execute()
    faults.point("retention:after-delete")
    return True

