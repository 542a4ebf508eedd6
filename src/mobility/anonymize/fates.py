"""The fate of every row read: accepted, quarantined with a reason, a copy of an earlier row, or suppressed.

One narrow pass over a dataset's frame (``fate_summary``) settles it. The manifest's per-file
counts, the quarantine rows and the copies left out of the office zone are all read from that
small summary, and ``quality_gate`` can stop the run before anything is written (ADR 0007).
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mobility.anonymize import inputs as inp
from mobility.anonymize import validate as v
from mobility.anonymize.datasets import RunContext
from mobility.errors import QualityGateError
from mobility.schemas import CELLS, QUARANTINE

# Copies are left out of the office zone through a broadcast table up to this many (about 25
# bytes each in the hash table); beyond it Spark joins them by a shuffle, slower but bounded by
# memory per partition.
MAX_BROADCAST_COPIES = 4_000_000

COUNTED = ("read", "accepted", "quarantined", "duplicates", "suppressed")


def fate_summary(df: DataFrame) -> DataFrame:
    """The fate of every row, from one narrow pass over the frame computed once: counts per file,
    status and reason, and one row for each quarantined row (with its record) and each copy (with
    its row id).

    Only the two row hashes, the file, the id, the status and (for the 1 % quarantined) the reason
    and record are shuffled to find the copies, not the rows: the window that sorted every raw row
    was the largest part of the validation pass, and a second pass to count read the whole frame
    again (BENCHMARKS.md). A copy's own checks do not matter: it is a duplicate."""
    copy = v.is_copy()
    status = F.when(copy, F.lit(v.DUPLICATE)).otherwise(F.col(v.STATUS))
    shown = F.when(copy | (F.col(v.STATUS) == v.QUARANTINED), F.col(v.ROW_ID))
    fates = df.select(inp.SOURCE_FILE, status.alias(v.STATUS), F.when(~copy, F.col(v.REASON)).alias(v.REASON),
                      shown.alias("_row"), F.when(~copy, F.col("_record")).alias("_record"))
    return fates.groupBy(inp.SOURCE_FILE, v.STATUS, v.REASON, "_row", "_record").agg(F.count(F.lit(1)).alias("_n"))


def without_copies(df: DataFrame, summary: DataFrame, n_copies: int) -> DataFrame:
    """``df`` less the rows its summary names as copies of an earlier row."""
    copies = summary.filter((F.col(v.STATUS) == v.DUPLICATE) & F.col("_row").isNotNull()).select(
        F.col("_row").alias(v.ROW_ID))
    return df.join(F.broadcast(copies) if n_copies <= MAX_BROADCAST_COPIES else copies, v.ROW_ID, "left_anti")


def file_counts(summary: DataFrame, dataset: str, files: list[inp.InputFile]) -> list[dict]:
    """Rows read, accepted, quarantined (by reason), copies and suppressed, per source file."""
    rows = summary.groupBy(inp.SOURCE_FILE, v.STATUS, v.REASON).agg(F.sum("_n").alias("count")).collect()
    names = inp.file_names(files)
    per: dict[str, dict] = {}
    for r in rows:
        name = names[r[inp.SOURCE_FILE]]
        entry = per.setdefault(name, {"dataset": dataset, "file": name, "read": 0, "accepted": 0, "quarantined": 0,
                                      "duplicates": 0, "suppressed": 0, "reasons": {}})
        n = r["count"]
        entry["read"] += n
        key = {"duplicate": "duplicates"}.get(r[v.STATUS], r[v.STATUS])
        entry[key] += n
        if r[v.REASON]:
            entry["reasons"][r[v.REASON]] = entry["reasons"].get(r[v.REASON], 0) + n
    return sorted(per.values(), key=lambda e: e["file"])


def quarantine_rows(summary: DataFrame, ctx: RunContext, dataset: str, files: list[inp.InputFile]) -> DataFrame:
    """The quarantined rows of one dataset, each with its file, reason and raw record."""
    return summary.filter(F.col(v.STATUS) == v.QUARANTINED).select(
        F.lit(dataset).alias("dataset"), inp.name_of_file(F.col(inp.SOURCE_FILE), files).alias("source_file"),
        F.col(v.REASON).alias("reason"), F.col("_record").alias("record"),
        F.lit(ctx.agreement.agreement_id).alias("agreement_id"), F.lit(ctx.run_id).alias("run_id"))


def cell_quarantine_rows(ctx: RunContext, rejected: pd.DataFrame) -> DataFrame:
    """The rejected cells (``datasets.binned_cells``) as quarantine rows."""
    q = rejected.assign(dataset="cells", agreement_id=ctx.agreement.agreement_id, run_id=ctx.run_id)
    q["record"] = q[list(CELLS.columns)].astype(object).where(q[list(CELLS.columns)].notna(), None) \
        .apply(lambda r: r.to_json(), axis=1)
    q = q.rename(columns={inp.SOURCE_FILE: "source_file"})[[f.name for f in QUARANTINE.fields]]
    return ctx.spark.createDataFrame(q.astype(object).where(q.notna(), None), QUARANTINE)


def totals(counts: list[dict]) -> dict:
    """The per-file counts summed per dataset."""
    out: dict[str, dict] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    for c in counts:
        for k in COUNTED:
            out[c["dataset"]][k] += c[k]
    return dict(out)


def quality_gate(counts: list[dict], limit: float) -> None:
    """Stop the run, before anything is written, when a dataset's share of invalid rows exceeds ``limit``."""
    for dataset, t in totals(counts).items():
        if t["read"] and t["quarantined"] / t["read"] > limit:
            worst = sorted(((n, r, c["file"]) for c in counts if c["dataset"] == dataset
                            for r, n in c["reasons"].items()), reverse=True)[:3]
            detail = "; ".join(f"{r}: {n} rows in {f}" for n, r, f in worst)
            raise QualityGateError(
                f"{t['quarantined']} of {t['read']} {dataset} rows ({t['quarantined'] / t['read']:.1%}) are invalid, "
                f"above the agreement's max_invalid_share of {limit:.1%}; nothing was written. Top reasons: {detail}",
                where=dataset,
                hint="fix the input files (see docs/contracts.md for each reason) or, if the data is known to be "
                     "this dirty, raise max_invalid_share in the agreement")
