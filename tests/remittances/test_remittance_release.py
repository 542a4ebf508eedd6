"""Remittances through the release boundary on a tiny office zone: cells, bounding, ledger, refusals."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from mobility.aggregate import domains as D
from mobility.aggregate import remittances as R
from mobility.config import load_agreement
from mobility.errors import ReleaseRefusedError
from mobility.privacy_budget import Ledger, verify
from mobility.release.remittances import release_remittances
from remit_helpers import PAYMENTS, PERIOD, pseudonym, write_office

pytestmark = pytest.mark.spark
CELLS = 6 * 4  # the test agreement's six corridors x four channels


def entries(root) -> list:
    return Ledger.of_lake(root).read()[0] if (root / "ledger").exists() else []


@pytest.fixture(scope="module")
def template(spark, tmp_path_factory):
    from agreement_helpers import make_agreement

    previous = spark.conf.get("spark.databricks.delta.snapshotPartitions", None)
    spark.conf.set("spark.databricks.delta.snapshotPartitions", "1")
    base = tmp_path_factory.mktemp("remit")
    root = write_office(base / "template")
    yield root, load_agreement(make_agreement(base))
    if previous is None:
        spark.conf.unset("spark.databricks.delta.snapshotPartitions")
    else:
        spark.conf.set("spark.databricks.delta.snapshotPartitions", previous)


@pytest.fixture
def lake(template, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(template[0] / "office", root / "office")
    return root


@pytest.fixture(scope="module")
def published(spark, template, tmp_path_factory):
    root = tmp_path_factory.mktemp("published") / "lake"
    shutil.copytree(template[0] / "office", root / "office")
    result = release_remittances(template[1], root, PERIOD, purpose="remittance-statistics",
                                 requested_by="analyst", rho=0.5, spark=spark)
    return root, template[1], result


def test_every_corridor_and_channel_is_released_with_integer_counts(published):
    root, agreement, result = published
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert set(manifest["tables"]) == {*R.MEASURES, *(f"{m}_noisy" for m in R.MEASURES), "totals", R.COST_PCT}
    corridors = {(c.sender_country, c.receiver_country) for c in agreement.corridors}
    totals = pd.read_csv(result.path / "totals.csv").set_index("total")["count"]
    for name in R.MEASURES:
        frame = pd.read_csv(result.path / f"{name}.csv", keep_default_na=False)
        assert len(frame) == CELLS and manifest["tables"][name]["rows"] == CELLS
        assert set(zip(frame["sender_country"], frame["receiver_country"])) == corridors
        assert set(frame["channel"]) == {"mobile_money", "card", "agent", "bank"}
        assert frame["count"].dtype == "int64" and (frame["count"] >= 0).all()
        assert frame["count"].sum() == totals[name]  # the corridors add up to the measure's total
        noisy = pd.read_csv(result.path / f"{name}_noisy.csv", keep_default_na=False)
        assert len(noisy) == CELLS and noisy["noisy_count"].dtype == "int64"
    for path in result.path.iterdir():  # no pseudonym anywhere in the release
        assert not any(p["sender_pseudonym"].encode() in path.read_bytes() for p in PAYMENTS), path.name
    assert verify(root).ok


def test_sensitivities_and_budget_split_are_stated_and_add_up(published):
    _, agreement, result = published
    manifest = result.manifest
    bounds = R.Bounds.of(agreement.remittance_bounds)
    for name, d_in in bounds.sensitivities().items():
        assert manifest["tables"][f"{name}_noisy"]["sensitivity"]["d_in"] == d_in
        assert manifest["tables"][f"{name}_noisy"]["budget_share"] == R.SHARES[name]
    assert sum(manifest["tables"][f"{n}_noisy"]["rho"] for n in R.MEASURES) == pytest.approx(0.5)
    assert manifest["privacy"]["opendp_rho"] == pytest.approx(0.5, rel=1e-6)
    assert manifest["query"]["bounding"]["max_transfers_per_sender_month"] == bounds.max_transfers
    assert manifest["privacy"]["rho"] == pytest.approx(0.5)


def test_cost_ratios_carry_an_interval_around_the_estimate(published):
    result = published[2]
    cost = result.tables[R.COST_PCT]
    assert len(cost) == 2 * CELLS and set(cost["amount_band"]) == {R.ALL_BAND, R.NEAR_BAND}
    assert ((cost["cost_pct_low"] >= 0) & (cost["cost_pct_low"] <= cost["cost_pct_high"])
            & (cost["cost_pct_high"] <= 20)).all()
    given = cost.dropna(subset=["mean_cost_pct"])
    assert ((given["cost_pct_low"] <= given["mean_cost_pct"])
            & (given["mean_cost_pct"] <= given["cost_pct_high"])).all()
    info = result.manifest["tables"][R.COST_PCT]["derived"]
    assert info["confidence"] == pytest.approx(0.9)
    assert info["error_bounds_95_used"][R.TRANSFERS] == \
        result.manifest["tables"][f"{R.TRANSFERS}_noisy"]["error_bound_95"]
    # ratios of the measurements as drawn: the denominator column is the noisy measurement itself
    noisy = result.tables[f"{R.TRANSFERS}_noisy"]
    keys = list(R.CORRIDOR_KEYS)
    overall = cost[cost["amount_band"] == R.ALL_BAND].merge(noisy, on=keys)
    assert (overall["noisy_transfers"] == overall["noisy_count"]).all()


def test_ledger_holds_one_charge_and_one_publication_and_a_rerun_adds_nothing(published, spark):
    root, agreement, first = published
    rows = entries(root)
    assert [e.status for e in rows] == ["policy", "charged", "published"]
    assert rows[1].release_id == first.release_id and rows[1].rho == pytest.approx(0.5)
    again = release_remittances(agreement, root, PERIOD, purpose="remittance-statistics", requested_by="analyst",
                                rho=0.5, spark=spark)
    assert again.reused and again.release_id == first.release_id
    assert again.tables[R.TRANSFERS]["count"].tolist() == first.tables[R.TRANSFERS]["count"].tolist()
    assert len(entries(root)) == 3


def test_exact_sums_bound_the_heavy_sender_and_break_down_by_the_sender(spark, template):
    from mobility.aggregate.flows import subscriber_profile

    root, agreement = template
    spec = R.RemittanceSpec(R.corridor_list(agreement.corridors), PERIOD, ("sex", "age_band"), D.AGE_BANDS,
                            R.Bounds.of(agreement.remittance_bounds))
    payments = spark.read.format("delta").load(str(root / "office/payments"))
    transfers = R.corridor_transfers(payments, spec, agreement.time_zone)
    rates, missing = R.load_fx().rates_for(R.fx_keys(transfers))
    assert not missing
    profile = subscriber_profile(spark.read.format("delta").load(str(root / "office/subscribers")), "test-phl")
    tables = R.exact_tables_spark(transfers, profile, spec, rates)
    count = tables[R.TRANSFERS].set_index(spec.keys)[D.COUNT]
    volume = tables[R.VOLUME].set_index(spec.keys)[D.COUNT]
    assert len(count) == CELLS * len(D.SEX_VALUES) * len(D.AGE_BAND_VALUES)
    assert count[("SAU", "PHL", "mobile_money", "M", "25-34")] == 4  # 10 sent, k = 4
    assert volume[("SAU", "PHL", "mobile_money", "M", "25-34")] == 4 * 2000  # each clamped to USD 2,000
    assert count[("ARE", "PHL", "agent", "F", "15-24")] == 1
    assert count[("KWT", "PHL", "bank", "U", "unknown")] == 1  # no subscriber record; last local day counted
    assert count.sum() == 4 + 1 + 2 + 1  # SAU heavy, ARE, KWT + HKG, SGP: other months and corridors left out
    assert pseudonym("heavy") not in "".join(map(str, tables[R.TRANSFERS].to_numpy().ravel()))


def refused(call, root) -> str:
    with pytest.raises(ReleaseRefusedError) as err:
        call()
    assert entries(root) == []  # nothing charged
    return str(err.value)


def test_refusals_charge_nothing_and_say_what_to_do(spark, template, lake, tmp_path, monkeypatch):
    agreement = template[1]

    def release(**kw):
        args = dict(purpose="remittance-statistics", requested_by="analyst", rho=0.1, spark=spark)
        args.update(kw)
        period = args.pop("period", PERIOD)
        return lambda: release_remittances(agreement, lake, period, **args)

    assert "not declared" in refused(release(purpose="marketing"), lake)
    assert "positive" in refused(release(rho=-1.0), lake)
    assert "not complete" in refused(release(period="2024-04"), lake)
    assert "no payments data" in refused(release(period="2023-12"), lake)
    fx = tmp_path / "fx.csv"  # an FX table without the Kuwaiti dinar
    fx.write_text("\n".join(line for line in R.PACKAGED_FX.read_text().splitlines() if not line.startswith("KWD")))
    monkeypatch.setenv("MOBILITY_FX", str(fx))
    message = refused(release(), lake)
    assert "KWD on 2024-03-31" in message and "nothing was charged" in message


def test_cli_refuses_an_incomplete_month_in_one_line(lake, template, monkeypatch):
    from mobility.cli import main

    result = CliRunner().invoke(main, ["release", "remittances", "--agreement", str(template[0].parent / "agreements"
                                                                                     / "test-phl.yaml"),
                                       "--lake", str(lake), "--period", "2024-04", "--rho", "0.1",
                                       "--purpose", "remittance-statistics", "--requested-by", "analyst"])
    assert result.exit_code != 0 and "not complete" in result.output
    assert entries(lake) == []
    assert main.commands["release"].commands["remittances"].name == "remittances"


def test_the_summary_names_each_measurement_and_gives_corridor_sums_with_intervals(published):
    from mobility.release.remittances import describe

    text = describe(published[2], rows=4)
    assert "per noisy cell" in text and "transfers_95" in text and "usd_95" in text
    for name in R.MEASURES:
        assert f"  {name}: {CELLS} cells" in text
