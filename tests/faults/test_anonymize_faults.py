"""Fault matrix, anonymize: the job killed after each table commit and after each manifest, then rerun.

ADR 0003: a rerun with the same run id commits nothing twice (txnAppId) and writes the marker last, so
the tables equal those of an uninterrupted run and nothing of the run is visible before its marker.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from types import SimpleNamespace

import pytest

from fault_helpers import (
    assert_same_tables,
    kill_all,
    lake_tables,
    record_cell,
    selected_points,
    slug,
    txn_commits,
    without,
)
from mobility.lake import Lake, anonymize_txn_id
from mobility.schemas import (
    CELLS_TABLE,
    EVENTS_TABLE,
    OFFICE,
    OPERATOR,
    PAYMENTS_TABLE,
    QUARANTINE_TABLE,
    SUBSCRIBERS_TABLE,
)

pytestmark = [pytest.mark.faults, pytest.mark.spark, pytest.mark.slow]

STAGE = "anonymize"
_SKIPS = "the rerun (same run id) commits nothing twice (txnAppId), re-merges subscribers by key"
POINTS = {
    "anonymize:after-quarantine": f"{_SKIPS}, writes the rest, then the manifests; tables equal an uninterrupted "
                                  "run; no duplicate rows; nothing visible before",
    "anonymize:after-cells": f"{_SKIPS}, writes the rest, then the manifests; tables equal an uninterrupted run; "
                             "no duplicate rows",
    "anonymize:after-events": f"{_SKIPS}, writes the rest, then the manifests; tables equal an uninterrupted run; "
                              "events committed once",
    "anonymize:after-subscribers": f"{_SKIPS}, writes the rest, then the manifests; tables equal an uninterrupted "
                                   "run; no subscriber twice",
    "anonymize:after-payments": f"{_SKIPS}, writes the rest, then the manifests; tables equal an uninterrupted "
                                "run; payments committed once",
    "anonymize:after-tables": "every table committed, no marker: invisible downstream; the rerun commits nothing "
                              "again and writes the manifests; tables equal an uninterrupted run",
    "anonymize:after-operator-manifest": "operator manifest but no office marker: still invisible; the rerun "
                                         "completes the run; tables and manifest equal an uninterrupted run",
    "anonymize:after-office-manifest": "run complete: the rerun returns already_done and writes nothing; tables "
                                       "equal; the rerun removes the stale RUN.started.json",
}
TABLE_OF = {"anonymize:after-quarantine": QUARANTINE_TABLE, "anonymize:after-cells": CELLS_TABLE,
            "anonymize:after-events": EVENTS_TABLE, "anonymize:after-subscribers": SUBSCRIBERS_TABLE,
            "anonymize:after-payments": PAYMENTS_TABLE}
APPENDED = (QUARANTINE_TABLE, CELLS_TABLE, EVENTS_TABLE, PAYMENTS_TABLE)  # written with the run's txnAppId
MANIFESTS_AT = {"anonymize:after-operator-manifest": {OPERATOR},
                "anonymize:after-office-manifest": {OPERATOR, OFFICE}}

def _manifest_files(lake: Path) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for zone in (OPERATOR, OFFICE)
                  for p in (lake / zone / "manifests").glob("*.json"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    """The tiny input of the anonymize tests (every quarantine reason, all four datasets), its agreement,
    and an uninterrupted run of it."""
    from anon_fixtures import make_agreement, make_inputs
    from mobility.anonymize.job import run as anonymize
    from mobility.config import load_agreement
    from mobility.reference import load_boundaries

    root = tmp_path_factory.mktemp("faults-anonymize")
    key = secrets.token_hex(32)
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBILITY_KEY_TEST", key)
    agreement_path = make_agreement(root)
    inputs = make_inputs(root / "input")
    agreement = load_agreement(agreement_path)
    boundaries = load_boundaries()  # once, for the reference and every rerun
    reference = anonymize(agreement, inputs, root / "reference", spark=spark, boundaries=boundaries)
    yield SimpleNamespace(root=root, key=key, agreement=agreement, agreement_path=agreement_path, inputs=inputs,
                          boundaries=boundaries,
                          reference=reference, tables=lake_tables(root / "reference"),
                          manifests=_manifest_files(root / "reference"))
    mp.undo()


@pytest.fixture(scope="module")
def killed(request, world):
    lakes = {point: world.root / "cells" / slug(point) for point in selected_points(request)}
    jobs = {point: (STAGE, {"agreement": world.agreement_path, "input": world.inputs, "lake": lake})
            for point, lake in lakes.items()}
    problems = kill_all(jobs, world.root / "logs", env={"MOBILITY_KEY_TEST": world.key})
    return {point: (lakes[point], problems[point]) for point in lakes}


@pytest.mark.parametrize("point", list(POINTS))
def test_anonymize_killed_at_a_commit_point_then_rerun_equals_an_uninterrupted_run(world, killed, spark, point,
                                                                                   record_property):
    from mobility.anonymize.job import run as anonymize

    record_cell(record_property, STAGE, point, POINTS[point])
    root, problem = killed[point]
    assert problem == ""
    lake, run_id = Lake(root), world.reference.run_id
    manifests = MANIFESTS_AT.get(point, set())
    # what the crash left: the commit the point follows, no marker before the last point, the started marker
    if point in TABLE_OF:
        assert lake.exists(TABLE_OF[point])
    assert lake.run_manifest(OPERATOR, run_id).is_file() == (OPERATOR in manifests)
    assert lake.run_manifest(OFFICE, run_id).is_file() == (OFFICE in manifests)
    assert (run_id in lake.completed_runs()) == (OFFICE in manifests)  # readers see nothing of an unmarked run
    assert lake.started_marker(run_id).is_file()

    result = anonymize(world.agreement, world.inputs, root, spark=spark, boundaries=world.boundaries)

    assert result.run_id == run_id and result.already_done == (OFFICE in manifests)
    assert_same_tables(lake_tables(root), world.tables)
    for spec in APPENDED:  # committed once, whichever attempt did it
        assert txn_commits(lake.table(spec), anonymize_txn_id(run_id)) == 1, spec.name
    assert without(result.manifest) == without(world.reference.manifest)
    assert json.loads(lake.run_manifest(OFFICE, run_id).read_text()) == result.manifest
    assert anonymize(world.agreement, world.inputs, root, spark=spark, boundaries=world.boundaries).already_done
    assert _manifest_files(root) == world.manifests  # the started marker is gone, as after an uninterrupted run
