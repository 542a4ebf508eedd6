"""Operators' own delivery formats, read into the native contract (docs/contracts.md).

``input_format`` in the agreement picks the reader: ``native`` (the project's CSV/Parquet contract,
``mobility.anonymize.inputs``), ``multimno`` (Eurostat's ESS reference pipeline, bronze layer) or
``flowdb`` (Flowminder's FlowDB tables as CSV). Each format module provides:

``ID_KIND``
    ``"numbers"`` when the subscriber column holds phone numbers (checked and normalised to E.164),
    ``"pseudonyms"`` when it holds the operator's own pseudonymous id (keyed again with the
    agreement's HMAC key as it is; no E.164 check).
``discover(root) -> dict[str, list[InputFile]]``
    the files under ``root``, keyed by the native dataset they feed (``cdr``, ``cells``, ...),
    headers and types checked, raising ``InputContractError`` naming the file, the field and what to do.
``read(spark, files, contract[, agreement]) -> DataFrame``
    the rows of ``files`` as the native ``contract``'s columns (strings), plus ``inputs.CORRUPT``,
    ``inputs.SOURCE_FILE`` (the file's position in ``inputs.file_names(files)``) and ``SOURCE_REASON``:
    null for a row that is sound in its own format's terms, else the quarantine reason, named in that
    format's terms (for example ``unknown_mcc``). One output row per row read: nothing is dropped.
    A reader that needs the agreement (home country, time zone) takes a parameter named ``agreement``;
    the dispatch passes it only to a reader that declares it.
``POINTS`` (optional, default False)
    True when the reader's ``cdr`` rows may carry ``latitude`` and ``longitude`` (text, WGS84): an event
    without a cell is then located by them (``EXTRA_COLUMNS``; the dispatch adds them, null, otherwise).

The rest of the stage (checks, keyed hash, binning, counts, writes) is the same for every format:
``discover`` and ``read`` here pick the module and are what the job and ``datasets`` call.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mobility.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mobility.anonymize.inputs import InputFile
    from mobility.config import Agreement
    from mobility.schemas import InputContract

SOURCE_REASON = "_source_reason"
FORMATS = ("native", "multimno", "flowdb")
NUMBERS, PSEUDONYMS = "numbers", "pseudonyms"
# columns beyond a native contract's that a format's reader may give (the native reader never does)
# (``visited_country``: ISO alpha-3 of the network serving an event abroad, when the format's own table names it)
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"cdr": ("latitude", "longitude", "visited_country")}


def read_columns(contract: InputContract) -> tuple[str, ...]:
    """A dataset's columns as read by any format: its contract's, then ``EXTRA_COLUMNS``."""
    return contract.columns + EXTRA_COLUMNS.get(contract.name, ())


def module(input_format: str) -> ModuleType:
    """The reader of ``input_format``, imported on first use: a missing reader fails only when chosen."""
    if input_format not in FORMATS:
        raise ConfigError(f"unknown input_format {input_format!r}", where="agreement field 'input_format'",
                          hint=f"use one of {', '.join(FORMATS)} (docs/contracts.md, 'Operators' formats')")
    if input_format == "native":
        from mobility.anonymize import inputs

        return inputs
    name = f"{__name__}.{input_format}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise ConfigError(f"input_format {input_format!r} has no reader in this installation ({name} is missing)",
                          where="agreement field 'input_format'",
                          hint="install a version of mobility that ships it, or have the operator deliver the "
                               "native contract (input_format: native, docs/contracts.md)") from None


def id_kind(input_format: str) -> str:
    """``NUMBERS`` or ``PSEUDONYMS``: what the subscriber columns of this format hold."""
    kind = getattr(module(input_format), "ID_KIND", NUMBERS)
    if kind not in (NUMBERS, PSEUDONYMS):
        raise ValueError(f"{input_format}: ID_KIND must be {NUMBERS!r} or {PSEUDONYMS!r}, not {kind!r}")
    return kind


def locates_points(input_format: str) -> bool:
    """True when the format's events may be located by coordinates instead of a cell."""
    return bool(getattr(module(input_format), "POINTS", False))


def discover(root: str | Path, input_format: str = "native") -> dict[str, list[InputFile]]:
    """The files under ``root`` per native dataset, checked by the format's own reader."""
    return module(input_format).discover(root)


def read(spark: SparkSession, files: list[InputFile], contract: InputContract, input_format: str = "native",
         agreement: Agreement | None = None) -> DataFrame:
    """The rows of ``files`` as the native ``contract``'s columns, with ``CORRUPT``, ``SOURCE_FILE`` and
    ``SOURCE_REASON`` (null when the format's reader has no reason of its own for a row)."""
    from pyspark.sql import functions as F

    reader = module(input_format).read
    if "agreement" in inspect.signature(reader).parameters:
        df = reader(spark, files, contract, agreement=agreement)
    else:
        df = reader(spark, files, contract)
    for c in (*EXTRA_COLUMNS.get(contract.name, ()), SOURCE_REASON):
        if c not in df.columns:
            df = df.withColumn(c, F.lit(None).cast("string"))
    return df
