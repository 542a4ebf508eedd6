"""Data-subject rights end to end on one small synthetic lake (tests run in file order, sharing it).

Order: registry, access, bad input, rectification, erasure, re-ingest, retention, and last the
rights log, which by then holds every kind of request.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import secrets
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from agreement_helpers import make_agreement
from rights_scan import find, number_pattern

# slow: one synthetic lake, anonymized and run through residence, then every kind of request (about a minute);
# make test-fast keeps the unit tests of test_rights_units.py (matching, purge on both Delta layouts).
pytestmark = [pytest.mark.spark, pytest.mark.slow]

START = "2025-01"
SAFE = ("suppression",)  # the erasure's own record: the keyed pseudonym must stay there (see docs/rights.md)


def _csv_rows(folder: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(folder.glob("*.csv*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            frames.append(pd.read_csv(fh, dtype=str, keep_default_na=False))
    return pd.concat(frames, ignore_index=True)


def _table(lake: Path, label: str) -> pd.DataFrame:
    return DeltaTable(str(lake / label)).to_pandas()


def _build(root: Path, spark) -> None:
    """Synthetic input (plus one payment to the future erased person), anonymized, residence run."""
    from mobility.anonymize.job import run as anonymize
    from mobility.anonymize.pseudonymize import to_e164
    from mobility.config import load_agreement
    from mobility.residence.job import run as residence
    from mobility.synth import generate

    generate(root / "input", subscribers=40, months=3, start=START, home_country="PHL", seed=3,
             fault_rate=0.1, events_per_day=2.0)
    agreement = load_agreement(make_agreement(root, suppression_list=str(root / "suppressed.txt")))
    subs = _csv_rows(root / "input" / "subscribers")
    numbers = [m for m in subs["msisdn"] if to_e164(m, "PH")]
    # someone else pays the person erased later, naming them in national spaced format
    receiver = to_e164(numbers[0], "PH")
    spaced = f"0{receiver[3:6]} {receiver[6:9]} {receiver[9:]}"
    pd.DataFrame([{"txn_id": "TXEXTRA1", "txn_time": "2025-02-03T10:00:00", "sender_msisdn": numbers[1],
                   "receiver_msisdn": spaced, "sender_country": "PHL", "receiver_country": "PHL",
                   "amount": "500", "currency": "PHP", "fee": "5", "channel": "mobile_money"}]) \
        .to_csv(root / "input" / "payments" / "extra.csv", index=False)
    (root / "erased.txt").write_text(numbers[0])
    anonymize(agreement, root / "input", root / "lake", spark=spark)
    residence(agreement, root / "lake", spark=spark)


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from mobility.anonymize.pseudonymize import load_key, to_e164
    from mobility.config import load_agreement

    root = tmp_path_factory.mktemp("rights")
    # MOBILITY_RIGHTS_TEST_CACHE: build the lake once there and copy it for later runs (development only)
    cache = os.environ.get("MOBILITY_RIGHTS_TEST_CACHE")
    if cache and (Path(cache) / "key").is_file():
        shutil.copytree(cache, root, dirs_exist_ok=True)
        key_hex = (root / "key").read_text()
    else:
        key_hex = secrets.token_hex(32)
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBILITY_KEY_TEST", key_hex)
    if not (root / "key").is_file():
        _build(root, spark)
        (root / "key").write_text(key_hex)
        if cache:
            shutil.copytree(root, cache, dirs_exist_ok=True)
    agreement = load_agreement(make_agreement(root, suppression_list=str(root / "suppressed.txt")))
    lake = root / "lake"
    key = load_key(agreement.key)

    subs = _csv_rows(root / "input" / "subscribers")
    subs["e164"] = [to_e164(m, "PH") for m in subs["msisdn"]]
    subs = subs[subs["e164"].notna() & subs["sex"].isin(["F", "M"])].drop_duplicates("e164", keep=False)
    subs["pseudonym"] = [key.pseudonym(e) for e in subs["e164"]]
    office_subs = set(_table(lake, "office/subscribers")["pseudonym"])
    events = Counter(_table(lake, "office/events")["pseudonym"])
    quarantine = _table(lake, "operator/quarantine")["record"].dropna()
    receivers = Counter(_table(lake, "office/payments")["receiver_pseudonym"].dropna())
    subs = subs[subs["pseudonym"].isin(office_subs) & subs["pseudonym"].map(lambda p: events[p] > 0)]
    subs = subs.assign(quarantined=[sum(bool(number_pattern(e[3:]).search(r)) for r in quarantine)
                                    for e in subs["e164"]],
                       received=[receivers[p] for p in subs["pseudonym"]])
    erased = subs[subs["e164"] == to_e164((root / "erased.txt").read_text(), "PH")].iloc[0]
    if erased["quarantined"] == 0:  # make sure a raw row mentions the person, as faults usually do
        pytest.fail("synthetic data has no quarantined row mentioning the erased person: pick another seed")
    assert erased["received"] >= 1
    rectified = subs[subs["e164"] != erased["e164"]].iloc[0]

    # Two long-term departures in a crossing month, as the 12/16-month rule would write them: a 3-month
    # lake is too short for the rule, and the flows count needs something to disaggregate.
    changes = spark.read.format("delta").load(str(lake / "office/residence_changes"))
    rows = [(p, "PHL", "SAU", dt.date(2025, 2, 10), dt.date(2025, 2, 20), "long_term", "departure", 300, 300, 0,
             False, None) for p in (erased["pseudonym"], rectified["pseudonym"])]
    spark.createDataFrame(rows, changes.schema).write.format("delta").mode("append") \
        .save(str(lake / "office/residence_changes"))

    nobody = next(f"+63917{n:07d}" for n in range(1000, 2000)
                  if to_e164(f"+63917{n:07d}", "PH") not in set(subs["e164"]))
    yield SimpleNamespace(root=root, lake=lake, agreement=agreement, key=key, spark=spark, erased=erased,
                          rectified=rectified, nobody=nobody, subscribers=subs)
    mp.undo()


def _needles(person) -> dict:
    return {"pseudonym": re.compile(person["pseudonym"][:16]), "number": number_pattern(person["e164"][3:])}


def _lake_state(lake: Path) -> dict:
    """Every file under the lake with its size and mtime, the rights log and its secret aside."""
    return {p.relative_to(lake).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in lake.rglob("*") if p.is_file() and "rights_log" not in p.as_posix()}


# ---- registry ------------------------------------------------------------------------------------

def test_registry_states_the_agreement_in_plain_language(world):
    from mobility.rights.registry import registry, text

    view = registry(world.agreement, world.lake)
    a = world.agreement
    assert [c["name"] for c in view["controllers"]] == [c.name for c in a.controllers]
    assert {p["id"] for p in view["purposes"]} == {p.id for p in a.purposes}
    assert view["retention_days"] == a.retention_days and view["legal_basis"] == a.legal_basis
    assert view["zones"]["office_zone"]["data_categories"] == a.data_categories["office_zone"]
    operators = {c.name for c in a.controllers if c.role == "operator"}
    assert {c["name"] for c in view["zones"]["operator_zone"]["controlled_by"]} == operators
    rendered = text(view)
    assert all(c.contact in rendered for c in a.controllers)
    assert f"{a.retention_days} days" in rendered and "differentially private" in rendered
    json.dumps(view)


# ---- pseudonyms -------------------------------------------------------------------------------------

def test_plain_python_pseudonym_is_the_one_spark_wrote(world):
    from mobility.anonymize.pseudonymize import to_e164

    cdr = _csv_rows(world.root / "input" / "cdr")
    expected = {world.key.pseudonym(e) for e in {to_e164(m, "PH") for m in cdr["msisdn"]} if e}
    stored = set(_table(world.lake, "office/events")["pseudonym"])
    assert stored and stored <= expected
    assert set(world.subscribers["pseudonym"]) <= set(_table(world.lake, "office/subscribers")["pseudonym"])


# ---- access -------------------------------------------------------------------------------------------

def _expected_holdings(lake: Path, person) -> dict[str, int]:
    """What is stored about the person, counted with delta-rs and pyarrow (not Spark, not the rights code)."""
    out = {}
    p = person["pseudonym"]
    for label, column in [("office/events", "pseudonym"), ("office/subscribers", "pseudonym"),
                          ("office/payments", "sender_pseudonym"), ("office/payments", "receiver_pseudonym"),
                          ("office/presence", "pseudonym"), ("office/home_cells", "pseudonym"),
                          ("office/residence_changes", "pseudonym")]:
        table = DeltaTable(str(lake / label)).to_pyarrow_table(columns=[column])
        n = pc.sum(pc.equal(table[column], p)).as_py() or 0
        if n:
            out[f"{label}:{column}"] = n
    return out


def _reported(report) -> dict[str, int]:
    out = {}
    for h in report.holdings:
        column = h["role"].split("(")[-1].rstrip(")") if "other party" in h["role"] else None
        if h["table"] == "operator/quarantine":
            out["operator/quarantine"] = h["records"]
            continue
        table_columns = {"office/payments": "sender_pseudonym"}
        out[f"{h['table']}:{column or table_columns.get(h['table'], 'pseudonym')}"] = h["records"]
    return out


@pytest.fixture(scope="module")
def access_by_number(world):
    from mobility.rights.access import access

    return access(world.agreement, world.lake, msisdn=world.erased["msisdn"], spark=world.spark)


def test_access_by_number_lists_exactly_what_is_stored(world, access_by_number):
    person = world.erased
    report = access_by_number
    reported = _reported(report)
    quarantined = reported.pop("operator/quarantine")
    assert reported == _expected_holdings(world.lake, person)
    assert quarantined == person["quarantined"]
    assert report.stored and report.side == "operator"
    events = next(h for h in report.holdings if h["table"] == "office/events")
    hours = _table(world.lake, "office/events").query("pseudonym == @person.pseudonym")["event_hour"]
    assert (events["first"], events["last"]) == (hours.min().date().isoformat(), hours.max().date().isoformat())
    assert events["purposes"] == [p.id for p in world.agreement.purposes]
    text = report.text()
    assert person["e164"] not in text and person["msisdn"] not in text
    assert "differentially private" in text and "office/payments" in text
    json.dumps(report.to_dict())


def test_access_by_pseudonym_on_the_office_side_gives_the_same_office_holdings(world, access_by_number):
    from mobility.rights.access import access

    by_number = access_by_number
    by_pseudonym = access(world.agreement, world.lake, pseudonym=world.erased["pseudonym"].upper(),
                          spark=world.spark)
    office = [h for h in by_number.holdings if h["zone"] == "office"]
    assert by_pseudonym.holdings == office and by_pseudonym.side == "office"
    assert any("searched by number" in n for n in by_pseudonym.notes)


def test_a_person_with_no_data_gets_a_nothing_stored_report(world):
    from mobility.rights.access import access

    report = access(world.agreement, world.lake, msisdn=world.nobody, spark=world.spark)
    assert not report.stored and report.holdings == []
    assert "Nothing is stored" in report.text()


# ---- bad input: clear errors, nothing changed --------------------------------------------------------

@pytest.mark.parametrize("call, where", [
    (lambda w: __import__("mobility.rights.access", fromlist=["x"]).access(
        w.agreement, w.lake, msisdn="12345", spark=w.spark), "--msisdn"),
    (lambda w: __import__("mobility.rights.erase", fromlist=["x"]).erase(
        w.agreement, w.lake, msisdn="+63 917 ABC", spark=w.spark), "--msisdn"),
    (lambda w: __import__("mobility.rights.erase", fromlist=["x"]).erase(
        w.agreement, w.lake, pseudonym="not-a-pseudonym", spark=w.spark), "--pseudonym"),
    (lambda w: __import__("mobility.rights.rectify", fromlist=["x"]).rectify(
        w.agreement, w.lake, msisdn=w.rectified["msisdn"], changes=["country=SAU"], spark=w.spark), "--set"),
    (lambda w: __import__("mobility.rights.rectify", fromlist=["x"]).rectify(
        w.agreement, w.lake, msisdn=w.rectified["msisdn"], changes=["sex=Q"], spark=w.spark), "--set sex"),
    (lambda w: __import__("mobility.rights.rectify", fromlist=["x"]).rectify(
        w.agreement, w.lake, msisdn=w.rectified["msisdn"], changes=["birth_year=1850"], spark=w.spark),
     "--set birth_year"),
])
def test_bad_requests_are_refused_clearly_and_change_nothing(world, call, where):
    from mobility.rights.subject import RightsRequestError

    before = _lake_state(world.lake)
    with pytest.raises(RightsRequestError) as err:
        call(world)
    assert err.value.where == where and "nothing was changed" in str(err.value)
    assert _lake_state(world.lake) == before


def test_a_request_by_number_without_the_key_is_refused(world, monkeypatch):
    from mobility.errors import KeyMaterialError
    from mobility.rights.erase import erase

    monkeypatch.delenv("MOBILITY_KEY_TEST")
    before = _lake_state(world.lake)
    with pytest.raises(KeyMaterialError) as err:
        erase(world.agreement, world.lake, msisdn=world.erased["msisdn"], spark=world.spark)
    assert "MOBILITY_KEY_TEST" in str(err.value) and "--pseudonym" in str(err.value)
    assert _lake_state(world.lake) == before


# ---- rectification ----------------------------------------------------------------------------------

def _flows_by_sex(world) -> pd.DataFrame:
    from mobility.aggregate.flows import INTERNATIONAL, FlowSpec, exact_tables, subscriber_profile

    spark = world.spark
    changes = spark.read.format("delta").load(str(world.lake / "office/residence_changes"))
    profile = subscriber_profile(spark.read.format("delta").load(str(world.lake / "office/subscribers")),
                                 world.agreement.agreement_id)
    spec = FlowSpec(home="PHL", countries=tuple(world.agreement.countries), period="2025-02", by=("sex",))
    table = exact_tables(changes, profile, spec)[INTERNATIONAL]
    return table[(table["from_country"] == "PHL") & (table["to_country"] == "SAU")].set_index("sex")["count"]


def test_rectification_reaches_the_disaggregated_counts_of_a_later_release(world):
    from mobility.rights.rectify import rectify

    person = world.rectified
    old = person["sex"]
    new = {"F": "M", "M": "F"}[old]
    before = _flows_by_sex(world)
    report = rectify(world.agreement, world.lake, msisdn=person["msisdn"], changes=[f"sex={new.lower()}"],
                     spark=world.spark)
    assert report.rows_updated["office/subscribers"] == 1
    after = _flows_by_sex(world)
    assert after[old] == before[old] - 1 and after[new] == before[new] + 1
    stored = _table(world.lake, "office/subscribers").query("pseudonym == @person.pseudonym")
    assert list(stored["sex"]) == [new]
    assert [int(x) for x in stored["birth_year"]] == [int(person["birth_year"])]  # untouched


def test_rectifying_a_person_with_no_record_reports_nothing_stored(world):
    from mobility.rights.rectify import rectify

    report = rectify(world.agreement, world.lake, msisdn=world.nobody, changes={"birth_year": "1990"},
                     spark=world.spark)
    assert report.to_dict()["nothing_stored"] and "nothing to correct" in report.text()


# ---- erasure ------------------------------------------------------------------------------------------

def test_erasure_leaves_no_row_and_no_file_with_the_pseudonym_or_number(world):
    from mobility.rights.access import access
    from mobility.rights.erase import erase

    person, lake = world.erased, world.lake
    needles = _needles(person)
    found = find(lake, needles)
    # the scanner sees the person where they are: data files, log statistics and raw quarantined rows
    assert any(n == "pseudonym" and "_delta_log" in p for p, n in found)
    assert any(n == "pseudonym" and p.endswith(".parquet") and "_delta_log" not in p for p, n in found)
    assert any(n == "number" and p.startswith("operator/quarantine") for p, n in found)
    others_before = _table(lake, "office/events").query("pseudonym != @person.pseudonym").shape[0]
    held = _expected_holdings(lake, person)

    report = erase(world.agreement, lake, msisdn=person["msisdn"], spark=world.spark)

    assert report.rows_deleted["office/events"] == held["office/events:pseudonym"]
    assert report.values_blanked["office/payments.receiver_pseudonym"] == person["received"]
    assert report.rows_deleted["operator/quarantine"] == person["quarantined"]
    left = [(p, n) for p, n in find(lake, needles) if not p.startswith(SAFE[0], len("operator/"))]
    assert left == []
    assert not access(world.agreement, lake, msisdn=person["msisdn"], spark=world.spark).stored
    # everyone else is untouched and every table still reads
    assert _table(lake, "office/events").shape[0] == others_before
    assert person["pseudonym"] in (world.root / "suppressed.txt").read_text()


def test_a_reingest_of_the_same_records_does_not_bring_the_person_back(world, tmp_path):
    from mobility.anonymize.job import run as anonymize

    person = world.erased
    again = tmp_path / "redelivered"
    for folder in ("cdr", "cells", "subscribers", "payments"):
        for path in (world.root / "input" / folder).iterdir():
            # the same records in a new file: the rows in another order (a renamed byte-for-byte copy
            # would be skipped as already ingested, before suppression is even reached)
            target = again / folder / f"resent-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            raw = path.read_bytes()
            zipped = raw[:2] == b"\x1f\x8b"
            header, *rows = (gzip.decompress(raw) if zipped else raw).decode().splitlines()
            text = "\n".join([header, *reversed(rows)]) + "\n"
            target.write_bytes(gzip.compress(text.encode()) if zipped else text.encode())
    result = anonymize(world.agreement, again, world.lake, spark=world.spark)
    assert not result.already_done
    totals = result.manifest["totals"]
    cdr = _csv_rows(again / "cdr")
    # suppression comes after exact copies and before every quarantine reason (validate.finish)
    assert totals["cdr"]["suppressed"] == len(cdr[cdr["msisdn"].map(_e164) == person["e164"]].drop_duplicates())
    assert totals["subscribers"]["suppressed"] >= 1
    assert _expected_holdings(world.lake, person) == {}
    assert not any(number_pattern(person["e164"][3:]).search(r)
                   for r in _table(world.lake, "operator/quarantine")["record"].dropna())


def _e164(number: str):
    from mobility.anonymize.pseudonymize import to_e164

    return to_e164(number, "PH")


# ---- retention -----------------------------------------------------------------------------------------

def test_retention_removes_old_rows_and_their_files_and_keeps_newer_ones(world):
    from mobility.rights.log import read as read_log
    from mobility.rights.retention import enforce

    lake = world.lake
    cutoff = dt.date(2025, 2, 15)
    today = cutoff + dt.timedelta(days=world.agreement.retention_days)
    events_before = _table(lake, "office/events")
    changes_before = _table(lake, "office/residence_changes")
    summary = enforce(world.agreement, lake, today=today, spark=world.spark)
    json.dumps(summary)
    assert summary["cutoff"] == cutoff.isoformat()

    events = _table(lake, "office/events")
    old = events_before["event_hour"] < pd.Timestamp(cutoff, tz="UTC")
    assert old.any() and summary["tables"]["office/events"]["deleted"] is True
    assert len(events) == int((~old).sum()) > 0
    assert (events["event_hour"] >= pd.Timestamp(cutoff, tz="UTC")).all()
    assert (pd.to_datetime(_table(lake, "office/presence")["date"]).dt.date >= cutoff).all()
    assert (_table(lake, "office/home_cells")["month"] >= "2025-02").all()
    # the January partition is physically gone, not just unreferenced
    assert not list((lake / "office/events/month=2025-01").glob("*.parquet"))
    leftovers = [p for p in (lake / "office/events").rglob("*.parquet") if "_delta_log" not in p.parts
                 and (pd.read_parquet(p, columns=["event_hour"])["event_hour"].dt.date < cutoff).any()]
    assert leftovers == []
    # received this year: far from expiry
    assert summary["tables"]["operator/quarantine"]["deleted"] is False
    # whether, never how many: no table reports a row count (issue #19: a count of the subscribers or of
    # the residence changes that expired is a count of people or changes)
    assert all(set(t) <= {"deleted", "by", "files_removed"} for t in summary["tables"].values()), summary
    assert "rows_deleted" not in summary and summary["deleted"] is True
    old_changes = pd.to_datetime(changes_before["crossing_date"]).dt.date < cutoff
    assert summary["tables"]["office/residence_changes"]["deleted"] is bool(old_changes.any())
    (entry,) = [e for e in read_log(lake) if e["request"] == "retention" and e["outcome"] == "done"]
    assert entry["detail"].startswith(f"cutoff {cutoff.isoformat()}; rows deleted in ")
    assert not re.search(r"\d", entry["detail"].replace(cutoff.isoformat(), "")), entry["detail"]


# ---- the rights log (last: it has seen every kind of request) ---------------------------------------

def test_rights_log_records_every_request_and_never_a_number(world):
    from mobility.rights.log import read, subject_ref
    from mobility.rights.subject import Subject

    entries = read(world.lake)
    kinds = {(e["request"], e["outcome"]) for e in entries}
    assert {("registry", "done"), ("access", "done"), ("access", "nothing_stored"), ("rectify", "done"),
            ("erase", "done"), ("erase", "refused"), ("rectify", "refused"), ("retention", "done")} <= kinds
    person = world.erased
    ref = subject_ref(__import__("mobility.lake", fromlist=["Lake"]).Lake(world.lake),
                      Subject(person["pseudonym"], world.key.key_id))
    erasures = [e for e in entries if e["request"] == "erase" and e["outcome"] == "done"]
    accesses = [e for e in entries if e["request"] == "access" and e["outcome"] == "done"]
    assert erasures[0]["subject_ref"] == ref and ref in {e["subject_ref"] for e in accesses}
    needles = {}
    for _, s in world.subscribers.iterrows():
        needles[f"number {s['e164'][-4:]}"] = number_pattern(s["e164"][3:])
        needles[f"pseudonym {s['pseudonym'][:6]}"] = re.compile(s["pseudonym"][:16])
    assert find(world.lake / "operator" / "rights_log", needles) == []
