"""The anonymization job end to end on a tiny input with one row per quarantine reason."""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import secrets
import shutil

import pyarrow.parquet as pq
import pytest

from agreement_helpers import with_test_key
from anon_fixtures import (
    CDR_HEADER,
    CDR_ROWS,
    ODD_NAME,
    PAYMENT_ROWS,
    SUBSCRIBER_ROWS,
    make_agreement,
    make_inputs,
    write_csv,
)
from mobility.anonymize.job import run
from mobility.config import load_agreement
from mobility.errors import InputContractError, KeyMaterialError, QualityGateError
from mobility.lake import Lake
from mobility.schemas import LAKE_TABLES

pytestmark = pytest.mark.spark

SUBJECT = "+639171234567"


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    """One run shared by the read-only tests below (Spark runs are the slow part)."""
    root = tmp_path_factory.mktemp("anon")
    mp, key = with_test_key()
    agreement = load_agreement(make_agreement(root))
    inputs = make_inputs(root / "input")
    held_before = _held_blocks(spark)
    result = run(agreement, inputs, root / "lake", spark=spark)
    yield {"root": root, "key": key, "agreement": agreement, "inputs": inputs, "lake": root / "lake",
           "result": result, "spark": spark, "held_before": held_before, "held_after": _held_blocks(spark)}
    mp.undo()


def _held_blocks(spark) -> set[int]:
    """Ids of the RDDs (cached frames, local checkpoints) that hold blocks in Spark's block manager."""
    return {info.id() for info in spark.sparkContext._jsc.sc().getRDDStorageInfo()}


def test_run_frees_what_it_kept(world):
    # The job keeps its frames on local disk (raw quarantined records among them) while it counts
    # and writes; none of it may outlive the run.
    assert world["held_after"] <= world["held_before"]


def test_summary_shows_each_dataset_and_the_manifest(world):
    result = world["result"]
    lines = result.summary().splitlines()
    assert lines[0] == f"anonymize run {result.run_id}: completed"
    assert [line.split()[0] for line in lines[1:-1]] == list(result.manifest["totals"])
    assert lines[-1] == f"  manifest: {result.manifest_path}"


def _delta(spark, path):
    return spark.read.format("delta").load(str(path))


def _expected(rows, dataset):
    c = collections.Counter(r[-1] for r in rows)
    c.pop("accepted", None)
    c.pop("duplicate", None)
    return {(dataset, reason): n for reason, n in c.items()}


def test_every_quarantine_reason_is_recorded(world):
    q = _delta(world["spark"], world["lake"] / "operator" / "quarantine").toPandas()
    got = collections.Counter(zip(q["dataset"], q["reason"]))
    expected = {**_expected(CDR_ROWS, "cdr"), **_expected(SUBSCRIBER_ROWS, "subscribers"),
                **_expected(PAYMENT_ROWS, "payments")}
    expected[("cdr", "malformed_row")] = 1  # the extra-field line appended to the second CDR file
    expected[("cells", "cell_outside_boundaries")] = 1
    expected[("cells", "invalid_coordinates")] = 1
    assert dict(got) == expected
    assert set(q["source_file"]) >= {"cdr/part-1.csv.gz", f"cdr/2025/{ODD_NAME}", "cells/cells.csv",
                                     "subscribers/subscribers.csv", "payments/payments.csv"}


def test_counts_reconcile_per_file_with_lines_in_the_files(world):
    manifest = world["result"].manifest
    for f in manifest["files"]:
        assert f["read"] == f["accepted"] + f["quarantined"] + f["duplicates"] + f["suppressed"], f
        assert sum(f["reasons"].values()) == f["quarantined"]
        path = world["inputs"] / f["file"]
        import gzip
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            assert f["read"] == sum(1 for _ in fh) - 1, f["file"]  # minus the header
    accepted_events = _delta(world["spark"], world["lake"] / "office" / "events").count()
    assert accepted_events == manifest["totals"]["cdr"]["accepted"]
    assert manifest["totals"]["cdr"]["accepted"] == sum(r[-1] == "accepted" for r in CDR_ROWS)
    for dataset, rows in (("cdr", CDR_ROWS), ("subscribers", SUBSCRIBER_ROWS), ("payments", PAYMENT_ROWS)):
        assert manifest["totals"][dataset]["duplicates"] == sum(r[-1] == "duplicate" for r in rows), dataset
        assert manifest["totals"][dataset]["accepted"] == sum(r[-1] == "accepted" for r in rows), dataset


def test_pseudonyms_are_hmac_of_e164_under_the_agreement_key(world):
    events = _delta(world["spark"], world["lake"] / "office" / "events").toPandas()
    expected = hmac.new(bytes.fromhex(world["key"]), SUBJECT.encode(), hashlib.sha256).hexdigest()
    # three spellings of the same number (E.164, national, national with spaces) -> one pseudonym
    mine = events[events["pseudonym"] == expected]
    assert len(mine) == 4
    assert set(mine["key_id"]) == {"k-test"}
    roaming = mine[mine["country"] == "SAU"]
    assert len(roaming) == 1 and roaming["h3_cell"].isna().all()
    home = mine[mine["country"] == "PHL"]
    assert home["h3_cell"].str.len().eq(15).all()
    # inbound roamer keeps its own pseudonym and is placed at home
    qat = hmac.new(bytes.fromhex(world["key"]), b"+97455123456", hashlib.sha256).hexdigest()
    assert (events["pseudonym"] == qat).sum() == 1


def test_time_is_coarsened_to_the_local_hour_in_utc(world):
    events = _delta(world["spark"], world["lake"] / "office" / "events").toPandas()
    assert (events["event_hour"].dt.minute == 0).all() and (events["event_hour"].dt.second == 0).all()
    # 2025-01-05T21:13 in Manila (UTC+8) is 13:00 UTC
    assert (events["event_hour"] == "2025-01-05 13:00:00").any()
    assert set(events["month"]) == {"2025-01", "2025-03"}


def test_office_zone_has_no_raw_identifier_nor_key(world):
    raw_values = set()
    for rows in (CDR_ROWS, SUBSCRIBER_ROWS):
        for r in rows:
            raw_values.add(r[0])
    for r in CDR_ROWS:
        raw_values.update(x for x in (r[6], r[7]) if x)
    for r in PAYMENT_ROWS:
        raw_values.update(x for x in (r[0], r[2], r[3]) if x)
    digits = {"".join(ch for ch in v if ch.isdigit()) for v in raw_values}
    # Eight characters at least: shorter digit runs turn up by chance in Delta's millisecond
    # timestamps and file sizes (the invalid number "12345" was "found" in a modificationTime).
    # Every real subscriber number is longer; the short invalid ones go to the quarantine.
    needles = {v for v in raw_values | digits if len(v) >= 8} | {"639171234567", "9171234567"}
    assert len(needles) >= 15
    key = bytes.fromhex(world["key"])
    office = world["lake"] / "office"
    files = [p for p in office.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        blob = path.read_bytes()
        assert key not in blob and world["key"].encode() not in blob, path
        texts = [blob.decode("utf-8", "ignore")]
        if path.suffix == ".parquet":  # compressed pages: scan the decoded values too
            table = pq.read_table(path)
            texts += [str(v) for col in table.columns for v in col.to_pylist()]
        for text in texts:
            for needle in needles:
                assert needle not in text, f"{needle} found in {path}"


def test_delta_logs_keep_no_pseudonym(world):
    """Data-skipping statistics cover only non-identifying columns, so no pseudonym is copied
    into a table's transaction log (where erasure would have to scrub it)."""
    spark, lake = world["spark"], world["lake"]
    pseudonyms = set()
    for name, columns in (("events", ["pseudonym", "counterpart_pseudonym"]), ("subscribers", ["pseudonym"]),
                          ("payments", ["sender_pseudonym", "receiver_pseudonym"])):
        rows = _delta(spark, lake / "office" / name).select(*columns).collect()
        pseudonyms |= {v for r in rows for v in r if v}
    assert len(pseudonyms) >= 3
    logs = [p for p in (lake / "office").rglob("*") if p.is_file() and "_delta_log" in p.parts]
    assert any(p.suffix == ".json" for p in logs)
    for path in logs:
        text = path.read_bytes().decode("utf-8", "ignore")
        for pseudonym in pseudonyms:
            assert pseudonym not in text, f"a pseudonym is in {path}"
        for line in text.splitlines() if path.suffix == ".json" else []:
            stats = json.loads(line).get("add", {}).get("stats")
            if stats:  # statistics are still kept, only on the columns declared for skipping
                declared = LAKE_TABLES[f"office/{path.parent.parent.name}"].stats_columns
                assert set(json.loads(stats).get("minValues", {})) <= set(declared.split(",")), path


def test_rerun_of_same_inputs_adds_nothing(world, record_property):
    before = _delta(world["spark"], world["lake"] / "office" / "events").count()
    again = run(world["agreement"], world["inputs"], world["lake"], spark=world["spark"])
    assert again.already_done and again.run_id == world["result"].run_id
    other_id = run(world["agreement"], world["inputs"], world["lake"], run_id="manual-2", spark=world["spark"])
    assert {f["file"] for f in other_id.manifest["skipped_files"]} >= {"cdr/part-1.csv.gz", f"cdr/2025/{ODD_NAME}"}
    assert _delta(world["spark"], world["lake"] / "office" / "events").count() == before
    _bad_input(record_property, "the same file delivered twice", "skipped",
               "already ingested by run " + world["result"].run_id)


@pytest.mark.slow  # two full runs (about 20 s): in make test, not in make test-fast
def test_crashed_run_is_completed_by_rerun_without_duplicates(world, tmp_path):
    lake = tmp_path / "lake"
    first = run(world["agreement"], world["inputs"], lake, run_id="r1", spark=world["spark"])
    n = _delta(world["spark"], lake / "office" / "events").count()
    # Simulate a kill after the Delta commits but before the commit marker.
    first.manifest_path.unlink()
    assert "r1" not in json.dumps([p.name for p in (lake / "office" / "manifests").glob("*")])
    again = run(world["agreement"], world["inputs"], lake, run_id="r1", spark=world["spark"])
    assert not again.already_done
    assert _delta(world["spark"], lake / "office" / "events").count() == n
    assert _delta(world["spark"], lake / "operator" / "quarantine").count() == first.manifest["totals"]["cdr"][
        "quarantined"] + first.manifest["totals"]["subscribers"]["quarantined"] + \
        first.manifest["totals"]["payments"]["quarantined"] + first.manifest["totals"]["cells"]["quarantined"]


@pytest.mark.slow  # two full runs (about 20 s): in make test, not in make test-fast
def test_a_failed_write_leaves_no_manifest_and_the_rerun_completes(world, tmp_path, monkeypatch):
    """The writes after the gate run at the same time: one failing must not stop the others, must
    surface its own error, and must leave the run to be completed by a rerun without duplicates."""
    lake = tmp_path / "lake"

    def broken(*args, **kwargs):  # the subscribers MERGE is the run's only upsert
        raise OSError("disk full while writing subscribers")

    monkeypatch.setattr(Lake, "upsert", broken)
    with pytest.raises(OSError, match="disk full"):
        run(world["agreement"], world["inputs"], lake, run_id="r1", spark=world["spark"])
    assert not list((lake / "office" / "manifests").glob("r1*"))
    events = _delta(world["spark"], lake / "office" / "events").count()  # written beside the failed write
    assert events == world["result"].manifest["totals"]["cdr"]["accepted"]

    monkeypatch.undo()
    again = run(world["agreement"], world["inputs"], lake, run_id="r1", spark=world["spark"])
    assert not again.already_done and (lake / "office" / "manifests" / "r1.json").is_file()
    assert _delta(world["spark"], lake / "office" / "events").count() == events
    assert _delta(world["spark"], lake / "office" / "subscribers").count() == \
        world["result"].manifest["totals"]["subscribers"]["accepted"]
    assert again.manifest["totals"] == world["result"].manifest["totals"]


def test_other_key_gives_other_pseudonyms(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILITY_KEY_TEST", secrets.token_hex(32))
    small = tmp_path / "input"
    (small / "cdr").mkdir(parents=True)
    shutil.copytree(world["inputs"] / "cells", small / "cells")
    shutil.copy(world["inputs"] / "cdr" / "part-1.csv.gz", small / "cdr")
    agreement = load_agreement(make_agreement(tmp_path))
    run(agreement, small, tmp_path / "lake", spark=world["spark"])
    ours = set(_delta(world["spark"], world["lake"] / "office" / "events").toPandas()["pseudonym"])
    theirs = set(_delta(world["spark"], tmp_path / "lake" / "office" / "events").toPandas()["pseudonym"])
    assert theirs and not (ours & theirs)


def test_suppressed_subject_is_dropped_and_counted(world, tmp_path):
    pseudonym = hmac.new(bytes.fromhex(world["key"]), SUBJECT.encode(), hashlib.sha256).hexdigest()
    listing = tmp_path / "suppressed.txt"
    listing.write_text(f"# erased on request\n{pseudonym}\n")
    agreement = load_agreement(make_agreement(tmp_path, suppression_list=str(listing)))
    result = run(agreement, world["inputs"], tmp_path / "lake", spark=world["spark"])
    events = _delta(world["spark"], tmp_path / "lake" / "office" / "events").toPandas()
    assert pseudonym not in set(events["pseudonym"])
    assert result.manifest["totals"]["cdr"]["suppressed"] >= 4
    quarantine = _delta(world["spark"], tmp_path / "lake" / "operator" / "quarantine").toPandas()
    assert not quarantine["record"].str.contains("9171234567").any()
    # named as the receiver of someone else's transfer: the transfer stays, the person does not
    payments = _delta(world["spark"], tmp_path / "lake" / "office" / "payments").toPandas()
    assert pseudonym not in set(payments["sender_pseudonym"]) | set(payments["receiver_pseudonym"].dropna())
    assert (payments["amount"] == 50).sum() == 1


def test_quality_gate_fails_and_writes_nothing(world, tmp_path, record_property):
    agreement = load_agreement(make_agreement(tmp_path, max_invalid_share=0.05))
    held = _held_blocks(world["spark"])
    with pytest.raises(QualityGateError, match="max_invalid_share") as err:
        run(agreement, world["inputs"], tmp_path / "lake", spark=world["spark"])
    assert _held_blocks(world["spark"]) <= held
    message = str(err.value)
    assert "nothing was written" in message and "What to do" in message
    assert any("of 6 cells rows" in message or "of 20 cdr rows" in message for _ in [0])
    assert not (tmp_path / "lake" / "office" / "events").exists()
    assert not (tmp_path / "lake" / "operator" / "quarantine").exists()
    _bad_input(record_property, "too many malformed rows (quality gate)", "refused",
               "above the agreement's max_invalid_share; nothing was written")


def test_missing_key_and_loose_key_file_are_refused(tmp_path, monkeypatch, record_property):
    monkeypatch.delenv("MOBILITY_KEY_TEST", raising=False)
    inputs = make_inputs(tmp_path / "input")
    with pytest.raises(KeyMaterialError, match="MOBILITY_KEY_TEST is not set"):
        run(str(make_agreement(tmp_path)), inputs, tmp_path / "lake")
    key_file = tmp_path / "k.hex"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o644)
    path = make_agreement(tmp_path, key={"file": str(key_file), "key_id": "k"})
    with pytest.raises(KeyMaterialError, match="0600"):
        run(str(path), inputs, tmp_path / "lake")
    key_file.chmod(0o600)
    key_file.write_text("abcd")
    with pytest.raises(KeyMaterialError, match="at least 32"):
        run(str(path), inputs, tmp_path / "lake")
    assert not (tmp_path / "lake").exists()
    _bad_input(record_property, "missing key, key file readable by others, or key too short", "refused",
               "not set / 0600 / at least 32 bytes")


def test_file_missing_a_required_column_names_file_and_column(tmp_path, key_hex, record_property):
    inputs = make_inputs(tmp_path / "input")
    (inputs / "cdr" / "part-3.csv").write_text("msisdn,event_time,cell_id\n+639171234567,2025-01-01T00:00:00,C1\n")
    with pytest.raises(InputContractError) as err:
        run(str(make_agreement(tmp_path)), inputs, tmp_path / "lake")
    message = str(err.value)
    assert "part-3.csv" in message and "event_type" in message and "visited_plmn" in message
    _bad_input(record_property, "a required column missing or renamed", "refused",
               "missing required column(s)")


def test_table_version_falls_back_to_spark_when_delta_rs_cannot_read_the_table(world, monkeypatch):
    import deltalake
    from delta.tables import DeltaTable
    from deltalake.exceptions import DeltaProtocolError

    from mobility.lake import delta_version

    events = world["lake"] / "office" / "events"
    read_by_delta_rs = delta_version(events)
    assert read_by_delta_rs == DeltaTable.forPath(world["spark"], str(events)).history(1).collect()[0]["version"]

    def unsupported(*args, **kwargs):
        raise DeltaProtocolError("reader feature not supported")

    monkeypatch.setattr(deltalake, "DeltaTable", unsupported)
    assert delta_version(events) == read_by_delta_rs


def test_copies_are_counted_in_the_first_file_by_name(world, tmp_path):
    """An exact copy is a duplicate wherever it sits; the copy kept is the one in the first file by
    name, even when Spark reads a later, larger file first. A copy of an invalid row is a duplicate
    too, so the quarantine holds the row once."""
    def row(n, cell="C1"):
        return ("+639171234567", f"2025-01-05T21:{n:02d}:00", "call_out", cell, "", "60", "", "")

    early, late, bad = row(1), row(2), row(3, cell="NOPE")
    filler = [row(10 + n) for n in range(40)]  # makes the later file the larger one
    root = tmp_path / "input"
    shutil.copytree(world["inputs"] / "cells", root / "cells")
    write_csv(root / "cdr" / "2025-01.csv", CDR_HEADER, [early, late, late, bad])
    write_csv(root / "cdr" / "2025-02.csv", CDR_HEADER, [early, early, bad, *filler])
    result = run(world["agreement"], root, tmp_path / "lake", spark=world["spark"])
    files = {f["file"]: f for f in result.manifest["files"] if f["dataset"] == "cdr"}
    assert {k: files["cdr/2025-01.csv"][k] for k in ("read", "accepted", "duplicates", "quarantined")} == \
        {"read": 4, "accepted": 2, "duplicates": 1, "quarantined": 1}
    assert {k: files["cdr/2025-02.csv"][k] for k in ("read", "accepted", "duplicates", "quarantined")} == \
        {"read": 43, "accepted": 40, "duplicates": 3, "quarantined": 0}
    events = _delta(world["spark"], tmp_path / "lake" / "office" / "events").toPandas()
    assert len(events) == 42  # the minimized rows look alike (same hour): only the count tells
    quarantine = _delta(world["spark"], tmp_path / "lake" / "operator" / "quarantine").toPandas()
    cdr_rows = quarantine[quarantine["dataset"] == "cdr"]
    assert list(cdr_rows["source_file"]) == ["cdr/2025-01.csv"] and list(cdr_rows["reason"]) == ["unknown_cell"]


def test_a_truncated_gzip_delivery_is_refused_naming_the_file(world, tmp_path, record_property):
    """A CDR file cut off in transfer: exit 2 with the file and what to do, no traceback, nothing committed."""
    import gzip

    from click.testing import CliRunner

    from mobility.cli import main

    inputs = tmp_path / "input"
    shutil.copytree(world["inputs"], inputs)
    body = "".join(",".join(r[:-1]) + "\n" for r in CDR_ROWS[:6]) * 400
    whole = gzip.compress((",".join(CDR_HEADER) + "\n" + body).encode())
    (inputs / "cdr" / "late.csv.gz").write_bytes(whole[: len(whole) // 2])  # half of it arrived
    with pytest.raises(InputContractError) as err:
        run(world["agreement"], inputs, tmp_path / "lake", spark=world["spark"])
    message = str(err.value)
    assert "late.csv.gz" in message and "cut off in transfer" in message and "deliver" in message
    assert not (tmp_path / "lake" / "office" / "events").exists() or not Lake(tmp_path / "lake").completed_runs()
    outcome = CliRunner().invoke(main, ["anonymize", "--agreement", str(make_agreement(tmp_path)),
                                        "--input", str(inputs), "--lake", str(tmp_path / "lake2")])
    assert outcome.exit_code == 2 and "late.csv.gz" in outcome.output and "Traceback" not in outcome.output
    _bad_input(record_property, "truncated or corrupt gzip", "refused",
               "cannot be read to their end: ... cut off in transfer")


def test_a_key_id_other_than_the_stored_pseudonyms_is_refused(world, tmp_path, record_property):
    """Pseudonyms under another key would not match the office zone's: refused before anything is read."""
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"], lake)
    before = sorted(p.name for p in (lake / "office" / "manifests").iterdir())
    other = load_agreement(make_agreement(tmp_path, key={"env": "MOBILITY_KEY_TEST", "key_id": "renamed-key"}))
    stored = world["result"].manifest["key_id"]
    with pytest.raises(KeyMaterialError) as err:
        run(other, world["inputs"], lake, spark=world["spark"])
    message = str(err.value)
    assert "'renamed-key'" in message and repr(stored) in message and "nothing was read or written" in message
    assert sorted(p.name for p in (lake / "office" / "manifests").iterdir()) == before
    _bad_input(record_property, "a key id other than the stored pseudonyms'", "refused",
               "names key id ... but the office zone's pseudonyms were made with key id ...")


def _bad_input(record_property, kind: str, outcome: str, detail: str) -> None:
    """Record the row of the table "Bad input: what each kind gets" (docs/contracts.md) a test backs."""
    record_property("bad_input", json.dumps({"kind": kind, "outcome": outcome, "detail": detail}))
