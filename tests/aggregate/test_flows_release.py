"""Flows through the release boundary: files, refusals that charge nothing, idempotent reruns, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from mobility.aggregate import domains as D
from mobility.aggregate.flows import TABLES
from mobility.cli import main
from mobility.errors import InputContractError, ReleaseRefusedError
from mobility.privacy_budget import Ledger, verify
from mobility.release.flows import check_final, default_release_id, final_from, release_flows
from test_flows_support import (  # noqa: F401  (fixtures)
    CHANGES,
    FINAL_DATA_END,
    MANILA,
    PERIOD,
    agreement,
    agreement_file,
    lake,
    office_template,
    write_residence_manifest,
)

pytestmark = pytest.mark.spark
PSEUDONYMS = {row[0] for row in CHANGES}


def entries(root) -> list:
    return Ledger.of_lake(root).read()[0]


@pytest.fixture(scope="module")
def published(spark, office_template, tmp_path_factory):
    """One release of PERIOD by sex and age band into a lake of its own (one Spark job)."""
    from mobility.config import load_agreement
    from test_flows_support import make_agreement

    root = tmp_path_factory.mktemp("published") / "lake"
    shutil.copytree(office_template / "office", root / "office")
    agreement = load_agreement(make_agreement(root.parent))
    result = release_flows(agreement, root, PERIOD, purpose="migration-statistics", requested_by="analyst",
                           rho=0.05, by="sex,age_band", spark=spark)
    return root, agreement, result


def test_release_holds_every_domain_cell_and_no_pseudonym(published):
    root, agreement, result = published
    assert not result.reused and result.path == root / "releases" / result.release_id
    manifest = json.loads((result.path / "manifest.json").read_text())
    cells = D.cell_domain(agreement.home_country, 5)
    foreign = len(agreement.countries)  # the other listed countries plus OTHER
    expected_rows = {"international": 2 * foreign * len(D.SEX_VALUES) * len(D.AGE_BAND_VALUES),
                     "emigrants_by_origin": len(cells), "immigrants_by_destination": len(cells)}
    published = {**expected_rows, **{f"{n}_noisy": rows for n, rows in expected_rows.items()}, "totals": 2}
    assert {n: t["rows"] for n, t in manifest["tables"].items()} == published
    assert MANILA in cells and len(cells) > 1000  # the real res-5 cover of the Philippines
    for name in TABLES:
        frame = pd.read_csv(result.path / f"{name}.csv", dtype={"count": "int64"}, keep_default_na=False)
        assert len(frame) == expected_rows[name] and (frame["count"] >= 0).all()
        assert not frame.drop(columns=["count", "low_95", "high_95"]).duplicated().any()
    # consistent: subnational cells and the international table's sides add up to the national totals
    totals = pd.read_csv(result.path / "totals.csv").set_index("total")["count"]
    international = pd.read_csv(result.path / "international.csv", keep_default_na=False)
    assert international.loc[international["from_country"] == "PHL", "count"].sum() == totals["emigration"]
    assert emigrants_total(result.path) == totals["emigration"]
    # the two subnational tables are one OpenDP measurement, charged once
    joint = manifest["privacy"]["measurements"]["subnational"]
    assert joint["tables"] == ["emigrants_by_origin", "immigrants_by_destination"]
    assert joint["budget_share"] == agreement.budget.flows_subnational_share
    assert manifest["privacy"]["measurements"]["international"]["budget_share"] == \
        pytest.approx(1 - agreement.budget.flows_subnational_share)
    assert manifest["privacy"]["opendp_rho"] == pytest.approx(manifest["privacy"]["rho"], rel=1e-6)
    emigrants = pd.read_csv(result.path / "emigrants_by_origin.csv", keep_default_na=False)
    assert set(emigrants["origin_h3_cell"]) == set(cells)
    for path in result.path.iterdir():  # neither a pseudonym nor a person-level column anywhere
        raw = path.read_bytes()
        assert not any(p.encode() in raw for p in PSEUDONYMS), path.name
        if path.suffix == ".csv":
            assert "pseudonym" not in raw.decode().splitlines()[0]
    assert manifest["max_contributions"] == 1 and manifest["period"] == PERIOD
    assert set(manifest["input_versions"]) == {"office/residence_changes", "office/subscribers"}
    assert manifest["query"]["by"] == ["sex", "age_band"]
    assert verify(root).ok


def emigrants_total(folder) -> int:
    return int(pd.read_csv(folder / "emigrants_by_origin.csv", keep_default_na=False)["count"].sum())


def test_rerun_returns_the_stored_release(published, spark):
    root, agreement, first = published
    before = entries(root)
    files = {p.name: p.read_bytes() for p in first.path.iterdir()}
    again = release_flows(agreement, root, PERIOD, purpose="migration-statistics", requested_by="analyst",
                          rho=0.05, by="age_band,sex", spark=spark)  # same breakdown, other spelling
    assert again.reused and again.release_id == first.release_id
    # the agreement's policy, then one charge and one publication, no more
    assert [e.status for e in entries(root)] == [e.status for e in before] == ["policy", "charged", "published"]
    assert {p.name: p.read_bytes() for p in again.path.iterdir()} == files
    for name in TABLES:
        pd.testing.assert_frame_equal(again.tables[name], first.tables[name], check_dtype=False)


def test_cli_command_publishes_and_prints_a_summary(lake, agreement_file, spark):
    args = ["--agreement", str(agreement_file), "--lake", str(lake), "--period", PERIOD, "--epsilon", "1.0",
            "--purpose", "migration-statistics", "--requested-by", "analyst"]
    outcome = CliRunner().invoke(main, ["release", "flows", *args])
    assert outcome.exit_code == 0, outcome.output + repr(outcome.exception)
    release_id = default_release_id("test-phl", PERIOD, "migration-statistics", (), epsilon=1.0)
    assert str(lake.resolve() / "releases" / release_id) in outcome.output
    assert "discrete_laplace" in outcome.output and "95% error bound" in outcome.output
    assert "from_country" in outcome.output and "OTHER" in outcome.output
    assert [e.status for e in entries(lake)] == ["policy", "charged", "published"]
    both = CliRunner().invoke(main, ["release", "flows", *args, "--rho", "0.1"])
    assert both.exit_code == 2 and "exactly one budget" in both.output


def test_non_final_period_is_refused_naming_the_month(lake, agreement):
    # April 2024 ends on 04-30; its last crossing is decided 486 days later, on 2025-08-29
    with pytest.raises(ReleaseRefusedError, match="with data through 2025-08") as refusal:
        release_flows(agreement, lake, "2024-04", purpose="migration-statistics", requested_by="analyst", rho=0.05)
    assert "nothing was charged" in str(refusal.value)
    assert entries(lake) == [] and not (lake / "releases").exists()


@pytest.mark.parametrize("purpose, budget, message", [
    ("marketing", {"rho": 0.05}, "migration-statistics, remittance-statistics"),
    ("migration-statistics", {"epsilon": 0.0}, "positive"),
    ("migration-statistics", {"epsilon": -1.0}, "positive"),
    ("migration-statistics", {"rho": float("nan")}, "positive"),
])
def test_bad_requests_are_refused_before_any_charge(tmp_path, agreement, purpose, budget, message):
    with pytest.raises(ReleaseRefusedError, match=message):
        release_flows(agreement, tmp_path, PERIOD, purpose=purpose, requested_by="analyst", **budget)
    assert entries(tmp_path) == [] and not (tmp_path / "releases").exists()


def test_manifest_of_another_table_version_is_refused(lake, agreement, spark):
    for old in (lake / "office" / "residence_manifests").glob("*.json"):
        old.unlink()
    write_residence_manifest(spark, lake, FINAL_DATA_END, version=7)
    with pytest.raises(InputContractError, match="version 0"):
        release_flows(agreement, lake, PERIOD, purpose="migration-statistics", requested_by="a", rho=0.05,
                      spark=spark)
    assert entries(lake) == []


def test_breakdown_needs_the_subscribers_table(lake, agreement, spark):
    shutil.rmtree(lake / "office" / "subscribers")
    with pytest.raises(InputContractError, match="subscribers"):
        release_flows(agreement, lake, PERIOD, purpose="migration-statistics", requested_by="a", rho=0.05,
                      by="sex", spark=spark)
    assert entries(lake) == []


@pytest.mark.parametrize("period", ["2024-01", "2024-02", "2023-02", "2024-12"])
def test_final_from_leaves_a_full_window_after_the_last_crossing(period):
    needed = final_from(period, 487)
    last_day = (pd.Period(period, freq="M").end_time).date()
    assert len(pd.date_range(last_day, needed)) == 487  # crossing day included, as in the residence rule
    check_final(period, needed, 487)  # exactly enough data: releasable
    with pytest.raises(ReleaseRefusedError, match=f"data through {needed:%Y-%m}"):
        check_final(period, needed - dt.timedelta(days=1), 487)


def test_default_release_id_is_deterministic_and_request_specific():
    base = dict(agreement_id="test-phl", period=PERIOD, purpose="migration-statistics", by=("sex",), rho=0.05)
    first = default_release_id(**base)
    assert first == default_release_id(**base) and first.startswith(f"flows-test-phl-{PERIOD}-")
    variants = [dict(base, rho=0.1), dict(base, by=()), dict(base, period="2024-02"),
                dict(base, purpose="remittance-statistics"), dict(base, rho=None, epsilon=0.05)]
    assert len({first, *(default_release_id(**v) for v in variants)}) == len(variants) + 1
