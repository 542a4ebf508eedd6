"""Daily-presence smoothing: gap carry (same country on both sides only) and border spillover."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mobility.residence import ResidenceParams, smooth_presence
from test_rules_support import day, presence


def _series(frame: pd.DataFrame) -> dict[dt.date, tuple[str, str]]:
    return {r.date: (r.country, r.source) for r in frame.itertuples()}


def test_gap_of_seven_days_is_carried_eight_is_not():
    out = _series(smooth_presence(presence(("PHL", 2), (None, 7), ("PHL", 2), (None, 8), ("PHL", 1))))
    carried = [d for d, (_, s) in out.items() if s == "carried"]
    assert carried == [day(i) for i in range(2, 9)]
    assert all(day(i) not in out for i in range(11, 19))
    assert out[day(19)] == ("PHL", "observed")


def test_gap_across_a_border_stays_unknown():
    out = _series(smooth_presence(presence(("PHL", 3), (None, 3), ("SAU", 3))))
    assert sorted(out) == [day(i) for i in (0, 1, 2, 6, 7, 8)]
    assert {s for _, s in out.values()} == {"observed"}


def test_one_night_blip_takes_the_surrounding_country():
    out = _series(smooth_presence(presence(("PHL", 5), ("SAU", 1), ("PHL", 5))))
    assert out[day(5)] == ("PHL", "spillover_fixed")
    assert sum(1 for c, _ in out.values() if c == "SAU") == 0


def test_blip_across_short_gaps_is_fixed_and_the_gaps_then_carried():
    out = _series(smooth_presence(presence(("PHL", 3), (None, 2), ("SAU", 1), (None, 2), ("PHL", 3))))
    assert out[day(5)] == ("PHL", "spillover_fixed")
    assert [out[day(i)][1] for i in (3, 4, 6, 7)] == ["carried"] * 4


def test_blip_far_from_its_neighbours_is_kept():
    # eight unknown days on one side: too far to call it spillover
    out = _series(smooth_presence(presence(("PHL", 3), (None, 8), ("SAU", 1), ("PHL", 3))))
    assert out[day(11)] == ("SAU", "observed")


def test_two_nights_are_a_stay_not_spillover():
    out = _series(smooth_presence(presence(("PHL", 5), ("SAU", 2), ("PHL", 5))))
    assert [out[day(i)] for i in (5, 6)] == [("SAU", "observed")] * 2
    three = ResidenceParams(min_crossing_nights=3)
    out = _series(smooth_presence(presence(("PHL", 5), ("SAU", 2), ("PHL", 5)), three))
    assert [out[day(i)] for i in (5, 6)] == [("PHL", "spillover_fixed")] * 2


def test_blip_between_two_different_countries_is_kept():
    out = _series(smooth_presence(presence(("PHL", 5), ("ARE", 1), ("SAU", 5))))
    assert out[day(5)] == ("ARE", "observed")


def test_blips_at_the_ends_of_the_data_are_kept():
    out = _series(smooth_presence(presence(("SAU", 1), ("PHL", 5), ("ARE", 1))))
    assert out[day(0)] == ("SAU", "observed") and out[day(6)] == ("ARE", "observed")


def test_alternating_border_nights_collapse_to_the_first_country_not_flip():
    out = smooth_presence(presence(*[("PHL", 1), ("SAU", 1)] * 6, ("PHL", 1)))
    assert set(out["country"]) == {"PHL"}
    assert (out["source"] == "spillover_fixed").sum() == 6


def test_no_carry_with_zero_gap_days():
    params = ResidenceParams(max_gap_days=0)
    out = smooth_presence(presence(("PHL", 2), (None, 1), ("PHL", 2)), params)
    assert len(out) == 4 and set(out["source"]) == {"observed"}


def test_output_contract_and_subjects_kept_apart():
    a = presence(("PHL", 3), (None, 2), ("PHL", 1), subject="a")
    # b starts right after a's gap: carrying must not bridge two subjects
    b = presence(("SAU", 2), subject="b").assign(date=[day(3), day(4)], extra=1)
    out = smooth_presence(pd.concat([b, a]))
    assert list(out.columns) == ["subject_id", "date", "country", "source"]
    assert list(out["subject_id"]) == ["a"] * 6 + ["b"] * 2
    assert all(isinstance(d, dt.date) for d in out["date"])
    assert list(out[out.subject_id == "b"]["source"]) == ["observed", "observed"]
    assert list(out[out.subject_id == "a"]["date"]) == [day(i) for i in range(6)]


def test_datetime64_dates_give_the_same_result():
    frame = presence(("PHL", 3), (None, 3), ("PHL", 3), ("SAU", 1), ("PHL", 2))
    as_ts = frame.assign(date=pd.to_datetime(frame["date"]))
    assert smooth_presence(frame).equals(smooth_presence(as_ts))


def test_empty_input_gives_empty_frame():
    empty = presence(("PHL", 1)).iloc[:0]
    out = smooth_presence(empty)
    assert out.empty and list(out.columns) == ["subject_id", "date", "country", "source"]


def test_sparse_roaming_stay_is_filled_completely():
    # 800 days, one record every third day: every gap is carried
    frame = presence(*[("SAU", 1), (None, 2)] * 267)
    out = smooth_presence(frame)
    assert len(out) == 799 and np.all(out["country"] == "SAU")
