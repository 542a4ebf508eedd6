"""Daily presence and monthly home cells from office-zone events, as Spark expressions.

A local day's country is where most of its night-time events were (the night of day D runs
from ``night_start`` on D to ``night_end`` on D+1, local time), falling back to daytime events;
days without events stay unknown. Smoothing (gap carry, spillover) happens per subject in the
pure rules, so tests of those rules hold here too.

``presence_and_home_cells`` computes both tables from one pass over the events: one aggregation
with two grouping sets, (pseudonym, day, country) for presence and (pseudonym, month, cell) of
home-country nights for home cells, kept once and read by both. ``daily_presence`` and
``monthly_home_cells`` build each table alone from the same pieces, so all three agree by
construction (tests/residence/test_presence_one_pass.py checks them against a plain-Python reference).
"""

from __future__ import annotations

import h3
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mobility.residence.rules import ResidenceParams

PSEUDONYM = "pseudonym"

_DAY_US = 86_400 * 1_000_000
_HOUR_US = 3_600 * 1_000_000
_LOCAL_US = "_local_us"  # a working column: local wall-clock time in microseconds


def _local_micros(spark: SparkSession, event_hour: Column, time_zone: str) -> Column:
    """Local wall-clock time of a UTC instant, in microseconds since 1970-01-01 00:00 local time.

    Exact for every zone, whatever the session's time zone. After its last offset change, a zone
    without daylight-saving rules (most of Asia and Africa, Asia/Manila since 1978) has one
    fixed offset, and the conversion is an addition; earlier instants, and every instant in a
    zone with daylight saving, go through ``from_utc_timestamp`` (java.time rules, as before).
    The addition saves about a fifth of the scan's CPU (BENCHMARKS.md, issue #20).
    """
    utc = F.unix_micros(event_hour)
    general = F.unix_micros(F.from_utc_timestamp(event_hour, time_zone))
    try:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        rules = jvm.java.time.ZoneId.of(time_zone).getRules()
    except Exception:  # no JVM gateway (Spark Connect): the general conversion only
        return general
    if not rules.getTransitionRules().isEmpty():
        return general
    transitions = rules.getTransitions()
    if transitions.isEmpty():
        offset = rules.getOffset(jvm.java.time.Instant.EPOCH).getTotalSeconds()
        return utc + F.lit(int(offset) * 1_000_000)
    last = transitions.get(transitions.size() - 1)
    since_us = int(last.getInstant().getEpochSecond()) * 1_000_000
    offset = int(last.getOffsetAfter().getTotalSeconds())
    return F.when(utc >= F.lit(since_us), utc + F.lit(offset * 1_000_000)).otherwise(general)


def local_day_columns(events: DataFrame, time_zone: str, params: ResidenceParams) -> DataFrame:
    """``events`` with ``is_night`` and ``date``: the presence day each event counts for.

    Early-morning hours (before ``night_end``) of a night spanning midnight belong to the night
    that began the evening before, so to the day before.
    """
    local = events.withColumn(_LOCAL_US, _local_micros(events.sparkSession, F.col("event_hour"), time_zone))
    hour = F.expr(f"CAST(pmod({_LOCAL_US}, {_DAY_US}) div {_HOUR_US} AS INT)")
    day = F.expr(f"CAST(({_LOCAL_US} - pmod({_LOCAL_US}, {_DAY_US})) div {_DAY_US} AS INT)")
    if params.night_start > params.night_end:  # the usual case: the night spans midnight
        night = (hour >= params.night_start) | (hour < params.night_end)
    else:
        night = (hour >= params.night_start) & (hour < params.night_end)
    shift = F.when(night & (hour < params.night_end), F.lit(1)).otherwise(F.lit(0))
    return (local.withColumn("is_night", night).withColumn("date", F.date_from_unix_date(day - shift))
            .drop(_LOCAL_US))


def _day_counts() -> list[Column]:
    """Night and daytime events of a group."""
    return [F.sum(F.col("is_night").cast("long")).alias("night_events"),
            F.sum((~F.col("is_night")).cast("long")).alias("day_events")]


def _pick_presence(counts: DataFrame) -> DataFrame:
    """From night and day events per (pseudonym, date, country): the day's country, its source and
    every night event of the day. Night evidence first, then daytime; ties broken by country code
    so reruns agree."""
    day = Window.partitionBy(PSEUDONYM, "date")
    rank = day.orderBy(F.col("night_events").desc(), F.col("day_events").desc(), F.col("country"))
    best = counts.select("*", F.row_number().over(rank).alias("_rank"),
                         F.sum("night_events").over(day).alias("_all_night")).where(F.col("_rank") == 1)
    return best.select(PSEUDONYM, "date", "country",
                       F.when(F.col("night_events") > 0, F.lit("night")).otherwise(F.lit("day")).alias("source"),
                       F.col("_all_night").alias("night_events"))


def daily_presence(events: DataFrame, time_zone: str, params: ResidenceParams) -> DataFrame:
    """One row per pseudonym and local day with events: country, source (night/day), night events."""
    dated = local_day_columns(events, time_zone, params)
    return _pick_presence(dated.groupBy(PSEUDONYM, "date", "country").agg(*_day_counts()))


PAYMENT_SOURCE = "payment"


def payment_days(payments: DataFrame, time_zone: str, params: ResidenceParams | None = None) -> DataFrame:
    """One row per pseudonym and presence day with an agent or card-present payment: the country it was made in.

    Only these channels place the payer (the anonymize job keeps no position for the others); a day
    with payments in two countries keeps the one with most payments (ties: country code). Days are
    presence days as for events: a payment before ``night_end`` belongs to the night begun the day before.
    """
    from mobility.schemas import PRESENCE_CHANNELS

    located = payments.where(F.col("channel").isin(*PRESENCE_CHANNELS) & F.col("location_country").isNotNull())
    dated = local_day_columns(located.select(F.col("sender_pseudonym").alias(PSEUDONYM),
                                             F.col("txn_hour").alias("event_hour"),
                                             F.col("location_country").alias("country")),
                              time_zone, params or ResidenceParams())
    counts = dated.groupBy(PSEUDONYM, "date", "country").count()
    rank = Window.partitionBy(PSEUDONYM, "date").orderBy(F.col("count").desc(), F.col("country"))
    return counts.withColumn("_rank", F.row_number().over(rank)).where(F.col("_rank") == 1) \
        .select(PSEUDONYM, "date", "country")


def with_payment_days(presence: DataFrame, payments: DataFrame, time_zone: str,
                      params: ResidenceParams | None = None) -> DataFrame:
    """Days without any event take the country of that day's located payments (``source = payment``).

    Events win on days that have them: a night is stronger evidence of where someone sleeps than a
    purchase. Only days that would otherwise be unknown are added.
    """
    extra = payment_days(payments, time_zone, params).join(presence.select(PSEUDONYM, "date"),
                                                           [PSEUDONYM, "date"], "left_anti")
    return presence.unionByName(extra.select(PSEUDONYM, "date", "country", F.lit(PAYMENT_SOURCE).alias("source"),
                                             F.lit(0).cast("long").alias("night_events")))


def _parent_mapping(spark: SparkSession, cells: list[str], resolution: int) -> DataFrame:
    """Each storage-resolution H3 cell to its parent at ``resolution`` (cells already that coarse stay)."""
    rows = [(c, h3.cell_to_parent(c, resolution) if h3.get_resolution(c) > resolution else c) for c in cells]
    return spark.createDataFrame(rows, "h3_cell STRING, home_cell STRING")


def _home_night(home_country: str) -> Column:
    """The event's cell when it is a night in the home country, else null."""
    return F.when(F.col("is_night") & (F.col("country") == home_country), F.col("h3_cell"))


def _home_cells_from(spark: SparkSession, cell_nights: DataFrame, resolution: int) -> DataFrame:
    """Modal coarse cell per pseudonym and month from night events per (pseudonym, month, h3_cell), with
    ``month`` the first day of the month; ties broken by cell id. ``cell_nights`` is read twice (its
    distinct cells, then the table): callers pass a materialized frame."""
    cells = [r[0] for r in cell_nights.select("h3_cell").distinct().collect()]
    mapping = _parent_mapping(spark, cells, resolution)
    counts = (cell_nights.join(F.broadcast(mapping), "h3_cell")
              .groupBy(PSEUDONYM, "month", "home_cell").agg(F.sum("nights").alias("night_events")))
    rank = Window.partitionBy(PSEUDONYM, "month").orderBy(F.col("night_events").desc(), F.col("home_cell"))
    return (counts.withColumn("_rank", F.row_number().over(rank)).where(F.col("_rank") == 1)
            .select(PSEUDONYM, F.date_format("month", "yyyy-MM").alias("month"), F.col("home_cell").alias("h3_cell"),
                    "night_events"))


def monthly_home_cells(spark: SparkSession, events: DataFrame, home_country: str, time_zone: str,
                       params: ResidenceParams) -> DataFrame:
    """Modal night cell (coarse resolution) per pseudonym and month, inside the home country."""
    dated = local_day_columns(events, time_zone, params).withColumn("h3_cell", _home_night(home_country))
    nights = (dated.where(F.col("h3_cell").isNotNull())
              .groupBy(PSEUDONYM, F.trunc("date", "month").alias("month"), "h3_cell")
              .agg(F.count(F.lit(1)).alias("nights")))
    return _home_cells_from(spark, nights.localCheckpoint(eager=True), params.home_cell_resolution)


def presence_and_home_cells(spark: SparkSession, events: DataFrame, home_country: str, time_zone: str,
                            params: ResidenceParams) -> tuple[DataFrame, DataFrame]:
    """``(daily_presence(...), monthly_home_cells(...))`` from one pass over the events.

    One aggregation with two grouping sets: night and day events per (pseudonym, date, country), and
    night events per (pseudonym, month, cell) of home-country nights. Its result (about one row per
    person-day plus one per person-month and cell) is materialized here, in the executors' block
    stores (``localCheckpoint``: memory, then disk; lost with an executor, like the job's other
    checkpoints), and both tables are derived from it: the events are read once.
    """
    dated = local_day_columns(events, time_zone, params)
    cell = _home_night(home_country)
    dated = dated.select(PSEUDONYM, "date", "country", "is_night", cell.alias("h3_cell"),
                         F.when(cell.isNotNull(), F.trunc("date", "month")).alias("month"))
    both = (dated.groupingSets([[PSEUDONYM, "date", "country"], [PSEUDONYM, "month", "h3_cell"]],
                               PSEUDONYM, "date", "country", "month", "h3_cell")
            .agg(*_day_counts(), F.grouping("h3_cell").alias("_by_day"))
            .localCheckpoint(eager=True))
    days = both.where(F.col("_by_day") == 1).select(PSEUDONYM, "date", "country", "night_events", "day_events")
    nights = both.where((F.col("_by_day") == 0) & F.col("h3_cell").isNotNull()) \
        .select(PSEUDONYM, "month", "h3_cell", F.col("night_events").alias("nights"))
    return _pick_presence(days), _home_cells_from(spark, nights, params.home_cell_resolution)
