"""The stand-alone recipe in docs/auditor-guide.md works on a real lake and catches tampering."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mobility.lake import Lake
from mobility.privacy_budget import Ledger, verify
from pb_helpers import rewrite_ledger

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "auditor-guide.md"


def _recipe() -> str:
    match = re.search(r"<!-- recipe:verify -->\s*```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert match, "docs/auditor-guide.md lost its verification recipe"
    source = match.group(1)
    assert "mobility" not in source  # it must run without this project
    return source


def _run(lake, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["check_ledger.py", str(lake)])
    exec(compile(_recipe(), "check_ledger.py", "exec"), {"__name__": "__main__"})
    return capsys.readouterr().out


def test_recipe_accepts_a_clean_lake_and_prints_the_tail(published_lake, monkeypatch, capsys):
    out = _run(published_lake, monkeypatch, capsys)
    assert out.startswith("OK: 7 entries") and verify(published_lake).tail_hash in out


def test_recipe_rejects_an_edited_entry(published_lake, monkeypatch, capsys):
    frame = Ledger.of_lake(published_lake).entries()
    frame.loc[frame["seq"] == 3, "purpose"] = "marketing"
    rewrite_ledger(Lake(published_lake).ledger, frame)
    with pytest.raises(AssertionError, match="bad entry seq 3"):
        _run(published_lake, monkeypatch, capsys)


def test_recipe_rejects_an_altered_release_file(published_lake, monkeypatch, capsys):
    csv = Lake(published_lake).releases / "flows-2024-03" / "flows.csv"
    csv.write_text(csv.read_text().replace("PHL", "PHX", 1))
    with pytest.raises(AssertionError, match="flows-2024-03/flows.csv altered"):
        _run(published_lake, monkeypatch, capsys)
