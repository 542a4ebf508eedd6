"""Several operators, one national table of people: `mobility estimate combine` pools the population
estimates of two operators' flows releases (each in its own lake, checked against its own ledger) and
refuses releases that cannot be combined (no Spark: releases go straight through the boundary)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from estimate_helpers import release_with_factors
from mobility.errors import InputContractError, LedgerIntegrityError
from publish_helpers import HOME

BY = ("sex", "age_band")
TABLES = ("international", "emigrants_by_origin", "immigrants_by_destination")


@pytest.fixture
def two(tmp_path, monkeypatch):
    """Operator A (larger shares, more SIMs per person) and operator B, the same period and query."""
    a = release_with_factors(tmp_path / "a", monkeypatch, "op-a", BY, seed=1, base_share=0.5, multi_sim=1.3)
    b = release_with_factors(tmp_path / "b", monkeypatch, "op-b", BY, seed=2, base_share=0.2, multi_sim=1.1)
    return a, b


def test_cells_are_pooled_over_operators_with_their_shares_and_multi_sim_factors(two, tmp_path):
    from mobility.estimate.combine import combine

    a, b = two
    result = combine([a.path, b.path], tmp_path / "national")
    ma, mb = (r.manifest["tables"]["totals_people"]["derived"]["factors"]["multi_sim_factor"] for r in (a, b))
    assert (ma, mb) == (1.3, 1.1)
    for table in TABLES:
        pa_, pb = a.tables[f"{table}_people"], b.tables[f"{table}_people"]
        shares = pa_["share"] + pb["share"]
        expected = (a.tables[table]["count"] / ma + b.tables[table]["count"] / mb) / shares
        combined = result.tables[f"{table}_people"]
        assert (combined["people"] - expected).abs().max() <= 0.5 + 1e-9
        assert (combined["low_95"] <= combined["people"]).all() and (combined["people"] <= combined["high_95"]).all()
        # pooling is not adding: the national figure sits between the two operators' own estimates
        assert combined["people"].sum() <= max(pa_["people"].sum(), pb["people"].sum()) + len(combined)
        assert combined["people"].sum() >= min(pa_["people"].sum(), pb["people"].sum()) - len(combined)
        on_disk = pd.read_csv(result.out / f"{table}_people.csv", keep_default_na=False)
        assert on_disk["people"].tolist() == combined["people"].tolist()


def test_the_national_interval_is_the_weighted_noise_of_both_operators(two, tmp_path):
    from mobility.estimate.combine import combine
    from mobility.privacy_budget.intervals import Term, half_width_95

    a, b = two
    result = combine([a.path, b.path], tmp_path / "national")
    totals = result.tables["totals_people"].set_index("total")
    international = [a.tables["international"], b.tables["international"]]
    shares = a.tables["international_people"]["share"] + b.tables["international_people"]["share"]
    for total, side in (("emigration", "from_country"), ("immigration", "to_country")):
        part = international[0][side] == HOME
        terms = []
        for release, m in ((a, 1.3), (b, 1.1)):
            scale = release.manifest["tables"]["international_noisy"]["noise_scale"]
            weights = 1 / (m * shares[part])
            terms += [Term(float(w), release.manifest["mechanism"], scale, 1) for w in weights]
        half = half_width_95(terms)
        center = sum(float((r.tables["international_noisy"].loc[part, "noisy_count"] / (m * shares[part])).sum())
                     for r, m in ((a, 1.3), (b, 1.1)))
        assert totals.loc[total, "people"] == max(round(center), 0)
        assert abs(totals.loc[total, "low_95"] - max(center - half, 0)) <= 1
        assert abs(totals.loc[total, "high_95"] - (center + half)) <= 1


def test_the_manifest_names_every_input_and_the_loss_of_a_person_with_both_operators_sims(two, tmp_path):
    from mobility.estimate.combine import combine

    a, b = two
    result = combine([a.path, b.path], tmp_path / "national")
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert [i["agreement_id"] for i in manifest["inputs"]] == ["op-a", "op-b"]
    assert all(i["verified_against_ledger"] for i in manifest["inputs"])
    rho = a.manifest["privacy"]["rho"] + b.manifest["privacy"]["rho"]
    assert f"{rho:.6g}" in manifest["privacy"]["person_with_sims_of_several_operators"]
    assert set(manifest["files"]) == {f"{t}_people.csv" for t in (*TABLES, "totals")}


def test_the_cli_combines_and_prints_the_national_totals(two, tmp_path):
    from mobility.cli import main

    a, b = two
    out = tmp_path / "national"
    run = CliRunner().invoke(main, ["estimate", "combine", "--release", str(a.path), "--release", str(b.path),
                                    "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "national emigration in people" in run.output and str(out) in run.output
    again = CliRunner().invoke(main, ["estimate", "combine", "--release", str(a.path), "--release", str(b.path),
                                      "--out", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output and "Traceback" not in again.output


def test_mismatched_periods_breakdowns_and_missing_estimates_are_refused(two, tmp_path, monkeypatch):
    from mobility.estimate.combine import combine

    a, b = two
    other_month = release_with_factors(tmp_path / "c", monkeypatch, "op-c", BY, period="2024-06")
    other_by = release_with_factors(tmp_path / "d", monkeypatch, "op-d", ("sex",))
    no_factors = release_with_factors(tmp_path / "e", monkeypatch, "op-e", BY, factors=False)
    cases = [([a.path, other_month.path], "period"), ([a.path, other_by.path], "by"),
             ([a.path, no_factors.path], "no population estimates"), ([a.path, a.path], "more than once"),
             ([a.path], "at least two"), ([a.path, tmp_path / "b"], "not a release directory")]
    for i, (paths, says) in enumerate(cases):
        out = tmp_path / f"out-{i}"
        with pytest.raises(InputContractError, match=says):
            combine(paths, out)
        assert not out.exists()


def test_a_release_that_does_not_match_its_ledger_is_refused(two, tmp_path):
    from mobility.estimate.combine import combine

    a, b = two
    tampered = b.path / "international_people.parquet"
    frame = pd.read_parquet(tampered)
    frame["people"] = frame["people"] * 2
    frame.to_parquet(tampered, index=False)
    with pytest.raises(LedgerIntegrityError, match="does not match the ledger"):
        combine([a.path, b.path], tmp_path / "national")
    assert not (tmp_path / "national").exists()


def test_a_release_copied_away_from_its_ledger_is_refused(two, tmp_path):
    from mobility.estimate.combine import combine

    a, b = two
    stray = tmp_path / "stray" / "releases" / b.path.name
    shutil.copytree(b.path, stray)
    with pytest.raises((InputContractError, LedgerIntegrityError)):
        combine([a.path, stray], tmp_path / "national")
