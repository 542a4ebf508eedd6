"""Fault matrix, flows release: the real `mobility release flows` command killed at each point of the
release boundary after its charge, then the same request again (ADR 0012).

Noise is random, so "equal to an uninterrupted run" means here: one charge, one publication, and the
noisy values published are the ones that reached disk before the crash, never drawn again.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from fault_helpers import kill_all, record_cell, selected_points, slug
from mobility.lake import Lake
from mobility.privacy_budget import Ledger, verify
from mobility.privacy_budget.ledger import CHARGED, MANIFEST, PUBLISHED, sha256_file

pytestmark = [pytest.mark.faults, pytest.mark.spark, pytest.mark.slow]

STAGE = "release flows"
RHO = 0.05
POINTS = {
    "release:after-charge": "charged, nothing on disk: the rerun draws the noise under the same charge (no second "
                            "charge) and publishes; one charged and one published entry",
    "release:after-stage": "charged, noise staged: the rerun publishes from the stage, no noise drawn again; the "
                           "published noisy values are the staged ones; one charge",
    "release:after-rename": "release in place, no published entry: the rerun records the publication of the files "
                            "on disk (noise as staged); one charge, one publication",
    "release:after-publication": "published, stage left: the rerun returns the stored release unchanged (no noise, "
                                 "no charge) and removes the stage; ledger verifies",
}
STATUSES_AT = {"release:after-charge": ["policy", CHARGED], "release:after-stage": ["policy", CHARGED],
               "release:after-rename": ["policy", CHARGED], "release:after-publication": ["policy", CHARGED, PUBLISHED]}
NOISE_ON_DISK = ("release:after-stage", "release:after-rename", "release:after-publication")


def _noisy(frames: dict[str, pd.DataFrame]) -> dict[str, list[int]]:
    return {name: frame["noisy_count"].astype("int64").tolist() for name, frame in sorted(frames.items())}


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    """The tiny office zone of the flow-release tests (residence changes, subscribers, a final manifest)."""
    from agreement_helpers import make_agreement
    from mobility.config import load_agreement
    from test_flows_support import PERIOD, write_office

    root = tmp_path_factory.mktemp("faults-release")
    write_office(spark, root / "template")
    path = make_agreement(root)
    return root, path, load_agreement(path), PERIOD


@pytest.fixture(scope="module")
def killed(request, world):
    root, path, _, period = world
    lakes = {}
    for point in selected_points(request):
        lakes[point] = root / "cells" / slug(point)
        shutil.copytree(root / "template", lakes[point])
    jobs = {point: ("flows", {"agreement": path, "lake": lake, "period": period, "rho": RHO})
            for point, lake in lakes.items()}
    problems = kill_all(jobs, root / "logs")
    return {point: (lakes[point], problems[point]) for point in lakes}


@pytest.mark.parametrize("point", list(POINTS))
def test_a_flows_release_command_killed_after_its_charge_is_completed_by_the_same_request(world, killed, spark, point,
                                                                                          record_property):
    from mobility.release.flows import release_flows
    from test_flows_support import CHANGES

    record_cell(record_property, STAGE, point, POINTS[point])
    _, _, agreement, period = world
    root, problem = killed[point]
    assert problem == ""
    lake = Lake(root)
    entries = Ledger.of_lake(root).entries()
    assert list(entries["status"]) == STATUSES_AT[point]
    release_id = entries[entries["status"] == CHARGED]["release_id"].iloc[0]
    stage = lake.release_stage(release_id)
    assert stage.is_dir() == (point in NOISE_ON_DISK)
    assert lake.release_dir(release_id).is_dir() == (point in ("release:after-rename", "release:after-publication"))
    staged = _noisy({p.stem: pd.read_parquet(p) for p in stage.glob("*.parquet")}) if stage.is_dir() else None
    manifest_before = sha256_file(lake.release_dir(release_id) / MANIFEST) \
        if lake.release_dir(release_id).is_dir() else None

    result = release_flows(agreement, root, period, purpose="migration-statistics", requested_by="fault tests",
                           rho=RHO, spark=spark)

    assert result.release_id == release_id
    assert result.reused == (point in NOISE_ON_DISK)  # from what was on disk: no noise drawn
    after = Ledger.of_lake(root).entries()
    assert list(after["status"]) == ["policy", CHARGED, PUBLISHED]  # charged once, published once
    assert after[after["status"] == CHARGED]["rho"].tolist() == [pytest.approx(RHO)]
    measured = {n.removesuffix("_noisy"): f for n, f in result.tables.items() if n.endswith("_noisy")}
    if staged is not None:  # the noise that reached disk is the noise published
        assert _noisy(measured) == staged
    if manifest_before is not None:
        assert sha256_file(result.path / MANIFEST) == manifest_before
    assert not stage.exists() and not list(lake.releases.glob(".tmp-*"))
    assert verify(root).ok
    for path in result.path.iterdir():  # nothing about a person in the release
        assert not any(row[0].encode() in path.read_bytes() for row in CHANGES), path.name
    again = release_flows(agreement, root, period, purpose="migration-statistics", requested_by="fault tests",
                          rho=RHO, spark=spark)
    assert again.reused and _noisy({n: f for n, f in again.tables.items() if n.endswith("_noisy")}) == \
        _noisy({n: f for n, f in result.tables.items() if n.endswith("_noisy")})
