"""multimno's bronze data read through ``input_format: multimno`` (issue #22): every dirty row quarantined
with the reason multimno's cleaning would give it, every file reconciled, the same office tables as the
native contract for the same events, and a bad delivery refused naming the file, the field and what to do.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import h3
import pyarrow as pa
import pytest
from multimno_fixtures import (
    CLEAN_EVENTS,
    DAY1,
    DAY2,
    DIRTY_EVENTS,
    EVENT_SCHEMA,
    NETWORK,
    PEOPLE,
    day_folder,
    event,
    float_text,
    hex_id,
    native_cells,
    native_rows,
    write_delivery,
    write_events,
    write_network,
)

from agreement_helpers import make_agreement, with_test_key
from anon_fixtures import CDR_HEADER
from mobility.anonymize.job import run
from mobility.anonymize.pseudonymize import load_key
from mobility.config import load_agreement

MOBILITY = Path(sys.executable).with_name("mobility")
COUNTED = ("accepted", "quarantined", "duplicates", "suppressed")


def _delta(spark, path: Path):
    return spark.read.format("delta").load(str(path))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory, spark):
    """One multimno run over the dirty delivery, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("multimno-dirty")
    mp, _ = with_test_key()
    agreement = load_agreement(make_agreement(root, input_format="multimno"))
    files = write_delivery(root / "input", DIRTY_EVENTS)
    result = run(agreement, root / "input", root / "lake", spark=spark)
    quarantine = [r.asDict() for r in _delta(spark, root / "lake" / "operator" / "quarantine").collect()]
    events = [r.asDict() for r in _delta(spark, root / "lake" / "office" / "events").collect()]
    yield {"manifest": result.manifest, "files": files, "quarantine": quarantine, "events": events,
           "key": load_key(agreement.key), "root": root}
    mp.undo()


@pytest.mark.spark
def test_every_dirty_event_gets_its_reason_in_multimno_terms(dirty):
    by_file = {f["file"]: f for f in dirty["manifest"]["files"] if f["dataset"] == "cdr"}
    assert set(by_file) == set(dirty["files"])
    for name, rows in dirty["files"].items():
        expected = collections.Counter(r["_expect"] for r in rows if r["_expect"] not in ("accepted", "duplicate"))
        assert by_file[name]["reasons"] == dict(expected), name
    # each quarantined row under its own reason: its record names the operator's id (operator zone only)
    got = {json.loads(q["record"]).get("msisdn"): q["reason"] for q in dirty["quarantine"] if q["dataset"] == "cdr"}
    for e in DIRTY_EVENTS:
        label = e["_label"]
        if e["_expect"] not in ("accepted", "duplicate") and label is not None:
            assert got[hex_id(label)] == e["_expect"], label
    assert collections.Counter(q["reason"] for q in dirty["quarantine"] if q["dataset"] == "cdr"
                               and json.loads(q["record"]).get("msisdn") is None) == {"user_id_null_value": 2}


@pytest.mark.spark
def test_every_event_file_reconciles(dirty):
    for f in dirty["manifest"]["files"]:
        assert f["read"] == sum(f[k] for k in COUNTED), f["file"]
        if f["dataset"] != "cdr":
            continue
        rows = dirty["files"][f["file"]]
        fates = collections.Counter(r["_expect"] for r in rows)
        assert f["read"] == len(rows)
        assert f["accepted"] == fates["accepted"]
        assert f["duplicates"] == fates["duplicate"]
        assert f["quarantined"] == len(rows) - fates["accepted"] - fates["duplicate"]
    totals = dirty["manifest"]["totals"]["cdr"]
    assert totals["read"] == len(DIRTY_EVENTS)
    assert len(dirty["events"]) == sum(e["_expect"] == "accepted" for e in DIRTY_EVENTS)


@pytest.mark.spark
def test_network_snapshots_reconcile_and_repeat_as_copies(dirty):
    cells = {f["file"]: f for f in dirty["manifest"]["files"] if f["dataset"] == "cells"}
    days = sorted({e["_day"] for e in DIRTY_EVENTS})
    names = {d: (day_folder(Path(), "mno_network", d) / "part-00000.parquet").as_posix() for d in days}
    assert set(cells) == set(names.values())
    first = collections.Counter(n[-1] for n in NETWORK)
    for d in days:
        f = cells[names[d]]
        assert f["read"] == len(NETWORK) == sum(f[k] for k in COUNTED)
        if d == DAY2:  # the day after: an unchanged cell is a copy of its row the day before
            assert f["duplicates"] == sum(n[1] is not None for n in NETWORK)
            assert f["reasons"] == {"latitude_null_value": 1}
        else:  # a first day of service
            assert f["accepted"] == first["accepted"] and f["duplicates"] == 0
            assert f["reasons"] == {k: v for k, v in first.items() if k != "accepted"}


@pytest.mark.spark
def test_accepted_events_reach_the_office_zone_placed_and_keyed(dirty):
    key, events = dirty["key"], dirty["events"]
    ana, ben, qat = (key.pseudonym(hex_id(x)) for x in ("ana", "ben", "qat"))
    assert {e["pseudonym"] for e in events} == {ana, ben, qat, key.pseudonym(hex_id("cell-late-ok"))}
    abroad = [e for e in events if e["country"] != "PHL"]
    assert [(e["pseudonym"], e["country"], e["h3_cell"]) for e in abroad] == [(ana, "SAU", None)]
    cell_of = {c: h3.latlng_to_cell(float(float_text(lat)), float(float_text(lon)), 7)
               for c, lat, lon, *_ in NETWORK if lat is not None}
    point = h3.latlng_to_cell(float(float_text(14.676)), float(float_text(121.0437)), 7)
    assert point not in cell_of.values()
    assert {e["h3_cell"] for e in events if e["pseudonym"] == qat} == {cell_of["C1"]}  # an inbound roamer on C1
    assert {e["h3_cell"] for e in events if e["pseudonym"] == ben} == {cell_of["C3"], cell_of["C1"], point,
                                                                       cell_of["LATE"]}
    # the operator's ids never reach the office zone or the manifest, only their keyed hashes
    ids = {hex_id(e["_label"]) for e in DIRTY_EVENTS if e["_label"]}
    assert not ids & {str(v) for e in events for v in e.values()}
    assert not any(i in json.dumps(dirty["manifest"]) for i in ids)


@pytest.mark.spark
def test_a_clean_delivery_gives_the_native_office_tables(tmp_path, spark, key_hex):
    """The same events delivered both ways: the office tables are equal once each person's native
    pseudonym (of their number) is replaced by their multimno one (of the operator's id)."""
    tables = {}
    for fmt in ("native", "multimno"):
        root = tmp_path / fmt
        agreement = load_agreement(make_agreement(root, input_format=fmt))
        if fmt == "multimno":
            write_delivery(root / "input", CLEAN_EVENTS)
        else:
            _write_csv(root / "input" / "cells" / "cells.csv", ["cell_id", "latitude", "longitude", "valid_from",
                                                                 "valid_to"], native_cells())
            _write_csv(root / "input" / "cdr" / "cdr.csv", CDR_HEADER, native_rows(CLEAN_EVENTS))
        result = run(agreement, root / "input", root / "lake", spark=spark)
        assert result.manifest["totals"]["cdr"]["accepted"] == len(CLEAN_EVENTS), fmt
        tables[fmt] = [r.asDict() for r in _delta(spark, root / "lake" / "office" / "events").drop("run_id").collect()]
    key = load_key(load_agreement(make_agreement(tmp_path / "native", input_format="native")).key)
    same = {key.pseudonym(number): key.pseudonym(hex_id(label)) for label, number in PEOPLE.items()}
    native = [dict(r, pseudonym=same[r["pseudonym"]]) for r in tables["native"]]
    order = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
    assert sorted(native, key=order) == sorted(tables["multimno"], key=order)
    assert {r["country"] for r in native} == {"PHL", "SAU", "USA"}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


# ---- bad deliveries: refused before Spark starts, exit 2, naming the file, the field, what to do ----------

def _anonymize(agreement: Path, inputs: Path, lake: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MOBILITY_KEY_TEST=secrets.token_hex(32))
    return subprocess.run([str(MOBILITY), "anonymize", "--agreement", str(agreement), "--input", str(inputs),
                           "--lake", str(lake)], env=env, capture_output=True, text=True, timeout=600)


def _good(root: Path) -> None:
    write_delivery(root, [event("ana", "2025-01-05T21:13:00"), event("ana", "2025-01-06T08:00:00", day=DAY2)])


def _retyped(column: str, arrow_type: pa.DataType, value):
    def change(root: Path) -> None:
        _good(root)
        schema = EVENT_SCHEMA.set(EVENT_SCHEMA.get_field_index(column), pa.field(column, arrow_type))
        row = dict(event("ana", "2025-01-05T21:13:00"), **{column: value})
        write_events(root, [row], schema)
    return change


def _no_network(root: Path) -> None:
    _good(root)
    shutil.rmtree(root / "mno_network")


def _outside_the_day_folders(root: Path) -> None:
    _good(root)
    shutil.copy(day_folder(root, "mno_events", DAY1) / "part-00000.parquet", root / "mno_events" / "loose.parquet")


def _a_day_without_its_network(root: Path) -> None:
    write_network(root, days=(DAY1,))
    write_events(root, [event("ana", "2025-01-05T21:13:00"), event("ana", "2025-01-06T08:00:00", day=DAY2)])


def _without_mcc(root: Path) -> None:
    _good(root)
    write_events(root, [event("ana", "2025-01-05T21:13:00")], EVENT_SCHEMA.remove(EVENT_SCHEMA.get_field_index("mcc")))


BAD = {  # case: (how the delivery is spoilt, what the message must name)
    "no network folder": (_no_network, ("mno_network", "BronzeNetworkDO")),
    "user_id as text": (_retyped("user_id", pa.string(), "ana"), ("day=5/part-00000.parquet", "'user_id' is string",
                                                                  "binary")),
    "mnc as a number": (_retyped("mnc", pa.int32(), 2), ("day=5/part-00000.parquet", "'mnc' is int32", "leading zero")),
    "mcc as a float": (_retyped("mcc", pa.float64(), 515.0), ("'mcc' is double", "an integer")),
    "missing column": (_without_mcc, ("day=5/part-00000.parquet", "['mcc']", "BronzeEventDO")),
    "file outside the day folders": (_outside_the_day_folders, ("loose.parquet", "year=YYYY/month=M/day=D")),
    "a day without its network": (_a_day_without_its_network, ("day=6/part-00000.parquet", "2025-01-06",
                                                               "network topology")),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_delivery_is_refused_naming_the_file_and_field(tmp_path, case):
    spoil, expected = BAD[case]
    spoil(tmp_path / "input")
    outcome = _anonymize(make_agreement(tmp_path, input_format="multimno"), tmp_path / "input", tmp_path / "lake")
    assert outcome.returncode == 2, outcome.stderr
    assert "Traceback" not in outcome.stderr + outcome.stdout
    message = outcome.stderr[outcome.stderr.index("error: "):]
    for text in (*expected, "What to do:"):
        assert text in message, message
    assert not (tmp_path / "lake" / "office").exists()  # nothing written


def test_the_native_contract_refuses_a_multimno_delivery_and_says_why(tmp_path):
    _good(tmp_path / "input")
    outcome = _anonymize(make_agreement(tmp_path), tmp_path / "input", tmp_path / "lake")
    assert outcome.returncode == 2 and "no CDR or payment files found" in outcome.stderr
