"""The rule over spells (``mobility.residence.spells``) against the reference ``detect_changes``.

The fast path must give exactly what the reference gives on the same daily presence: the same
rows, columns and dtypes. Hypothesis draws many subjects per example (short runs at the borders
of the data, flickering border cells, gaps around ``max_gap_days``, histories shorter than
``initial_days``, ``data_end`` beyond the last day) and several parameter sets; the Spark tests
check the Spark conversion and the Spark rule on one seeded frame each.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobility.errors import InputContractError
from mobility.residence import ResidenceParams, detect_changes, smooth_presence
from mobility.residence.spells import detect_from_spells, spells_from_presence
from test_rules_support import HOME, START, calendar, from_calendar

MANY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the default rule, and a scaled-down one so that short histories reach every decision
PARAMS = [
    ResidenceParams(),
    ResidenceParams(window_days=60, migration_days=40, non_migration_days=20, initial_days=30,
                    initial_resident_nights=15, temporary_min_days=10, max_gap_days=3, min_crossing_nights=3),
    ResidenceParams(window_days=30, migration_days=20, non_migration_days=10, initial_days=20,
                    initial_resident_nights=20, temporary_min_days=5, max_gap_days=0, min_crossing_nights=1),
    ResidenceParams(window_days=120, migration_days=90, non_migration_days=30, initial_days=400,
                    initial_resident_nights=1, temporary_min_days=30, max_gap_days=7, min_crossing_nights=4),
]

COUNTRIES = ["PHL", "SAU", "ARE", "AAA"]  # AAA sorts before home: ties in the initial status
segment = st.tuples(st.sampled_from([*COUNTRIES, None, None]),
                    st.one_of(st.integers(1, 4), st.integers(5, 12), st.integers(13, 400)))
history = st.tuples(st.integers(0, 40), st.lists(segment, min_size=1, max_size=16))


def _presence(histories: list[tuple[int, list]]) -> pd.DataFrame:
    frames = [from_calendar(calendar(*segments), subject=f"s{i:03d}", offset=offset)
              for i, (offset, segments) in enumerate(histories)]
    return pd.concat(frames, ignore_index=True)


def _both(frame: pd.DataFrame, params: ResidenceParams, data_end: dt.date | None = None, home: str = HOME):
    expected = detect_changes(frame, home, params, data_end=data_end)
    got = detect_from_spells(spells_from_presence(frame, params), home, params, data_end=data_end)
    return expected, got


@MANY
@given(st.lists(history, min_size=1, max_size=12), st.sampled_from(PARAMS), st.integers(-1, 900))
def test_rule_over_spells_equals_the_reference(histories, params, beyond):
    frame = _presence(histories)
    if frame.empty:
        return
    end = None if beyond < 0 else max(frame["date"]) + dt.timedelta(days=beyond)
    expected, got = _both(frame.sample(frac=1, random_state=1), params, end)  # input order does not matter
    pd.testing.assert_frame_equal(got, expected)


# border cells: one country's runs of 1-3 nights interleaved with another's, gaps of 0-9 days
flicker = st.lists(st.tuples(st.sampled_from(["PHL", "SAU", "ARE"]), st.integers(1, 3), st.integers(0, 9)),
                   min_size=2, max_size=40)


@MANY
@given(st.lists(st.tuples(st.integers(0, 200), flicker, st.integers(0, 500)), min_size=1, max_size=8),
       st.sampled_from(PARAMS))
def test_spillover_chains_and_gaps_give_the_reference_spells_and_changes(subjects, params):
    rows = []
    for i, (home_days, runs, tail) in enumerate(subjects):
        d = 0
        for country, nights, gap in [("PHL", home_days, 0), *runs, ("SAU", tail, 0)]:
            rows += [(f"b{i}", START + dt.timedelta(days=d + j), country) for j in range(nights)]
            d += nights + gap
    frame = pd.DataFrame(rows, columns=["subject_id", "date", "country"])
    expected, got = _both(frame, params)
    pd.testing.assert_frame_equal(got, expected)
    # spells are smoothed presence, compacted: every smoothed day in exactly one spell
    spells = spells_from_presence(frame, params)
    lengths = [(b - a).days + 1 for a, b in zip(spells["first_date"], spells["last_date"])]
    assert sum(lengths) == len(smooth_presence(frame, params))


@pytest.mark.parametrize("params", PARAMS[:2])
def test_subject_ids_of_any_type_and_home_never_seen(params):
    frame = from_calendar(calendar(("SAU", 500), ("ARE", 400), (None, 20), ("SAU", 300)))
    frame["subject_id"] = 7
    for home in (HOME, "SAU", "ZZZ"):
        expected, got = _both(frame, params, home=home)
        pd.testing.assert_frame_equal(got, expected)


def test_empty_presence_gives_the_reference_empty_frame():
    frame = pd.DataFrame({"subject_id": pd.Series([], dtype=object), "date": pd.Series([], dtype=object),
                          "country": pd.Series([], dtype=object)})
    expected = detect_changes(frame, HOME)
    got = detect_from_spells(spells_from_presence(frame), HOME)
    pd.testing.assert_frame_equal(got, expected)


def test_splitting_a_spell_changes_nothing():
    frame = from_calendar(calendar(("PHL", 400), ("SAU", 200), ("PHL", 30), ("SAU", 600)))
    spells = spells_from_presence(frame)
    first, last = spells.loc[1, "first_date"], spells.loc[1, "last_date"]
    middle = first + (last - first) / 2
    split = pd.concat([spells.drop(index=1), pd.DataFrame({
        "subject_id": ["a", "a"], "country": ["SAU", "SAU"],
        "first_date": [first, middle + dt.timedelta(days=1)], "last_date": [middle, last]})])
    pd.testing.assert_frame_equal(detect_from_spells(split, HOME), detect_from_spells(spells, HOME))
    assert len(detect_from_spells(spells, HOME)) > 0


def test_contract_errors_match_the_reference():
    frame = from_calendar(calendar(("PHL", 400), ("SAU", 50)))
    spells = spells_from_presence(frame)
    with pytest.raises(InputContractError, match="data_end"):
        detect_from_spells(spells, HOME, data_end=dt.date(2021, 6, 1))
    overlapping = spells.copy()
    overlapping.loc[1, "first_date"] = overlapping.loc[0, "last_date"]
    with pytest.raises(InputContractError, match="overlap"):
        detect_from_spells(overlapping, HOME)
    with pytest.raises(InputContractError, match="missing"):
        detect_from_spells(spells.drop(columns="last_date"), HOME)


# ---------------------------------------------------------------------------------------------
# Spark: the conversion of daily presence into spells, and the Spark rule against job.detect_in_spark
# ---------------------------------------------------------------------------------------------

def _seeded_presence(subjects: int, seed: int) -> pd.DataFrame:
    """Histories mixing long stays, trips, flickering border runs and unknown stretches."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(subjects):
        d = int(rng.integers(0, 30))
        for _ in range(int(rng.integers(1, 14))):
            country = rng.choice(["PHL", "PHL", "SAU", "ARE", "QAT", None])
            nights = int(rng.integers(1, 4) if rng.random() < 0.5 else rng.integers(4, 300))
            holes = rng.random() < 0.3
            for j in range(nights):
                if country is not None and not (holes and rng.random() < 0.15):
                    rows.append((f"p{i:04d}", START + dt.timedelta(days=d + j), str(country)))
            d += nights
    return pd.DataFrame(rows, columns=["pseudonym", "date", "country"])


SPARK_PARAMS = [ResidenceParams(), PARAMS[1], ResidenceParams(min_crossing_nights=4, max_gap_days=1)]


@pytest.mark.spark
def test_spark_spells_equal_the_reference_spells(spark):
    from pyspark.sql import functions as F

    from mobility.residence.spells import spells_in_spark

    frame = _seeded_presence(120, seed=20)
    presence = spark.createDataFrame(frame, "pseudonym string, date date, country string")
    # one Spark job for all parameter sets
    spells = [spells_in_spark(presence, params).withColumn("set", F.lit(i)) for i, params in enumerate(SPARK_PARAMS)]
    every = functools.reduce(lambda a, b: a.unionByName(b), spells).toPandas()
    for i, params in enumerate(SPARK_PARAMS):
        got = (every[every["set"] == i].drop(columns="set").rename(columns={"pseudonym": "subject_id"})
               .sort_values(["subject_id", "first_date"]).reset_index(drop=True))
        expected = spells_from_presence(frame.rename(columns={"pseudonym": "subject_id"}), params)
        assert len(expected) > 400
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.mark.spark
def test_spark_fast_path_equals_detect_in_spark(spark):
    from mobility.residence.job import detect_in_spark
    from mobility.residence.spells import detect_in_spark_fast
    from mobility.schemas import RULE_CHANGES

    frame = _seeded_presence(80, seed=21)
    presence = spark.createDataFrame(frame, "pseudonym string, date date, country string")
    data_end = max(frame["date"]) + dt.timedelta(days=40)
    for params in SPARK_PARAMS[:1]:
        fast = detect_in_spark_fast(presence, HOME, params, data_end)
        assert fast.schema == RULE_CHANGES
        key = ["pseudonym", "crossing_date"]
        expected = detect_in_spark(presence, HOME, params, data_end).toPandas().sort_values(key, ignore_index=True)
        got = fast.toPandas().sort_values(key, ignore_index=True)
        assert len(got) > 20
        pd.testing.assert_frame_equal(got, expected)


@pytest.mark.spark
@pytest.mark.parametrize("second, error", [(("p", dt.date(2024, 1, 1), "SAU"), "more than one presence row"),
                                           (("p", dt.date(2024, 1, 2), None), "null date or country")])
def test_spark_spells_refuse_what_the_reference_refuses(spark, second, error):
    from mobility.residence.spells import spells_in_spark

    presence = spark.createDataFrame([("p", dt.date(2024, 1, 1), "PHL"), second],
                                     "pseudonym string, date date, country string")
    with pytest.raises(Exception, match=error):
        spells_in_spark(presence, ResidenceParams()).collect()


def test_numba_cache_goes_to_a_private_temporary_folder_when_the_package_is_read_only(tmp_path, monkeypatch):
    from mobility.residence import spells

    assert spells._cache_dir(tmp_path, {}) is None  # writable: numba's own __pycache__ next to the code
    assert spells._cache_dir(tmp_path, {"NUMBA_CACHE_DIR": "/elsewhere"}) is None  # the operator's choice
    monkeypatch.setattr(spells.os, "access", lambda path, mode: False)  # as a non-root user of the image
    folder = spells._cache_dir(tmp_path, {})
    assert folder is not None and folder.startswith(spells.tempfile.gettempdir())
    assert str(spells.os.getuid()) in folder
