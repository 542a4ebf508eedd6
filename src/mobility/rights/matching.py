"""Finding a person's rows: by pseudonym in pseudonymized tables, by number or operator id in raw quarantined rows."""

from __future__ import annotations

import datetime as dt
import json
import re

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility.lake import Lake
from mobility.rights.catalog import Table
from mobility.rights.subject import Subject

# A run of digits with the separators people write numbers with ("+63 917-123 4567", "(0917) 123 4567").
_PHONE_LIKE = re.compile(r"\+?\d[\d\s\-().]{5,}\d")
# A whole run of letters and digits: an operator id is matched as one such token, never inside a longer one.
_ID_LIKE = re.compile(r"[0-9A-Za-z]+")


def phone_tokens(text: str) -> set[str]:
    return {re.sub(r"\D", "", m) for m in _PHONE_LIKE.findall(text)}


def id_tokens(text: str) -> set[str]:
    return {m.lower() for m in _ID_LIKE.findall(text)}


def _values(record: str) -> list:
    try:
        return list(json.loads(record).values())
    except (ValueError, AttributeError):
        return [record]


def record_mentions(record: str | None, forms: frozenset[str]) -> bool:
    """True when any value of a raw row (its JSON) is the number in one of its written forms."""
    if not record:
        return False
    return any(isinstance(v, str) and phone_tokens(v) & forms for v in _values(record))


def record_names_id(record: str | None, operator_id: str) -> bool:
    """True when any value of a raw row (its JSON) holds the operator id as a whole token (any case)."""
    if not record:
        return False
    return any(isinstance(v, str) and operator_id.lower() in id_tokens(v) for v in _values(record))


def raw_match(subject: Subject) -> Column:
    """A boolean column over ``record``: the quarantined row mentions the subject's number or operator id."""
    forms = frozenset(subject.number_forms())
    operator_id = subject.operator_id

    @F.pandas_udf("boolean")  # type: ignore[call-overload]  # pyspark's stubs lack the type-hint form
    def _mentions(records: pd.Series) -> pd.Series:
        if operator_id is not None:
            return records.map(lambda r: record_names_id(r, operator_id)).astype(bool)
        return records.map(lambda r: record_mentions(r, forms)).astype(bool)

    return _mentions(F.col("record"))


def read(spark: SparkSession, table: Table) -> DataFrame:
    return spark.read.format("delta").load(str(table.path))


def subject_rows(spark: SparkSession, table: Table, subject: Subject) -> DataFrame | None:
    """Rows about the person (deleted on erasure), or None when the table cannot hold any."""
    df = read(spark, table)
    if table.subject_column:
        return df.where(F.col(table.subject_column) == F.lit(subject.pseudonym))
    if table.holds_raw_records and subject.has_identifier:
        return df.where(raw_match(subject))
    return None


def other_party_rows(spark: SparkSession, table: Table, subject: Subject, column: str) -> DataFrame:
    return read(spark, table).where(F.col(column) == F.lit(subject.pseudonym))


def run_finish_dates(lake: Lake) -> dict[str, dt.date]:
    """Finish date of each anonymization run (when its quarantined rows were received), from the operator's
    run manifests, on a local lake or on object storage."""
    out = {}
    folder = lake.operator_manifests
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            out[manifest["run_id"]] = dt.datetime.fromisoformat(manifest["finished"]).date()
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
