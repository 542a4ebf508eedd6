"""Daily presence and monthly home cells from office-zone events, as Spark expressions.

A local day's country is where most of its night-time events were (the night of day D runs
from ``night_start`` on D to ``night_end`` on D+1, local time), falling back to daytime events;
days without events stay unknown. Smoothing (gap carry, spillover) happens per subject in the
pure rules, so tests of those rules hold here too.
"""

from __future__ import annotations

import h3
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mobility.residence.rules import ResidenceParams

PSEUDONYM = "pseudonym"


def local_day_columns(events: DataFrame, time_zone: str, params: ResidenceParams) -> DataFrame:
    local = F.from_utc_timestamp(F.col("event_hour"), time_zone)
    hour = F.hour(local)
    if params.night_start > params.night_end:  # the usual case: the night spans midnight
        night = (hour >= params.night_start) | (hour < params.night_end)
    else:
        night = (hour >= params.night_start) & (hour < params.night_end)
    # Early-morning hours belong to the night that began the evening before.
    shift = F.when(night & (hour < params.night_end), F.lit(1)).otherwise(F.lit(0))
    return events.withColumn("is_night", night).withColumn("date", F.date_sub(F.to_date(local), shift))


def daily_presence(events: DataFrame, time_zone: str, params: ResidenceParams) -> DataFrame:
    """One row per pseudonym and local day with events: country, source (night/day), night events."""
    df = local_day_columns(events, time_zone, params)
    counts = df.groupBy(PSEUDONYM, "date", "country").agg(
        F.sum(F.col("is_night").cast("long")).alias("night_events"),
        F.sum((~F.col("is_night")).cast("long")).alias("day_events"))
    # Night evidence first, then daytime; ties broken by country code so reruns agree.
    rank = Window.partitionBy(PSEUDONYM, "date").orderBy(
        F.col("night_events").desc(), F.col("day_events").desc(), F.col("country"))
    best = counts.withColumn("_rank", F.row_number().over(rank)).filter(F.col("_rank") == 1)
    nights = counts.groupBy(PSEUDONYM, "date").agg(F.sum("night_events").alias("all_night_events"))
    return (best.join(nights, [PSEUDONYM, "date"])
            .select(PSEUDONYM, "date", "country",
                    F.when(F.col("night_events") > 0, F.lit("night")).otherwise(F.lit("day")).alias("source"),
                    F.col("all_night_events").alias("night_events")))


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


def parent_cells(spark: SparkSession, events: DataFrame, resolution: int) -> DataFrame:
    """Map each storage-resolution H3 cell seen in events to its parent at ``resolution``.

    Distinct cells number at most the operator's cell sites, so they are mapped on the driver.
    """
    cells = [r[0] for r in events.select("h3_cell").where(F.col("h3_cell").isNotNull()).distinct().collect()]
    rows = [(c, h3.cell_to_parent(c, resolution) if h3.get_resolution(c) > resolution else c) for c in cells]
    return spark.createDataFrame(rows, "h3_cell STRING, home_cell STRING")


def monthly_home_cells(spark: SparkSession, events: DataFrame, home_country: str, time_zone: str,
                       params: ResidenceParams) -> DataFrame:
    """Modal night cell (coarse resolution) per pseudonym and month, inside the home country."""
    df = local_day_columns(events.where((F.col("country") == home_country) & F.col("h3_cell").isNotNull()),
                           time_zone, params).where(F.col("is_night"))
    mapping = parent_cells(spark, events, params.home_cell_resolution)
    df = df.join(F.broadcast(mapping), "h3_cell").withColumn("month", F.date_format("date", "yyyy-MM"))
    counts = df.groupBy(PSEUDONYM, "month", "home_cell").agg(F.count(F.lit(1)).alias("night_events"))
    rank = Window.partitionBy(PSEUDONYM, "month").orderBy(F.col("night_events").desc(), F.col("home_cell"))
    return (counts.withColumn("_rank", F.row_number().over(rank)).where(F.col("_rank") == 1)
            .select(PSEUDONYM, "month", F.col("home_cell").alias("h3_cell"), "night_events"))
