"""Rights requests and key rotation for an agreement whose deliveries name people by the operator's own id
(``input_format: multimno``): the person is named by ``--operator-id`` (user_id in hex), never by number.

One small multimno lake (two daily deliveries): access and erasure by operator id, the erased person
dropped from the next delivery, and the lake rotated to a new key equal, table for table, to a lake keyed
with the new key from the start. The operator id and its pseudonym never reach the rights log.
"""

from __future__ import annotations

import importlib
import re
import secrets
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from agreement_helpers import make_agreement
from rights_scan import find, with_old_and_new_keys

FORMATS_TESTS = Path(__file__).parents[1] / "anonymize" / "formats"
if str(FORMATS_TESTS) not in sys.path:  # the multimno fixtures live beside the format's own tests
    sys.path.append(str(FORMATS_TESTS))
mm = importlib.import_module("multimno_fixtures")

OLD_ID, NEW_ID = "k-test", "k-two"
ERASED = "ana"
SAFE = "operator/suppression"  # the erasure's own record keeps the pseudonym (docs/rights.md)
# one small lake for the tests below: five anonymize, erasure and rotation runs (about a minute alone)
def lake_test(test):
    return pytest.mark.spark(pytest.mark.slow(test))

DAY1_EVENTS = [
    mm.event("ana", "2025-01-05T21:13:00"),
    mm.event("ana", "2025-01-05 22:40:00", cell="C2"),
    mm.event("ana", "2025-01-05T23:50:00", plmn=42001, cell=None),  # roaming in Saudi Arabia
    mm.event("ana", "05/01/2025 21:18:00", expect="timestamp_cannot_parse"),  # a raw row naming her
    mm.event("ben", "2025-01-05T10:00:00.250", cell="C3"),
    mm.event("cy", "2025-01-05T18:05:00", cell="LATE"),
    mm.event("cy", "2025-01-05T21:26:00", cell="NOPE", expect="cell_id_non_existent"),
]
DAY2_EVENTS = [
    mm.event("ana", "2025-01-06T08:00:00", day=mm.DAY2, cell="C3"),
    mm.event("ana", "06/01/2025 09:00:00", day=mm.DAY2, expect="timestamp_cannot_parse"),
    mm.event("ben", "2025-01-06T09:00:00", day=mm.DAY2, cell="C2"),
    mm.event("cy", "2025-01-06T00:00:00", day=mm.DAY2, cell="C1"),
    mm.event("dee", "2025-01-06T11:00:00", day=mm.DAY2, cell="C1"),  # first seen on the second day
]


def _agreement(root: Path, **overrides):
    from mobility.config import load_agreement

    return load_agreement(make_agreement(root, input_format="multimno",
                                         suppression_list=str(root / "suppressed.txt"), **overrides))


@pytest.fixture
def keyed(monkeypatch, tmp_path):
    """A multimno agreement and a native one under a fresh key (no Spark)."""
    monkeypatch.setenv("MOBILITY_KEY_TEST", secrets.token_hex(32))
    from mobility.anonymize.pseudonymize import load_key
    from mobility.config import load_agreement

    multimno = _agreement(tmp_path / "m")
    native = load_agreement(make_agreement(tmp_path / "n"))
    return SimpleNamespace(multimno=multimno, native=native, key=load_key(multimno.key), root=tmp_path)


# ---- naming the person: no Spark ------------------------------------------------------------------------

def test_an_operator_id_is_keyed_as_anonymize_keys_it_and_is_never_shown(keyed):
    from mobility.rights.subject import resolve

    hex_id = mm.hex_id(ERASED)
    subject = resolve(keyed.multimno, operator_id=hex_id)
    assert subject.pseudonym == keyed.key.pseudonym(hex_id) and subject.key_id == OLD_ID
    # as Spark's hex() shows it (upper case) or with spaces around: the same person
    assert resolve(keyed.multimno, operator_id=f"  {hex_id.upper()} ") == subject
    assert subject.has_identifier and not subject.has_number
    for shown in (subject.masked, repr(subject), str(subject)):
        assert hex_id not in shown.lower() and hex_id[8:24] not in shown.lower()


def test_a_number_on_a_multimno_agreement_is_refused_saying_what_to_pass(keyed):
    from mobility.rights.subject import RightsRequestError, resolve

    with pytest.raises(RightsRequestError) as err:
        resolve(keyed.multimno, msisdn="+63 917 123 4567")
    text = str(err.value)
    assert err.value.where == "--msisdn"
    assert "--operator-id" in text and "user_id" in text and "pseudonymization" in text and "hex" in text
    assert "nothing was changed" in text


@pytest.mark.parametrize("given, where, says", [
    ({"operator_id": "not hex"}, "--operator-id", "hexadecimal"),
    ({"operator_id": "abc"}, "--operator-id", "even number"),  # half a byte: no user_id
    ({"operator_id": ""}, "--operator-id", "hexadecimal"),
    ({"operator_id": "ab", "pseudonym": "0" * 64}, "subject", "exactly one"),
])
def test_bad_operator_ids_are_refused(keyed, given, where, says):
    from mobility.rights.subject import RightsRequestError, resolve

    with pytest.raises(RightsRequestError) as err:
        resolve(keyed.multimno, **given)
    assert err.value.where == where and says in str(err.value) and "nothing was changed" in str(err.value)


def test_an_operator_id_on_a_numbers_agreement_is_refused(keyed):
    from mobility.rights.subject import RightsRequestError, resolve

    with pytest.raises(RightsRequestError) as err:
        resolve(keyed.native, operator_id=mm.hex_id(ERASED))
    assert err.value.where == "--operator-id" and "--msisdn" in str(err.value)


def test_the_cli_takes_an_operator_id_and_refuses_a_number_for_multimno(keyed):
    from mobility.cli import main

    agreement = str(keyed.root / "m" / "agreements" / "test-phl.yaml")
    lake = str(keyed.root / "no-lake")
    refused = CliRunner().invoke(main, ["rights", "access", "--agreement", agreement, "--lake", lake,
                                        "--msisdn", "+63 917 123 4567"])
    assert refused.exit_code == 2 and "--operator-id" in refused.output and "Traceback" not in refused.output
    taken = CliRunner().invoke(main, ["rights", "erase", "--agreement", agreement, "--lake", lake,
                                      "--operator-id", mm.hex_id(ERASED)])
    assert taken.exit_code == 2 and "no lake here" in taken.output  # the id was accepted; the lake is missing
    assert mm.hex_id(ERASED) not in taken.output
    assert "--operator-id" in CliRunner().invoke(main, ["rights", "rectify", "--help"]).output


@pytest.mark.parametrize("record, named", [
    ({"msisdn": mm.hex_id(ERASED), "event_time": "x"}, True),
    ({"msisdn": mm.hex_id(ERASED).upper()}, True),
    ({"msisdn": mm.hex_id("ben")}, False),
    ({"msisdn": mm.hex_id(ERASED) + "00"}, False),  # a longer id is another person
    ({"msisdn": None, "_corrupt_record": None}, False),
])
def test_raw_rows_are_matched_on_the_whole_operator_id(record, named):
    import json

    from mobility.rights.matching import record_names_id

    assert record_names_id(json.dumps(record), mm.hex_id(ERASED)) is named


# ---- one small lake: access, erasure, a later delivery, key rotation ------------------------------------

def _frame(lake: Path, label: str) -> pd.DataFrame:
    frame = DeltaTable(str(lake / label)).to_pandas()
    frame = frame.drop(columns=[c for c in ("run_id", "added_on") if c in frame.columns])
    for c in frame.columns:  # timestamps and dates compare as text
        if not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _labels(lake: Path) -> list[str]:
    from mobility.lake import Lake
    from mobility.rights import catalog

    return [t.label for t in catalog.tables(Lake(lake), include_rights=True) if t.name != "rights_log"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from mobility.anonymize.job import run as anonymize
    from mobility.anonymize.pseudonymize import load_key
    from mobility.config import KeySource
    from mobility.rights.access import access
    from mobility.rights.erase import erase

    root = tmp_path_factory.mktemp("rights-multimno")
    mp = with_old_and_new_keys()
    d1, d2 = root / "d1", root / "d2"
    mm.write_delivery(d1, DAY1_EVENTS)
    mm.write_delivery(d2, DAY2_EVENTS)
    one = _agreement(root / "one")
    two = _agreement(root / "two", key={"env": "MOBILITY_NEW_KEY", "key_id": NEW_ID})
    hex_id = mm.hex_id(ERASED).upper()  # as Spark's hex() shows it

    a = root / "a"  # under key one: the requests, the next delivery, then the rotation
    anonymize(one, d1, a, spark=spark)
    before = access(one, a, operator_id=hex_id, spark=spark)
    needles = {**_ids(ERASED), "pseudonym": re.compile(load_key(one.key).pseudonym(mm.hex_id(ERASED))[:24])}
    found = find(a, needles)
    erased = erase(one, a, operator_id=hex_id, spark=spark)
    left = find(a, needles)
    listed = (root / "one" / "suppressed.txt").read_text()
    after = access(one, a, operator_id=hex_id, spark=spark)
    shutil.copytree(a, root / "a-erased")  # for a rotation from an id list
    second = anonymize(one, d2, a, spark=spark)
    unrotated_tables = {label: _frame(a, label) for label in _labels(a)}
    from mobility.rights.rekey import rotate

    rotation = rotate(one, a, NEW_ID, new_key=KeySource(env="MOBILITY_NEW_KEY", key_id=NEW_ID), inputs=[d1, d2],
                      spark=spark)

    b = root / "b"  # the reference: key two from the first delivery, the same erasure
    anonymize(two, d1, b, spark=spark)
    erase(two, b, operator_id=hex_id, spark=spark)
    anonymize(two, d2, b, spark=spark)

    yield SimpleNamespace(root=root, a=a, b=b, one=one, two=two, before=before, erased=erased, after=after,
                          found_before_erasure=found, left_after_erasure=left, listed_after_erasure=listed,
                          second=second, rotation=rotation, unrotated=unrotated_tables,
                          k1=load_key(one.key), k2=load_key(two.key), spark=spark)
    mp.undo()


def _ids(label: str) -> dict[str, re.Pattern]:
    return {"operator id": re.compile(mm.hex_id(label)[:24], re.IGNORECASE)}


@lake_test
def test_access_by_operator_id_lists_the_events_and_the_raw_rows_naming_the_person(world):
    report = world.before.to_dict()
    assert report["side"] == "operator" and report["stored"]
    held = {h["table"]: h["records"] for h in report["holdings"]}
    ana = [e for e in DAY1_EVENTS if e["_label"] == ERASED]
    assert held == {"operator/quarantine": sum(e["_expect"] != "accepted" for e in ana),
                    "office/events": sum(e["_expect"] == "accepted" for e in ana)}
    roles = {h["table"]: h["role"] for h in report["holdings"]}
    assert roles["operator/quarantine"] == "raw quarantined rows mentioning the operator id"
    assert mm.hex_id(ERASED) not in world.before.text().lower()


@lake_test
def test_erasure_by_operator_id_leaves_no_row_and_no_file_with_the_id_or_pseudonym(world):
    pseudonym = world.k1.pseudonym(mm.hex_id(ERASED))
    found = world.found_before_erasure
    assert any(n == "operator id" and p.startswith("operator/quarantine") for p, n in found)
    assert any(n == "pseudonym" and p.startswith("office/events") for p, n in found)
    assert world.erased.rows_deleted == {"operator/quarantine": 1, "office/events": 3}
    assert [(p, n) for p, n in world.left_after_erasure if not p.startswith(SAFE)] == []
    assert not world.after.stored and world.after.suppressed
    assert pseudonym in world.listed_after_erasure  # the agreement's file: later deliveries drop her
    assert mm.hex_id(ERASED) not in world.listed_after_erasure.lower()


@lake_test
def test_the_erased_person_stays_out_of_the_next_delivery(world):
    totals = world.second.manifest["totals"]["cdr"]
    ana = [e for e in DAY2_EVENTS if e["_label"] == ERASED]
    assert totals["suppressed"] == len(ana)  # her dirty row too: suppression comes before any reason
    events = world.unrotated["office/events"]
    assert world.k1.pseudonym(mm.hex_id(ERASED)) not in set(events["pseudonym"])
    assert world.k1.pseudonym(mm.hex_id("dee")) in set(events["pseudonym"])
    records = " ".join(world.unrotated["operator/quarantine"]["record"]).lower()
    assert mm.hex_id(ERASED) not in records and mm.hex_id("cy") in records


@lake_test
def test_the_rotated_lake_is_the_lake_keyed_with_the_new_key_from_the_start(world):
    labels = _labels(world.a)
    assert set(labels) == set(_labels(world.b)) >= {"office/events", "operator/quarantine", "operator/suppression"}
    for label in labels:
        assert _frame(world.a, label).equals(_frame(world.b, label)), label
    assert world.rotation.rows_without_number == {}
    assert set(world.rotation.tables_rewritten) == {"office/events", "operator/suppression"}
    # the agreement's suppression file carries the erasure over to the new key
    listed = (world.root / "one" / "suppressed.txt").read_text()
    assert world.k2.pseudonym(mm.hex_id(ERASED)) in listed and world.k1.pseudonym(mm.hex_id(ERASED)) not in listed
    # no old pseudonym and no trace of the erased person is left in any file (the suppression entry aside)
    old = {f"old {x}": re.compile(world.k1.pseudonym(mm.hex_id(x))[:24]) for x in ("ana", "ben", "cy", "dee")}
    assert find(world.a, old) == []
    new = world.k2.pseudonym(mm.hex_id(ERASED))
    hits = find(world.a, {**_ids(ERASED), "pseudonym": re.compile(new[:24])})
    assert hits and all(p.startswith(SAFE) for p, _ in hits)


@lake_test
def test_rotation_takes_a_list_of_operator_ids_and_refuses_one_without_the_erased_person(world, tmp_path):
    from mobility.rights.rekey import RotationError, rotate

    lake = tmp_path / "lake"
    shutil.copytree(world.root / "a-erased", lake)  # the first delivery, the erasure made
    agreement = _agreement(tmp_path)  # its own (empty) suppression file: the lake's table holds the erasure
    register = tmp_path / "register.csv"
    pd.DataFrame({"user_id": [mm.hex_id(x).upper() for x in ("ben", "cy")]}).to_csv(register, index=False)
    versions = {label: DeltaTable(str(lake / label)).version() for label in _labels(lake)}
    with pytest.raises(RotationError, match="operator id") as err:
        rotate(agreement, lake, NEW_ID, numbers=[register], spark=world.spark)
    assert "operator_id" in str(err.value)
    assert {label: DeltaTable(str(lake / label)).version() for label in _labels(lake)} == versions
    pd.DataFrame({"operator_id": [mm.hex_id(x) for x in ("ana", "ben", "cy")]}).to_csv(register, index=False)
    report = rotate(agreement, lake, NEW_ID, numbers=[register], spark=world.spark)
    assert report.rows_without_number == {}
    events = _frame(lake, "office/events")
    assert set(events["pseudonym"]) == {world.k2.pseudonym(mm.hex_id(x)) for x in ("ben", "cy")}


@lake_test
def test_the_rights_log_never_holds_the_operator_id_or_the_pseudonym(world):
    from mobility.lake import Lake
    from mobility.rights.log import read, subject_ref
    from mobility.rights.subject import Subject

    entries = read(world.a)
    ref = subject_ref(Lake(world.a), Subject(world.k1.pseudonym(mm.hex_id(ERASED)), OLD_ID))
    assert [e["request"] for e in entries if e["subject_ref"] == ref] == ["access", "erase", "access"]
    needles = {f"id {x}": re.compile(mm.hex_id(x)[:16], re.IGNORECASE) for x in ("ana", "ben", "cy", "dee")}
    needles |= {f"pseudonym {x}": re.compile(k.pseudonym(mm.hex_id(x))[:16])
                for x in ("ana", "ben", "cy", "dee") for k in (world.k1, world.k2)}
    assert find(world.a / "operator" / "rights_log", needles) == []
