"""Fault matrix, rights: an erasure and a retention run killed between their steps, then run again.

Outcome of every cell: the tables equal those of an uninterrupted run, no superseded file is left (the
purge completed), nothing of the erased person remains outside the suppression list, and the rights
log holds exactly one entry for the request, saying what the whole request did.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from fault_helpers import (
    assert_same_tables,
    delta_frame,
    kill_all,
    lake_tables,
    record_cell,
    selected_points,
    slug,
    unreferenced_files,
)
from mobility.lake import Lake

pytestmark = [pytest.mark.faults, pytest.mark.spark, pytest.mark.slow]

RESUMED = "; completed by a rerun after an interruption"
ERASE = {
    "erase:after-suppression": "suppressed, nothing deleted: the rerun does not suppress twice, deletes, purges, "
                               "logs once; tables equal an uninterrupted erasure; nothing of the person on disk",
    "erase:after-delete": "one table deleted: the rerun deletes the rest; its one log entry counts the rows the "
                          "killed attempt deleted too; tables equal; nothing of the person on disk",
    "erase:before-purge": "rows deleted, old files on disk: the rerun purges them and logs 'done' with the full "
                          "counts (was 'nothing_stored': fixed); tables equal",
    "purge:after-vacuum": "files vacuumed, Delta log statistics not scrubbed: the rerun scrubs them; no pseudonym "
                          "left in any file; one log entry",
    "erase:after-purge": "purged, not logged: the rerun logs the erasure once, with the full counts",
    "erase:after-log": "logged, pending record left: the rerun finds its entry (same request id), does not log "
                       "twice, removes the record",
}
RETENTION = {
    "retention:after-delete": "one table cut: the rerun cuts the rest and purges; its one log entry names every "
                              "table cut, the killed attempt's too; tables equal an uninterrupted run",
    "retention:before-purge": "expired rows deleted, old files on disk: the rerun purges; its log entry names the "
                              "tables cut (was 'nothing older than the cutoff': fixed); tables equal",
    "retention:after-purge": "purged, not logged: the rerun logs once, naming the tables cut",
    "retention:after-log": "logged, pending record left: the rerun does not log twice and removes the record",
}
POINTS = {**{p: ("erase", o) for p, o in ERASE.items()}, **{p: ("retention", o) for p, o in RETENTION.items()}}
CUTOFF = dt.date(2025, 2, 15)


def _comparable(lake: Path) -> dict[str, pd.DataFrame]:
    """Every table, the suppression row's date (the day the erasure ran) aside."""
    tables = lake_tables(lake)
    if "operator/suppression" in tables:
        tables["operator/suppression"] = tables["operator/suppression"].drop(columns=["added_on"])
    return tables


def _cell(base: Path, folder: Path) -> SimpleNamespace:
    """A private copy of the lake and an agreement whose suppression list is the cell's own."""
    from agreement_helpers import make_agreement

    shutil.copytree(base, folder / "lake")
    path = make_agreement(folder, suppression_list=str(folder / "suppressed.txt"))
    return SimpleNamespace(folder=folder, lake=folder / "lake", agreement_path=path)


def _log(lake: Path, request: str) -> list[dict]:
    from mobility.rights.log import read

    return [row for row in read(lake) if row["request"] == request]


def _pending(lake: Path) -> list[str]:
    return sorted(p.name for p in (lake / "operator" / "rights_pending").glob("*.json"))


@pytest.fixture(scope="module")
def world(office_world, key_env, spark):
    """The erased person (the subscriber with most events), and an uninterrupted erasure and retention run."""
    from mobility.anonymize.pseudonymize import load_key, to_e164
    from mobility.config import load_agreement
    from mobility.rights.erase import erase
    from mobility.rights.retention import enforce

    root = office_world.root / "rights"
    subscribers = pd.read_csv(office_world.input / "subscribers" / "subscribers.csv", dtype=str,
                              keep_default_na=False)
    key = load_key(office_world.agreement.key)
    events = Counter(delta_frame(office_world.full / "office" / "events")["pseudonym"])
    numbers = [(events[key.pseudonym(e)], m) for m in subscribers["msisdn"] if (e := to_e164(m, "PH"))]
    count, msisdn = max(numbers)
    assert count > 0
    pseudonym = key.pseudonym(to_e164(msisdn, "PH"))
    erased = _cell(office_world.full, root / "erase-reference")
    report = erase(load_agreement(erased.agreement_path), erased.lake, msisdn=msisdn, spark=spark)
    assert report.rows_deleted.get("office/events") == count
    retained = _cell(office_world.full, root / "retention-reference")
    agreement = load_agreement(retained.agreement_path)
    today = CUTOFF + dt.timedelta(days=agreement.retention_days)
    summary = enforce(agreement, retained.lake, today=today, spark=spark)
    assert summary["deleted"]
    return SimpleNamespace(root=root, base=office_world.full, key=key_env, msisdn=msisdn, pseudonym=pseudonym,
                           today=today, erased=erased, report=report, erase_tables=_comparable(erased.lake),
                           erase_log=_log(erased.lake, "erase"), retained=retained,
                           retention_tables=_comparable(retained.lake), retention_log=_log(retained.lake, "retention"))


@pytest.fixture(scope="module")
def killed(request, world):
    cells, jobs = {}, {}
    for point in selected_points(request):
        stage = POINTS[point][0]
        cell = cells[point] = _cell(world.base, world.root / "cells" / slug(point))
        jobs[point] = (stage, {"agreement": cell.agreement_path, "lake": cell.lake, "msisdn": world.msisdn}
                       if stage == "erase" else
                       {"agreement": cell.agreement_path, "lake": cell.lake, "today": world.today.isoformat()})
    problems = kill_all(jobs, world.root / "logs", env={"MOBILITY_KEY_TEST": world.key})
    return {point: (cells[point], problems[point]) for point in cells}


def _assert_purged(lake: Path) -> None:
    from mobility.rights import catalog

    for table in catalog.tables(Lake(lake)):
        assert unreferenced_files(table.path) == set(), table.label


@pytest.mark.parametrize("point", list(ERASE))
def test_an_erasure_killed_part_way_is_completed_by_running_it_again(world, killed, spark, point, record_property):
    from mobility.config import load_agreement
    from mobility.rights.erase import erase
    from rights_scan import find, number_pattern

    record_cell(record_property, "rights erase", point, ERASE[point])
    cell, problem = killed[point]
    assert problem == ""
    # what the crash left: the request noted as pending, logged only at the last point
    assert len(_pending(cell.lake)) == 1
    assert len(_log(cell.lake, "erase")) == (point == "erase:after-log")

    report = erase(load_agreement(cell.agreement_path), cell.lake, msisdn=world.msisdn, spark=spark)

    assert_same_tables(_comparable(cell.lake), world.erase_tables)
    # the whole erasure's counts, the rows the killed attempt deleted included
    assert (report.rows_deleted, report.values_blanked) == (world.report.rows_deleted, world.report.values_blanked)
    (entry,) = _log(cell.lake, "erase")  # one entry for the request
    (expected,) = world.erase_log
    assert entry["outcome"] == expected["outcome"] == "done" and entry["subject_ref"]
    assert entry["detail"] == expected["detail"] + ("" if point == "erase:after-log" else RESUMED)
    assert _pending(cell.lake) == []
    assert (cell.folder / "suppressed.txt").read_text() == (world.erased.folder / "suppressed.txt").read_text()
    _assert_purged(cell.lake)
    needles = {"pseudonym": re.compile(world.pseudonym[:16]), "number": number_pattern(world.msisdn[-10:])}
    assert [hit for hit in find(cell.lake, needles) if not hit[0].startswith("operator/suppression/")] == []


@pytest.mark.parametrize("point", list(RETENTION))
def test_a_retention_run_killed_part_way_is_completed_by_running_it_again(world, killed, spark, point,
                                                                         record_property):
    from mobility.config import load_agreement
    from mobility.rights.retention import enforce

    record_cell(record_property, "retention", point, RETENTION[point])
    cell, problem = killed[point]
    assert problem == ""
    assert len(_pending(cell.lake)) == 1
    assert len(_log(cell.lake, "retention")) == (point == "retention:after-log")

    summary = enforce(load_agreement(cell.agreement_path), cell.lake, today=world.today, spark=spark)

    assert_same_tables(_comparable(cell.lake), world.retention_tables)
    (entry,) = _log(cell.lake, "retention")
    (expected,) = world.retention_log
    assert entry["outcome"] == "done"
    assert entry["detail"] == expected["detail"] + ("" if point == "retention:after-log" else RESUMED)
    cut = sorted(label for label, v in summary["tables"].items() if v["deleted"])
    assert cut and all(label in expected["detail"] for label in cut)
    assert _pending(cell.lake) == []
    _assert_purged(cell.lake)
