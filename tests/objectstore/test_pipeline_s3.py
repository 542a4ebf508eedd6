"""`mobility anonymize`, `residence` and `release flows` with --lake s3://... against SeaweedFS: the same office
tables as with a local lake; the release published on S3 and `mobility ledger verify` passing there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mobility import storage
from mobility.lake import Lake
from mobility.privacy_budget.stored import open_release, release_ids
from objectstore_helpers import mobility, run_python

sys.path.insert(0, str(Path(__file__).parents[1] / "cluster"))
from cluster_helpers import synthetic_population  # noqa: E402

pytestmark = [pytest.mark.objectstore, pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(3600)]

SHARES = {"stayer": 0.5, "short_trip": 0.1, "emigrant_long_term": 0.2, "temporary_worker": 0.05,
          "returning_migrant": 0.1, "immigrant": 0.03, "inbound_roamer": 0.02}
DRIVER = Path(__file__).parent / "pipeline_driver.py"


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    return synthetic_population(tmp_path_factory.mktemp("objectstore-run"), subscribers=30, months=18,
                                start="2023-01", seed=23, behaviours=SHARES)


@pytest.fixture
def pipeline(population, s3_lake, tmp_path):
    local_lake, result = tmp_path / "local-lake", tmp_path / "result.json"
    proc = run_python(DRIVER, str(population["agreement"]), str(population["input"]), s3_lake,
                      str(local_lake), str(result), cwd=tmp_path, extra_env={"MOBILITY_KEY_TEST": population["key"]})
    assert proc.returncode == 0 and result.is_file(), proc.stderr[-4000:]
    return {"s3": s3_lake, "local": str(local_lake), "result": json.loads(result.read_text()), "log": proc.stderr}


def test_the_pipeline_on_s3_gives_the_local_office_tables_and_a_verified_release(pipeline, population, tmp_path):
    result, s3_lake = pipeline["result"], pipeline["s3"]
    assert all(code == 0 for code in result["codes"].values()), (result["codes"], pipeline["log"][-3000:])
    assert result["s3a"] == storage.S3A and result["jars"], result  # S3A came with the session
    for table, by_lake in result["tables"].items():
        on_s3, local = by_lake[s3_lake], by_lake[pipeline["local"]]
        assert on_s3 == local, table
        if table != "operator/quarantine":
            assert local["rows"] > 0, table
    lake = Lake(s3_lake)
    assert not storage.lease_path(lake.root).is_file()  # every write released the writer lease
    assert len(lake.completed_runs()) == 1 and list(lake.residence_manifests.glob("*.json"))
    (release_id,) = release_ids(lake)
    stored = open_release(lake, release_id)  # checked against the ledger: refused if it did not match
    assert stored.problems == [] and stored.manifest["input_versions"]
    verified = mobility("ledger", "verify", "--lake", s3_lake, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK ledger s3://" in verified.stdout and "1 release directories" in verified.stdout
