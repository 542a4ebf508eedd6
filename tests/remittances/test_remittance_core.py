"""The pure core: bounding, sensitivities, FX lookup, ratio intervals (no Spark)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.aggregate import domains as D
from mobility.aggregate import remittances as R
from mobility.config import RemittanceBounds
from mobility.errors import ConfigError

CORRIDORS = (("SAU", "PHL"), ("ARE", "PHL"))
DAY = dt.date(2024, 3, 10)
RATES = {("SAR", DAY): 3.75, ("AED", DAY): 3.6725}
BOUNDS = R.Bounds.of(RemittanceBounds())


def spec(bounds=BOUNDS, by=()):
    return R.RemittanceSpec(CORRIDORS, "2024-03", by, D.AGE_BANDS, bounds)


def transfer(sender, amount, currency="SAR", fee=1.0, channel="bank", margin=0.01, hour=0, country="SAU"):
    return {R.SENDER: sender, "txn_time": pd.Timestamp("2024-03-10") + pd.Timedelta(hours=hour), "date": DAY,
            "sender_country": country, "receiver_country": "PHL", "channel": channel, "amount": amount,
            "currency": currency, "fee": fee, "fx_margin": margin}


def test_every_corridor_and_channel_is_a_cell_even_without_transfers():
    tables = R.exact_tables(pd.DataFrame([transfer("x", 750.0)]), spec(), RATES)
    for name in R.MEASURES:
        frame = tables[name]
        assert len(frame) == len(CORRIDORS) * 4
        assert set(map(tuple, frame[["sender_country", "receiver_country"]].values)) == set(CORRIDORS)
        assert set(frame["channel"]) == {"mobile_money", "card", "agent", "bank"}
    assert tables[R.TRANSFERS][D.COUNT].sum() == 1


def test_a_heavy_sender_adds_at_most_k_transfers_of_at_most_the_clamped_amount():
    heavy = [transfer("heavy", 1e7, fee=9e6, hour=h) for h in range(12)]  # fee 90% of the amount
    tables = R.exact_tables(pd.DataFrame(heavy), spec(), RATES)
    assert tables[R.TRANSFERS][D.COUNT].sum() == BOUNDS.max_transfers
    assert tables[R.VOLUME][D.COUNT].sum() == BOUNDS.max_transfers * BOUNDS.amount_cap
    assert tables[R.COST][D.COUNT].sum() == BOUNDS.max_transfers * BOUNDS.cost_cap_bp
    truth = R.exact_tables(pd.DataFrame(heavy), spec(bounds=None), RATES)  # unbounded: all 12, unclamped
    assert truth[R.TRANSFERS][D.COUNT].sum() == 12 and truth[R.VOLUME][D.COUNT].sum() > 12 * 2.6e6


def test_the_first_k_transfers_by_time_are_kept():
    rows = [transfer("s", 75.0 * (h + 1), hour=h) for h in range(6)]  # USD 20, 40, ... 120
    kept = R.bounded(pd.DataFrame(rows[::-1]), BOUNDS)
    assert sorted(kept["amount"]) == [75.0, 150.0, 225.0, 300.0]


def test_near_200_band_and_cost_in_basis_points():
    rows = [transfer("a", 734.50, currency="AED", fee=14.69, channel="agent", country="ARE"),  # USD 200, 3%
            transfer("b", 3750.0, fee=37.5, margin=None)]  # USD 1000, 1%, no margin reported
    tables = R.exact_tables(pd.DataFrame(rows), spec(), RATES)
    near = tables[R.TRANSFERS_NEAR].set_index(["sender_country", "channel"])[D.COUNT]
    assert near[("ARE", "agent")] == 1 and near.sum() == 1
    cost = tables[R.COST].set_index(["sender_country", "channel"])[D.COUNT]
    assert cost[("ARE", "agent")] == 300 and cost[("SAU", "bank")] == 100
    assert tables[R.COST_NEAR][D.COUNT].sum() == 300
    assert tables[R.VOLUME][D.COUNT].sum() == 1200


senders = st.lists(st.tuples(st.sampled_from(["p", "q", "r"]), st.floats(0.01, 1e7), st.floats(0, 1),
                             st.sampled_from(["bank", "card"]), st.sampled_from(["SAU", "ARE"]),
                             st.integers(0, 23), st.one_of(st.none(), st.floats(0, 0.5))),
                   min_size=1, max_size=25)


@settings(max_examples=25, deadline=None)
@given(senders)
def test_removing_one_sender_moves_each_table_by_at_most_its_sensitivity(rows):
    frame = pd.DataFrame([transfer(s, amt, currency={"SAU": "SAR", "ARE": "AED"}[c], fee=amt * f, channel=ch,
                                   margin=m, hour=h, country=c) for s, amt, f, ch, c, h, m in rows])
    full = R.exact_tables(frame, spec(), RATES)
    without = R.exact_tables(frame[frame[R.SENDER] != "p"], spec(), RATES)
    for name, d_in in BOUNDS.sensitivities().items():
        assert full[name][D.COUNT].dtype == "int64"
        assert (full[name][D.COUNT] - without[name][D.COUNT]).abs().sum() <= d_in, name


def test_sensitivities_follow_the_configured_bounds():
    b = R.Bounds.of(RemittanceBounds(max_transfers_per_sender_month=2, amount_max_usd=500.5, cost_max_pct=10))
    assert b.sensitivities() == {R.TRANSFERS: 2, R.VOLUME: 2 * 501, R.COST: 2 * 1000, R.TRANSFERS_NEAR: 2,
                                 R.COST_NEAR: 2 * 1000}
    with pytest.raises(ValueError):
        RemittanceBounds(amount_min_usd=10, amount_max_usd=5)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 200), st.integers(0, 3000), st.integers(0, 30),
       st.floats(-1, 1), st.floats(-1, 1))
def test_ratio_interval_holds_the_exact_ratio_when_noise_is_within_bounds(s, n, bs, bn, us, un):
    s = min(s, 20 * n)  # a mean cost never exceeds the cap (20%)
    noisy_s, noisy_n = max(s + round(us * bs), 0), max(n + round(un * bn), 0)  # clamped like publish
    estimate, low, high = R.ratio_interval(noisy_s, noisy_n, bs, bn, 20.0)
    assert 0 <= low <= high <= 20.0
    if n > 0:
        assert low - 1e-9 <= s / n <= high + 1e-9
    if estimate is not None:
        assert low <= estimate <= high


def test_fx_daily_rate_wins_over_the_monthly_one_and_gaps_are_reported(tmp_path):
    path = tmp_path / "fx.csv"
    path.write_text("currency,date,frequency,units_per_usd,source\n"
                    "SAR,2024-03-01,monthly,3.75,test\nSAR,2024-03-10,daily,3.80,test\n")
    fx = R.load_fx(path)
    assert fx.rate("SAR", DAY) == 3.80 and fx.rate("SAR", dt.date(2024, 3, 11)) == 3.75
    rates, missing = fx.rates_for([("SAR", DAY), ("SAR", dt.date(2024, 4, 1)), ("AED", DAY)])
    assert rates == {("SAR", DAY): 3.80} and missing == [("AED", DAY), ("SAR", dt.date(2024, 4, 1))]


@pytest.mark.parametrize("line, fragment", [
    ("ZZZ,2024-03-01,monthly,1,t", "ISO 4217"), ("SAR,2024-03-02,monthly,3.75,t", "first day"),
    ("SAR,2024-03-01,monthly,-1,t", "positive"), ("SAR,2024-03-01,weekly,3.75,t", "frequency")])
def test_fx_table_errors_name_file_and_line(tmp_path, line, fragment):
    path = tmp_path / "fx.csv"
    path.write_text("currency,date,frequency,units_per_usd,source\n" + line + "\n")
    with pytest.raises(ConfigError) as err:
        R.load_fx(path)
    assert fragment in str(err.value) and f"{path}:2" in str(err.value)


def test_shipped_fx_tables_agree_and_cover_the_synthetic_currencies():
    from pathlib import Path

    from mobility.synth.params import CURRENCIES

    conf = Path(__file__).parents[2] / "conf" / "fx" / "usd-rates.csv"
    assert conf.read_bytes() == R.PACKAGED_FX.read_bytes()
    fx = R.load_fx(R.PACKAGED_FX)
    for code, _, _ in CURRENCIES.values():
        for month in ("2023-01", "2024-08", "2026-12"):
            assert fx.rate(code, dt.date.fromisoformat(month + "-15")) is not None, (code, month)


def test_age_bands_come_from_the_agreement_and_unknown_is_its_own_category(tmp_path):
    from agreement_helpers import make_agreement
    from mobility.config import load_agreement

    agreement = load_agreement(make_agreement(tmp_path, age_bands=[15, 25, 35, 45, 55, 65]))
    bands = D.bands_from(agreement.age_bands)
    assert D.age_band_values(bands) == ("15-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown")
    assert [D.age_band(a, bands) for a in (14, 15, 24, 65, 121, None)] == \
        ["unknown", "15-24", "15-24", "65+", "unknown", "unknown"]
    cells = R.RemittanceSpec(CORRIDORS, "2024-03", ("age_band",), bands, BOUNDS).domain()
    assert len(cells) == len(CORRIDORS) * 4 * 7 and set(cells["age_band"]) == set(D.age_band_values(bands))
    flows = D.international_domain(agreement.countries, "PHL", ("age_band",), bands)
    assert set(flows["age_band"]) == set(D.age_band_values(bands))
    with pytest.raises(ConfigError, match="age_bands"):
        load_agreement(make_agreement(tmp_path / "bad", age_bands=[30, 20]))
