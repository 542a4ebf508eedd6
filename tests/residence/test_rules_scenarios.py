"""The 12-of-16-months rule on hand-built travel histories.

Expected dates are worked out from the rule itself (window of 487 days, 365 counted, more than
122 not counted decides "no migration"), not read back from the implementation.
"""

from __future__ import annotations

import pandas as pd
import pytest

from mobility.errors import InputContractError
from mobility.residence import ResidenceParams, detect_changes
from test_rules_support import HOME, brief, changes, day, presence


def test_departure_with_a_year_abroad_in_sixteen_months():
    rows = changes(presence(("PHL", 400), ("SAU", 500)))
    assert brief(rows) == [("PHL", "SAU", day(400), day(400 + 364), "long_term")]
    assert rows[0]["direction"] == "departure"
    assert rows[0]["days_counted"] == 365 and rows[0]["gap_days"] == 0
    assert rows[0]["in_initial_period"] is False


def test_destination_is_the_country_with_most_nights_up_to_the_decision():
    # 100 nights in ARE then SAU: at day 365 abroad SAU has 265 of them
    rows = changes(presence(("PHL", 400), ("ARE", 100), ("SAU", 400)))
    assert brief(rows) == [("PHL", "SAU", day(400), day(764), "long_term")]


def test_arrival_of_a_foreign_resident():
    rows = changes(presence(("SAU", 400), ("PHL", 500)))
    assert brief(rows) == [("SAU", "PHL", day(400), day(764), "long_term")]
    assert rows[0]["direction"] == "arrival"


def test_returning_emigrant_is_an_arrival_and_may_emigrate_again():
    rows = changes(presence(("PHL", 400), ("SAU", 500), ("PHL", 500), ("ARE", 450)))
    assert brief(rows) == [
        ("PHL", "SAU", day(400), day(764), "long_term"),
        ("SAU", "PHL", day(900), day(1264), "long_term"),
        ("PHL", "ARE", day(1400), day(1764), "long_term"),
    ]


def test_short_home_visit_of_an_emigrant_is_not_an_arrival():
    rows = changes(presence(("PHL", 400), ("SAU", 400), ("PHL", 30), ("SAU", 400)))
    assert brief(rows) == [("PHL", "SAU", day(400), day(764), "long_term")]


@pytest.mark.parametrize("away, kind", [(60, None), (89, None), (90, "temporary"),
                                        (364, "temporary"), (365, "long_term")])
def test_return_before_a_year_is_no_migration(away, kind):
    rows = changes(presence(("PHL", 400), ("SAU", away), ("PHL", 400)))
    if kind is None:
        assert rows == []
        return
    r = rows[0]
    assert r["kind"] == kind
    if kind == "long_term":  # the emigrant's return for 400 days is then an arrival
        assert [(x["direction"], x["crossing_date"]) for x in rows[1:]] == [("arrival", day(765))]
    assert (r["from_country"], r["to_country"], r["crossing_date"]) == ("PHL", "SAU", day(400))
    if kind == "temporary":
        # decided on the 123rd day not abroad, i.e. away + 122 days after the crossing
        assert r["resolved_date"] == day(400 + away + 122)
        assert r["stay_days"] == away and r["days_counted"] == away


def test_interrupted_stays_still_make_twelve_of_sixteen_months():
    rows = changes(presence(("PHL", 400), ("SAU", 200), ("PHL", 30), ("SAU", 200), ("PHL", 300)))
    # 200 abroad, 30 home, then the 165th day of the second stay is the 365th abroad
    assert brief(rows) == [
        ("PHL", "SAU", day(400), day(400 + 200 + 30 + 165 - 1), "long_term"),
        # the final return is open at the end of the data (300 of 365 days at home so far)
        ("SAU", "PHL", day(830), None, "unresolved"),
    ]
    assert rows[0]["stay_days"] == 200
    assert rows[1]["days_counted"] == 300


def test_window_edge_122_home_days_still_migrates_123_do_not():
    rows = changes(presence(("PHL", 400), ("SAU", 200), ("PHL", 122), ("SAU", 200), ("PHL", 400)))
    assert brief(rows)[0] == ("PHL", "SAU", day(400), day(400 + 486), "long_term")

    rows = changes(presence(("PHL", 400), ("SAU", 200), ("PHL", 123), ("SAU", 200), ("PHL", 400)))
    assert brief(rows) == [
        ("PHL", "SAU", day(400), day(600 + 122), "temporary"),
        ("PHL", "SAU", day(723), day(923 + 122), "temporary"),
    ]


def test_crossing_open_at_the_end_of_data_is_unresolved():
    rows = changes(presence(("PHL", 400), ("SAU", 200)))
    assert brief(rows) == [("PHL", "SAU", day(400), None, "unresolved")]
    assert rows[0]["days_counted"] == 200


def test_data_end_makes_silence_unknown():
    frame = presence(("PHL", 400), ("SAU", 200))
    # 50 silent days: still reachable (200 + 237 remaining >= 365), so still unresolved
    rows = changes(frame, data_end=day(649))
    assert brief(rows) == [("PHL", "SAU", day(400), None, "unresolved")]
    assert rows[0]["gap_days"] == 50
    # a whole window later the silence decided it: no migration, and no return -> nothing reported
    assert changes(frame, data_end=day(400 + 500)) == []


def test_data_end_before_the_last_known_day_is_refused():
    with pytest.raises(InputContractError, match="data_end"):
        detect_changes(presence(("PHL", 400)), HOME, data_end=day(10))


def test_trip_running_at_the_data_start_is_not_a_crossing():
    assert changes(presence(("SAU", 60), ("PHL", 400))) == []


def test_unknown_days_count_neither_way():
    rows = changes(presence(("PHL", 400), ("SAU", 300), (None, 100), ("SAU", 100), ("PHL", 200)))
    assert brief(rows)[0] == ("PHL", "SAU", day(400), day(800 + 64), "long_term")
    assert rows[0]["gap_days"] == 100

    # 130 silent days leave only 357 possible days abroad in the window: no migration
    rows = changes(presence(("PHL", 400), ("SAU", 300), (None, 130), ("SAU", 100), ("PHL", 200)))
    assert [r for r in rows if r["kind"] == "long_term"] == []


def test_gaps_up_to_seven_days_inside_a_stay_are_carried():
    sparse = [("SAU", 1), (None, 6)] * 80  # one roaming record a week
    rows = changes(presence(("PHL", 400), *sparse, ("PHL", 200)))
    assert brief(rows)[0] == ("PHL", "SAU", day(400), day(764), "long_term")
    assert rows[0]["gap_days"] == 0

    sparser = [("SAU", 1), (None, 8)] * 60  # eight-day holes are not carried
    rows = changes(presence(("PHL", 400), *sparser, ("PHL", 200)))
    assert [r for r in rows if r["kind"] == "long_term"] == []


def test_gap_across_the_border_is_not_carried_crossing_is_first_night_seen():
    rows = changes(presence(("PHL", 400), (None, 5), ("SAU", 500)))
    assert brief(rows) == [("PHL", "SAU", day(405), day(405 + 364), "long_term")]


def test_single_foreign_nights_at_the_border_are_not_trips():
    border = [("PHL", 9), ("SAU", 1)] * 90
    assert changes(presence(*border)) == []


def test_single_home_nights_abroad_do_not_break_a_stay():
    # a cell on the home side of the border reached from the destination once every 20 nights
    stay = [("SAU", 19), ("PHL", 1)] * 25
    rows = changes(presence(("PHL", 400), *stay, ("SAU", 10)))
    assert brief(rows) == [("PHL", "SAU", day(400), day(764), "long_term")]


def test_initial_status_needs_183_home_nights_in_the_first_year():
    # 183 home nights in the first 365: a resident at home all along, nothing to report
    assert changes(presence(("SAU", 182), ("PHL", 600))) == []
    # 182 home nights: a resident of SAU who arrives on day 183
    rows = changes(presence(("SAU", 183), ("PHL", 600)))
    assert brief(rows) == [("SAU", "PHL", day(183), day(183 + 364), "long_term")]
    assert rows[0]["in_initial_period"] is True


def test_initial_tie_keeps_home():
    rows = changes(presence(("PHL", 150), (None, 65), ("SAU", 600)))
    assert brief(rows) == [("PHL", "SAU", day(215), day(215 + 364), "long_term")]


def test_departure_after_a_observed_home_stay_in_the_first_half_year_is_judged():
    # 100 nights at home first: the residence is observed, so the departure is a migration
    rows = changes(presence(("PHL", 100), ("SAU", 600)))
    assert brief(rows) == [("PHL", "SAU", day(100), day(100 + 364), "long_term")]
    assert rows[0]["in_initial_period"] is True


def test_early_temporary_worker_is_not_read_as_an_arriving_foreigner():
    # leaves after 105 home nights, works abroad 260 days, comes home for good
    rows = changes(presence(("PHL", 105), ("ARE", 260), ("PHL", 600)))
    # decided once 365 days abroad are out of reach: 123 days not abroad after 260 abroad
    assert brief(rows) == [("PHL", "ARE", day(105), day(105 + 260 + 122), "temporary")]


def test_short_first_home_stay_still_reads_as_a_foreign_resident():
    # documented limitation: 60 nights at home then abroad looks like a visitor going back
    assert changes(presence(("PHL", 60), ("SAU", 600))) == []


def test_subjects_are_independent_and_sorted():
    b = presence(("PHL", 400), ("SAU", 500), subject="b")
    a = presence(("SAU", 400), ("PHL", 500), subject="a")
    c = presence(("PHL", 900), subject="c")
    mixed = pd.concat([b, c, a]).sample(frac=1.0, random_state=3)
    rows = changes(mixed)
    assert [(r["subject_id"], r["direction"]) for r in rows] == [("a", "arrival"), ("b", "departure")]
    assert rows == changes(a) + changes(b)


def test_custom_parameters_are_honoured():
    params = ResidenceParams(window_days=30, migration_days=20, non_migration_days=10, initial_days=30,
                             initial_resident_nights=16, temporary_min_days=5)
    rows = changes(presence(("PHL", 40), ("SAU", 25), ("PHL", 40)), params=params)
    assert brief(rows) == [
        ("PHL", "SAU", day(40), day(59), "long_term"),
        ("SAU", "PHL", day(65), day(84), "long_term"),
    ]


def test_output_columns_and_types():
    out = detect_changes(presence(("PHL", 400), ("SAU", 200)), HOME)
    assert list(out.columns[:6]) == ["subject_id", "from_country", "to_country", "crossing_date",
                                     "resolved_date", "kind"]
    assert out["resolved_date"].iloc[0] is None
    empty = detect_changes(presence(("PHL", 10)), HOME)
    assert list(empty.columns) == list(out.columns) and empty.empty


@pytest.mark.parametrize("frame, match", [
    (pd.DataFrame({"subject_id": ["a"], "date": ["2021-01-01"]}), "missing column"),
    (pd.DataFrame({"subject_id": ["a", "a"], "date": ["2021-01-01"] * 2, "country": ["PHL", "SAU"]}),
     "more than one row"),
    (pd.DataFrame({"subject_id": ["a"], "date": ["2021-01-01"], "country": [None]}), "null"),
])
def test_input_contract_errors_say_what_to_do(frame, match):
    with pytest.raises(InputContractError, match=match) as err:
        detect_changes(frame, HOME)
    assert "What to do" in str(err.value)


def test_parameters_must_be_consistent():
    with pytest.raises(ValueError, match="non_migration_days"):
        ResidenceParams(non_migration_days=100)
    with pytest.raises(ValueError):
        ResidenceParams(unknown_knob=1)
    params = ResidenceParams()
    with pytest.raises(ValueError):
        params.window_days = 10  # frozen: one set of parameters per run
