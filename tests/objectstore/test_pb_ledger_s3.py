"""The privacy-budget ledger and the release boundary on a lake on S3-compatible object storage.

No host lock exists there: only the commit (a PUT with If-None-Match: *) makes a charge atomic, so
racing processes must still charge exactly what the caps allow, each version once.
"""

from __future__ import annotations

import multiprocessing as mp

import pytest

from mobility import storage
from mobility.errors import BudgetExceededError
from mobility.lake import Lake
from mobility.privacy_budget import Ledger, publish
from mobility.privacy_budget.audit import verify
from mobility.privacy_budget.stored import open_release, release_ids
from objectstore_helpers import charge_request
from pb_helpers import CAPS, POLICY, flows, request

pytestmark = pytest.mark.objectstore


def _race(root: str, env: dict, release_id: str, barrier, results) -> None:
    import os

    os.environ.update(env)
    from mobility.lake import Lake as ChildLake
    from mobility.privacy_budget import Ledger as ChildLedger

    barrier.wait()
    try:
        entry = ChildLedger(ChildLake(root).ledger).charge(charge_request(release_id), POLICY)
        results.put((release_id, "charged", entry.seq))
    except BudgetExceededError:
        results.put((release_id, "refused", None))
    except Exception as exc:  # surfaces in the parent's assertion
        results.put((release_id, "error", repr(exc)))


def test_racing_processes_charge_each_version_once_and_never_exceed_a_cap(s3_lake, s3_env):
    assert CAPS.rho_per_data_month == pytest.approx(1.0)
    workers = 6
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    # spend 0.7 first, so 3 of the 6 racing charges of 0.1 fit
    Ledger(Lake(s3_lake).ledger).charge(charge_request("before", rho=0.7), POLICY)
    procs = [ctx.Process(target=_race, args=(s3_lake, s3_env, f"race-{i}", barrier, results)) for i in range(workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [o for o in outcomes if o[1] == "error"], outcomes
    assert sorted(kind for _, kind, _ in outcomes) == ["charged"] * 3 + ["refused"] * 3, outcomes
    assert sorted(seq for _, kind, seq in outcomes if kind == "charged") == [3, 4, 5]  # 1 policy, 2 "before"
    ledger = Ledger(Lake(s3_lake).ledger)
    assert ledger.shared  # no host lock on object storage
    entries, version = ledger.read()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5] and version == 4  # one Delta version per entry
    assert ledger.spent_by(CAPS.population).month("2024-05") == pytest.approx(1.0)
    report = verify(s3_lake, caps={"PHL-DEMO": CAPS})
    assert report.ok and report.entries == 5, report.summary()


def test_a_release_is_published_on_s3_and_verified(s3_lake):
    result = publish(s3_lake, request(), {"flows": flows()}, POLICY)
    assert not result.reused and storage.uri(result.path) == f"{s3_lake}/releases/flows-2024-05"
    lake = Lake(s3_lake)
    assert release_ids(lake) == ["flows-2024-05"]
    assert not lake.release_stage("flows-2024-05").is_dir()  # the stage is removed once published
    stored = open_release(lake, "flows-2024-05")
    assert stored.problems == [] and stored.publication is not None
    assert stored.tables["flows"]["count"].sum() == result.tables["flows"]["count"].sum()
    again = publish(s3_lake, request(), {"flows": flows()}, POLICY)
    assert again.reused and again.charge.seq == result.charge.seq
    report = verify(s3_lake, caps={"PHL-DEMO": CAPS})
    assert report.ok and report.releases == 1, report.summary()


def test_a_release_interrupted_while_uploading_is_completed_from_its_stage(s3_lake, monkeypatch):
    from mobility.privacy_budget import boundary

    uploads = []
    real = storage.upload_folder

    def crash_after_two_files(local, target, *, last=None):
        if last == "manifest.json":  # the release itself, not its stage
            files = sorted(p for p in local.iterdir() if p.name != last)[:2]
            for path in files:
                storage.write_bytes(target / path.name, path.read_bytes())
            uploads.append([p.name for p in files])
            raise KeyboardInterrupt("killed while uploading")
        real(local, target, last=last)

    monkeypatch.setattr(boundary.storage, "upload_folder", crash_after_two_files)
    with pytest.raises(KeyboardInterrupt):
        publish(s3_lake, request(), {"flows": flows()}, POLICY)
    lake = Lake(s3_lake)
    assert uploads and (lake.release_dir("flows-2024-05") / uploads[0][0]).is_file()
    assert not (lake.release_dir("flows-2024-05") / "manifest.json").is_file()  # no commit marker: no release
    assert (lake.release_stage("flows-2024-05") / "stage.json").is_file()
    staged = (lake.release_stage("flows-2024-05") / "flows.parquet").read_bytes()
    report = verify(s3_lake)
    assert not report.ok  # a folder without its manifest is not a release
    monkeypatch.setattr(boundary.storage, "upload_folder", real)
    done = publish(s3_lake, request(), {"flows": flows()}, POLICY)
    assert done.reused and done.manifest.get("resumed")  # from the stage: no new noise, no new charge
    assert Ledger(lake.ledger).read()[0][-1].status == "published"
    assert [e.status for e in Ledger(lake.ledger).read()[0]] == ["policy", "charged", "published"]
    assert not lake.release_stage("flows-2024-05").is_dir()
    assert staged  # the stage was read, not drawn again
    assert verify(s3_lake, caps={"PHL-DEMO": CAPS}).ok
