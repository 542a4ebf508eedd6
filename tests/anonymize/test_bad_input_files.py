"""Bad files refused before Spark starts (issue #24): which file, which column, what is wrong, what to do.

Each test records its row of the table "Bad input: what each kind gets" (docs/contracts.md) as a
``bad_input`` property, which a report generator reads from pytest's --junitxml output.
"""

from __future__ import annotations

import errno
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anon_fixtures import make_inputs
from mobility.anonymize import inputs as inp
from mobility.errors import InputContractError, storage_failure

GOOD = {"msisdn": ["+639171234567"], "event_time": ["2025-01-05T21:40:00"], "event_type": ["call_out"],
        "cell_id": ["C1"], "visited_plmn": pa.array([None], pa.string())}


def _record(record_property, kind: str, outcome: str, detail: str) -> None:
    record_property("bad_input", json.dumps({"kind": kind, "outcome": outcome, "detail": detail[:200]}))


def _table(**changes) -> pa.Table:
    """The good one-row CDR table with columns replaced (a value), added (a new name) or dropped (None)."""
    columns = dict(GOOD)
    columns.update(changes)
    return pa.table({k: v for k, v in columns.items() if v is not None})


def _parquet_bytes(tmp_path, table: pa.Table) -> bytes:
    path = tmp_path / "scratch.parquet"
    pq.write_table(table, path)
    return path.read_bytes()


def _refusal(tmp_path, name: str, content: bytes | pa.Table) -> str:
    inputs = make_inputs(tmp_path / "input")
    path = inputs / "cdr" / name
    if isinstance(content, pa.Table):
        pq.write_table(content, path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputContractError) as err:
        inp.discover(inputs)
    message = str(err.value)
    assert name in message and "What to do:" in message  # the file, and what to do
    return message


@pytest.mark.parametrize("case", ["garbage", "cut off", "empty"])
def test_a_corrupt_parquet_file_is_refused_naming_it(tmp_path, record_property, case):
    whole = _parquet_bytes(tmp_path, _table())
    content = {"garbage": b"these bytes are not Parquet at all\n" * 20, "cut off": whole[: len(whole) // 2],
               "empty": b""}[case]
    message = _refusal(tmp_path, f"{case.replace(' ', '-')}.parquet", content)
    assert "not a readable Parquet file" in message and "ask for the file again" in message
    _record(record_property, "corrupt Parquet (garbage bytes, cut off, empty)", "refused",
            message.split(": ", 1)[1])


@pytest.mark.parametrize("column, arrow_type, expected", [
    ("msisdn", pa.int64(), "'msisdn' is int64: subscriber numbers must be strings"),
    ("msisdn", pa.float64(), "'msisdn' is double: subscriber numbers must be strings"),
    ("event_time", pa.int64(), "'event_time' is int64: times must be ISO 8601 strings or a Parquet TIMESTAMP"),
    ("duration_s", pa.float64(), "'duration_s' is double: it must be a whole number"),
    ("cell_id", pa.struct([("id", pa.string())]), "'cell_id' is struct<id: string>, a nested type"),
])
def test_a_parquet_column_of_another_type_is_refused_naming_the_column(tmp_path, record_property, column,
                                                                        arrow_type, expected):
    value = {"msisdn": 639171234567, "event_time": 1736111580, "duration_s": 60.0, "cell_id": {"id": "C1"}}[column]
    if arrow_type == pa.float64() and column == "msisdn":
        value = 639171234567.0
    message = _refusal(tmp_path, "drifted.parquet", _table(**{column: pa.array([value], arrow_type)}))
    assert expected in message and "deliver the file again" in message
    assert "639171234567" not in message  # names the column and its type, never a value
    _record(record_property, "schema-drifted Parquet: a column of another type", "refused", expected)


@pytest.mark.parametrize("change, expected", [
    ({"msisdn": None, "MSISDN": ["+639171234567"]}, "found 'MSISDN' for 'msisdn'"),
    ({"cell_id": None}, "missing required column(s) ['cell_id']"),
])
def test_a_parquet_file_with_a_renamed_or_missing_column_is_refused(tmp_path, record_property, change, expected):
    message = _refusal(tmp_path, "renamed.parquet", _table(**change))
    assert expected in message and "see docs/contracts.md" in message
    _record(record_property, "a required column missing or renamed", "refused", expected)


def test_a_duplicate_column_is_refused(tmp_path, record_property):
    header = "msisdn,event_time,event_type,cell_id,visited_plmn,msisdn\n"
    message = _refusal(tmp_path, "twice.csv", header.encode())
    assert "duplicate column(s) ['msisdn']" in message
    _record(record_property, "a column named twice", "refused", "duplicate column(s) ['msisdn']")


def test_extra_columns_are_accepted_and_left_out(tmp_path, record_property):
    """Columns outside the contract are read past: the frame carries only the contract's columns."""
    inputs = make_inputs(tmp_path / "input")
    pq.write_table(_table(notes=["free text"], msisdn_raw=["+639171234567"]), inputs / "cdr" / "extra.parquet")
    (inputs / "cdr" / "extra.csv").write_text(
        "msisdn,event_time,event_type,cell_id,visited_plmn,remark\n+639171234567,2025-01-05T21:40:00,call_out,C1,,x\n")
    found = {f.name: f for f in inp.discover(inputs)["cdr"]}
    assert "notes" in found["cdr/extra.parquet"].columns and "remark" in found["cdr/extra.csv"].columns
    _record(record_property, "extra columns", "accepted", "accepted; columns outside the contract are ignored")


@pytest.mark.parametrize("layout, expected", [
    ("no folder", "input folder not found"),
    ("nothing to ingest", "no CDR or payment files found"),
    ("cdr without cells", "CDR files found but no cell table"),
    ("subscribers alone", "no CDR or payment files found"),
])
def test_an_incomplete_delivery_is_refused(tmp_path, record_property, layout, expected):
    root = tmp_path / "input"
    if layout != "no folder":
        inputs = make_inputs(root)
        for dataset in {"nothing to ingest": ["cdr", "payments", "subscribers"], "cdr without cells": ["cells"],
                        "subscribers alone": ["cdr", "payments", "cells"]}[layout]:
            for path in sorted((inputs / dataset).rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            (inputs / dataset).rmdir()
    with pytest.raises(InputContractError, match="What to do") as err:
        inp.discover(root)
    assert expected in str(err.value) and str(root) in str(err.value)
    _record(record_property, "an incomplete delivery (no input folder, no CDR or payments, CDR without cells)",
            "refused", expected)


def test_a_gzipped_file_without_gz_in_its_name_is_refused(tmp_path, record_property):
    import gzip

    message = _refusal(tmp_path, "packed.csv", gzip.compress(b"msisdn,event_time\n"))
    assert "check that it is UTF-8 CSV" in message
    _record(record_property, "a compressed file named .csv", "refused", "cannot read the file: check that it is "
                                                                        "UTF-8 CSV")


@pytest.mark.parametrize("exc, code, path", [
    (OSError(errno.ENOSPC, "No space left on device", "/lake/office/events/x.parquet"), errno.ENOSPC,
     "/lake/office/events/x.parquet"),
    (PermissionError(errno.EACCES, "Permission denied", "/lake/operator"), errno.EACCES, "/lake/operator"),
    (RuntimeError("java.io.FileNotFoundException: /lake/office/events/_delta_log/x.json (Read-only file system)"),
     errno.EROFS, "/lake/office/events/_delta_log/x.json"),
    (RuntimeError("Job aborted. Caused by: java.io.IOException: File too large"), errno.EFBIG, None),
    (RuntimeError("org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device"), errno.ENOSPC, None),
    (RuntimeError("Disk quota exceeded"), errno.EDQUOT, None),
])
def test_storage_failures_are_recognised_from_python_and_from_the_jvm(exc, code, path):
    assert storage_failure(exc) == (code, path)


def test_other_failures_are_not_storage_failures():
    assert storage_failure(RuntimeError("[DIVIDE_BY_ZERO] Division by zero")) is None
    assert storage_failure(OSError(errno.ENOENT, "No such file or directory", "/x")) is None
    wrapped = RuntimeError("write failed")
    wrapped.__cause__ = OSError(errno.EFBIG, "File too large")
    assert storage_failure(wrapped) == (errno.EFBIG, None)


def test_numbers_as_binary_text_are_read(tmp_path):
    """BYTE_ARRAY without the UTF8 annotation (older writers) is text: read, not refused."""
    inputs = make_inputs(tmp_path / "input")
    pq.write_table(_table(msisdn=pa.array([b"+639171234567"], pa.binary())), inputs / "cdr" / "binary.parquet")
    (found,) = [f for f in inp.discover(inputs)["cdr"] if f.name == "cdr/binary.parquet"]
    assert found.types[found.columns.index("msisdn")] == "binary"
