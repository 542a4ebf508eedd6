"""Subject access (General Comment No. 16, para. 10): is data about this person stored, and if so what.

For every Delta table of both zones: how many records, which columns, the date range, the purposes,
who controls them and when retention deletes them. A person with no data gets a plain "nothing
stored" report. Releases are never searched: they hold no individual record, and the report says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import functions as F

from mobility.config import DataZone, as_agreement
from mobility.errors import MobilityError
from mobility.lake import Lake, is_delta
from mobility.rights import catalog, log
from mobility.rights import registry as reg
from mobility.rights.matching import other_party_rows, run_finish_dates, subject_rows
from mobility.rights.subject import RightsRequestError, Subject, raw_id, resolve

ZONE_KEYS: dict[str, DataZone] = {"operator": "operator_zone", "office": "office_zone"}


@dataclass
class AccessReport:
    agreement_id: str
    subject: str  # masked number or operator id, or pseudonym prefix: never the full number or id
    pseudonym: str
    side: str  # operator (by number or operator id) or office (by pseudonym)
    holdings: list[dict] = field(default_factory=list)
    purposes: list[dict] = field(default_factory=list)
    suppressed: bool = False
    notes: list[str] = field(default_factory=list)
    retention_days: int = 0

    @property
    def stored(self) -> bool:
        return any(h["records"] for h in self.holdings)

    def to_dict(self) -> dict:
        return {"agreement_id": self.agreement_id, "subject": self.subject, "pseudonym": self.pseudonym,
                "side": self.side, "stored": self.stored, "records": sum(h["records"] for h in self.holdings),
                "holdings": self.holdings, "purposes": self.purposes, "retention_days": self.retention_days,
                "on_suppression_list": self.suppressed, "releases": reg.RELEASES_STATEMENT, "notes": self.notes}

    def text(self) -> str:
        lines = [f"Subject access request under agreement {self.agreement_id} ({reg.LEGAL_REFERENCE})",
                 f"Person: {self.subject} (pseudonym {self.pseudonym})", ""]
        if not self.stored:
            lines.append("Nothing is stored about this person in the operator or office zone.")
        else:
            total = sum(h["records"] for h in self.holdings)
            lines.append(f"Personal data about this person is stored: {total:,} records in "
                         f"{len(self.holdings)} table(s).")
            for h in self.holdings:
                span = f", {h['first']} to {h['last']}" if h["first"] else ""
                lines += ["", f"  {h['table']} ({h['zone_description']})",
                          f"    what: {h['description']}",
                          f"    records: {h['records']:,} ({h['role']}){span}",
                          f"    columns: {', '.join(h['columns'])}",
                          f"    controlled by: {', '.join(h['controlled_by']) or 'no controller declared'}",
                          f"    deleted: {h['deletion']}"]
            lines += ["", "Purposes these records are processed for:"]
            lines += [f"  - {p['id']}: {p['description']}" for p in self.purposes]
        if self.suppressed:
            lines += ["", "This person's erasure is on record: future deliveries of their data are dropped "
                          "on ingestion."]
        lines += ["", reg.RELEASES_STATEMENT]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _as_date(value) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    if len(text) == 7:  # a yyyy-MM month is kept until its last day
        first = dt.date.fromisoformat(text + "-01")
        return dt.date(first.year + first.month // 12, first.month % 12 + 1, 1) - dt.timedelta(days=1)
    return dt.date.fromisoformat(text[:10])


def _deletion(first, last, days: int, table: catalog.Table) -> str:
    if first is None:
        if table.name == "subscribers":
            return "kept only while this person's events or payments are kept; deleted with the last of them"
        return f"{days} days after the records were received"
    oldest, newest = _as_date(first), _as_date(last)
    assert oldest is not None and newest is not None  # the min and max of one column: both set or both None
    start, end = oldest + dt.timedelta(days=days), newest + dt.timedelta(days=days)
    return f"from {start.isoformat()} (oldest record) to {end.isoformat()} (newest), {days} days after each"


def _on_suppression_list(lake: Lake, subject: Subject) -> bool:
    if not is_delta(lake.suppression):
        return False
    from deltalake import DeltaTable

    rows = DeltaTable(str(lake.suppression)).to_pyarrow_table(columns=["pseudonym", "key_id"]).to_pylist()
    return any(r["pseudonym"] == subject.pseudonym and r["key_id"] == subject.key_id for r in rows)


def _holding(spark, lake: Lake, agreement, table: catalog.Table, subject: Subject) -> list[dict]:
    zone_key = ZONE_KEYS[table.zone]
    base = {"table": table.label, "zone": table.zone, "zone_description": reg.ZONE_NAMES[zone_key],
            "description": table.description, "columns": list(table.columns),
            "controlled_by": [c["name"] for c in reg.controllers_of(agreement, zone_key)],
            "purposes": [p.id for p in agreement.purposes]}
    out = []
    rows = subject_rows(spark, table, subject)
    if rows is not None:
        role = f"raw quarantined rows mentioning the {raw_id(agreement)}" if table.holds_raw_records \
            else "records about the person"
        out.append(_summarize(rows, table, dict(base, role=role), agreement.retention_days, lake))
    for column in table.other_party_columns:
        rows = other_party_rows(spark, table, subject, column)
        out.append(_summarize(rows, table, dict(base, role=f"named as the other party ({column})"),
                              agreement.retention_days, lake))
    return [h for h in out if h["records"]]


def _summarize(rows, table: catalog.Table, base: dict, days: int, lake: Lake) -> dict:
    column = table.time_column
    if column:
        r = rows.agg(F.count(F.lit(1)).alias("n"), F.min(column).alias("lo"), F.max(column).alias("hi")).collect()[0]
        first, last = r["lo"], r["hi"]
    elif table.holds_raw_records:
        received = run_finish_dates(lake)
        runs = [x["run_id"] for x in rows.select("run_id").distinct().collect()]
        dates = sorted(received[x] for x in runs if x in received)
        r = {"n": rows.count()}
        first, last = (dates[0], dates[-1]) if dates else (None, None)
    else:
        r, first, last = {"n": rows.count()}, None, None
    return dict(base, records=int(r["n"]), first=_iso(first), last=_iso(last),
                deletion=_deletion(first, last, days, table))


def access(agreement, lake_root: str | Path, *, msisdn: str | None = None, pseudonym: str | None = None,
           operator_id: str | None = None, spark=None) -> AccessReport:
    """Report what the lake stores about one person (by number, or by operator id for an agreement of operator
    ids, on the operator side; by pseudonym elsewhere)."""
    agreement = as_agreement(agreement)
    lake = Lake(lake_root)
    try:
        subject = resolve(agreement, msisdn=msisdn, pseudonym=pseudonym, operator_id=operator_id)
        if not lake.root.is_dir():
            raise RightsRequestError("no lake here", where=str(lake.root), hint="check --lake")
    except MobilityError as exc:
        log.record(lake_root, "access", agreement.agreement_id, "refused", detail=type(exc).__name__)
        raise
    from mobility.spark import get_spark

    spark = spark or get_spark("mobility-rights")
    report = AccessReport(agreement.agreement_id, subject.masked, subject.pseudonym,
                          "operator" if subject.has_identifier else "office",
                          purposes=[p.model_dump() for p in agreement.purposes],
                          retention_days=agreement.retention_days)
    for table in catalog.tables(lake):
        if table.personal:
            report.holdings += _holding(spark, lake, agreement, table, subject)
    report.suppressed = _on_suppression_list(lake, subject)
    if not subject.has_identifier and is_delta(lake.quarantine):
        report.notes.append(f"quarantined raw rows in the operator zone can only be searched by {raw_id(agreement)}, "
                            "on the operator side")
    outcome = "done" if report.stored else "nothing_stored"
    detail = "; ".join(f"{h['table']}: {h['records']}" for h in report.holdings) or None
    log.record(lake.root, "access", agreement.agreement_id, outcome, subject=subject, detail=detail)
    return report
