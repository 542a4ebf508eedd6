"""A release killed (SIGKILL) at each point after its charge, then run again: one charge, one
publication, and noise never drawn twice once any of it reached disk (ADR 0012)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mobility.faults import FAULT_ENV
from mobility.lake import Lake
from mobility.privacy_budget import Ledger, publish, verify
from pb_helpers import POLICY, request

pytestmark = pytest.mark.faults

HERE = Path(__file__).resolve().parent
RELEASE = "flows-2024-05"


def cells() -> pd.DataFrame:
    frame = pd.DataFrame({"cell": [f"c{i:03d}" for i in range(60)]})
    frame["count"] = pd.Series([i % 7 for i in range(60)], dtype="int64")
    return frame


def killed_at(lake: Path, point: str) -> int:
    """Run the release in a child process that SIGKILLs itself at ``point``; its return code."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from mobility.privacy_budget import publish
        from pb_helpers import POLICY, request
        from test_pb_release_crash import cells
        publish({str(lake)!r}, request(), {{"cells": cells()}}, POLICY)
    """)
    env = {**os.environ, FAULT_ENV: point}
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=HERE, timeout=300).returncode


@pytest.mark.parametrize("point, staged, resumed", [
    ("release:after-charge", False, False),  # nothing persisted: the rerun draws under the same charge
    ("release:after-stage", True, True),  # noise on disk: the rerun publishes exactly it
    ("release:after-rename", False, True),  # files in place: the rerun only records the publication
])
def test_a_release_killed_after_its_charge_is_completed_by_a_rerun(tmp_path, point, staged, resumed):
    lake = tmp_path / "lake"
    assert killed_at(lake, point) == -signal.SIGKILL
    entries = Ledger.of_lake(lake).entries()
    assert list(entries["status"]) == ["policy", "charged"]  # charged once, never published
    stage = Lake(lake).release_stage(RELEASE)
    assert stage.is_dir() == (point != "release:after-charge")
    before = pd.read_parquet(stage / "cells.parquet")["noisy_count"].tolist() if stage.is_dir() else None

    result = publish(lake, request(), {"cells": cells()}, POLICY)
    assert result.reused == resumed
    assert list(Ledger.of_lake(lake).entries()["status"]) == ["policy", "charged", "published"]
    assert Ledger.of_lake(lake).spent("PHL-DEMO") == pytest.approx(0.05)  # no second charge
    if before is not None:  # the noise that reached disk is the noise published
        assert result.tables["cells_noisy"]["noisy_count"].tolist() == before
    assert ("resumed" in result.manifest) == staged
    assert not stage.exists() and not list(Lake(lake).releases.glob(".tmp-*"))
    assert verify(lake).ok
    again = publish(lake, request(), {"cells": cells()}, POLICY)
    assert again.reused and again.tables["cells_noisy"].equals(result.tables["cells_noisy"])
