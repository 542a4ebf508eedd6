"""show() and export(): the budget views and dumps the CLI prints."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from mobility.errors import ConfigError
from mobility.privacy_budget import Ledger, accountant, export, publish, show
from mobility.privacy_budget.ledger import COLUMNS, FORMAT2_COLUMNS, hash_record
from pb_helpers import CAPS, POLICY, POPULATION, flows, request


def _spent_2024(budget: dict) -> float:
    return sum(v["spent_rho"] for m, v in budget["data_months"].items() if m.startswith("2024"))


def test_show_reports_spent_and_left_per_population_and_data_month(published_lake):
    publish(published_lake, request("flows-2025-01", period="2025-01", rho=0.2, data_months=("2025-01",)),
            {"flows": flows()}, POLICY)
    view = show(published_lake, "PHL-DEMO", CAPS)
    budget = view["budget"][POPULATION]
    assert budget["caps"] == CAPS.recorded() and budget["caps_source"] == "ledger" and budget["caps_seq"] == 1
    assert budget["agreements"] == ["PHL-DEMO"] and budget["charges"] == 4
    assert _spent_2024(budget) == pytest.approx(0.15)
    month = budget["data_months"]["2025-01"]
    assert month["spent_rho"] == pytest.approx(0.2)
    assert month["remaining_rho"] == pytest.approx(CAPS.rho_per_data_month - 0.2)
    assert budget["lifetime"]["remaining_rho"] == pytest.approx(CAPS.rho_lifetime - 0.35)
    assert budget["lifetime"]["remaining_epsilon"] == pytest.approx(
        accountant.rho_to_epsilon(CAPS.rho_lifetime - 0.35, CAPS.delta))
    assert [e["status"] for e in view["entries"]].count("charged") == 4
    assert view["unassigned"] == {}


def test_show_reads_the_caps_from_the_ledger_and_the_file_only_for_what_it_lacks(published_lake):
    view = show(published_lake)  # no agreement file: the ledger's own policy entry gives the caps
    budget = view["budget"][POPULATION]
    assert budget["lifetime"]["spent_rho"] == pytest.approx(0.15)
    assert budget["lifetime"]["cap_rho"] == CAPS.rho_lifetime
    json.dumps(view, allow_nan=False, default=str)  # what `mobility ledger show --json` prints
    assert show(published_lake, "NOBODY")["entries"] == [] and show(published_lake, "NOBODY")["budget"] == {}
    other = CAPS.model_copy(update={"population": "other-operator"})
    unknown = show(published_lake, "NOBODY", other)["budget"]["other-operator"]
    assert unknown["caps_source"] == "agreement file" and unknown["lifetime"]["spent_rho"] == 0.0
    with pytest.raises(ConfigError):
        show(published_lake, caps=CAPS)  # single caps need an agreement


def test_exports_carry_every_column_and_recomputable_hashes(published_lake):
    records = json.loads(export(published_lake, "json"))
    assert [r["seq"] for r in records] == list(range(1, len(Ledger.of_lake(published_lake).read()[0]) + 1))
    assert all(hash_record(r) == r["entry_hash"] for r in records)
    assert records[0]["status"] == "policy" and json.loads(records[0]["caps"]) == CAPS.recorded()
    frame = pd.read_csv(io.StringIO(export(published_lake, "csv")), keep_default_na=False)
    assert list(frame.columns) == COLUMNS and len(frame) == len(records)
    assert set(FORMAT2_COLUMNS) <= set(frame.columns)
    assert list(frame["entry_hash"]) == [r["entry_hash"] for r in records]
    with pytest.raises(ConfigError, match="unknown export format"):
        export(published_lake, "xml")


def test_the_cli_shows_the_budget_per_population(published_lake):
    from click.testing import CliRunner

    from mobility.cli import main

    runner = CliRunner()
    text = runner.invoke(main, ["ledger", "show", "--lake", str(published_lake)])
    assert text.exit_code == 0, text.output
    assert f"population {POPULATION} (rho per data month 1, lifetime 2" in text.output
    lifetime = next(line for line in text.output.splitlines() if line.strip().startswith("lifetime:"))
    assert "recorded at seq 1" in text.output and "spent_rho=0.15" in lifetime and "remaining_rho=1.85" in lifetime
    as_json = runner.invoke(main, ["ledger", "show", "--lake", str(published_lake), "--json"])
    assert json.loads(as_json.output)["budget"][POPULATION]["charges"] == 3
