"""Erasure and retention on a lake on S3 (SeaweedFS): the same tables as on a local lake, and no object under
the lake's prefix (data files, Delta commits, checkpoints) holds the erased person afterwards.

One small synthetic delivery, anonymized and run through residence on both lakes, the same person erased on
both, then retention on both (erasure_driver.py, in a fresh interpreter whose Spark session has S3A).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import pytest

from mobility import storage
from mobility.lake import Lake
from mobility.rights import log
from objectstore_helpers import run_python

sys.path.insert(0, str(Path(__file__).parents[1] / "rights"))
sys.path.insert(0, str(Path(__file__).parents[1] / "cluster"))
from cluster_helpers import synthetic_population  # noqa: E402
from rights_scan import find, number_pattern  # noqa: E402

pytestmark = [pytest.mark.objectstore, pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(1800)]

DRIVER = Path(__file__).parent / "erasure_driver.py"
START, MONTHS = "2023-01", 3
SHARES = {"stayer": 0.6, "short_trip": 0.2, "emigrant_long_term": 0.1, "immigrant": 0.1}
SAFE = ("operator/suppression/",)  # the erasure's own record: the keyed pseudonym stays there (docs/rights.md)
DATA_TABLES = ("office/events", "office/subscribers", "office/payments", "office/presence", "office/home_cells",
               "office/residence_changes", "operator/quarantine")


@pytest.fixture(scope="module")
def run(seaweed, tmp_path_factory):
    """The driver's result, with the S3 environment kept set for the tests of this module."""
    import uuid

    from seaweed import BUCKET

    root = tmp_path_factory.mktemp("erasure-s3")
    population = synthetic_population(root / "population", subscribers=12, months=MONTHS, start=START, seed=5,
                                      behaviours=SHARES)
    retention_days = 1095  # the demo agreement's
    today = (dt.date(2023, 2, 1) + dt.timedelta(days=retention_days)).isoformat()  # January expires
    with pytest.MonkeyPatch.context() as mp:
        for name, value in seaweed.env().items():
            mp.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "MOBILITY_SHARED_LAKE"):
            mp.delenv(name, raising=False)
        s3_lake = f"s3://{BUCKET}/erasure-{uuid.uuid4().hex[:8]}"
        local_lake, out = root / "local-lake", root / "out"
        out.mkdir()
        proc = run_python(DRIVER, str(population["agreement"]), str(population["input"]), s3_lake, str(local_lake),
                          str(out), today, cwd=root, extra_env={"MOBILITY_KEY_TEST": population["key"]})
        assert proc.returncode == 0 and (out / "result.json").is_file(), proc.stderr[-4000:]
        result = json.loads((out / "result.json").read_text())
        yield {"s3": s3_lake, "local": str(local_lake), "out": out, "result": result, "log": proc.stderr,
               "cutoff": dt.date(2023, 2, 1)}


def test_erasure_on_s3_leaves_no_object_with_the_person_and_the_local_tables(run):
    result, s3_lake = run["result"], run["s3"]
    assert all(code == 0 for code in result["codes"].values()), (result["codes"], run["log"][-3000:])
    assert result["before"][s3_lake] == result["before"][run["local"]] > 0  # the person had events on both
    for table, by_lake in result["after_erase"].items():
        assert by_lake[s3_lake] == by_lake[run["local"]], table
    # every object under the lake's prefix, as it stood right after the erasure, read byte for byte
    snapshot = run["out"] / "after-erase"
    objects = [p for p in snapshot.rglob("*") if p.is_file()]
    assert any("_delta_log" in p.parts for p in objects)
    needles = {"pseudonym": re.compile(re.escape(result["pseudonym"][:16])),
               "number": number_pattern(result["e164"][3:])}
    hits = find(snapshot, needles)
    assert any(path.startswith(SAFE) for path, _ in hits)  # the scan does find the person where they must stay
    assert [hit for hit in hits if not hit[0].startswith(SAFE)] == []
    assert not any("rights_pending" in p.parts or p.name == "writer.json" for p in objects)
    entries = [r for r in log.read(s3_lake) if r["request"] == "erase"]
    assert [(r["outcome"], r["agreement_id"]) for r in entries] == [("done", "test-phl")]
    assert result["pseudonym"] not in str(log.read(s3_lake)) and result["e164"][3:] not in str(log.read(s3_lake))


def test_retention_on_s3_removes_the_expired_month_and_purges(run):
    from deltalake import DeltaTable

    result, s3_lake = run["result"], run["s3"]
    assert all(code == 0 for code in result["codes"].values()), (result["codes"], run["log"][-3000:])
    for table, by_lake in result["after_retention"].items():
        assert by_lake[s3_lake] == by_lake[run["local"]], table
    assert result["after_retention"]["office/events"][s3_lake]["rows"] < \
        result["after_erase"]["office/events"][s3_lake]["rows"]
    lake = Lake(s3_lake)
    options = storage.delta_options(lake.root)
    events = DeltaTable(f"{s3_lake}/office/events", storage_options=options).to_pandas()
    assert len(events) and events["event_hour"].min().replace(tzinfo=None) >= dt.datetime(2023, 2, 1)
    for name in DATA_TABLES:  # purged: no object the current version does not reference
        path = lake.root / name
        if not (path / "_delta_log").is_dir():
            continue
        referenced = set(DeltaTable(f"{s3_lake}/{name}", storage_options=options).file_uris())
        stored = {storage.uri(p) for p in storage.files(path) if "_delta_log" not in p.parts}
        assert stored == referenced, name
    retention = [r for r in log.read(s3_lake) if r["request"] == "retention"]
    assert [r["outcome"] for r in retention] == ["done"] and "office/events" in retention[0]["detail"]
    assert not storage.lease_path(lake.root).is_file()
