"""Exact counts of long-term residence changes for one crossing month, on public domains.

Spark does the per-pseudonym work (filter, bound, join demographics, one group-by); the grouped
counts are small and are mapped onto the public domains in pandas. The exact tables returned
here exist only in memory and must go only to ``mobility.privacy_budget.publish``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from mobility.aggregate import domains as D
from mobility.residence.rules import ARRIVAL, DEPARTURE, KIND_LONG_TERM

PSEUDONYM = "pseudonym"
INTERNATIONAL = "international"
EMIGRANTS = "emigrants_by_origin"
IMMIGRANTS = "immigrants_by_destination"
TABLES = (INTERNATIONAL, EMIGRANTS, IMMIGRANTS)
MAX_CONTRIBUTIONS = 1  # bounded_changes keeps one change per pseudonym, so each table moves by at most 1
# A pseudonym's one change is a departure (one origin cell) or an arrival (one destination cell), never
# both: the two subnational tables concatenated move by at most MAX_CONTRIBUTIONS in L1 and L2, and are
# measured jointly with one share of the budget (mechanisms.plan_noise ``groups``).
SUBNATIONAL = "subnational"
GROUPS = {SUBNATIONAL: (EMIGRANTS, IMMIGRANTS)}


def flow_shares(subnational: float = 0.5) -> dict[str, float]:
    """Budget per measurement: the subnational pair gets ``subnational`` (the agreement's
    ``budget.flows_subnational_share``), the international table the rest. The national totals are
    estimated almost only from the international table, the subnational cells only from theirs, so the
    split trades one against the other (bench/release_quality.py, BENCHMARKS.md)."""
    if not 0 < subnational < 1:
        raise ValueError(f"the subnational share must be between 0 and 1, got {subnational!r}")
    return {INTERNATIONAL: 1.0 - subnational, SUBNATIONAL: float(subnational)}


SHARES = flow_shares()


def last_day_of(period: str) -> dt.date:
    first = dt.date.fromisoformat(period + "-01")
    following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


@dataclass(frozen=True)
class FlowSpec:
    """What to count: public parameters only (from the agreement and the request)."""

    home: str
    countries: tuple[str, ...]
    period: str  # crossing month, YYYY-MM
    by: tuple[str, ...] = ()  # breakdowns of the international table, a subset of domains.FLOW_BY_COLUMNS
    cells: tuple[str, ...] = ()  # home-country H3 cells (without UNKNOWN)
    age_bands: tuple[tuple[int, int | None], ...] = D.AGE_BANDS  # from the agreement's age_bands

    def __post_init__(self):
        unknown = [b for b in self.by if b not in D.FLOW_BY_COLUMNS]
        if unknown or len(set(self.by)) != len(self.by):
            raise ValueError(f"by must be distinct values of {list(D.FLOW_BY_COLUMNS)}, got {list(self.by)}")

    @property
    def demographic(self) -> tuple[str, ...]:
        """The breakdowns that need the subscribers' sex and birth year."""
        return tuple(b for b in self.by if b in D.BY_COLUMNS)

    @property
    def first_day(self) -> dt.date:
        return dt.date.fromisoformat(self.period + "-01")

    @property
    def last_day(self) -> dt.date:
        return last_day_of(self.period)

    def domains(self) -> dict[str, pd.DataFrame]:
        cells = [*self.cells, D.UNKNOWN]
        return {INTERNATIONAL: D.international_domain(self.countries, self.home, self.by, self.age_bands),
                EMIGRANTS: D.cells_frame(cells, D.ORIGIN_CELL),
                IMMIGRANTS: D.cells_frame(cells, D.DESTINATION_CELL)}


def countable_changes(changes: DataFrame, home: str) -> DataFrame:
    """Long-term changes whose direction agrees with home being on exactly one side.

    The residence rule only produces such rows; anything else cannot sit in the public domain.
    """
    departure = (F.col("direction") == DEPARTURE) & (F.col("from_country") == home) \
        & (F.col("to_country") != home)
    arrival = (F.col("direction") == ARRIVAL) & (F.col("to_country") == home) & (F.col("from_country") != home)
    return changes.where((F.col("kind") == KIND_LONG_TERM) & F.col("crossing_date").isNotNull()
                         & F.col(PSEUDONYM).isNotNull() & (departure | arrival))


def bounded_changes(changes: DataFrame, spec: FlowSpec) -> DataFrame:
    """At most one change per pseudonym crossing in the month: the first by crossing_date.

    This is the contribution bound behind MAX_CONTRIBUTIONS; ties on the same day are broken on
    the other columns so reruns keep the same row.
    """
    in_month = changes.where(F.col("crossing_date").between(F.lit(spec.first_day), F.lit(spec.last_day)))
    first = Window.partitionBy(PSEUDONYM).orderBy(
        F.col("crossing_date").asc(), F.col("direction").asc(), F.col("from_country").asc(),
        F.col("to_country").asc(), F.col("h3_cell").asc_nulls_last())
    return in_month.withColumn("_nth", F.row_number().over(first)).where(F.col("_nth") == 1).drop("_nth")


def subscriber_profile(subscribers: DataFrame, agreement_id: str | None = None) -> DataFrame:
    """One row per pseudonym: sex and birth_year, null where the records disagree."""
    if agreement_id is not None and "agreement_id" in subscribers.columns:
        subscribers = subscribers.where(F.col("agreement_id") == agreement_id)
    grouped = subscribers.groupBy(PSEUDONYM).agg(
        F.min("sex").alias("_sex_lo"), F.max("sex").alias("_sex_hi"),
        F.min("birth_year").alias("_by_lo"), F.max("birth_year").alias("_by_hi"))
    # one row per pseudonym, so the join below can never duplicate a change
    return grouped.select(
        PSEUDONYM,
        F.when(F.col("_sex_lo") == F.col("_sex_hi"), F.col("_sex_lo")).alias("sex"),
        F.when(F.col("_by_lo") == F.col("_by_hi"), F.col("_by_lo")).alias("birth_year"))


def age_band_column(age, bands=D.AGE_BANDS) -> F.Column:
    expr = F.lit(D.UNKNOWN_AGE)
    for (lo, hi), label in reversed(list(zip(bands, D.age_band_values(bands)))):
        upper = F.lit(D.MAX_AGE) if hi is None else F.lit(hi)
        expr = F.when((age >= lo) & (age <= upper), F.lit(label)).otherwise(expr)
    return F.when(age.isNull(), F.lit(D.UNKNOWN_AGE)).otherwise(expr)


def with_demographics(changes: DataFrame, profile: DataFrame, bands=D.AGE_BANDS, date_column: str = "crossing_date",
                      key: str = PSEUDONYM) -> DataFrame:
    """Adds ``sex`` (F/M/X/U) and ``age_band`` (age reached in the year of ``date_column``, from birth_year)."""
    joined = changes.join(profile.withColumnRenamed(PSEUDONYM, key), key, "left")
    age = F.year(date_column) - F.col("birth_year")
    return (joined.withColumn("sex", F.when(F.col("sex").isin(*D.SEXES), F.col("sex")).otherwise(D.UNKNOWN_SEX))
            .withColumn("age_band", age_band_column(age, bands)))


def with_arrival_type(bounded: DataFrame, countable: DataFrame, home: str) -> DataFrame:
    """Adds ``arrival_type``: an arrival is a returning resident's when the same pseudonym has a long-term
    departure from home with an earlier crossing date (they were a home resident under the rule before),
    a first arrival otherwise; a departure is ``not_applicable``. Only the changes in the residence table
    count: a departure before the data began is not seen (docs/methodology.md, "Return migration")."""
    first_departure = countable.where(F.col("direction") == DEPARTURE).groupBy(PSEUDONYM) \
        .agg(F.min("crossing_date").alias("_first_departure"))
    returning = F.col("_first_departure").isNotNull() & (F.col("_first_departure") < F.col("crossing_date"))
    kind = F.when(F.col("direction") != ARRIVAL, F.lit(D.NOT_ARRIVAL)) \
        .when(returning, F.lit(D.RETURNING)).otherwise(F.lit(D.FIRST_ARRIVAL))
    return bounded.join(first_departure, PSEUDONYM, "left").withColumn(D.ARRIVAL_TYPE, kind).drop("_first_departure")


def grouped_counts(changes: DataFrame, profile: DataFrame | None, spec: FlowSpec) -> pd.DataFrame:
    """One Spark group-by of the bounded changes; the result has one row per distinct key combination."""
    countable = countable_changes(changes, spec.home)
    bounded = bounded_changes(countable, spec)
    if D.ARRIVAL_TYPE in spec.by:
        bounded = with_arrival_type(bounded, countable, spec.home)
    if spec.demographic:
        if profile is None:
            raise ValueError("a breakdown by sex or age_band needs the subscribers profile")
        bounded = with_demographics(bounded, profile, spec.age_bands)
    keys = ["direction", "from_country", "to_country", "h3_cell", *spec.by]
    return bounded.groupBy(*keys).agg(F.count(F.lit(1)).alias(D.COUNT)).toPandas()


def tables_from_counts(counts: pd.DataFrame, spec: FlowSpec) -> dict[str, pd.DataFrame]:
    """Map grouped counts to public values (OTHER, UNKNOWN, U) and onto every domain cell."""
    frame = counts.copy()
    frame[D.COUNT] = frame[D.COUNT].astype("int64")
    frame[D.FROM] = [D.country_value(c, spec.countries) for c in frame["from_country"]]
    frame[D.TO] = [D.country_value(c, spec.countries) for c in frame["to_country"]]
    known = set(spec.cells)
    frame["_cell"] = [c if c in known else D.UNKNOWN for c in frame["h3_cell"]]
    D.breakdown_values(frame, spec.by, spec.age_bands)
    domains = spec.domains()
    departures = frame[frame["direction"] == DEPARTURE].rename(columns={"_cell": D.ORIGIN_CELL})
    arrivals = frame[frame["direction"] == ARRIVAL].rename(columns={"_cell": D.DESTINATION_CELL})
    return {
        INTERNATIONAL: D.on_domain(domains[INTERNATIONAL], frame[[D.FROM, D.TO, *spec.by, D.COUNT]]),
        EMIGRANTS: D.on_domain(domains[EMIGRANTS], departures[[D.ORIGIN_CELL, D.COUNT]]),
        IMMIGRANTS: D.on_domain(domains[IMMIGRANTS], arrivals[[D.DESTINATION_CELL, D.COUNT]]),
    }


def exact_tables(changes: DataFrame, profile: DataFrame | None, spec: FlowSpec) -> dict[str, pd.DataFrame]:
    """The three exact tables of ``spec.period``, every domain cell present (zeros included)."""
    return tables_from_counts(grouped_counts(changes, profile, spec), spec)


def flow_totals(spec: FlowSpec):
    """What the consistent tables add up to: national emigration is the departures of the international
    table and every origin cell; immigration the arrivals and every destination cell."""
    from mobility.privacy_budget.consistency import Part, Total

    dep_levels = ((D.TO,),) if spec.by else ()
    arr_levels = ((D.FROM,),) if spec.by else ()
    return (Total("emigration", (Part(INTERNATIONAL, {D.FROM: spec.home}, dep_levels), Part(EMIGRANTS))),
            Total("immigration", (Part(INTERNATIONAL, {D.TO: spec.home}, arr_levels), Part(IMMIGRANTS))))


def domain_sizes(spec: FlowSpec) -> dict[str, int]:
    return {name: len(frame) for name, frame in spec.domains().items()}


def key_columns(spec: FlowSpec) -> dict[str, list[str]]:
    return {name: list(frame.columns) for name, frame in spec.domains().items()}

