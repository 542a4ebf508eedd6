"""Rectification (General Comment No. 16, para. 10): correct a subscriber's sex or birth year.

Every table of either zone that holds subscriber attributes (a ``sex`` or ``birth_year`` column
beside ``pseudonym``) is updated, so the next release, which reads the subscribers table when it
counts by sex or age band, uses the corrected value. Other columns are observations (times,
places), not declarations the person can correct; erasure is the remedy for those.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import Column
from pyspark.sql import functions as F

from mobility.config import as_agreement
from mobility.errors import MobilityError
from mobility.lake import Lake
from mobility.rights import catalog, log
from mobility.rights.matching import read
from mobility.rights.subject import RightsRequestError, resolve
from mobility.schemas import SEXES

RECTIFIABLE = ("sex", "birth_year")
MIN_BIRTH_YEAR = 1900  # the anonymize job's own plausibility bound (validate.subscriber_checks)


@dataclass
class RectificationReport:
    agreement_id: str
    subject: str
    changes: dict[str, str | int]
    rows_updated: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"agreement_id": self.agreement_id, "subject": self.subject, "changes": self.changes,
                "rows_updated": self.rows_updated, "nothing_stored": not any(self.rows_updated.values())}

    def text(self) -> str:
        what = ", ".join(f"{k} = {v}" for k, v in self.changes.items())
        if not any(self.rows_updated.values()):
            return (f"Rectification under agreement {self.agreement_id} for {self.subject}: no subscriber record "
                    f"is stored for this person; nothing to correct ({what} not applied).")
        lines = [f"Rectification under agreement {self.agreement_id} for {self.subject}: {what}"]
        lines += [f"  {t:28s} {n:>6,} row(s) updated" for t, n in self.rows_updated.items()]
        lines.append("Releases made from now on use the corrected value; earlier releases are not changed.")
        return "\n".join(lines)


def parse_changes(assignments) -> dict[str, str | int]:
    """``["sex=F", "birth_year=1990"]`` (or a dict) -> validated values; refuses anything else."""
    items = assignments.items() if isinstance(assignments, dict) else [_split(a) for a in assignments or ()]
    changes: dict[str, str | int] = {}
    for name, value in items:
        name = str(name).strip()
        if name not in RECTIFIABLE:
            raise RightsRequestError(
                f"field {name!r} cannot be rectified: only {', '.join(RECTIFIABLE)} are declarations a person "
                "can correct (times and places are observations; ask for erasure instead)",
                where="--set", hint="use --set sex=F|M|X or --set birth_year=YYYY; nothing was changed")
        changes[name] = _value(name, value)
    if not changes:
        raise RightsRequestError("nothing to rectify", where="--set",
                                 hint="give at least one --set sex=F|M|X or --set birth_year=YYYY")
    return changes


def _split(assignment: str) -> tuple[str, str]:
    if "=" not in str(assignment):
        raise RightsRequestError(f"{assignment!r} is not FIELD=VALUE", where="--set",
                                 hint="for example --set sex=F; nothing was changed")
    name, value = str(assignment).split("=", 1)
    return name, value


def _value(name: str, value) -> str | int:
    text = str(value).strip()
    if name == "sex":
        if text.upper() not in SEXES:
            raise RightsRequestError(f"sex must be one of {', '.join(SEXES)}, got {text!r}", where="--set sex",
                                     hint="nothing was changed")
        return text.upper()
    this_year = dt.date.today().year
    try:
        year = int(text)
    except ValueError:
        year = None
    if year is None or not MIN_BIRTH_YEAR <= year <= this_year:
        raise RightsRequestError(f"birth_year must be a year from {MIN_BIRTH_YEAR} to {this_year}, got {text!r}",
                                 where="--set birth_year", hint="nothing was changed")
    return year


@log.under_writer_lease("rectification")
def rectify(agreement, lake_root: str | Path, *, msisdn: str | None = None, pseudonym: str | None = None,
            operator_id: str | None = None, changes=None, spark=None) -> RectificationReport:
    """Correct sex and/or birth year of one person in every table that holds them."""
    agreement = as_agreement(agreement)
    lake = Lake(lake_root)
    try:
        values = parse_changes(changes)
        subject = resolve(agreement, msisdn=msisdn, pseudonym=pseudonym, operator_id=operator_id)
        if not lake.root.is_dir():
            raise RightsRequestError("no lake here", where=str(lake.root), hint="check --lake; nothing was changed")
    except MobilityError as exc:
        log.record(lake_root, "rectify", agreement.agreement_id, "refused", detail=type(exc).__name__)
        raise
    from delta.tables import DeltaTable

    from mobility.spark import get_spark

    spark = spark or get_spark("mobility-rights")
    report = RectificationReport(agreement.agreement_id, subject.masked, values)
    for table in catalog.tables(lake):
        held = [c for c in values if c in table.columns]
        if table.subject_column != "pseudonym" or not held:
            continue
        n = read(spark, table).where(F.col("pseudonym") == F.lit(subject.pseudonym)).count()
        if n:
            # a one-row source, not a literal predicate: the commit must not carry the pseudonym
            source = spark.createDataFrame([(subject.pseudonym,)], "_subject STRING")
            types = dict(read(spark, table).dtypes)
            assignments: dict[str, str | Column] = {c: F.lit(values[c]).cast(types[c]) for c in held}
            DeltaTable.forPath(spark, str(table.path)).alias("t") \
                .merge(source.alias("s"), "t.pseudonym = s._subject").whenMatchedUpdate(set=assignments).execute()
        report.rows_updated[table.label] = n
    outcome = "done" if any(report.rows_updated.values()) else "nothing_stored"
    detail = f"fields {', '.join(values)}; " + "; ".join(f"{t}: {n}" for t, n in report.rows_updated.items())
    log.record(lake.root, "rectify", agreement.agreement_id, outcome, subject=subject, detail=detail)
    return report
