"""Fault matrix, publishing: the annual table killed before and after its rename, an export killed before
its record; then the same command again. Post-processing only: no Spark, no noise, no budget."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fault_helpers import kill_all, record_cell, selected_points, slug, without
from mobility.errors import InputContractError
from mobility.privacy_budget import Ledger

pytestmark = [pytest.mark.faults]

YEAR = 2025
EXPORT_FORMAT = "sdmx-csv"
POINTS = {
    "annual:before-rename": ("annual", "files written in a temporary folder, nothing in place: the rerun removes "
                                       "the leftover and derives again; tables and manifest equal an "
                                       "uninterrupted run; nothing charged"),
    "annual:after-rename": ("annual", "in place: the rerun finds it (reused) and changes nothing; tables equal an "
                                      "uninterrupted run; nothing charged"),
    "export:before-record": ("export", "data files written, no record: reading the export is refused; the rerun "
                                       "rewrites them byte for byte and writes the record; files equal an "
                                       "uninterrupted export"),
}


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its SHA-256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def annual_frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Twelve monthly flows releases of 2025 (through the real boundary, no Spark), an annual table and an
    export of one month made without interruption."""
    from mobility.publish.annual import build_annual
    from mobility.publish.export import export_release
    from publish_helpers import agreement, months, publish_month

    root = tmp_path_factory.mktemp("faults-publish")
    agr, path = agreement(root)
    template = root / "template"
    releases = [publish_month(template, agr, period, by=("sex",) if period <= f"{YEAR}-06" else ())
                for period in months(YEAR)]
    reference = root / "reference"
    shutil.copytree(template, reference)
    annual = build_annual(reference, YEAR, agr)
    export_release(template, releases[0].release_id, EXPORT_FORMAT, root / "export-reference")
    return {"root": root, "agreement": agr, "path": path, "template": template, "annual": annual,
            "release_id": releases[0].release_id}


@pytest.fixture(scope="module")
def killed(request, world):
    cells, jobs = {}, {}
    for point in selected_points(request):
        cell = world["root"] / "cells" / slug(point)
        shutil.copytree(world["template"], cell / "lake")
        cells[point] = cell
        stage = POINTS[point][0]
        jobs[point] = (stage, {"lake": cell / "lake", "year": YEAR, "agreement": world["path"]} if stage == "annual"
                       else {"lake": cell / "lake", "release_id": world["release_id"], "format": EXPORT_FORMAT,
                             "out": cell / "out"})
    problems = kill_all(jobs, world["root"] / "logs")
    return {point: (cells[point], problems[point]) for point in cells}


@pytest.mark.parametrize("point", [p for p in POINTS if p.startswith("annual:")])
def test_annual_killed_then_rerun_equals_an_uninterrupted_derivation(world, killed, point, record_property):
    from mobility.publish.annual import build_annual

    record_cell(record_property, "annual", point, POINTS[point][1])
    cell, problem = killed[point]
    assert problem == ""
    lake, reference = cell / "lake", world["annual"]
    derived = lake / "derived" / "annual"
    target = derived / reference.annual_id
    ledger_before = Ledger.of_lake(lake).entries()
    leftovers = list(derived.glob(".tmp-*"))
    assert target.is_dir() == (point == "annual:after-rename")
    assert len(leftovers) == (point == "annual:before-rename")  # the killed attempt's temporary folder
    if leftovers:
        assert (leftovers[0] / "manifest.json").is_file()  # complete, but never in place

    result = build_annual(lake, YEAR, world["agreement"])

    assert result.annual_id == reference.annual_id and result.path == target
    assert result.reused == (point == "annual:after-rename")
    assert sorted(p.name for p in derived.iterdir()) == [reference.annual_id]  # no leftover, nothing twice
    got, expected = annual_frames(target), annual_frames(reference.path)
    assert sorted(got) == sorted(expected)
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)
    assert without(result.manifest) == without(reference.manifest)
    for name in expected:  # the CSV files too, byte for byte
        assert (target / f"{name}.csv").read_bytes() == (reference.path / f"{name}.csv").read_bytes()
    pd.testing.assert_frame_equal(Ledger.of_lake(lake).entries(), ledger_before)  # nothing charged


@pytest.mark.parametrize("point", [p for p in POINTS if p.startswith("export:")])
def test_export_killed_before_its_record_then_rerun_equals_an_uninterrupted_export(world, killed, point,
                                                                                  record_property):
    from mobility.publish.export import export_release, read_export

    record_cell(record_property, "export", point, POINTS[point][1])
    cell, problem = killed[point]
    assert problem == ""
    out, release_id = cell / "out", world["release_id"]
    reference = tree(world["root"] / "export-reference")
    written = tree(out)
    assert written and f"{release_id}.export.json" not in written
    assert all(reference[name] == digest for name, digest in written.items())  # the data, without its record
    with pytest.raises(InputContractError, match="no export"):
        read_export(out, release_id)  # files without a record are not an export

    export_release(cell / "lake", release_id, EXPORT_FORMAT, out)

    assert tree(out) == reference  # every file, the record included, byte for byte; no temporary file left
    back = read_export(out, release_id)
    expected = read_export(world["root"] / "export-reference", release_id)
    assert sorted(back) == sorted(expected)
    for name in expected:
        pd.testing.assert_frame_equal(back[name], expected[name], obj=name)
