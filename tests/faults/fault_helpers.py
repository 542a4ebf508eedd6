"""Helpers of the fault matrix: kill a stage in a child process, compare lakes, record the cell.

A plain module with a unique name (no tests here). Each matrix test runs the killed attempt in a
child (``fault_driver.py``, SIGKILLed by ``MOBILITY_FAULT`` at the named point), then the rerun and
the uninterrupted reference in the test process. The children of one module are started together
by its ``killed`` fixture, two at a time: their start-up (a JVM, imports) is most of their cost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest

from mobility.faults import FAULT_ENV

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "fault_driver.py"
PARALLEL = int(os.environ.get("MOBILITY_FAULT_JOBS", "2"))  # children running at once
TIMEOUT_S = 600
# what differs between two runs of the same work: times, durations and Delta versions in manifests
VOLATILE = ("finished", "started", "created", "duration_s", "office_versions")


def slug(point: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", point.lower()).strip("-")


def selected_points(request: pytest.FixtureRequest, param: str = "point") -> list[str]:
    """The ``param`` values of this module's tests that will run (after -k and deselection)."""
    found = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is request.module and callspec is not None and param in callspec.params:
            value = callspec.params[param]
            if value not in found:
                found.append(value)
    return found


def kill_all(jobs: Mapping[str, tuple[str, dict]], logs: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run ``stage`` with ``args`` for every point of ``jobs`` (point -> (stage, args)), each in its own
    child that ``MOBILITY_FAULT=point`` kills there; at most PARALLEL at once. Returns point -> problem
    ('' when the child died of SIGKILL, else its return code and the end of its stderr)."""
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(jobs.items())
    running: list[tuple[str, subprocess.Popen, Path]] = []
    problems: dict[str, str] = {}
    base = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    base.pop(FAULT_ENV, None)
    while pending or running:
        while pending and len(running) < PARALLEL:
            point, (stage, args) = pending.pop(0)
            err = logs / f"{slug(point)}.stderr"
            with open(err, "wb") as fh:
                child = subprocess.Popen([sys.executable, str(DRIVER), stage, json.dumps(args, default=str)],
                                         env={**base, FAULT_ENV: point}, cwd=HERE, stdout=subprocess.DEVNULL,
                                         stderr=fh)
            running.append((point, child, err))
        point, child, err = running.pop(0)
        code = child.wait(timeout=TIMEOUT_S)
        tail = err.read_text(errors="replace")[-3000:]
        problems[point] = "" if code == -signal.SIGKILL else f"return code {code} (not SIGKILL):\n{tail}"
    return problems


def delta_frame(path: Path) -> pd.DataFrame:
    """A Delta table's rows (delta-rs), sorted by every column, index reset."""
    from deltalake import DeltaTable

    frame = DeltaTable(str(path)).to_pandas()
    if len(frame.columns):
        frame = frame.sort_values(list(frame.columns), na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def lake_tables(lake: Path, skip: tuple[str, ...] = ("rights_log",)) -> dict[str, pd.DataFrame]:
    """Every Delta table of both zones, by label (zone/name), as sorted rows."""
    from mobility.lake import Lake
    from mobility.rights.catalog import ZONES, delta_dirs

    out = {}
    for zone in ZONES:
        root = getattr(Lake(lake), zone)
        for path in delta_dirs(root):
            label = f"{zone}/{path.relative_to(root).as_posix()}"
            if path.name not in skip:
                out[label] = delta_frame(path)
    return out


def assert_same_tables(got: Mapping[str, pd.DataFrame], expected: Mapping[str, pd.DataFrame]) -> None:
    """Same tables, same rows (as multisets: both sides sorted), same types."""
    assert sorted(got) == sorted(expected)
    for label in expected:
        assert len(got[label]) == len(expected[label]), label
        pd.testing.assert_frame_equal(got[label], expected[label], obj=label)


def without(manifest: Mapping, keys: tuple[str, ...] = VOLATILE) -> dict:
    return {k: v for k, v in manifest.items() if k not in keys}


def txn_commits(table: Path, app_id: str) -> int:
    """How many commits of a Delta table carry the idempotent-write id ``app_id``."""
    count = 0
    for commit in sorted((Path(table) / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text(encoding="utf-8").splitlines() if line.strip()]
        count += any((a.get("txn") or {}).get("appId") == app_id for a in actions)
    return count


def unreferenced_files(table: Path) -> set[str]:
    """Data files of a table that its current version does not reference (a purge leaves none)."""
    from deltalake import DeltaTable

    from mobility.rights.history import data_files

    referenced = {Path(uri.removeprefix("file://")).resolve() for uri in DeltaTable(str(table)).file_uris()}
    return {p.relative_to(table).as_posix() for p in data_files(table) if p.resolve() not in referenced}


def record_cell(record_property, stage: str, point: str, outcome: str) -> None:
    """One cell of the fault matrix, for the report generator reading --junitxml."""
    record_property("fault_cell", json.dumps({"stage": stage, "point": point, "outcome": outcome}))
