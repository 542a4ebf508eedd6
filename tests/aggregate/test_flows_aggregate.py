"""The exact tables handed to the release boundary: bounding, OTHER, cells, sex and age bands, zeros."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.aggregate import domains as D
from mobility.aggregate.flows import (
    EMIGRANTS,
    IMMIGRANTS,
    INTERNATIONAL,
    FlowSpec,
    exact_tables,
    subscriber_profile,
    tables_from_counts,
    with_demographics,
)
from test_flows_support import (
    CEBU,
    CHANGES,
    CHANGES_DDL,
    DAVAO,
    HOME,
    MANILA,
    PERIOD,
    SUBSCRIBERS,
    SUBSCRIBERS_DDL,
    pseudonym,
)

pytestmark = pytest.mark.spark
COUNTRIES = ("PHL", "SAU", "ARE", "QAT", "KWT", "HKG", "SGP", "MYS", "JPN", "USA")
CELLS = (CEBU, DAVAO, MANILA)  # a small public cell list keeps these tests independent of the boundaries


def spec(by=(), period=PERIOD):
    return FlowSpec(home=HOME, countries=COUNTRIES, period=period, by=tuple(by), cells=CELLS)


@pytest.fixture(scope="module")
def tables(spark):
    """The exact tables of PERIOD without and with the sex/age breakdown (two Spark jobs in all)."""
    changes = spark.createDataFrame(CHANGES, CHANGES_DDL)
    profile = subscriber_profile(spark.createDataFrame(SUBSCRIBERS, SUBSCRIBERS_DDL), "test-phl")
    return {(): exact_tables(changes, None, spec()),
            ("sex", "age_band"): exact_tables(changes, profile, spec(by=("sex", "age_band")))}


def nonzero(frame: pd.DataFrame) -> dict[tuple, int]:
    keys = [c for c in frame.columns if c != "count"]
    hit = frame[frame["count"] > 0]
    return {tuple(row[k] for k in keys): int(row["count"]) for _, row in hit.iterrows()}


@pytest.mark.parametrize("by", [(), ("sex", "age_band")])
def test_every_domain_cell_present_with_zeros(tables, by):
    got = tables[by]
    foreign = len(COUNTRIES)  # the other listed countries plus OTHER
    levels = len(D.SEX_VALUES) * len(D.AGE_BAND_VALUES) if by else 1
    assert len(got[INTERNATIONAL]) == 2 * foreign * levels
    assert list(got[INTERNATIONAL].columns) == [D.FROM, D.TO, *by, "count"]
    assert set(got[EMIGRANTS][D.ORIGIN_CELL]) == {*CELLS, D.UNKNOWN} == set(got[IMMIGRANTS][D.DESTINATION_CELL])
    for frame in got.values():
        assert frame["count"].dtype == "int64" and not frame.isna().any().any()
        assert not frame.drop(columns="count").duplicated().any()
    # empty cells are rows with 0, not missing rows
    assert (got[INTERNATIONAL]["count"] == 0).sum() > 0 and (got[IMMIGRANTS]["count"] == 0).sum() > 0
    pairs = set(zip(got[INTERNATIONAL][D.FROM], got[INTERNATIONAL][D.TO]))
    assert all((a == HOME) != (b == HOME) for a, b in pairs)  # home on exactly one side
    assert ("PHL", "OTHER") in pairs and ("OTHER", "PHL") in pairs


def test_one_change_per_pseudonym_and_month(tables):
    got = tables[()]
    # a: departure 03-05 kept, arrival 03-20 dropped; m: 03-02 is first although listed second;
    # f: February departure belongs to another month, March arrival counts; d, e: not long-term
    assert nonzero(got[INTERNATIONAL]) == {
        ("PHL", "SAU"): 2,  # a, g
        ("PHL", "OTHER"): 1,  # b to DEU
        ("PHL", "KWT"): 1,  # m
        ("PHL", "USA"): 1,  # n (i crosses in April)
        ("JPN", "PHL"): 1,  # c, on the last day of the month
        ("SAU", "PHL"): 1,  # f
        ("ARE", "PHL"): 1,  # h
    }
    assert nonzero(got[EMIGRANTS]) == {(MANILA,): 2, (D.UNKNOWN,): 1, (DAVAO,): 1, (CEBU,): 1}  # b: no cell
    assert nonzero(got[IMMIGRANTS]) == {(DAVAO,): 1, (MANILA,): 1, (D.UNKNOWN,): 1}  # f's cell is in Japan
    # each subject moves each table by at most one
    subjects = {"a", "b", "c", "f", "g", "h", "m", "n"}
    assert got[INTERNATIONAL]["count"].sum() == len(subjects)
    assert got[EMIGRANTS]["count"].sum() + got[IMMIGRANTS]["count"].sum() == len(subjects)


def test_sex_and_age_band_from_subscribers(tables):
    assert nonzero(tables[("sex", "age_band")][INTERNATIONAL]) == {
        ("PHL", "SAU", "F", "25-34"): 1,  # a: born 1990, crossing 2024
        ("PHL", "SAU", "F", "15-24"): 1,  # g: the other agreement's record is ignored
        ("PHL", "OTHER", "M", "unknown"): 1,  # b: no birth year
        ("PHL", "KWT", "M", "35-44"): 1,  # m
        ("PHL", "USA", "U", "unknown"): 1,  # n: no subscriber record at all
        ("JPN", "PHL", "U", "0-14"): 1,  # c: no sex
        ("SAU", "PHL", "X", "65+"): 1,  # f
        ("ARE", "PHL", "U", "35-44"): 1,  # h: two records disagree on sex
    }


def test_spark_age_bands_agree_with_the_python_definition(spark):
    crossing = dt.date(2024, 6, 30)
    birth_years = [None, 1890, 1900, 1903, 1904, 1959, 1960, 1979, 1980, 1999, 2000, 2009, 2010, 2024, 2025, 2030]
    changes = spark.createDataFrame([(pseudonym(str(i)), crossing) for i in range(len(birth_years))],
                                    "pseudonym STRING, crossing_date DATE")
    profile = spark.createDataFrame([(pseudonym(str(i)), None, y) for i, y in enumerate(birth_years)],
                                    "pseudonym STRING, sex STRING, birth_year INT")
    got = {r["pseudonym"]: r["age_band"] for r in with_demographics(changes, profile).collect()}
    for i, year in enumerate(birth_years):
        assert got[pseudonym(str(i))] == D.age_band(None if year is None else 2024 - year), year


@given(st.one_of(st.none(), st.integers(-50, 200)))
def test_age_band_contains_the_age(age):
    label = D.age_band(age)
    if age is None or age < 0 or age > D.MAX_AGE:
        assert label == D.UNKNOWN_AGE
        return
    lo, _, hi = label.rstrip("+").partition("-")
    assert int(lo) <= age and (label.endswith("+") or age <= int(hi))


FOREIGN = st.sampled_from(["SAU", "JPN", "USA", "DEU", "BRA", None])
CELL = st.sampled_from([MANILA, CEBU, DAVAO, "852f5a37fffffff", None])
GROUP = st.tuples(st.sampled_from(["departure", "arrival"]), FOREIGN, CELL,
                  st.sampled_from(["F", "M", "X", None, "?"]),
                  st.sampled_from([*D.AGE_BAND_VALUES, None]), st.integers(1, 50))


@settings(max_examples=30, deadline=None)
@given(st.lists(GROUP, max_size=25))
def test_mapping_preserves_totals_and_domain(groups):
    rows = [(d, HOME if d == "departure" else f, f if d == "departure" else HOME, c, s, a, n)
            for d, f, c, s, a, n in groups]
    counts = pd.DataFrame(rows, columns=["direction", "from_country", "to_country", "h3_cell", "sex", "age_band",
                                         "count"]).astype({"count": "int64"})
    the_spec = spec(by=("sex", "age_band"))
    tables = tables_from_counts(counts, the_spec)
    domains = the_spec.domains()
    for name, frame in tables.items():
        assert len(frame) == len(domains[name]) and not frame.isna().any().any()
    departures = counts.loc[counts["direction"] == "departure", "count"].sum()
    assert tables[INTERNATIONAL]["count"].sum() == counts["count"].sum()
    assert tables[EMIGRANTS]["count"].sum() == departures
    assert tables[IMMIGRANTS]["count"].sum() == counts["count"].sum() - departures
    listed = tables[INTERNATIONAL]
    unlisted = counts[~counts["from_country"].isin(COUNTRIES) | ~counts["to_country"].isin(COUNTRIES)]
    other = listed[(listed[D.FROM] == D.OTHER) | (listed[D.TO] == D.OTHER)]["count"].sum()
    assert other == unlisted["count"].sum()


def test_arrivals_split_into_returning_residents_and_first_arrivals(spark):
    from test_flows_support import change

    more = [
        change("p", "PHL", "HKG", "2023-01-10", kind="temporary"),  # a temporary stay abroad is no departure
        change("p", "HKG", "PHL", "2024-03-10", cell=MANILA),
        change("q", "PHL", "SGP", "2022-06-01"),  # a long-term departure two years before: returning
        change("q", "SGP", "PHL", "2024-03-12", cell=CEBU),
        change("r", "MYS", "PHL", "2024-03-14", cell=CEBU),
        change("r", "PHL", "MYS", "2024-06-01"),  # a departure after the arrival does not make it a return
    ]
    changes = spark.createDataFrame(CHANGES + more, CHANGES_DDL)
    split = exact_tables(changes, None, spec(by=("arrival_type",)))[INTERNATIONAL]
    plain = exact_tables(changes, None, spec())[INTERNATIONAL]
    # the public domain: departures have one value, arrivals two, every cell present
    departures = split[split[D.FROM] == HOME]
    arrivals = split[split[D.TO] == HOME]
    assert set(departures[D.ARRIVAL_TYPE]) == {D.NOT_ARRIVAL}
    assert set(arrivals[D.ARRIVAL_TYPE]) == set(D.ARRIVAL_TYPES)
    assert len(split) == len(COUNTRIES) * 3 and (split["count"] == 0).sum() > 0
    # a breakdown: it adds up to the table without it, pair by pair
    summed = split.groupby([D.FROM, D.TO], as_index=False)["count"].sum()
    assert summed.merge(plain, on=[D.FROM, D.TO], suffixes=("", "_plain")).eval("count == count_plain").all()
    got = {k: v for k, v in nonzero(split).items() if k[1] == HOME}
    assert got == {("SAU", "PHL", D.RETURNING): 1,  # f left on 02-29 and came back on 03-01
                   ("SGP", "PHL", D.RETURNING): 1,  # q
                   ("JPN", "PHL", D.FIRST_ARRIVAL): 1,  # c: no departure seen
                   ("ARE", "PHL", D.FIRST_ARRIVAL): 1,  # h
                   ("HKG", "PHL", D.FIRST_ARRIVAL): 1,  # p: the earlier stay abroad was temporary
                   ("MYS", "PHL", D.FIRST_ARRIVAL): 1}  # r: left only after arriving


def test_arrival_type_needs_no_subscribers_and_combines_with_sex(spark):
    changes = spark.createDataFrame(CHANGES, CHANGES_DDL)
    profile = subscriber_profile(spark.createDataFrame(SUBSCRIBERS, SUBSCRIBERS_DDL), "test-phl")
    alone = exact_tables(changes, None, spec(by=("arrival_type",)))[INTERNATIONAL]
    both = exact_tables(changes, profile, spec(by=("sex", "arrival_type")))[INTERNATIONAL]
    assert list(both.columns) == [D.FROM, D.TO, "sex", D.ARRIVAL_TYPE, "count"]
    summed = both.groupby([D.FROM, D.TO, D.ARRIVAL_TYPE], as_index=False)["count"].sum()
    assert summed.merge(alone, on=[D.FROM, D.TO, D.ARRIVAL_TYPE], suffixes=("", "_alone")) \
        .eval("count == count_alone").all()
    with pytest.raises(ValueError, match="distinct values"):
        spec(by=("arrival_type", "arrival_type"))
