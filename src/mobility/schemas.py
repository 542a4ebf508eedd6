"""Every input contract and every lake table, declared once.

Input files are read with every column as a string, then parsed and checked by the
anonymization job, so a malformed value becomes a quarantined row with a reason instead of
a null. Column names used across stages are constants here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

EVENT_TYPES = ("call_out", "call_in", "sms_out", "sms_in", "data")  # what the native contract's operators deliver
# ... and ``signal``: a network event of no known service (signalling data, as multimno delivers), and
# ``topup``: a credit recharge at a cell (FlowDB's events.topups): both place the subscriber, neither is a call
ACCEPTED_EVENT_TYPES = (*EVENT_TYPES, "signal", "topup")
SEXES = ("F", "M", "X")
CHANNELS = ("mobile_money", "card", "agent", "bank")
# Channels whose location is the payer's own presence (agent desk, card terminal).
PRESENCE_CHANNELS = ("agent", "card")


@dataclass(frozen=True)
class InputContract:
    """A CSV/Parquet input: which columns must be there and which may be."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    description: str = ""
    identifiers: tuple[str, ...] = field(default=())  # raw personal identifiers in this input

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def string_schema(self) -> StructType:
        return StructType([StructField(c, StringType(), True) for c in self.columns])


CDR = InputContract(
    "cdr",
    required=("msisdn", "event_time", "event_type", "cell_id", "visited_plmn"),
    optional=("duration_s", "counterpart_msisdn", "imei"),
    description="call-detail records: one row per call, SMS or data session",
    identifiers=("msisdn", "counterpart_msisdn", "imei"),
)
CELLS = InputContract(
    "cells",
    required=("cell_id", "latitude", "longitude"),
    optional=("valid_from", "valid_to", "technology"),
    description="the operator's cell sites with WGS84 coordinates",
)
SUBSCRIBERS = InputContract(
    "subscribers",
    required=("msisdn", "sex", "birth_year"),
    description="registration data of subscribers (optional input)",
    identifiers=("msisdn",),
)
PAYMENTS = InputContract(
    "payments",
    required=("txn_id", "txn_time", "sender_msisdn", "receiver_msisdn", "sender_country",
              "receiver_country", "amount", "currency", "fee", "channel"),
    optional=("fx_margin", "latitude", "longitude"),
    description="payment and remittance transactions",
    identifiers=("txn_id", "sender_msisdn", "receiver_msisdn"),
)
INPUTS = {c.name: c for c in (CDR, CELLS, SUBSCRIBERS, PAYMENTS)}

# ---- column names shared across stages -------------------------------------------------
PSEUDONYM = "pseudonym"
KEY_ID = "key_id"
AGREEMENT_ID = "agreement_id"
RUN_ID = "run_id"
MONTH = "month"  # yyyy-MM partition column used by retention

# ---- office zone (pseudonymized, minimized) ---------------------------------------------
OFFICE_EVENTS = StructType([
    StructField(PSEUDONYM, StringType(), False),
    StructField(KEY_ID, StringType(), False),
    StructField("event_hour", TimestampType(), False),  # UTC, coarsened to the agreement's resolution
    StructField("event_type", StringType(), False),
    StructField("h3_cell", StringType(), True),  # null for events served abroad
    StructField("country", StringType(), False),  # ISO alpha-3 of the serving network
    StructField("counterpart_pseudonym", StringType(), True),  # null unless the agreement keeps it
    StructField(AGREEMENT_ID, StringType(), False),
    StructField(RUN_ID, StringType(), False),
    StructField(MONTH, StringType(), False),
])
OFFICE_SUBSCRIBERS = StructType([
    StructField(PSEUDONYM, StringType(), False),
    StructField(KEY_ID, StringType(), False),
    StructField("sex", StringType(), True),
    StructField("birth_year", IntegerType(), True),
    StructField(AGREEMENT_ID, StringType(), False),
    StructField(RUN_ID, StringType(), False),
])
OFFICE_PAYMENTS = StructType([
    StructField("sender_pseudonym", StringType(), False),
    StructField("receiver_pseudonym", StringType(), True),
    StructField(KEY_ID, StringType(), False),
    StructField("txn_hour", TimestampType(), False),
    StructField("sender_country", StringType(), False),
    StructField("receiver_country", StringType(), False),
    StructField("amount", DoubleType(), False),
    StructField("currency", StringType(), False),
    StructField("fee", DoubleType(), False),
    StructField("fx_margin", DoubleType(), True),
    StructField("channel", StringType(), False),
    StructField("h3_cell", StringType(), True),
    StructField("location_country", StringType(), True),
    StructField(AGREEMENT_ID, StringType(), False),
    StructField(RUN_ID, StringType(), False),
    StructField(MONTH, StringType(), False),
])

# ---- operator zone ----------------------------------------------------------------------
QUARANTINE = StructType([
    StructField("dataset", StringType(), False),
    StructField("source_file", StringType(), False),
    StructField("reason", StringType(), False),
    StructField("record", StringType(), True),  # the raw row as JSON: stays on the operator's side
    StructField(AGREEMENT_ID, StringType(), False),
    StructField(RUN_ID, StringType(), False),
])
CELLS_BINNED = StructType([
    StructField("cell_id", StringType(), False),
    StructField("h3_cell", StringType(), False),
    StructField("country", StringType(), True),
    StructField("admin_area", StringType(), True),
    StructField("valid_from", DateType(), True),
    StructField("valid_to", DateType(), True),
])

# ---- office zone: residence --------------------------------------------------------------
DAILY_PRESENCE = StructType([
    StructField(PSEUDONYM, StringType(), False),
    StructField("date", DateType(), False),
    StructField("country", StringType(), False),
    StructField("source", StringType(), False),  # night, day, carried, payment
    StructField("night_events", LongType(), False),
    StructField(MONTH, StringType(), False),  # yyyy-MM of date: the partition a monthly run replaces
])
RESIDENCE_CHANGES = StructType([
    StructField(PSEUDONYM, StringType(), False),
    StructField("from_country", StringType(), False),
    StructField("to_country", StringType(), False),
    StructField("crossing_date", DateType(), False),
    StructField("resolved_date", DateType(), True),
    StructField("kind", StringType(), False),  # long_term, temporary, unresolved
    StructField("direction", StringType(), False),  # departure, arrival
    StructField("days_counted", IntegerType(), True),
    StructField("stay_days", IntegerType(), True),
    StructField("gap_days", IntegerType(), True),
    StructField("in_initial_period", BooleanType(), True),
    StructField("h3_cell", StringType(), True),  # origin (departure) or destination (arrival), res 5
])
# What the 12/16 rule returns per pseudonym: the stored table less the cell attached afterwards.
RULE_CHANGES = StructType([f for f in RESIDENCE_CHANGES.fields if f.name != "h3_cell"])


HOME_CELLS = StructType([
    StructField(PSEUDONYM, StringType(), False),
    StructField(MONTH, StringType(), False),
    StructField("h3_cell", StringType(), False),  # modal night cell in the home country, coarse resolution
    StructField("night_events", LongType(), False),
])
SUPPRESSION = StructType([
    StructField(PSEUDONYM, StringType(), False),
    StructField(KEY_ID, StringType(), False),
    StructField("reason", StringType(), False),
    StructField("added_on", StringType(), False),
])


# ---- lake tables: every Delta table a stage writes, declared once -------------------------
OPERATOR, OFFICE = "operator", "office"


@dataclass(frozen=True)
class TableSpec:
    """One Delta table of the lake: where it lives, its columns and how it is partitioned.

    ``stats_columns``: the columns whose per-file min/max Delta keeps for data skipping. Never an
    identifier (a pseudonym, a raw record): the log is not where a pseudonym should be found, and
    statistics on every column cost about a third of the office-zone write (BENCHMARKS.md).
    """

    name: str
    zone: str  # OPERATOR or OFFICE
    schema: StructType
    partition_by: tuple[str, ...] = ()
    stats_columns: str | None = None

    @property
    def label(self) -> str:
        return f"{self.zone}/{self.name}"


EVENTS_TABLE = TableSpec("events", OFFICE, OFFICE_EVENTS, (MONTH,), "event_hour,event_type,country")
SUBSCRIBERS_TABLE = TableSpec("subscribers", OFFICE, OFFICE_SUBSCRIBERS, (), "sex,birth_year")
PAYMENTS_TABLE = TableSpec("payments", OFFICE, OFFICE_PAYMENTS, (MONTH,),
                           "txn_hour,sender_country,receiver_country,channel")
# partitioned by month: a monthly residence run replaces only the months its new events touch
PRESENCE_TABLE = TableSpec("presence", OFFICE, DAILY_PRESENCE, (MONTH,))
HOME_CELLS_TABLE = TableSpec("home_cells", OFFICE, HOME_CELLS, (MONTH,))
CHANGES_TABLE = TableSpec("residence_changes", OFFICE, RESIDENCE_CHANGES)
QUARANTINE_TABLE = TableSpec("quarantine", OPERATOR, QUARANTINE, (), "dataset,reason,source_file,run_id")
CELLS_TABLE = TableSpec("cells", OPERATOR, CELLS_BINNED)
SUPPRESSION_TABLE = TableSpec("suppression", OPERATOR, SUPPRESSION)
LAKE_TABLES = {t.label: t for t in (EVENTS_TABLE, SUBSCRIBERS_TABLE, PAYMENTS_TABLE, PRESENCE_TABLE, HOME_CELLS_TABLE,
                                    CHANGES_TABLE, QUARANTINE_TABLE, CELLS_TABLE, SUPPRESSION_TABLE)}


def conform(df, schema: StructType):
    """The table's declared columns, in order and cast to their types: what every writer stores."""
    from pyspark.sql import functions as F

    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
