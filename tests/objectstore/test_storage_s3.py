"""The storage layer against a real S3-compatible server: objects, listings, conditional writes, the writer lease."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from mobility import storage
from mobility.errors import StorageError
from mobility.lake import Lake, has_commit, read_json, write_json_atomic

pytestmark = pytest.mark.objectstore


def test_a_lake_on_s3_reads_and_writes_its_manifests(s3_lake):
    lake = Lake(s3_lake).ensure()
    assert not lake.local and storage.uri(lake.root) == s3_lake
    assert storage.uri(lake.office_manifests) == f"{s3_lake}/office/manifests"
    assert lake.completed_runs() == {}
    manifest = {"run_id": "r1", "agreement_id": "a", "key_id": "k1", "finished": "2026-01-01", "files": []}
    write_json_atomic(lake.run_manifest("office", "r1"), manifest)
    assert read_json(lake.run_manifest("office", "r1")) == manifest
    assert lake.completed_runs("a") == {"r1": manifest} and lake.key_id("a") == "k1"
    assert Lake(lake.root).root == lake.root  # a lake re-opened from its own root
    storage.remove(lake.run_manifest("office", "r1"))
    assert lake.completed_runs() == {}
    assert not has_commit(lake.root / "office" / "events")


def test_a_missing_bucket_is_refused_not_created(s3_env):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        Lake("s3://no-such-bucket/lake").ensure()
    assert not storage.bucket_exists(Lake("s3://no-such-bucket/lake").root)


def test_a_plain_http_endpoint_needs_allow_http(s3_lake, monkeypatch):
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    with pytest.raises(StorageError, match="AWS_ALLOW_HTTP"):
        Lake(s3_lake)


def test_the_server_honours_conditional_creates(s3_lake):
    path = Lake(s3_lake).root / "once.json"
    storage.create_exclusive(path, b"first")
    with pytest.raises(storage.AlreadyExists):
        storage.create_exclusive(path, b"second")
    assert path.read_bytes() == b"first"
    storage.require_conditional_put(path)  # the probe agrees


def test_a_store_that_ignores_conditional_writes_is_refused(s3_lake, monkeypatch):
    from mobility.privacy_budget import Ledger

    monkeypatch.setattr(storage, "_probed", lambda folder: False)
    with pytest.raises(StorageError, match="does not honour conditional writes"):
        storage.require_conditional_put(Lake(s3_lake).ledger)
    from objectstore_helpers import charge_request
    from pb_helpers import POLICY

    with pytest.raises(StorageError, match="does not honour conditional writes"):
        Ledger(Lake(s3_lake).ledger).charge(charge_request("r1"), POLICY)


def _hold(root: str, seconds: float, started, env: dict) -> None:
    import os

    os.environ.update(env)
    from mobility import storage as child_storage
    from mobility.lake import Lake as ChildLake

    with child_storage.writer_lease(ChildLake(root).root, "holder"):
        started.set()
        time.sleep(seconds)


def test_a_second_writer_waits_for_the_lease_then_is_refused_by_name(s3_lake, s3_env, monkeypatch):
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_hold, args=(s3_lake, 8.0, started, s3_env))
    holder.start()
    try:
        assert started.wait(60)
        monkeypatch.setenv(storage.LEASE_WAIT_ENV, "2")
        began = time.monotonic()
        with pytest.raises(StorageError, match=r"another writer holds the lake's writer lease: holder on host"):
            with storage.writer_lease(Lake(s3_lake).root, "second"):
                pass
        assert time.monotonic() - began >= 2
    finally:
        holder.join(60)
    # released by its holder: the next writer takes it at once
    monkeypatch.setenv(storage.LEASE_WAIT_ENV, "0")
    with storage.writer_lease(Lake(s3_lake).root, "third"):
        assert storage.lease_path(Lake(s3_lake).root).is_file()
        with storage.writer_lease(Lake(s3_lake).root, "nested"):  # re-entrant in one process
            pass
        assert storage.lease_path(Lake(s3_lake).root).is_file()
    assert not storage.lease_path(Lake(s3_lake).root).is_file()


def test_a_stale_lease_of_a_dead_writer_is_taken_over(s3_lake, monkeypatch):
    root = Lake(s3_lake).root
    storage.write_bytes(storage.lease_path(root), b'{"holder": "dead", "host": "gone", "pid": 1, "what": "crashed"}')
    monkeypatch.setenv(storage.LEASE_SECONDS_ENV, "2")  # not renewed for 2 s: its holder is gone
    monkeypatch.setenv(storage.LEASE_WAIT_ENV, "30")
    time.sleep(3)
    with storage.writer_lease(root, "after a crash"):
        assert read_json(storage.lease_path(root))["what"] == "after a crash"
    assert not storage.lease_path(root).is_file()
