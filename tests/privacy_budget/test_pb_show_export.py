"""show() and export(): the budget views and dumps the CLI prints."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from mobility.errors import ConfigError
from mobility.privacy_budget import accountant, export, publish, show
from mobility.privacy_budget.ledger import COLUMNS, hash_record
from pb_helpers import CAPS, flows, request


def test_show_reports_spent_and_remaining_per_calendar_year(published_lake):
    publish(published_lake, request("flows-2025-01", period="2025-01", rho=0.2), {"flows": flows()}, CAPS)
    view = show(published_lake, "PHL-DEMO", CAPS)
    budget = view["budget"]["PHL-DEMO"]
    assert budget["years"]["2024"]["spent_rho"] == pytest.approx(0.15)
    assert budget["years"]["2025"]["remaining_rho"] == pytest.approx(CAPS.rho_per_year - 0.2)
    assert budget["lifetime"]["remaining_rho"] == pytest.approx(CAPS.rho_lifetime - 0.35)
    assert budget["lifetime"]["remaining_epsilon"] == pytest.approx(
        accountant.rho_to_epsilon(CAPS.rho_lifetime - 0.35, CAPS.delta))
    assert [e["status"] for e in view["entries"]].count("charged") == 4


def test_show_without_caps_and_for_an_unknown_agreement(published_lake):
    view = show(published_lake)
    assert view["budget"]["PHL-DEMO"]["lifetime"] == {"spent_rho": pytest.approx(0.15)}
    assert show(published_lake, "NOBODY")["entries"] == []
    with pytest.raises(ConfigError):
        show(published_lake, caps=CAPS)  # single caps need an agreement


def test_exports_carry_every_column_and_recomputable_hashes(published_lake):
    records = json.loads(export(published_lake, "json"))
    assert [r["seq"] for r in records] == list(range(1, 7))
    assert all(hash_record(r) == r["entry_hash"] for r in records)
    frame = pd.read_csv(io.StringIO(export(published_lake, "csv")), keep_default_na=False)
    assert list(frame.columns) == COLUMNS and len(frame) == 6
    assert list(frame["entry_hash"]) == [r["entry_hash"] for r in records]
    with pytest.raises(ConfigError, match="unknown export format"):
        export(published_lake, "xml")
