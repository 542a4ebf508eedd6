"""Fault matrix, residence: an incremental run killed after each table write and after its manifest.

A run killed after rewriting a table leaves tables newer than the last manifest; the rerun sees that in
their Delta history and rebuilds from the events, which gives the tables of the uninterrupted
(incremental) run (tests/residence/test_incremental.py holds rebuild and incremental equal).
"""

from __future__ import annotations

import shutil

import pytest

from fault_helpers import assert_same_tables, kill_all, lake_tables, record_cell, selected_points, slug, without
from mobility.lake import Lake
from mobility.residence.job import _state
from mobility.schemas import CHANGES_TABLE, HOME_CELLS_TABLE, PRESENCE_TABLE

pytestmark = [pytest.mark.faults, pytest.mark.spark, pytest.mark.slow]

STAGE = "residence"
RESIDENCE_TABLES = (PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE)
POINTS = {
    "residence:after-presence": "presence rewritten, no manifest: the rerun sees the table changed since the last "
                                "manifest and rebuilds; tables equal an uninterrupted run",
    "residence:after-home-cells": "presence and home cells rewritten, no manifest: the rerun rebuilds; tables equal "
                                  "an uninterrupted run",
    "residence:after-changes": "every table rewritten, no manifest: the rerun rebuilds; tables and manifest equal "
                               "an uninterrupted run",
    "residence:after-manifest": "run complete: the rerun finds no new month, rewrites the changes only for "
                                "undecided pseudonyms; tables equal an uninterrupted run",
}
WROTE = {"residence:after-presence": 1, "residence:after-home-cells": 2, "residence:after-changes": 3,
         "residence:after-manifest": 3}  # how many of RESIDENCE_TABLES the killed run had rewritten


def _residence_tables(lake) -> dict:
    tables = lake_tables(lake)
    return {f"office/{spec.name}": tables[f"office/{spec.name}"] for spec in RESIDENCE_TABLES}


@pytest.fixture(scope="module")
def killed(request, office_world, key_env):
    lakes = {}
    for point in selected_points(request):
        lakes[point] = office_world.root / "residence-cells" / slug(point)
        shutil.copytree(office_world.before_residence, lakes[point])
    jobs = {point: (STAGE, {"agreement": office_world.agreement_path, "lake": lake}) for point, lake in lakes.items()}
    problems = kill_all(jobs, office_world.root / "residence-logs", env={"MOBILITY_KEY_TEST": key_env})
    return {point: (lakes[point], problems[point]) for point in lakes}


@pytest.mark.parametrize("point", list(POINTS))
def test_residence_killed_at_a_commit_point_then_rerun_equals_an_uninterrupted_run(office_world, killed, spark,
                                                                                   point, record_property):
    from mobility.residence.job import run as residence

    record_cell(record_property, STAGE, point, POINTS[point])
    root, problem = killed[point]
    assert problem == ""
    lake, before = Lake(root), Lake(office_world.before_residence)
    reference = office_world.residence
    # what the crash left: the tables it rewrote have a new version; the manifest only after the last point
    rewritten = [spec for spec in RESIDENCE_TABLES if lake.version(spec) != before.version(spec)]
    assert rewritten == list(RESIDENCE_TABLES[:WROTE[point]])
    manifests = {p.name for p in lake.residence_manifests.glob("*.json")}
    assert (reference.manifest_path.name in manifests) == (point == "residence:after-manifest")

    result = residence(office_world.agreement, root, spark=spark)

    assert_same_tables(_residence_tables(root), _residence_tables(office_world.full))
    assert result.run_id == reference.run_id and result.manifest["data_end"] == reference.manifest["data_end"]
    assert result.manifest["processed"] == reference.manifest["processed"]
    if point == "residence:after-manifest":
        assert result.manifest["mode"] == "incremental" and result.manifest["recomputed_months"] == []
    else:
        assert result.manifest["mode"] == "rebuild"
        assert without(result.manifest, ("finished", "duration_s", "office_versions", "mode", "reason",
                                          "recomputed_months")) == \
            without(reference.manifest, ("finished", "duration_s", "office_versions", "mode", "reason",
                                         "recomputed_months"))
    # the manifest describes the tables now current: the next run continues from them
    assert _state(lake, office_world.agreement.agreement_id) == result.manifest
