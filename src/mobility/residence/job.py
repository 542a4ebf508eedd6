"""Office side: daily presence, monthly home cells and residence changes (12/16-month rule).

Reads office-zone events of completed anonymization runs and writes three Delta tables:
``office/presence``, ``office/home_cells`` and ``office/residence_changes``. The rule itself is
``detect_changes``, applied per pseudonym with ``applyInPandas``: one implementation for tests
and cluster.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from mobility import progress
from mobility.config import Agreement, as_agreement
from mobility.errors import InputContractError
from mobility.lake import Lake, write_json_atomic
from mobility.residence.presence import PSEUDONYM, daily_presence, monthly_home_cells, with_payment_days
from mobility.residence.rules import ResidenceParams, detect_changes
from mobility.schemas import (
    CHANGES_TABLE,
    EVENTS_TABLE,
    HOME_CELLS_TABLE,
    PAYMENTS_TABLE,
    PRESENCE_TABLE,
    RESIDENCE_CHANGES,
)
from mobility.spark import get_spark

# What the rule returns per pseudonym: the stored table less the cell attached afterwards.
CHANGES_SCHEMA = StructType([f for f in RESIDENCE_CHANGES.fields if f.name != "h3_cell"])


@dataclass
class ResidenceResult:
    run_id: str
    manifest: dict
    manifest_path: Path

    def summary(self) -> str:
        """What the run wrote, for a person at a terminal: versions and paths, never a count of people
        or changes (those stay in the office tables; see docs/auditor-guide.md)."""
        m = self.manifest
        versions = ", ".join(f"{name} v{v}" for name, v in sorted(m["office_versions"].items()))
        return "\n".join([f"residence {self.run_id}: data through {m['data_end']}",
                          f"  office tables: {versions}",
                          f"  manifest: {self.manifest_path}"])


def office_events(spark: SparkSession, lake: Lake, agreement_id: str) -> DataFrame:
    """Events of this agreement from completed anonymization runs."""
    if not lake.exists(EVENTS_TABLE):
        raise InputContractError("no office-zone events yet", where=str(lake.table(EVENTS_TABLE)),
                                 hint="run `mobility anonymize` on the operator side first")
    return lake.committed(spark, EVENTS_TABLE, agreement_id)


def office_payments(spark: SparkSession, lake: Lake, agreement_id: str) -> DataFrame:
    """Payments of this agreement from completed anonymization runs (as ``office_events``)."""
    return lake.committed(spark, PAYMENTS_TABLE, agreement_id)


def _month_end(month: str) -> dt.date:
    first = dt.date.fromisoformat(month + "-01")
    return (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()


SUBJECTS_PER_BATCH = 2000  # pandas frames of ~1.5M presence rows at most: one call per batch, not per person


def detect_in_spark(presence: DataFrame, home_country: str, params: ResidenceParams, data_end: dt.date,
                    subjects: int | None = None) -> DataFrame:
    """The pure rule over batches of pseudonyms (``detect_changes`` groups by subject itself), so
    Spark's per-call cost is paid once per batch instead of once per person."""
    subjects = subjects if subjects is not None else presence.select(PSEUDONYM).distinct().count()
    batches = max(1, -(-subjects // SUBJECTS_PER_BATCH))

    def per_batch(frame: pd.DataFrame) -> pd.DataFrame:
        found = detect_changes(frame.drop(columns="_batch").rename(columns={PSEUDONYM: "subject_id"}),
                               home_country, params, data_end=data_end)
        return found.rename(columns={"subject_id": PSEUDONYM})

    return (presence.select(PSEUDONYM, "date", "country")
            .withColumn("_batch", F.pmod(F.xxhash64(PSEUDONYM), F.lit(batches)))
            .groupBy("_batch").applyInPandas(per_batch, CHANGES_SCHEMA))


def attach_cells(changes: DataFrame, home_cells: DataFrame) -> DataFrame:
    """Origin cell of a departure (latest home month up to the crossing) and destination cell of an
    arrival (earliest home month from the crossing)."""
    c = changes.withColumn("_month", F.date_format("crossing_date", "yyyy-MM"))
    j = c.join(home_cells.select(PSEUDONYM, F.col("month").alias("_hm"), F.col("h3_cell").alias("_cell")),
               PSEUDONYM, "left")
    fits = F.when(F.col("direction") == "departure", F.col("_hm") <= F.col("_month")) \
        .otherwise(F.col("_hm") >= F.col("_month"))
    j = j.where(F.col("_hm").isNull() | fits)
    order = F.when(F.col("direction") == "departure", -F.unix_timestamp(F.to_timestamp("_hm", "yyyy-MM"))) \
        .otherwise(F.unix_timestamp(F.to_timestamp("_hm", "yyyy-MM")))
    w = Window.partitionBy(PSEUDONYM, "crossing_date", "direction").orderBy(order.asc_nulls_last())
    picked = j.withColumn("_r", F.row_number().over(w)).where(F.col("_r") == 1)
    return (changes.join(picked.select(PSEUDONYM, "crossing_date", "direction", F.col("_cell").alias("h3_cell")),
                         [PSEUDONYM, "crossing_date", "direction"], "left"))


def run(agreement: str | Agreement, lake_root: str | Path, through: str | None = None,
        spark: SparkSession | None = None, params: ResidenceParams | None = None) -> ResidenceResult:
    started = time.time()
    agreement = as_agreement(agreement)
    params = params or ResidenceParams()
    lake = Lake(lake_root)
    spark = spark or get_spark("mobility-residence")
    events = office_events(spark, lake, agreement.agreement_id)
    if through:
        events = events.where(F.col("month") <= through)
    last_month = events.agg(F.max("month")).collect()[0][0]
    if last_month is None:
        raise InputContractError("no events for this agreement" + (f" through {through}" if through else ""),
                                 where=str(lake.table(EVENTS_TABLE)))
    data_end = _month_end(through or last_month)
    tz, home = agreement.time_zone, agreement.home_country

    progress.say("residence", "daily presence from night-time events")
    presence = daily_presence(events, tz, params)
    if agreement.payments_as_presence and lake.exists(PAYMENTS_TABLE):  # agreement opts in
        presence = with_payment_days(presence, office_payments(spark, lake, agreement.agreement_id), tz,
                                     params)
    presence = lake.replace(spark, presence.where(F.col("date") <= F.lit(data_end)), PRESENCE_TABLE)

    progress.say("residence", f"monthly home cells (H3 res {params.home_cell_resolution})")
    home_cells = lake.replace(spark, monthly_home_cells(spark, events, home, tz, params), HOME_CELLS_TABLE)

    # How many pseudonyms only sizes the rule's batches: it is never logged or written (counts of
    # people and of changes stay in the office tables; docs/auditor-guide.md).
    subjects = presence.select(PSEUDONYM).distinct().count()
    progress.say("residence", "12/16-month rule, per pseudonym in batches")
    lake.replace(spark, attach_cells(detect_in_spark(presence, home, params, data_end, subjects), home_cells),
                 CHANGES_TABLE)

    run_id = f"residence-{agreement.agreement_id}-{data_end:%Y-%m}"
    # No counts here (pseudonyms, presence days, changes by kind): one manifest per month would give
    # the exact number of changes decided each month. What was computed is in office_versions.
    manifest = {
        "run_id": run_id, "stage": "residence", "agreement_id": agreement.agreement_id,
        "data_end": data_end.isoformat(), "through": through, "params": params.model_dump(),
        "duration_s": round(time.time() - started, 1),
        "office_versions": lake.versions(EVENTS_TABLE, PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE),
    }
    path = lake.residence_manifests / f"{run_id}.json"
    write_json_atomic(path, manifest)
    return ResidenceResult(run_id, manifest, path)
