"""Row checks as Spark expressions: each row gets a status and, when rejected, one reason.

Statuses: ``accepted``, ``quarantined`` (with a reason code), ``duplicate`` (an exact copy
of an earlier row), ``suppressed`` (subject on the suppression list). The first failing check
names the reason, in the order listed in ``docs/contracts.md``. Copies are found after the rest,
on the frame computed once (``is_copy``), and their status overrides the others.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pycountry
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from mobility.anonymize.formats import SOURCE_REASON, read_columns
from mobility.anonymize.inputs import CORRUPT, SOURCE_FILE
from mobility.schemas import ACCEPTED_EVENT_TYPES, CDR, CHANNELS, PAYMENTS, SUBSCRIBERS, InputContract

STATUS, REASON = "_status", "_reason"
ROW_HASH_1, ROW_HASH_2, ROW_ID = "_h1", "_h2", "_row_id"
ACCEPTED, QUARANTINED, DUPLICATE, SUPPRESSED = "accepted", "quarantined", "duplicate", "suppressed"
ISO3_CODES = sorted(c.alpha_3 for c in pycountry.countries)
CURRENCY_CODES = sorted(c.alpha_3 for c in pycountry.currencies)

# Bounds of what a value can plausibly be: beyond them a row is quarantined with a reason of its
# own, so that one broken switch or export (a 100 kB field, a 1970 or 2999 clock, a call of three
# years) neither reaches the office zone nor hides among ordinary typos.
MAX_FIELD_CHARS = 256  # the longest contract value (a transaction id, a formatted number) is far shorter
EARLIEST_TIME = "2000-01-01 00:00:00"  # local time; 1970-01-01 and 1900-01-01 are a clock's or an export's zero
LATEST_AHEAD_DAYS = 366  # a time more than this after the job's clock is a broken clock, not a late delivery
MAX_DURATION_S = 86_400  # one record covers at most a day: longer sessions come as partial records
MAX_AMOUNT = 1e12  # currency units; above any real transfer even in the smallest units, and where cents blur
REPLACEMENT_CHAR = "\ufffd"  # what a byte that is not UTF-8 becomes when Spark decodes a CSV line


def blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def parse_time(col: Column) -> Column:
    """ISO 8601 text to an instant; bad text -> null. Text without an offset is in the session's zone,
    which the job sets to the agreement's (``spark.session_time_zone``) while it builds its frames."""
    return F.try_to_timestamp(F.trim(col))


def implausible_time(ts: Column, latest: dt.datetime) -> Column:
    """True for a parsed time before ``EARLIEST_TIME`` (local) or after ``latest`` (an instant)."""
    return (ts < F.to_timestamp(F.lit(EARLIEST_TIME))) | (ts > F.lit(latest))


def latest_plausible(now: dt.datetime | None = None) -> dt.datetime:
    """The latest plausible event time for a run started at ``now`` (default: the job's clock)."""
    return (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=LATEST_AHEAD_DAYS)


def encoding_and_length_checks(contract: InputContract) -> list[tuple[Column, str]]:
    """Checks on the raw text of every contract column, before any value is parsed: a byte that was
    not UTF-8 (decoded as U+FFFD), or a field longer than ``MAX_FIELD_CHARS``."""
    cols = [F.col(c) for c in contract.columns]
    return [  # a byte search per column: no string is built per row
        (reduce(lambda a, b: a | b, [F.coalesce(c.contains(REPLACEMENT_CHAR), F.lit(False)) for c in cols]),
         "invalid_encoding"),
        (F.coalesce(F.greatest(*[F.length(c) for c in cols]), F.lit(0)) > MAX_FIELD_CHARS, "field_too_long"),
    ]


def first_reason(checks: list[tuple[Column, str]]) -> Column:
    """The reason of the first check that fails, or null when all pass."""
    return reduce(lambda acc, item: acc.when(item[0], F.lit(item[1])),
                  checks[1:], F.when(checks[0][0], F.lit(checks[0][1]))).otherwise(F.lit(None))


def with_row_hashes(df: DataFrame, contract: InputContract) -> DataFrame:
    """Two independent hashes (96 bits) of a row's contract values: exact copies share both.

    Copies are found by these two numbers instead of the values themselves (``is_copy``): a false
    match needs a 96-bit collision (about 1e-9 over 1e10 rows). NUL stands in for a missing value
    so that nulls in different columns do not hash alike. A format's own reason for the row
    (``formats.SOURCE_REASON``) is part of the row: two rows that differ in their source only
    where the native columns cannot show it are not copies."""
    extra = [SOURCE_REASON] if SOURCE_REASON in df.columns else []
    values = [F.coalesce(F.col(c), F.lit("\u0000")) for c in (*read_columns(contract), *extra)]
    return df.withColumn(ROW_HASH_1, F.xxhash64(*values)).withColumn(ROW_HASH_2, F.hash(*values))


def differing_rows(*by: Column) -> Column:
    """True when the rows that share ``by`` are not all copies of one row (their hashes differ)."""
    within = Window.partitionBy(*by)
    return ((F.min(ROW_HASH_1).over(within) != F.max(ROW_HASH_1).over(within))
            | (F.min(ROW_HASH_2).over(within) != F.max(ROW_HASH_2).over(within)))


def is_copy() -> Column:
    """True for every exact copy of an earlier row (the same two row hashes); the first by file
    name is kept. The frame must be computed once (a checkpoint), so that its ``ROW_ID``s are fixed."""
    first = Window.partitionBy(ROW_HASH_1, ROW_HASH_2).orderBy(SOURCE_FILE, ROW_ID)
    return F.row_number().over(first) > 1


def finish(df: DataFrame, reason: Column, suppressed: Column) -> DataFrame:
    """Suppressed before quarantined: an erased person's rows go nowhere, not even quarantine.
    Copies are marked later, over the whole frame (``is_copy``), and win over both.

    The checks are evaluated once, into a column of their own: written inline they were generated
    three times over, which made the stage's code too large for the JIT (BENCHMARKS.md)."""
    status = (F.when(F.coalesce(suppressed, F.lit(False)), F.lit(SUPPRESSED))
              .when(F.col("_failed").isNotNull(), F.lit(QUARANTINED))
              .otherwise(F.lit(ACCEPTED)))
    return (df.withColumn("_failed", reason).withColumn(STATUS, status)
            .withColumn(REASON, F.when(F.col(STATUS) == QUARANTINED, F.col("_failed"))).drop("_failed"))


def coordinates() -> tuple[Column, Column]:
    """``latitude`` and ``longitude`` as numbers, null when not a number or out of range."""
    lat = F.expr("try_cast(trim(latitude) AS DOUBLE)")
    lon = F.expr("try_cast(trim(longitude) AS DOUBLE)")
    return F.when(lat.between(-90, 90), lat), F.when(lon.between(-180, 180), lon)


def located_by_point() -> Column:
    """An event without a cell and not served abroad that carries coordinates: located by them."""
    return (blank(F.col("cell_id")) & blank(F.col("visited_plmn"))
            & ~(blank(F.col("latitude")) & blank(F.col("longitude"))))


def cdr_checks(e164: Column, event_ts: Column, cell_known: Column, cell_reason: Column, plmn_country: Column,
               latest: dt.datetime, point_country: Column | None = None) -> list[tuple[Column, str]]:
    """``point_country``: the country of an event located by its coordinates (null outside every boundary)."""
    cell, plmn, duration = F.col("cell_id"), F.col("visited_plmn"), F.col("duration_s")
    seconds = F.expr("try_cast(trim(duration_s) AS INT)")
    lat, lon = coordinates()
    by_point = located_by_point()
    point_country = F.lit(None).cast("string") if point_country is None else point_country
    return [
        (F.col(CORRUPT).isNotNull(), "malformed_row"),
        *encoding_and_length_checks(CDR),
        (blank(F.col("msisdn")), "missing_msisdn"),
        (e164.isNull(), "invalid_msisdn"),
        (event_ts.isNull(), "invalid_event_time"),
        (implausible_time(event_ts, latest), "implausible_event_time"),
        (~F.lower(F.trim(F.col("event_type"))).isin(*ACCEPTED_EVENT_TYPES) | F.col("event_type").isNull(),
         "unknown_event_type"),
        (~blank(duration) & (F.coalesce(seconds, F.lit(-1)) < 0), "invalid_duration"),
        (~blank(duration) & (seconds > MAX_DURATION_S), "implausible_duration"),
        (~blank(cell) & ~blank(plmn), "conflicting_location"),
        (blank(cell) & blank(plmn) & ~by_point, "missing_location"),
        (by_point & (lat.isNull() | lon.isNull()), "invalid_coordinates"),
        (by_point & point_country.isNull(), "coordinates_outside_boundaries"),
        (~blank(plmn) & (~F.trim(plmn).rlike(r"^\d{5,6}$") | plmn_country.isNull()), "invalid_visited_plmn"),
        (~blank(cell) & ~cell_known, "unknown_cell"),
        (~blank(cell) & (cell_reason == "cell_outside_boundaries"), "cell_outside_boundaries"),
        (~blank(cell) & cell_reason.isNotNull(), "unusable_cell"),
    ]


def subscriber_checks(e164: Column, this_year: int) -> list[tuple[Column, str]]:
    year = F.expr("try_cast(trim(birth_year) AS INT)")
    return [
        (F.col(CORRUPT).isNotNull(), "malformed_row"),
        *encoding_and_length_checks(SUBSCRIBERS),
        (blank(F.col("msisdn")), "missing_msisdn"),
        (e164.isNull(), "invalid_msisdn"),
        (~blank(F.col("sex")) & ~F.upper(F.trim(F.col("sex"))).isin("F", "M", "X"), "invalid_sex"),
        (~blank(F.col("birth_year")) & (year.isNull() | (year < 1900) | (year > this_year)), "invalid_birth_year"),
    ]


def payment_checks(sender: Column, receiver: Column, txn_ts: Column, latest: dt.datetime) -> list[tuple[Column, str]]:
    amount = F.expr("try_cast(trim(amount) AS DOUBLE)")
    fee = F.expr("try_cast(trim(fee) AS DOUBLE)")
    margin = F.expr("try_cast(trim(fx_margin) AS DOUBLE)")
    lat = F.expr("try_cast(trim(latitude) AS DOUBLE)")
    lon = F.expr("try_cast(trim(longitude) AS DOUBLE)")
    return [
        (F.col(CORRUPT).isNotNull(), "malformed_row"),
        *encoding_and_length_checks(PAYMENTS),
        (blank(F.col("txn_id")), "missing_txn_id"),
        (txn_ts.isNull(), "invalid_txn_time"),
        (implausible_time(txn_ts, latest), "implausible_txn_time"),
        (blank(F.col("sender_msisdn")), "missing_msisdn"),
        (sender.isNull(), "invalid_msisdn"),
        (~blank(F.col("receiver_msisdn")) & receiver.isNull(), "invalid_receiver_msisdn"),
        (~F.upper(F.trim(F.col("sender_country"))).isin(*ISO3_CODES)
         | ~F.upper(F.trim(F.col("receiver_country"))).isin(*ISO3_CODES)
         | F.col("sender_country").isNull() | F.col("receiver_country").isNull(), "unknown_country"),
        (~F.upper(F.trim(F.col("currency"))).isin(*CURRENCY_CODES) | F.col("currency").isNull(), "unknown_currency"),
        (amount.isNull() | F.isnan(amount) | (amount <= 0) | (amount == float("inf")), "invalid_amount"),
        (amount > MAX_AMOUNT, "implausible_amount"),
        (fee.isNull() | F.isnan(fee) | (fee < 0) | (fee == float("inf")), "invalid_fee"),
        (fee > amount, "fee_exceeds_amount"),
        (~blank(F.col("fx_margin")) & (margin.isNull() | F.isnan(margin) | (margin < 0) | (margin == float("inf"))),
         "invalid_fx_margin"),
        (~F.lower(F.trim(F.col("channel"))).isin(*CHANNELS) | F.col("channel").isNull(), "unknown_channel"),
        ((~blank(F.col("latitude")) | ~blank(F.col("longitude")))
         & (lat.isNull() | lon.isNull() | ~lat.between(-90, 90) | ~lon.between(-180, 180)), "invalid_coordinates"),
    ]
