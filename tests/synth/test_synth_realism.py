"""The synthetic population behaves like people do: nights, heavy users, towns, monthly remittances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from mobility.reference import load_boundaries
from mobility.synth.params import CURRENCIES
from synth_helpers import HOME, ZONE, parse_instants, to_e164


@pytest.fixture(scope="module")
def home_events(run):
    cdr = run.cdr().drop_duplicates()
    cdr = cdr[cdr["cell_id"] != ""].assign(instant=parse_instants(cdr["event_time"])).dropna(subset=["instant"])
    local = cdr["instant"].dt.tz_convert(ZONE)
    return cdr.assign(hour=local.dt.hour, day=(local - pd.Timedelta(hours=7)).dt.date)


def test_active_days_usually_have_night_events(home_events):
    night = (home_events["hour"] >= 19) | (home_events["hour"] < 7)
    by_day = night.groupby([home_events["imei"], home_events["day"]]).any()
    assert by_day.mean() > 0.6
    hourly = home_events["hour"].value_counts(normalize=True)
    assert hourly.loc[19:22].mean() > 2 * hourly.loc[2:4].mean(), "evening peak, quiet small hours"


def test_activity_is_heavy_tailed(home_events):
    per_sim = home_events.groupby("imei").size().sort_values(ascending=False)
    top = per_sim.iloc[: max(1, len(per_sim) // 10)].sum() / per_sim.sum()
    assert top > 0.2, "the busiest tenth of subscribers produce well over a tenth of the records"


def test_cells_cluster_around_towns(run):
    cells = run.csv("cells/cells.csv").drop_duplicates("cell_id")
    xy = cells[["longitude", "latitude"]].astype(float).to_numpy()
    home = shapely.union_all(load_boundaries().query("iso3 == @HOME").geometry.values)
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = home.bounds
    pts = np.empty((0, 2))
    while len(pts) < len(xy):
        cand = rng.uniform((x0, y0), (x1, y1), (4000, 2))
        pts = np.vstack([pts, cand[shapely.contains_xy(home, cand[:, 0], cand[:, 1])]])

    def mean_nearest(p):
        d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(axis=2))
        np.fill_diagonal(d, np.inf)
        return d.min(axis=1).mean()

    assert mean_nearest(xy) < 0.7 * mean_nearest(pts[: len(xy)])


def test_people_have_plausible_sex_and_age(run):
    subjects = run.csv("truth/subjects.csv")
    assert 0.35 < (subjects["sex"] == "F").mean() < 0.65
    age = 2024 - subjects["birth_year"].astype(int)
    assert age.between(18, 90).all()
    migrants = subjects["behaviour"].isin(["emigrant_long_term", "temporary_worker"])
    assert age[migrants].median() < age[subjects["behaviour"] == "stayer"].median() + 5


def test_migrants_abroad_send_money_home_about_monthly(run):
    subjects, changes = run.csv("truth/subjects.csv"), run.csv("truth/residence_changes.csv")
    pay = run.payments().drop_duplicates()
    pay = pay[pay["receiver_country"] == HOME].copy()
    pay["sender"] = pay["sender_msisdn"].map({m: to_e164(m) for m in pay["sender_msisdn"].unique()})
    pay["month"] = parse_instants(pay["txn_time"]).dt.strftime("%Y-%m")
    leavers = changes[(changes["kind"] == "long_term") & (changes["direction"] == "departure")]
    assert len(leavers)
    for row in leavers.itertuples():
        first_full = (pd.Timestamp(row.crossing_date) + pd.offsets.MonthBegin(1)).strftime("%Y-%m")
        months_abroad = pd.period_range(first_full, "2025-06", freq="M").astype(str)
        sent = pay[(pay["sender"] == row.msisdn) & pay["month"].isin(months_abroad)]
        if len(months_abroad) >= 3:
            assert sent["month"].nunique() >= 0.6 * len(months_abroad), row
            assert (sent["sender_country"] == row.to_country).mean() > 0.8
    remit = pay[(pay["sender_country"] != HOME) & (pay["amount"].astype(float) > 0)]
    remit = remit[remit["currency"] == remit["sender_country"].map(lambda c: CURRENCIES[c][0])]
    usd = remit["amount"].astype(float) / remit["sender_country"].map(lambda c: CURRENCIES[c][2])
    assert usd.between(40, 2100).all() and 100 < usd.median() < 500
    cost = remit["fee"].astype(float) / remit["amount"].astype(float) + remit["fx_margin"].astype(float)
    assert cost.between(0.01, 0.08).all()
    assert (remit["channel"] == "mobile_money").mean() > 0.5
    assert set(subjects["behaviour"]) >= {"emigrant_long_term", "temporary_worker"}
