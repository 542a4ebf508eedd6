"""FlowDB deliveries (issue #22): read into the native contract, quarantined in FlowDB's terms, refused
when the delivery itself is bad, and the same office zone as the native contract for the same events.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from flowdb_fixtures import (
    CALLS_HEADER,
    CELLS_HEADER,
    IMEI,
    IMSI,
    TAC,
    expected,
    make_clean_pair,
    make_flowdb_inputs,
)

from agreement_helpers import with_test_key
from anon_fixtures import SUBSCRIBER_ROWS, make_agreement, write_csv
from mobility.anonymize import formats
from mobility.anonymize.job import run
from mobility.config import load_agreement
from mobility.errors import InputContractError

MOBILITY = Path(sys.executable).with_name("mobility")


def _delta(spark, path):
    return spark.read.format("delta").load(str(path))


def _record(record_property, kind: str, outcome: str, detail: str) -> None:
    record_property("bad_input", json.dumps({"kind": kind, "outcome": outcome, "detail": detail[:200]}))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory, spark):
    """One run over the dirty delivery, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("flowdb")
    mp, key = with_test_key()
    agreement = load_agreement(make_agreement(root, input_format="flowdb", counterpart="pseudonymize"))
    inputs = make_flowdb_inputs(root / "input")
    result = run(agreement, inputs, root / "lake", spark=spark)
    yield {"root": root, "key": key, "inputs": inputs, "lake": root / "lake", "result": result, "spark": spark}
    mp.undo()


@pytest.mark.spark
def test_every_row_of_a_dirty_delivery_has_its_fate_in_flowdb_terms_and_each_file_reconciles(dirty):
    manifest = dirty["result"].manifest
    by_file = {f["file"]: f for f in manifest["files"]}
    assert set(by_file) == set(expected())
    for name, fates in expected().items():
        f = by_file[name]
        reasons = collections.Counter(x for x in fates if x not in ("accepted", "duplicate"))
        assert f["read"] == len(fates), name
        assert f["read"] == f["accepted"] + f["quarantined"] + f["duplicates"] + f["suppressed"], f
        assert (f["accepted"], f["duplicates"], f["suppressed"]) == (fates.count("accepted"),
                                                                    fates.count("duplicate"), 0), name
        assert f["reasons"] == dict(reasons), name
        path = dirty["inputs"] / name  # read counts the lines of the file, not what Spark made of them
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt") as fh:
            assert f["read"] == sum(1 for _ in fh) - 1, name
    q = _delta(dirty["spark"], dirty["lake"] / "operator" / "quarantine").toPandas()
    got = collections.Counter(zip(q["source_file"], q["reason"]))
    want = collections.Counter((name, x) for name, fates in expected().items() for x in fates
                               if x not in ("accepted", "duplicate"))
    assert got == want


@pytest.mark.spark
def test_flowdb_tables_map_to_the_native_event_types_and_cells(dirty):
    events = _delta(dirty["spark"], dirty["lake"] / "office" / "events").toPandas()
    assert collections.Counter(events["event_type"]) == {"call_out": 1, "call_in": 1, "sms_out": 1, "sms_in": 1,
                                                         "data": 2, "topup": 1}
    assert set(events["country"]) == {"PHL"} and events["h3_cell"].notna().all()  # FlowDB: home network only
    # the counterpart of calls and texts is kept (pseudonymized, as the agreement says), none for data
    assert events.loc[events["event_type"].isin(["call_out", "call_in", "sms_out", "sms_in"]),
                      "counterpart_pseudonym"].notna().all()
    assert events.loc[events["event_type"].isin(["data", "topup"]), "counterpart_pseudonym"].isna().all()
    cells = _delta(dirty["spark"], dirty["lake"] / "operator" / "cells").toPandas()
    assert sorted(cells["cell_id"]) == ["C1", "C2", "C3", "C5", "COAST"]  # WKT, EWKT, EWKB both ways, lon/lat


@pytest.mark.spark
def test_no_number_imei_imsi_or_tac_reaches_the_office_zone_or_a_quarantined_field(dirty):
    needles = {IMEI, IMSI, TAC, "639171234567", "9171234567", "639181234567", "9181234567"}
    office = [p for p in (dirty["lake"] / "office").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in office)
    for path in office + list((dirty["lake"] / "operator" / "manifests").rglob("*.json")):
        texts = [path.read_bytes().decode("utf-8", "ignore")]
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            texts += [str(v) for col in table.columns for v in col.to_pylist()]
        for text in texts:
            assert not [n for n in needles if n in text], path
    # the quarantine (operator zone) keeps the columns read: the device and SIM ids were never read;
    # only a malformed line is kept whole, as delivered, for the operator to fix
    q = _delta(dirty["spark"], dirty["lake"] / "operator" / "quarantine").toPandas()
    for reason, record in zip(q["reason"], q["record"]):
        if reason != "malformed_row" and record:
            assert IMEI not in record and IMSI not in record and TAC not in record, record


@pytest.mark.spark
def test_a_clean_flowdb_delivery_gives_the_same_office_zone_as_the_native_contract(tmp_path, spark, key_hex):
    native_in, flowdb_in = make_clean_pair(tmp_path / "input" / "native", tmp_path / "input" / "flowdb")
    for root in (native_in, flowdb_in):  # FlowDB has no subscriber table: the native one goes alongside
        write_csv(root / "subscribers" / "subscribers.csv", ["msisdn", "sex", "birth_year"],
                  [r[:-1] for r in SUBSCRIBER_ROWS if r[-1] == "accepted"])
    tables = {}
    for fmt, inputs in (("native", native_in), ("flowdb", flowdb_in)):
        agreement = load_agreement(make_agreement(tmp_path / "conf" / fmt, input_format=fmt,
                                                  counterpart="pseudonymize"))
        lake = tmp_path / "lake" / fmt
        result = run(agreement, inputs, lake, spark=spark)
        assert all(c["quarantined"] == 0 and c["duplicates"] == 0 for c in result.manifest["files"]), fmt
        tables[fmt] = {name: _delta(spark, lake / "office" / name).drop("run_id").toPandas()
                       for name in ("events", "subscribers")}
    for name in ("events", "subscribers"):
        native, flowdb = (tables[f][name] for f in ("native", "flowdb"))
        columns = sorted(native.columns)
        assert sorted(flowdb.columns) == columns
        native = native[columns].sort_values(columns).reset_index(drop=True)
        flowdb = flowdb[columns].sort_values(columns).reset_index(drop=True)
        assert len(native) > 0 and native.equals(flowdb), name
    assert len(tables["flowdb"]["events"]) == 8


# ---- a bad delivery is refused, naming the file and the field, before anything is read ---------------

def _without(root: Path, name: str) -> None:
    (root / name).unlink()


def _rewrite_header(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        text = fh.read()
    header, rest = text.split("\n", 1)
    with opener(path, "wt") as fh:
        fh.write(",".join(new if c == old else c for c in header.split(",")) + "\n" + rest)


BAD = {  # kind -> (how to spoil the clean FlowDB delivery, what the message must say)
    "no cell table": (lambda r: _without(r, "cells.csv"), ["no cell table", "cells.csv"]),
    "a required column missing": (lambda r: _rewrite_header(r, "calls_20250105.csv", "outgoing", "direction"),
                                  ["calls_20250105.csv", "missing required column(s) ['outgoing']"]),
    "FlowKit's start_time for datetime": (lambda r: _rewrite_header(r, "sms_20250105.csv", "datetime", "start_time"),
                                          ["sms_20250105.csv", "rename 'start_time' for 'datetime'"]),
    "a cell table without positions": (lambda r: (_rewrite_header(r, "cells.csv", "geom_point", "geometry"),
                                                  _rewrite_header(r, "cells.csv", "longitude", "lon")),
                                       ["cells.csv", "geom_point (or longitude and latitude)"]),
    "a file name without its day": (lambda r: (r / "calls_20250105.csv").rename(r / "calls_2025-01-05.csv"),
                                    ["calls_2025-01-05.csv", "<table>_YYYYMMDD.csv"]),
    "an impossible day in a file name": (lambda r: (r / "calls_20250105.csv").rename(r / "calls_20251305.csv"),
                                         ["calls_20251305.csv", "20251305 in the file's name is not a date"]),
    "call forwards": (lambda r: write_csv(r / "forwards_20250105.csv", CALLS_HEADER, []),
                      ["forwards_20250105.csv", "move the forwards_*.csv files out"]),
    "a Parquet table": (lambda r: (r / "calls_20250105.parquet").write_bytes(b"PAR1"),
                        ["calls_20250105.parquet", "not Parquet"]),
    "a header separated by semicolons": (lambda r: (r / "sms_20250106.csv").write_text(";".join(CELLS_HEADER) + "\n"),
                                         ["sms_20250106.csv", "not separated by commas"]),
    "an empty file": (lambda r: (r / "mds_20250107.csv").write_bytes(b""),
                      ["mds_20250107.csv", "empty or has no header row"]),
    "hashed msisdn": (lambda r: write_csv(r / "calls_20250101.csv", CALLS_HEADER, [
        ["c", "t", "2025-01-01 10:00:00", "5", "", "1jwYL3Nl1Y46lNeQ", "", "C1", "", "", "", "", ""]]),
        ["calls_20250101.csv", "msisdn looks already pseudonymized", "subscribers' numbers"]),
    "a column named twice": (lambda r: _rewrite_header(r, "calls_20250105.csv", "network", "msisdn"),
                             ["calls_20250105.csv", "duplicate column(s) ['msisdn']"]),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_flowdb_delivery_is_refused_naming_the_file_and_what_to_do(tmp_path, record_property, kind):
    _, inputs = make_clean_pair(tmp_path / "native", tmp_path / "flowdb")
    spoil, says = BAD[kind]
    spoil(inputs)
    with pytest.raises(InputContractError) as err:
        formats.discover(inputs, "flowdb")
    message = str(err.value)
    for text in (*says, "What to do:"):
        assert text in message, message
    _record(record_property, f"FlowDB: {kind}", "refused", message.split(": ", 1)[1])


def test_a_folder_without_flowdb_files_says_which_format_to_choose(tmp_path):
    native, _ = make_clean_pair(tmp_path / "native", tmp_path / "flowdb")
    (native / "cells").rename(native / "infrastructure")  # a native delivery given to a FlowDB agreement
    with pytest.raises(InputContractError) as err:
        formats.discover(native, "flowdb")
    assert "no FlowDB event files found" in str(err.value) and "input_format" in str(err.value)


@pytest.mark.parametrize("kind", ["no cell table", "a required column missing"])
def test_the_command_refuses_a_bad_flowdb_delivery_with_exit_2(tmp_path, kind):
    _, inputs = make_clean_pair(tmp_path / "native", tmp_path / "flowdb")
    BAD[kind][0](inputs)
    key = secrets.token_hex(32)
    agreement = make_agreement(tmp_path, input_format="flowdb")
    out = subprocess.run([str(MOBILITY), "anonymize", "--agreement", str(agreement), "--input", str(inputs),
                          "--lake", str(tmp_path / "lake")], env=dict(os.environ, MOBILITY_KEY_TEST=key),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    message = out.stderr[out.stderr.index("error: "):]
    for text in (*BAD[kind][1], "What to do:"):
        assert text in message, message
    assert not (tmp_path / "lake" / "office" / "manifests").exists() or \
        not list((tmp_path / "lake" / "office" / "manifests").glob("*.json"))
