"""Key rotation, operator side: the old-to-new pseudonym of every number the operator still holds.

Pseudonyms are HMAC-SHA256 of the E.164 number under the agreement key (ADR 0001), so a new key
gives every subscriber a new pseudonym. Only the operator can say which new pseudonym follows which
old one: it holds the numbers and both keys. This module reads the numbers from the retained raw
deliveries (the folders ``mobility anonymize`` read) and from any number lists (a subscriber
register export with an ``msisdn`` column), normalizes them exactly as the anonymize job does and
returns ``old_pseudonym, new_pseudonym`` for each, computed by Spark expressions (no number leaves
the executors; the keys reach Spark only as HMAC pads in broadcast rows).

The office side (``mobility.rights.rekey``) then renames every stored pseudonym with this map.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility.anonymize import inputs as inp
from mobility.anonymize.pseudonymize import PseudonymKey, drop_key_pads, e164_column, hmac_sha256, with_key_pads
from mobility.errors import InputContractError
from mobility.schemas import INPUTS

OLD, NEW = "old_pseudonym", "new_pseudonym"
NUMBER_LIST_COLUMN = "msisdn"
# the columns of the raw datasets that hold a subscriber number, whoever's record it is
NUMBER_COLUMNS = ("msisdn", "counterpart_msisdn", "sender_msisdn", "receiver_msisdn")


def _delivered_numbers(spark: SparkSession, folder: Path) -> list[DataFrame]:
    """Every number column of every dataset file under one input folder, as one column ``_raw``."""
    found = inp.discover(folder)
    frames = []
    for dataset, files in found.items():
        columns = [c for c in NUMBER_COLUMNS if c in INPUTS[dataset].columns]
        if not columns or not files:
            continue
        df = inp.read(spark, files, INPUTS[dataset])
        frames += [df.select(F.col(c).alias("_raw")) for c in columns]
    return frames


def _listed_numbers(spark: SparkSession, path: Path) -> DataFrame:
    """A number list: CSV (gzip allowed) with an ``msisdn`` column, e.g. the subscriber register."""
    if not path.is_file():
        raise InputContractError("number list not found", where=str(path),
                                 hint="give a CSV file with an 'msisdn' column (the subscriber register)")
    df = spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    if NUMBER_LIST_COLUMN not in df.columns:
        raise InputContractError(f"the number list has no '{NUMBER_LIST_COLUMN}' column "
                                 f"(found: {', '.join(df.columns)})",
                                 where=str(path), hint="export the register with a header row naming 'msisdn'")
    return df.select(F.col(NUMBER_LIST_COLUMN).cast("string").alias("_raw"))


def pseudonym_map(spark: SparkSession, region: str, old: PseudonymKey, new: PseudonymKey,
                  input_dirs: list[Path], number_lists: list[Path]) -> DataFrame:
    """``old_pseudonym, new_pseudonym`` for every valid number found, one row per number (lazy)."""
    if not input_dirs and not number_lists:
        raise InputContractError("no numbers to compute the new pseudonyms from", where="key rotation",
                                 hint="give the retained deliveries with --input FOLDER (the folders `mobility "
                                      "anonymize` read) and/or the subscriber register with --numbers FILE")
    frames = [f for folder in input_dirs for f in _delivered_numbers(spark, Path(folder))]
    frames += [_listed_numbers(spark, Path(p)) for p in number_lists]
    raw = frames[0]
    for f in frames[1:]:
        raw = raw.unionByName(f)
    numbers = raw.where(F.col("_raw").isNotNull()).distinct() \
        .select(e164_column(F.col("_raw"), region).alias("_e164")) \
        .where(F.col("_e164").isNotNull()).distinct()
    with_old = drop_key_pads(with_key_pads(spark, numbers, old).withColumn(OLD, hmac_sha256(F.col("_e164"))))
    both = drop_key_pads(with_key_pads(spark, with_old, new).withColumn(NEW, hmac_sha256(F.col("_e164"))))
    return both.select(OLD, NEW)
