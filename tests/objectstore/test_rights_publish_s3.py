"""The rights log on object storage, and what is refused there with a clear error (nothing changed)."""

from __future__ import annotations

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


@pytest.mark.parametrize("request_kind", ["erasure", "rectification", "retention", "key rotation"])
def test_requests_that_rewrite_data_are_refused_on_s3(s3_lake, tmp_path, monkeypatch, request_kind):
    from mobility.rights.erase import erase
    from mobility.rights.rectify import rectify
    from mobility.rights.rekey import rotate
    from mobility.rights.retention import enforce

    agreement = make_agreement(tmp_path)
    monkeypatch.setenv("MOBILITY_KEY_TEST", "11" * 32)
    monkeypatch.setenv("MOBILITY_NEW_KEY", "22" * 32)
    storage.write_bytes(Lake(s3_lake).root / "office" / "manifests" / "r1.json", b"{}")
    calls = {"erasure": lambda: erase(agreement, s3_lake, pseudonym=PSEUDONYM),
             "rectification": lambda: rectify(agreement, s3_lake, pseudonym=PSEUDONYM, changes=["sex=F"]),
             "retention": lambda: enforce(agreement, s3_lake),
             "key rotation": lambda: rotate(agreement, s3_lake, "k-new")}
    with pytest.raises(StorageError, match=f"the {request_kind} request .* is not supported on a lake on object "
                                           "storage") as refused:
        calls[request_kind]()
    assert "nothing was changed" in str(refused.value) and s3_lake in str(refused.value)
    from pyspark.sql import SparkSession

    assert SparkSession.getActiveSession() is None  # refused before any Spark work
    if request_kind in ("erasure", "rectification"):  # their refusals are recorded, as any refusal
        assert [(r["request"], r["outcome"], r["detail"]) for r in log.read(s3_lake)] == [
            ("erase" if request_kind == "erasure" else "rectify", "refused", "StorageError")]


def test_the_cli_refuses_erasure_on_s3_in_one_message(s3_lake, tmp_path, monkeypatch):
    from mobility.cli import main

    agreement = make_agreement(tmp_path)
    monkeypatch.setenv("MOBILITY_KEY_TEST", "11" * 32)
    result = CliRunner().invoke(main, ["rights", "erase", "--agreement", str(agreement), "--lake", s3_lake,
                                       "--pseudonym", PSEUDONYM])
    assert result.exit_code == 2, result.output
    assert "is not supported on a lake on object storage" in result.output and "Traceback" not in result.output


def test_an_export_to_object_storage_and_a_witness_there_are_refused(s3_lake, tmp_path):
    from mobility.privacy_budget.witness import Witness
    from mobility.publish.export import export_release

    with pytest.raises(StorageError, match="an export is written to a folder, not to object storage"):
        export_release(s3_lake, "flows-2024-05", "csv", "s3://mobility-test/exports")
    with pytest.raises(LedgerIntegrityError, match="the ledger witness must be a folder"):
        Witness("s3://mobility-test/witness")
