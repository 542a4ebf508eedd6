"""Key rotation, operator side: the old-to-new pseudonym of every subscriber the operator still holds.

Pseudonyms are HMAC-SHA256 of the subscriber's id under the agreement key (ADR 0001), so a new key
gives every subscriber a new pseudonym. Only the operator can say which new pseudonym follows which
old one: it holds the ids and both keys. This module reads the ids from the retained raw deliveries
(the folders ``mobility anonymize`` read), through the agreement's ``input_format`` as the anonymize
job reads them, and from any id lists (a subscriber register export), keys them exactly as the
anonymize job does (``subscriber_id``: the number in E.164; for a format that delivers the operator's
own pseudonymous ids, multimno's ``user_id``, the id as its reader gives it, lowercase hex) and returns
``old_pseudonym, new_pseudonym`` for each, computed by Spark expressions (no id leaves the executors;
the keys reach Spark only as HMAC pads in broadcast rows).

The office side (``mobility.rights.rekey``) then renames every stored pseudonym with this map.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility.anonymize import formats
from mobility.anonymize.pseudonymize import PseudonymKey, drop_key_pads, e164_column, hmac_sha256, with_key_pads
from mobility.anonymize.validate import blank
from mobility.config import Agreement
from mobility.errors import InputContractError
from mobility.rights.subject import HEX_ID_PATTERN, takes_operator_ids
from mobility.schemas import INPUTS

OLD, NEW = "old_pseudonym", "new_pseudonym"
NUMBER_LIST_COLUMN = "msisdn"
# an id list of an agreement of operator ids: either column (multimno names the id user_id)
ID_LIST_COLUMNS = ("operator_id", "user_id")
# the columns of the raw datasets (in the native contract) that hold a subscriber, whoever's record it is
NUMBER_COLUMNS = ("msisdn", "counterpart_msisdn", "sender_msisdn", "receiver_msisdn")


def subscriber_id(raw: Column, agreement: Agreement) -> Column:
    """What the anonymize job keys (``datasets.RunContext.subscriber_id``): the number in E.164 (null when
    not a valid number), or, for a format of operator ids, the id as its reader gives it (null when blank)."""
    if takes_operator_ids(agreement):
        return F.when(~blank(raw), raw)
    return e164_column(raw, agreement.home_region)


def _delivered_ids(spark: SparkSession, folder: Path, agreement: Agreement) -> list[DataFrame]:
    """Every subscriber column of every dataset file under one input folder, read by the agreement's format,
    each keyed form as one column ``_id``."""
    found = formats.discover(folder, agreement.input_format)
    frames = []
    for dataset, files in found.items():
        columns = [c for c in NUMBER_COLUMNS if c in INPUTS[dataset].columns]
        if not columns or not files:
            continue
        df = formats.read(spark, files, INPUTS[dataset], agreement.input_format, agreement)
        frames += [df.select(F.col(c).alias("_raw")) for c in columns]
    return frames


def _listed_ids(spark: SparkSession, path: Path, agreement: Agreement) -> DataFrame:
    """An id list: CSV (gzip allowed) with an ``msisdn`` column (e.g. the subscriber register), or, for an
    agreement of operator ids, an ``operator_id`` (or ``user_id``) column, multimno's ids in hex."""
    wanted = ID_LIST_COLUMNS if takes_operator_ids(agreement) else (NUMBER_LIST_COLUMN,)
    what = ("the operator's ids (for multimno, user_id in hex, as `mobility rights --operator-id` takes it)"
            if takes_operator_ids(agreement) else "the subscribers' numbers")
    if not path.is_file():
        raise InputContractError("id list not found" if takes_operator_ids(agreement) else "number list not found",
                                 where=str(path), hint=f"give a CSV file with a '{wanted[0]}' column: {what}")
    df = spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    column = next((c for c in wanted if c in df.columns), None)
    if column is None:
        kind = f"input_format {agreement.input_format}: its deliveries name subscribers by " + (
            "the operator's own id, not by phone number" if takes_operator_ids(agreement) else "phone number")
        raise InputContractError(f"the list has no {' or '.join(repr(c) for c in wanted)} column "
                                 f"(found: {', '.join(df.columns)}); the agreement's {kind}",
                                 where=str(path), hint=f"export a header row naming '{wanted[0]}' over {what}")
    raw = F.col(f"`{column}`").cast("string")
    if takes_operator_ids(agreement) and agreement.input_format == "multimno":
        # as `rights --operator-id` takes it: hex in either case, the reader's form lowercase
        text = F.lower(F.trim(raw))
        raw = F.when(text.rlike(HEX_ID_PATTERN), text)
    return df.select(raw.alias("_raw"))


def pseudonym_map(spark: SparkSession, agreement: Agreement, old: PseudonymKey, new: PseudonymKey,
                  input_dirs: list[Path], number_lists: list[Path]) -> DataFrame:
    """``old_pseudonym, new_pseudonym`` for every valid subscriber id found, one row per id (lazy)."""
    if not input_dirs and not number_lists:
        what = "operator ids" if takes_operator_ids(agreement) else "numbers"
        raise InputContractError(f"no {what} to compute the new pseudonyms from", where="key rotation",
                                 hint="give the retained deliveries with --input FOLDER (the folders `mobility "
                                      "anonymize` read) and/or the subscriber register with --numbers FILE")
    frames = [f for folder in input_dirs for f in _delivered_ids(spark, Path(folder), agreement)]
    frames += [_listed_ids(spark, Path(p), agreement) for p in number_lists]
    raw = frames[0]
    for f in frames[1:]:
        raw = raw.unionByName(f)
    ids = raw.where(F.col("_raw").isNotNull()).distinct() \
        .select(subscriber_id(F.col("_raw"), agreement).alias("_id")) \
        .where(F.col("_id").isNotNull()).distinct()
    with_old = drop_key_pads(with_key_pads(spark, ids, old).withColumn(OLD, hmac_sha256(F.col("_id"))))
    both = drop_key_pads(with_key_pads(spark, with_old, new).withColumn(NEW, hmac_sha256(F.col("_id"))))
    return both.select(OLD, NEW)
