"""The rights log on object storage, the writer lease and log scrubbing that erasure and retention rely on there,
and what is refused there with a clear error (nothing changed). Erasure and retention end to end on S3 are in
test_erasure_s3.py."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agreement_helpers import make_agreement
from mobility import storage
from mobility.errors import LedgerIntegrityError, StorageError
from mobility.lake import Lake
from mobility.rights import log
from mobility.rights.subject import Subject

pytestmark = pytest.mark.objectstore
PSEUDONYM = "ab" * 32


def test_the_rights_log_is_kept_on_s3(s3_lake):
    Lake(s3_lake).ensure()
    storage.write_bytes(Lake(s3_lake).root / "office" / "manifests" / "r1.json", b"{}")  # a lake with content
    subject = Subject(PSEUDONYM, "k-test")
    first = log.record(s3_lake, "access", "test-phl", "done", subject=subject, detail="2 tables")
    log.record(s3_lake, "retention", "test-phl", "done")
    rows = log.read(s3_lake)
    assert [r["request"] for r in rows] == ["access", "retention"]
    assert rows[0]["subject_ref"] == first["subject_ref"] == log.subject_ref(Lake(s3_lake), subject)
    assert PSEUDONYM not in str(rows)  # a keyed hash, never the pseudonym
    secret = Lake(s3_lake).rights_log_secret
    assert secret.is_file() and len(secret.read_text().strip()) == 64
    assert log.recorded(s3_lake, first["request_id"])
    pending = log.Pending(s3_lake, "erase-x", "erase", "test-phl")
    assert pending.path.is_file()
    pending.finish(s3_lake, "erase", "test-phl", "done")
    assert not pending.path.is_file()


def test_key_rotation_is_refused_on_s3(s3_lake, tmp_path, monkeypatch):
    from mobility.rights.rekey import rotate

    agreement = make_agreement(tmp_path)
    monkeypatch.setenv("MOBILITY_KEY_TEST", "11" * 32)
    monkeypatch.setenv("MOBILITY_NEW_KEY", "22" * 32)
    storage.write_bytes(Lake(s3_lake).root / "office" / "manifests" / "r1.json", b"{}")
    import mobility.spark

    # refused before any Spark work (another test of the session may have a Spark session running already)
    monkeypatch.setattr(mobility.spark, "get_spark", lambda *a, **k: pytest.fail("Spark started before the refusal"))
    with pytest.raises(StorageError, match="the key rotation request .* is not supported on a lake on object "
                                           "storage") as refused:
        rotate(agreement, s3_lake, "k-new")
    assert "nothing was changed" in str(refused.value) and s3_lake in str(refused.value)


def test_the_cli_refuses_key_rotation_on_s3_in_one_message(s3_lake, tmp_path, monkeypatch):
    from mobility.cli import main

    agreement = make_agreement(tmp_path)
    monkeypatch.setenv("MOBILITY_KEY_TEST", "11" * 32)
    monkeypatch.setenv("MOBILITY_NEW_KEY", "22" * 32)
    storage.write_bytes(Lake(s3_lake).root / "office" / "manifests" / "r1.json", b"{}")
    result = CliRunner().invoke(main, ["keys", "rotate", "--agreement", str(agreement), "--lake", s3_lake,
                                       "--new-key-id", "k-new"])
    assert result.exit_code == 2, result.output
    assert "is not supported on a lake on object storage" in result.output and "Traceback" not in result.output


def test_a_request_that_rewrites_data_holds_the_writer_lease_on_s3(s3_lake, tmp_path):
    storage.write_bytes(Lake(s3_lake).root / "office" / "manifests" / "r1.json", b"{}")
    seen = {}

    @log.under_writer_lease("erasure")
    def request(agreement, lake_root):
        lease = storage.lease_path(Lake(lake_root).root)
        seen[str(lake_root)] = json.loads(lease.read_bytes()) if lease.is_file() else None
        return "done"

    assert request("test-phl", lake_root=s3_lake) == "done"
    assert seen[s3_lake]["what"] == "the erasure request"
    assert not storage.lease_path(Lake(s3_lake).root).is_file()  # released
    local = tmp_path / "local-lake"
    assert request("test-phl", local) == "done" and seen[str(local)] is None  # a local lake: no lease
    missing = s3_lake + "-none"  # no lake there: the request refuses it itself, no lease object is created
    assert request("test-phl", missing) == "done" and seen[missing] is None


def test_scrubbing_a_delta_log_on_s3_rewrites_each_object_without_the_identifier_statistics(s3_lake):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from mobility.rights.history import data_files, scrub_log

    path = Lake(s3_lake).root / "office" / "events"
    options = storage.delta_options(path)
    for n in range(3):
        rows = pa.table({"pseudonym": [PSEUDONYM if n == 1 else f"{n:064d}"], "cell": [f"c{n}"]})
        write_deltalake(storage.uri(path), rows, mode="append", storage_options=options)
    log_objects = [p for p in storage.files(path / "_delta_log")]
    assert any(PSEUDONYM[:16] in p.read_text() for p in log_objects if p.suffix == ".json")  # min/max stats
    assert len(data_files(path)) == 3 and all(p.suffix == ".parquet" for p in data_files(path))
    scrub_log(path, ("pseudonym",))
    for p in storage.files(path / "_delta_log"):
        assert PSEUDONYM[:16] not in p.read_bytes().decode("latin-1"), p
    table = DeltaTable(storage.uri(path), storage_options=options)  # still a readable table, every row kept
    assert sorted(table.to_pyarrow_table().column("cell").to_pylist()) == ["c0", "c1", "c2"]


def test_an_export_to_object_storage_and_a_witness_there_are_refused(s3_lake, tmp_path):
    from mobility.privacy_budget.witness import Witness
    from mobility.publish.export import export_release

    with pytest.raises(StorageError, match="an export is written to a folder, not to object storage"):
        export_release(s3_lake, "flows-2024-05", "csv", "s3://mobility-test/exports")
    with pytest.raises(LedgerIntegrityError, match="the ledger witness must be a folder"):
        Witness("s3://mobility-test/witness")
