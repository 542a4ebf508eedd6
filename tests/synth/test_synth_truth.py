"""The ground truth agrees with what the operator's records show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mobility.reference import plmn_countries
from mobility.schemas import EVENT_TYPES
from mobility.synth.clock import zone_of
from synth_helpers import HOME, parse_instants, to_e164

NIGHT_START_HOUR = 7  # documented: a presence day runs 07:00 to 07:00 local where the person is


@pytest.fixture(scope="module")
def truth(run):
    daily = pd.read_parquet(run.root / "truth/daily_country.parquet")
    daily["date"] = pd.to_datetime(daily["date"]).dt.date
    return {
        "subjects": run.csv("truth/subjects.csv"),
        "daily": daily.astype({"person_id": str, "msisdn": str, "country": str}),
        "changes": run.csv("truth/residence_changes.csv"),
        "faults": run.csv("truth/faults.csv"),
    }


@pytest.fixture(scope="module")
def events(run, truth):
    """Clean CDR rows with their person, serving country and presence date."""
    cdr = run.cdr().drop_duplicates()
    cdr["instant"] = parse_instants(cdr["event_time"])
    plmns = plmn_countries()
    numbers = {m: to_e164(m) for m in cdr["msisdn"].unique()}
    cdr["e164"] = cdr["msisdn"].map(numbers)  # foreign numbers are written in E.164, so the region is moot
    cells = set(run.csv("cells/cells.csv")["cell_id"])
    ok = (cdr["instant"].notna() & cdr["event_type"].isin(EVENT_TYPES) & cdr["e164"].notna()
          & (cdr["cell_id"].isin(cells) | cdr["visited_plmn"].isin(plmns)))
    cdr = cdr[ok].copy()
    owner = {}
    for column in ("msisdn", "dual_msisdn", "new_msisdn"):
        s = truth["subjects"]
        owner.update({m: p for m, p in zip(s[column], s["person_id"]) if m})
    cdr["person_id"] = cdr["e164"].map(owner)
    cdr["country"] = np.where(cdr["visited_plmn"] != "", cdr["visited_plmn"].map(plmns), HOME)
    cdr["date"] = pd.NaT
    parts = []
    for country, rows in cdr.groupby("country"):
        local = rows["instant"].dt.tz_convert(zone_of(country)).dt.tz_localize(None)
        parts.append((local - pd.Timedelta(hours=NIGHT_START_HOUR)).dt.date.rename("date"))
    cdr["date"] = pd.concat(parts)
    return cdr


def test_every_clean_event_belongs_to_a_known_person(events):
    assert events["person_id"].notna().all()


def test_serving_country_is_the_true_country_except_injected_spillover(events, truth):
    daily = truth["daily"].set_index(["person_id", "date"])["country"]
    keyed = events.set_index(["person_id", "date"])
    inside = keyed.index.isin(daily.index)
    truth_country = daily.reindex(keyed.index[inside]).to_numpy()
    served = keyed["country"].to_numpy()[inside]
    spill = truth["faults"][truth["faults"]["kind"] == "border_spillover"]
    spill_keys = set(zip(spill["person_id"], pd.to_datetime(spill["date"]).dt.date))
    mismatch = served != truth_country
    unexplained = [k for k, bad in zip(keyed.index[inside], mismatch) if bad and k not in spill_keys]
    assert not unexplained
    assert (served != HOME).sum() > 100, "roaming events must be present"
    # Spillover nights do show the neighbour's network although the person slept at home.
    neighbour = spill["country"].iloc[0]
    assert (keyed["country"].to_numpy()[inside][mismatch] == neighbour).all()
    assert mismatch.sum() >= 0.8 * spill["events"].astype(int).sum()


def test_decidable_long_term_changes_hold_365_of_487_days(truth):
    daily = truth["daily"].sort_values(["person_id", "date"])
    by_person = {p: g.set_index("date")["country"] for p, g in daily.groupby("person_id")}
    changes = truth["changes"]
    assert (changes["decidable"] == "true").any() and (changes["decidable"] == "false").any()
    for row in changes.itertuples():
        days = by_person[row.person_id]
        crossing = pd.Timestamp(row.crossing_date).date()
        window = days[(days.index >= crossing) & (days.index < crossing + pd.Timedelta(days=487))]
        in_new = int((window == row.to_country).sum())
        assert days.loc[crossing] == row.to_country, "crossing_date is the first night in the new country"
        assert days[days.index < crossing].iloc[-1] == row.from_country
        assert int(row.prior_nights) == int((days[days.index < crossing] == row.from_country).sum())
        if row.kind == "long_term":
            assert (in_new >= 365) == (row.decidable == "true"), row
        else:
            assert in_new <= 364
            if row.decidable == "true":
                assert 90 <= in_new
                assert (days[days.index > crossing] == row.from_country).any()


def test_only_immigrants_are_unobservable_and_their_sim_starts_on_arrival(events, truth):
    changes = truth["changes"].merge(truth["subjects"][["person_id", "behaviour"]], on="person_id")
    assert set(changes.loc[changes["observable"] == "false", "behaviour"]) == {"immigrant"}
    first_seen = events.groupby("person_id")["date"].min()
    for row in changes[changes["behaviour"] == "immigrant"].itertuples():
        if row.person_id in first_seen.index:
            assert first_seen[row.person_id] >= pd.Timestamp(row.crossing_date).date()
    # Observable departures really show roaming on the destination's networks after crossing.
    for row in changes[(changes["direction"] == "departure") & (changes["decidable"] == "true")].itertuples():
        mine = events[(events["person_id"] == row.person_id) & (events["country"] == row.to_country)]
        assert (mine["date"] >= pd.Timestamp(row.crossing_date).date()).any()


def test_person_level_faults_show_in_the_records(events, truth):
    faults, subjects = truth["faults"], truth["subjects"]
    seen = set(zip(events["person_id"], events["date"]))
    silent = faults[faults["kind"] == "silent_day"]
    assert len(silent) and not any((p, pd.Timestamp(d).date()) in seen
                                   for p, d in zip(silent["person_id"], silent["date"]))
    for row in subjects[subjects["new_msisdn"] != ""].itertuples():
        change = pd.Timestamp(row.sim_change_date).date()
        old = events[events["e164"] == row.msisdn]["date"]
        new = events[events["e164"] == row.new_msisdn]["date"]
        assert (old < change).all() and (new >= change).all() and len(new) > 0
    dual = subjects[subjects["dual_msisdn"] != ""]
    assert len(dual)
    for row in dual.itertuples():
        assert (events["e164"] == row.dual_msisdn).sum() > 0 and (events["e164"] == row.msisdn).sum() > 0


def test_inbound_roamers_use_foreign_numbers_on_home_cells(events, truth):
    roamers = truth["subjects"][truth["subjects"]["behaviour"] == "inbound_roamer"]
    mine = events[events["person_id"].isin(roamers["person_id"])]
    assert len(mine) and (mine["cell_id"] != "").all()
    assert not mine["e164"].str.startswith("+63").any()


def test_behaviour_mix_and_daily_truth_are_complete(run, truth):
    subjects, daily = truth["subjects"], truth["daily"]
    assert subjects["behaviour"].value_counts().to_dict() == run.summary.behaviours
    assert all(n > 0 for n in run.summary.behaviours.values())
    days = daily["date"].nunique()
    assert len(daily) == len(subjects) * days
    assert days == (pd.Timestamp("2025-07-01") - pd.Timestamp("2024-01-01")).days
    stayers = set(subjects.loc[subjects["behaviour"] == "stayer", "person_id"])
    assert (daily.loc[daily["person_id"].isin(stayers), "country"] == HOME).all()
