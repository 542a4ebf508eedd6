"""Annual tables: sums of the twelve published months, no budget, refusals that name missing months."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mobility.cli import main
from mobility.errors import LedgerIntegrityError, ReleaseRefusedError
from mobility.privacy_budget import verify
from mobility.privacy_budget.intervals import sum_error_bound_95
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
from mobility.publish.annual import build_annual
from publish_helpers import agreement, months, publish_month


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def monthly_csv(lake: Path, period: str, table: str) -> pd.DataFrame:
    """A month's published CSV, read as a portal user would (not through the package)."""
    release = next(p for p in (lake / "releases").iterdir() if p.name.endswith(period))
    return pd.read_csv(release / f"{table}.csv", keep_default_na=False)


def test_annual_measurements_are_the_sums_of_the_twelve_monthly_measurements(year_lake):
    """Sums of the noisy measurements as drawn (negatives included), never of clamped or consistent cells."""
    lake, agr, _ = year_lake
    result = build_annual(lake, 2025, agr)
    for table, keys in (("international", ["from_country", "to_country"]),
                        ("emigrants_by_origin", ["origin_h3_cell"]),
                        ("immigrants_by_destination", ["destination_h3_cell"])):
        # January-June are by sex: their rows for one pair are summed before the months are added
        monthly = pd.concat([monthly_csv(lake, p, f"{table}_noisy") for p in months(2025)])
        expected = monthly.groupby(keys, as_index=False)["noisy_count"].sum().sort_values(keys).reset_index(drop=True)
        got = result.tables[f"{table}_noisy"].sort_values(keys).reset_index(drop=True)
        assert list(got.columns) == keys + ["noisy_count", "low_95", "high_95"]
        assert got[keys].astype(str).equals(expected[keys].astype(str))
        assert got["noisy_count"].tolist() == expected["noisy_count"].tolist()
        stored = pd.read_csv(result.path / f"{table}_noisy.csv", keep_default_na=False)
        assert stored["noisy_count"].sum() == expected["noisy_count"].sum()
        # the consistent annual table: non-negative integers on the same cells
        consistent = pd.read_csv(result.path / f"{table}.csv", keep_default_na=False)
        assert len(consistent) == len(got) and (consistent["count"] >= 0).all()
        assert ((consistent["low_95"] <= consistent["count"]) & (consistent["count"] <= consistent["high_95"])).all()
    sources = result.manifest["derived_from"]
    assert [s["period"] for s in sources] == months(2025)
    for source in sources:
        manifest = lake / "releases" / source["release_id"] / "manifest.json"
        assert hashlib.sha256(manifest.read_bytes()).hexdigest() == source["manifest_sha256"]


def test_annual_consistent_tables_add_up_to_the_national_totals(year_lake):
    lake, agr, _ = year_lake
    result = build_annual(lake, 2025, agr)
    totals = result.tables["totals"].set_index("total")["count"]
    international = result.tables["international"]
    assert international.loc[international["from_country"] == "PHL", "count"].sum() == totals["emigration"]
    assert international.loc[international["to_country"] == "PHL", "count"].sum() == totals["immigration"]
    assert result.tables["emigrants_by_origin"]["count"].sum() == totals["emigration"]
    assert result.tables["immigrants_by_destination"]["count"].sum() == totals["immigration"]
    assert result.manifest["consistency"]["totals"][0]["name"] == "emigration"


def test_annual_charges_nothing_and_keeps_the_ledger_and_releases_byte_for_byte(year_lake):
    lake, agr, _ = year_lake
    before_ledger, before_releases = tree_digest(lake / "ledger"), tree_digest(lake / "releases")
    result = build_annual(lake, 2025, agr)
    again = build_annual(lake, 2025, agr)
    assert tree_digest(lake / "ledger") == before_ledger
    assert tree_digest(lake / "releases") == before_releases
    assert not (lake / "office").exists()  # built from releases alone: there is no office zone here
    assert result.path.parent == lake / "derived" / "annual" and not result.path.is_relative_to(lake / "releases")
    assert again.reused and again.annual_id == result.annual_id
    assert result.manifest["privacy"]["rho"] == 0.0
    assert verify(lake).ok  # the derived folder is not mistaken for an unregistered release


def test_refusal_names_every_missing_month_and_writes_nothing(tmp_path):
    agr, _ = agreement(tmp_path)
    lake = tmp_path / "lake"
    for period in ("2025-01", "2025-02", "2025-12", "2024-03"):  # 2024-03 is another year's March
        publish_month(lake, agr, period)
    with pytest.raises(ReleaseRefusedError) as refused:
        build_annual(lake, 2025, agr)
    message = str(refused.value)
    assert "not released: " + ", ".join(f"2025-{m:02d}" for m in range(3, 12)) + ";" in message
    assert not (lake / "derived" / "annual").exists() or not any((lake / "derived" / "annual").iterdir())


def test_a_later_release_of_a_month_gives_a_new_annual_table(year_lake):
    lake, agr, _ = year_lake
    first = build_annual(lake, 2025, agr)
    publish_month(lake, agr, "2025-05", release_id="flows-test-phl-2025-05-rerun")
    second = build_annual(lake, 2025, agr)
    assert second.annual_id != first.annual_id and not second.reused
    used = {s["period"]: s["release_id"] for s in second.manifest["derived_from"]}
    assert used["2025-05"] == "flows-test-phl-2025-05-rerun"


def test_a_tampered_month_is_refused(year_lake):
    lake, agr, _ = year_lake
    release = next((lake / "releases").glob("*2025-02"))
    path = release / "international.parquet"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(LedgerIntegrityError, match="2025-02"):
        build_annual(lake, 2025, agr)


def test_error_bound_grows_with_the_months_and_cells_summed(year_lake):
    lake, agr, _ = year_lake
    result = build_annual(lake, 2025, agr)
    monthly = [json_tables(lake, p) for p in months(2025)]
    for table in ("international_noisy", "emigrants_by_origin_noisy"):
        annual_bound = result.manifest["tables"][table]["error_bound_95"]
        # twelve independent noises: wider than any one month, narrower than twelve bounds added up
        assert annual_bound > max(m[table]["error_bound_95"] for m in monthly)
        assert annual_bound < sum(m[table]["error_bound_95"] for m in monthly)


def test_error_bound_is_the_exact_bound_of_each_months_cells_under_its_own_noise(year_lake):
    """January-June put four cells (by sex) into each annual pair and September is discrete Laplace:
    the bound convolves exactly those draws (rebuilt here from the monthly manifests and CSVs)."""
    lake, agr, _ = year_lake
    result = build_annual(lake, 2025, agr)
    for table in ("international", "emigrants_by_origin"):
        terms = []
        for period in months(2025):
            release = next(p for p in (lake / "releases").iterdir() if p.name.endswith(period))
            manifest = json.loads((release / "manifest.json").read_text())
            cells = len(monthly_csv(lake, period, table)) // len(result.tables[table])
            terms.append((manifest["mechanism"], manifest["tables"][f"{table}_noisy"]["noise_scale"], cells))
        assert {n for _, _, n in terms} == ({1, 4} if table == "international" else {1})
        assert DISCRETE_LAPLACE in {m for m, _, _ in terms}
        assert result.manifest["tables"][f"{table}_noisy"]["error_bound_95"] == sum_error_bound_95(terms)
    # one month alone would be the per-cell bound stated in that month's manifest
    january = json_tables(lake, "2025-01")["emigrants_by_origin_noisy"]
    assert sum_error_bound_95([(DISCRETE_GAUSSIAN, january["noise_scale"], 1)]) == january["error_bound_95"]


def json_tables(lake: Path, period: str) -> dict:
    release = next(p for p in (lake / "releases").iterdir() if p.name.endswith(period))
    return json.loads((release / "manifest.json").read_text())["tables"]


def test_months_published_before_measurements_were_kept_are_refused(tmp_path, monkeypatch):
    """A format-1 month (counts clamped at 0) cannot be summed honestly: the refusal names it."""
    from mobility.privacy_budget import boundary

    agr, _ = agreement(tmp_path)
    lake = tmp_path / "lake"
    for period in months(2025):
        with monkeypatch.context() as patched:
            if period == "2025-03":
                patched.setattr(boundary, "MANIFEST_FORMAT", "mobility-release-manifest/1")
            publish_month(lake, agr, period)
    with pytest.raises(ReleaseRefusedError, match=r"2025-03 .*set to 0"):
        build_annual(lake, 2025, agr)


def test_cli_annual_prints_the_table_and_cost(year_lake):
    lake, _, agreement_file = year_lake
    result = CliRunner().invoke(main, ["release", "annual", "--lake", str(lake), "--year", "2025",
                                       "--agreement", str(agreement_file)])
    assert result.exit_code == 0, result.output
    assert "no budget charged" in result.output and "international" in result.output
    refused = CliRunner().invoke(main, ["release", "annual", "--lake", str(lake), "--year", "2024",
                                        "--agreement", str(agreement_file)])
    assert refused.exit_code != 0
    assert "not released: 2024-01, 2024-02" in refused.output and "Traceback" not in refused.output
