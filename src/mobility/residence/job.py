"""Office side: daily presence, monthly home cells and residence changes (12/16-month rule).

Reads office-zone events of completed anonymization runs and writes three Delta tables:
``office/presence``, ``office/home_cells`` and ``office/residence_changes``. Presence and home
cells come from one pass over the events (``presence.presence_and_home_cells``). The rule runs over
spells, a history whose size grows with country changes rather than days
(``spells.detect_in_spark_fast``); the pure ``detect_changes`` is its reference, which
``detect_in_spark`` below runs in Spark for the tests that hold the two equal.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mobility import faults, progress
from mobility.config import Agreement, as_agreement
from mobility.errors import InputContractError
from mobility.lake import Lake, anonymize_txn_id, read_json, write_json_atomic
from mobility.privacy_budget.blocks import shift_month
from mobility.residence.presence import PSEUDONYM, presence_and_home_cells, with_payment_days
from mobility.residence.rules import KIND_UNRESOLVED, ResidenceParams, detect_changes
from mobility.residence.spells import detect_in_spark_fast, rule_in_batches
from mobility.schemas import (
    CHANGES_TABLE,
    EVENTS_TABLE,
    HOME_CELLS_TABLE,
    MONTH,
    PAYMENTS_TABLE,
    PRESENCE_TABLE,
)
from mobility.spark import get_spark


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
        months = m.get("recomputed_months") or []
        span = f"{months[0]}..{months[-1]}" if months else "none"
        return "\n".join([f"residence {self.run_id}: data through {m['data_end']}",
                          f"  {m.get('mode', 'rebuild')} ({m.get('reason', '')}); presence months recomputed: {span}",
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
    """The pure rule over batches of pseudonyms (``detect_changes`` groups by subject itself): the
    reference the job's path over spells is tested against."""

    def per_batch(frame: pd.DataFrame) -> pd.DataFrame:
        found = detect_changes(frame.drop(columns="_batch").rename(columns={PSEUDONYM: "subject_id"}),
                               home_country, params, data_end=data_end)
        return found.rename(columns={"subject_id": PSEUDONYM})

    return rule_in_batches(presence.select(PSEUDONYM, "date", "country"), per_batch, SUBJECTS_PER_BATCH, subjects)


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


# Delta operations that leave a residence run's state valid: erasure and retention delete a person's
# or a month's rows from every table alike, which a rebuild from the (equally deleted) events repeats.
_KEEPS_STATE = {"DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END"}


@dataclass(frozen=True)
class Work:
    """What one residence run recomputes, decided from manifests and the Delta log (no events scanned)."""

    mode: str  # "rebuild" or "incremental"
    reason: str
    months: tuple[str, ...]  # presence and home-cell months to (re)compute
    processed: dict[str, list[str]]  # anonymization run -> its months now processed
    data_end: dt.date
    previous: dict | None  # the manifest of the run whose tables this one continues


def _run_months(lake: Lake, agreement: Agreement, run_id: str, manifest: dict) -> list[str]:
    """Months an anonymization run delivered: from its manifest, else (runs written before manifests
    named them) from the Delta log of its commits."""
    wanted = [EVENTS_TABLE] + ([PAYMENTS_TABLE] if agreement.payments_as_presence else [])
    named = manifest.get("months")
    if isinstance(named, dict):
        return sorted({m for spec in wanted for m in named.get(spec.name, [])})
    return sorted({m for spec in wanted for m in lake.months_written(spec, anonymize_txn_id(run_id))})


def _state(lake: Lake, agreement_id: str) -> dict | None:
    """The latest residence manifest whose tables are still the current ones, but for deletions."""
    folder = lake.residence_manifests
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        manifest = read_json(path)
        if isinstance(manifest, dict) and manifest.get("agreement_id") == agreement_id and "processed" in manifest:
            found.append(manifest)
    if not found:
        return None
    # only the newest run's tables can be current; if they were rewritten since, only a rebuild is safe
    newest = max(found, key=lambda m: str(m.get("finished", "")))
    versions = newest.get("office_versions") or {}
    for spec in (PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE):
        v = versions.get(spec.name)
        ops = lake.history_since(spec, int(v)) if v is not None and lake.exists(spec) else None
        if ops is None or any(op not in _KEEPS_STATE for op in ops):
            return None
    return newest


def plan_work(lake: Lake, agreement: Agreement, params: ResidenceParams,
              through: str | None, rebuild: bool) -> Work:
    runs = lake.completed_runs(agreement.agreement_id)
    if not runs:
        raise InputContractError("no office-zone events yet", where=str(lake.table(EVENTS_TABLE)),
                                 hint="run `mobility anonymize` on the operator side first")
    delivered = {run_id: [m for m in _run_months(lake, agreement, run_id, m) if not through or m <= through]
                 for run_id, m in runs.items()}
    months = sorted({m for ms in delivered.values() for m in ms})
    if not months:
        raise InputContractError("no events for this agreement" + (f" through {through}" if through else ""),
                                 where=str(lake.table(EVENTS_TABLE)))
    data_end = _month_end(through or months[-1])
    previous = None if rebuild else _state(lake, agreement.agreement_id)
    why = ("--rebuild" if rebuild else "no earlier run whose tables are current" if previous is None
           else "residence parameters changed" if previous.get("params") != params.model_dump()
           else "data end moved back" if dt.date.fromisoformat(previous["data_end"]) > data_end else "")
    if why or previous is None:
        # every month; the early morning of a first day is presence of the month before
        every = sorted({shift_month(m, -1) for m in months} | set(months))
        return Work("rebuild", why, tuple(every), delivered, data_end, None)
    done = previous.get("processed") or {}
    new = sorted({m for run_id, ms in delivered.items() for m in ms if m not in set(done.get(run_id, []))})
    # events of month E decide presence days of E and of the last day of E - 1 (the night begun then)
    touched = sorted({shift_month(m, -1) for m in new} | set(new))
    return Work("incremental", f"{len(new)} newly delivered month(s)" if new else "no new months",
                tuple(m for m in touched if m <= f"{data_end:%Y-%m}"), delivered, data_end, previous)


def run(agreement: str | Agreement, lake_root: str | Path, through: str | None = None,
        spark: SparkSession | None = None, params: ResidenceParams | None = None,
        rebuild: bool = False) -> ResidenceResult:
    """Bring presence, home cells and residence changes up to date with the completed anonymization runs.

    Incremental by month: only the months whose events arrived since the last run are recomputed
    (their partitions replaced), and the 12/16 rule runs again only for the pseudonyms whose
    decision can still change (presence in those months, an unresolved crossing, or a record
    resolved at the previous data end). ``rebuild`` recomputes everything from the events and gives
    the same tables (tests/residence/test_incremental.py).
    """
    started = time.time()
    agreement = as_agreement(agreement)
    params = params or ResidenceParams()
    lake = Lake(lake_root)
    spark = spark or get_spark("mobility-residence")
    work = plan_work(lake, agreement, params, through, rebuild)
    tz, home, data_end = agreement.time_zone, agreement.home_country, work.data_end
    progress.say("residence", f"{work.mode} ({work.reason}): presence months "
                              f"{work.months[0] + '..' + work.months[-1] if work.months else 'none'}")

    months = list(work.months)
    old_presence = None
    if work.previous is not None and months:  # who had presence there before: their days may be gone now
        old_presence = lake.read(spark, PRESENCE_TABLE, work.previous["office_versions"][PRESENCE_TABLE.name]) \
            .where(F.col(MONTH).isin(months)).select(PSEUDONYM).distinct()
    if months:
        # the events of each month and of the month after it (whose first morning ends the night)
        read = sorted(set(months) | {shift_month(m, 1) for m in months})
        events = office_events(spark, lake, agreement.agreement_id).where(F.col(MONTH).isin(read))
        if through:
            events = events.where(F.col(MONTH) <= through)
        progress.say("residence", f"daily presence and monthly home cells (H3 res {params.home_cell_resolution}) "
                                  "in one pass over the events")
        presence, home_cells = presence_and_home_cells(spark, events, home, tz, params)
        if agreement.payments_as_presence and lake.exists(PAYMENTS_TABLE):  # agreement opts in
            payments = office_payments(spark, lake, agreement.agreement_id).where(F.col(MONTH).isin(read))
            presence = with_payment_days(presence, payments, tz, params)
        presence = presence.withColumn(MONTH, F.date_format("date", "yyyy-MM")) \
            .where(F.col(MONTH).isin(months) & (F.col("date") <= F.lit(data_end)))
        home_cells = home_cells.where(F.col(MONTH).isin(months))
        # A crash after any of these writes leaves tables newer than the last manifest: the next run sees
        # that in their Delta history (_state) and rebuilds, which gives the same tables.
        if work.mode == "rebuild":
            lake.overwrite(presence, PRESENCE_TABLE)
            faults.point("residence:after-presence")
            lake.overwrite(home_cells, HOME_CELLS_TABLE)
        else:
            lake.replace_months(spark, presence, PRESENCE_TABLE, months)
            faults.point("residence:after-presence")
            lake.replace_months(spark, home_cells, HOME_CELLS_TABLE, months)
        faults.point("residence:after-home-cells")

    presence_all = lake.read(spark, PRESENCE_TABLE)
    home_cells_all = lake.read(spark, HOME_CELLS_TABLE)
    ids = presence_all.select(PSEUDONYM)
    if work.previous is not None:
        # pseudonyms whose decision can still change; everyone else's records stand as they are
        before = lake.read(spark, CHANGES_TABLE, work.previous["office_versions"][CHANGES_TABLE.name])
        previous_end = dt.date.fromisoformat(work.previous["data_end"])
        who = before.where((F.col("kind") == KIND_UNRESOLVED)
                           | (F.col("resolved_date") >= F.lit(previous_end))).select(PSEUDONYM)
        if months:
            who = who.unionByName(presence_all.where(F.col(MONTH).isin(months)).select(PSEUDONYM))
        if old_presence is not None:
            who = who.unionByName(old_presence)
        ids = ids.join(who, PSEUDONYM, "left_semi")
    # The re-run pseudonyms, computed once and kept (the rule's input, its cells and the records
    # kept all join on them). How many only sizes the rule's batches: it is never logged or written
    # (counts of people and of changes stay in the office tables; docs/auditor-guide.md).
    ids = ids.distinct().localCheckpoint(eager=True)
    subjects = ids.count()
    rerun = presence_all if work.previous is None else presence_all.join(ids, PSEUDONYM, "left_semi")
    progress.say("residence", "12/16-month rule over presence spells, in batches of pseudonyms")
    found = attach_cells(detect_in_spark_fast(rerun, home, params, data_end, subjects),
                         home_cells_all.join(ids, PSEUDONYM, "left_semi"))
    if work.previous is not None:
        kept = lake.read(spark, CHANGES_TABLE).join(ids, PSEUDONYM, "left_anti")
        found = kept.unionByName(found.select(*kept.columns))
    # materialized before the overwrite: the rows kept are read from the table being replaced
    lake.overwrite(found.localCheckpoint(eager=True), CHANGES_TABLE)
    faults.point("residence:after-changes")

    run_id = f"residence-{agreement.agreement_id}-{data_end:%Y-%m}"
    # No counts here (pseudonyms, presence days, changes by kind): one manifest per month would give
    # the exact number of changes decided each month. What was computed is in office_versions.
    manifest = {
        "run_id": run_id, "stage": "residence", "agreement_id": agreement.agreement_id,
        "data_end": data_end.isoformat(), "through": through, "params": params.model_dump(),
        "mode": work.mode, "reason": work.reason, "recomputed_months": months,
        "processed": work.processed,
        "duration_s": round(time.time() - started, 1),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "office_versions": lake.versions(EVENTS_TABLE, PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE),
    }
    path = lake.residence_manifests / f"{run_id}.json"
    write_json_atomic(path, manifest)
    faults.point("residence:after-manifest")
    return ResidenceResult(run_id, manifest, path)


def current_state(lake: Lake, agreement_id: str) -> dict | None:
    """The residence manifest whose tables are the current ones (None: the next run rebuilds)."""
    return _state(lake, agreement_id)


def carry_state(lake: Lake, state: dict | None, suffix: str, reason: str) -> None:
    """Keep ``state`` (a ``current_state`` taken before the tables were rewritten without changing their
    results, e.g. renamed by a key rotation) current: a manifest naming the tables' new versions, so the
    next run stays incremental. Nothing when there was no current state (the next run rebuilds)."""
    if not state:
        return
    carried = dict(state, run_id=f"{state['run_id']}-{suffix}", mode="carried over", reason=reason,
                   recomputed_months=[], finished=dt.datetime.now(dt.UTC).isoformat(),
                   office_versions=lake.versions(EVENTS_TABLE, PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE))
    write_json_atomic(lake.residence_manifests / f"{carried['run_id']}.json", carried)

