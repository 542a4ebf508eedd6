"""Operator-side anonymization: read, validate, pseudonymize, minimize, bin, write.

Reads whichever of CDRs, cells, subscribers and payments exist under the input folder and
writes pseudonymized, minimized Delta tables to the office zone; rejected rows go to the
operator-zone quarantine with a reason. Every row read is accounted for per source file.

This module runs the stage: ``datasets`` builds each dataset's frame, ``fates`` settles every
row's fate; here the frames are kept as local checkpoints (ADR 0007), written once the quality
gate passes, and the run is committed by its manifest (ADR 0003).
"""

from __future__ import annotations

import datetime as dt
import errno
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from mobility import faults, progress
from mobility.anonymize import formats
from mobility.anonymize import inputs as inp
from mobility.anonymize import validate as v
from mobility.anonymize.datasets import (
    RunContext,
    binned_cells,
    cdr_frame,
    cell_lookup,
    payments_frame,
    subscribers_frame,
    suppressed_pseudonyms,
)
from mobility.anonymize.fates import (
    cell_quarantine_rows,
    fate_summary,
    file_counts,
    quality_gate,
    quarantine_rows,
    totals,
    without_copies,
)
from mobility.anonymize.pseudonymize import load_key
from mobility.config import Agreement, as_agreement
from mobility.errors import (
    InputContractError,
    KeyMaterialError,
    MobilityError,
    StorageError,
    describe_storage_failure,
    storage_failure,
)
from mobility.lake import Lake, anonymize_txn_id, write_json_atomic
from mobility.reference import load_boundaries
from mobility.schemas import (
    CELLS_BINNED,
    CELLS_TABLE,
    EVENTS_TABLE,
    OFFICE,
    OPERATOR,
    PAYMENTS_TABLE,
    QUARANTINE_TABLE,
    SUBSCRIBERS_TABLE,
)
from mobility.spark import get_spark, session_time_zone


@dataclass
class AnonymizeResult:
    run_id: str
    manifest: dict
    manifest_path: Path
    already_done: bool = False

    def summary(self) -> str:
        """What the run counted per dataset, for a person at a terminal."""
        state = "already completed earlier; nothing written" if self.already_done else "completed"
        lines = [f"anonymize run {self.run_id}: {state}"]
        for dataset, t in self.manifest["totals"].items():
            lines.append(f"  {dataset:12s} read {t['read']:>10,}  accepted {t['accepted']:>10,}  "
                         f"quarantined {t['quarantined']:>8,}  duplicates {t['duplicates']:>8,}  "
                         f"suppressed {t['suppressed']:>6,}")
        skipped = self.manifest.get("skipped_files", [])
        renamed = [s for s in skipped if s.get("same_content_as")]  # the surprising ones: one line each
        for s in renamed[:10]:
            lines.append(f"  skipped {s['file']}: {s['reason']}")
        if len(renamed) > 10:
            lines.append(f"  ... and {len(renamed) - 10} more file(s) with the same content as an ingested one")
        if len(skipped) > len(renamed):
            lines.append(f"  skipped {len(skipped) - len(renamed)} file(s) already ingested by earlier runs")
        if skipped:
            lines.append("  (skipped_files in the manifest lists each skipped file and the run that ingested it)")
        lines.append(f"  manifest: {self.manifest_path}")
        return "\n".join(lines)


def free_checkpoint(df: DataFrame) -> None:
    """Free a local checkpoint's blocks now rather than when the JVM collects the frame.

    ``DataFrame.unpersist`` does not reach them: they belong to the RDD under the checkpoint's
    plan, which PySpark does not expose. Should a Spark version hide it, Spark's context cleaner
    still frees the blocks once the frame is garbage-collected."""
    try:
        df._jdf.queryExecution().analyzed().rdd().unpersist(True)
    except Exception:  # noqa: BLE001 - best effort: see above
        pass


def _all_at_once(spark: SparkSession, writes: list) -> None:
    """Run independent table writes at the same time, each in its own Spark job.

    The small ones (quarantine, cells) are mostly driver-side Delta bookkeeping: run one after
    another they left the cores idle for 2-5 s of every run (BENCHMARKS.md). Each write is
    idempotent (the run's transaction id), so when one fails the others still finish, the first
    error is raised, no manifest is written, and a rerun completes the run."""
    if not writes:
        return
    with ThreadPoolExecutor(max_workers=len(writes), thread_name_prefix="mobility-write") as pool:
        inherit = inheritable_thread_target(spark)  # job groups, tags and local properties of the caller
        futures = [pool.submit(inherit(write)) for write in writes]
        wait(futures)
    for future in futures:
        future.result()  # the first failure, in the order the writes were listed
    faults.point("anonymize:after-tables")


def _writes(ctx: RunContext, quarantine: list[DataFrame], new_cells: pd.DataFrame | None,
            kept: dict[str, DataFrame]) -> list:
    """The run's table writes, in the order of architecture.md section 5, each idempotent (ADR 0003)."""
    lake, spark, txn_app_id = ctx.lake, ctx.spark, anonymize_txn_id(ctx.run_id)
    writes = []

    def add(table: str, write) -> None:  # a crash test may kill the process right after this table's commit
        def then_point() -> None:
            write()
            faults.point(f"anonymize:after-{table}")

        writes.append(then_point)

    if quarantine:
        rows = reduce(DataFrame.unionByName, quarantine)
        add("quarantine", lambda: lake.append(rows, QUARANTINE_TABLE, txn_app_id=txn_app_id))
    if new_cells is not None:
        cells = spark.createDataFrame(new_cells.astype(object).where(new_cells.notna(), None), CELLS_BINNED)
        add("cells", lambda: lake.overwrite(cells, CELLS_TABLE, txn_app_id=txn_app_id))

    def accepted(name: str) -> DataFrame:
        return kept[name].filter(F.col(v.STATUS) == v.ACCEPTED).select(
            "*", F.lit(ctx.key.key_id).alias("key_id"), F.lit(ctx.agreement.agreement_id).alias("agreement_id"),
            F.lit(ctx.run_id).alias("run_id"))

    if "cdr" in kept:
        add("events", lambda: lake.append(accepted("cdr"), EVENTS_TABLE, txn_app_id=txn_app_id))
    if "subscribers" in kept:
        # run_id stays the inserting run's: rows must not vanish while a later run is incomplete
        add("subscribers", lambda: lake.upsert(spark, accepted("subscribers"), SUBSCRIBERS_TABLE,
                                               keys=("pseudonym", "key_id"), update=("sex", "birth_year")))
    if "payments" in kept:
        add("payments", lambda: lake.append(accepted("payments"), PAYMENTS_TABLE, txn_app_id=txn_app_id))
    return writes


def _anonymize(ctx: RunContext, cell_files: list[inp.InputFile],
               new_files: dict[str, list[inp.InputFile]]) -> list[dict]:
    """Settle the fate of every new row, pass the quality gate, write every table: the per-file counts."""
    spark, agreement = ctx.spark, ctx.agreement
    suppression = suppressed_pseudonyms(ctx).persist()
    counts: list[dict] = []
    kept: dict[str, DataFrame] = {}  # each dataset's frame less its copies
    held: list[DataFrame] = []  # the local checkpoints, freed at the end
    quarantine: list[DataFrame] = []
    new_cells = None
    try:  # the local checkpoints are freed whether the run commits or the gate stops it
        if cell_files:  # the cell table is always re-read: events need it
            progress.say("anonymize", f"binning {len(cell_files)} cell file(s) on H3 res {agreement.h3_resolution}")
            binned, rejected, cell_counts = binned_cells(ctx, cell_files)
            counts += [c for c in cell_counts if any(c["file"] == f.name for f in new_files.get("cells", []))]
            cells = F.broadcast(cell_lookup(ctx, binned, rejected))
            if new_files.get("cells"):
                new_cells = binned
                if len(rejected):
                    quarantine.append(cell_quarantine_rows(ctx, rejected))

        builders = {"cdr": lambda fs: cdr_frame(ctx, fs, cells, suppression),
                    "subscribers": lambda fs: subscribers_frame(ctx, fs, suppression),
                    "payments": lambda fs: payments_frame(ctx, fs, suppression)}
        for name, build in builders.items():
            fs = new_files.get(name)
            if not fs:
                continue
            progress.say("anonymize", f"validating and pseudonymizing {name}: {len(fs)} file(s)")
            with session_time_zone(spark, agreement.time_zone):  # naive input times are local times
                df = build(fs)
            # Computed once, for the copies, the counts and then the writes (ADR 0007): a local
            # checkpoint on the executors' disks, filled by the pass that finds the copies (which
            # shuffles only their hashes and ids). Spark's columnar cache cost some 25 more CPU-s per
            # 10M rows to encode (BENCHMARKS.md). The constant columns (key id, agreement, run) are
            # added at write time, not stored per row.
            df = df.localCheckpoint(eager=False, storageLevel=StorageLevel.DISK_ONLY)
            held.append(df)
            # The copies, the counts and the quarantined rows: small beside the frame.
            summary = fate_summary(df).localCheckpoint(eager=True)
            held.append(summary)
            these = file_counts(summary, name, fs)
            counts += these
            quarantine.append(quarantine_rows(summary, ctx, name, fs))
            kept[name] = without_copies(df, summary, sum(c["duplicates"] for c in these))

        quality_gate(counts, agreement.max_invalid_share)
        writes = _writes(ctx, quarantine, new_cells, kept)
        progress.say("anonymize", "writing the quarantine and the office zone",
                     rows=sum(c.get("read", 0) for c in counts))
        _all_at_once(spark, writes)
    finally:
        for df in held:
            free_checkpoint(df)
        suppression.unpersist()
    return counts


def _commit(ctx: RunContext, counts: list[dict], new_files: dict[str, list[inp.InputFile]], skipped: list[dict],
            started: float) -> AnonymizeResult:
    """Write the run's manifests, the office one last: it is the run's commit marker (ADR 0003)."""
    lake, run_id, agreement = ctx.lake, ctx.run_id, ctx.agreement
    fingerprints = {f.name: f.fingerprint for fs in new_files.values() for f in fs}
    manifest = {
        "run_id": run_id, "agreement_id": agreement.agreement_id, "key_id": ctx.key.key_id, "stage": "anonymize",
        "files": [dict(c, fingerprint=fingerprints.get(c["file"], "")) for c in counts],
        "skipped_files": skipped,
        "totals": totals(counts),
        "office_versions": lake.versions(EVENTS_TABLE, SUBSCRIBERS_TABLE, PAYMENTS_TABLE),
        # the month partitions this run added rows to, from its Delta commits: a residence run finds
        # the months to recompute here instead of scanning the events
        "months": {spec.name: lake.months_written(spec, anonymize_txn_id(run_id))
                   for spec in (EVENTS_TABLE, PAYMENTS_TABLE)},
        "h3_resolution": agreement.h3_resolution, "time_resolution": agreement.time_resolution,
        "duration_s": round(time.time() - started, 1),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
    }
    write_json_atomic(lake.run_manifest(OPERATOR, run_id), manifest)
    faults.point("anonymize:after-operator-manifest")
    path = lake.run_manifest(OFFICE, run_id)
    write_json_atomic(path, manifest)  # the commit marker: last
    faults.point("anonymize:after-office-manifest")
    lake.started_marker(run_id).unlink(missing_ok=True)
    return AnonymizeResult(run_id, manifest, path)


def run(agreement: str | Agreement, input_dir: str | Path, lake_root: str | Path, run_id: str | None = None,
        spark: SparkSession | None = None, boundaries=None) -> AnonymizeResult:
    started = time.time()
    agreement = as_agreement(agreement)
    key = load_key(agreement.key)  # fail before any Spark work when the key is missing
    try:  # a full, read-only or forbidden file system: one refusal naming the lake or input path (exit 2)
        files = formats.discover(input_dir, agreement.input_format)  # the operator's format (the agreement's)
        lake = Lake(lake_root).ensure()
        completed = lake.completed_runs()
        all_files = [f for fs in files.values() for f in fs]
        skipped = _already_ingested(all_files, lake.ingested_fingerprints(), completed)
        skipped_names = {s["file"] for s in skipped}
        new_files = {name: [f for f in fs if f.name not in skipped_names] for name, fs in files.items()}
        run_id = run_id or inp.derive_run_id(agreement.agreement_id, [f.fingerprint for f in all_files])
        _check_key_id(lake, agreement, key.key_id)
        if run_id in completed:
            lake.started_marker(run_id).unlink(missing_ok=True)  # left by a crash right after the commit marker
            return AnonymizeResult(run_id, completed[run_id], lake.run_manifest(OFFICE, run_id), already_done=True)
        if not any(f.dataset in ("cdr", "payments", "subscribers") for fs in new_files.values() for f in fs):
            progress.say("anonymize", "every input file was already ingested; nothing to do")
        write_json_atomic(lake.started_marker(run_id),
                          {"run_id": run_id, "agreement_id": agreement.agreement_id,
                           "files": [f.name for f in all_files], "started": dt.datetime.now(dt.UTC).isoformat()})

        spark = spark or get_spark("mobility-anonymize")
        boundaries = load_boundaries() if boundaries is None else boundaries
        ctx = RunContext(spark, agreement, key, lake, run_id, boundaries)
        try:
            counts = _anonymize(ctx, files.get("cells", []), new_files)
        except Exception as exc:
            _refuse_storage_failure(exc, lake_root, input_dir)
            _refuse_corrupt_input(exc, [f for fs in new_files.values() for f in fs])
            raise
        return _commit(ctx, _every_file_counted(counts, new_files), new_files, skipped, started)
    except MobilityError:
        raise
    except Exception as exc:
        _refuse_storage_failure(exc, lake_root, input_dir)
        raise


def _already_ingested(files: list[inp.InputFile], done: dict[str, str], completed: dict[str, dict]) -> list[dict]:
    """The files a completed run ingested already: the same file (its fingerprint, name included), or the
    same bytes under another name (its content fingerprint; manifests since issue #24 record it)."""
    first: dict[tuple[str, str], tuple[str, str]] = {}  # (dataset, content) -> (file, run) of its first ingestion
    for rid, manifest in sorted(completed.items(), key=lambda kv: str(kv[1].get("finished", ""))):
        for f in manifest.get("files", []):
            if f.get("content_fingerprint"):
                first.setdefault((f.get("dataset", ""), f["content_fingerprint"]), (f["file"], rid))
    skipped = []
    for f in files:
        if f.fingerprint in done:
            skipped.append({"file": f.name, "dataset": f.dataset, "ingested_by": done[f.fingerprint],
                            "reason": f"already ingested by run {done[f.fingerprint]}"})
        elif (f.dataset, f.content) in first:
            earlier, rid = first[(f.dataset, f.content)]
            skipped.append({"file": f.name, "dataset": f.dataset, "ingested_by": rid, "same_content_as": earlier,
                            "reason": f"same content as {earlier} ingested by run {rid}"})
    return skipped


def _every_file_counted(counts: list[dict], new_files: dict[str, list[inp.InputFile]]) -> list[dict]:
    """The per-file counts with each file's content fingerprint, and a zero row for a new file without
    rows (a header alone): listed, it is recognised when delivered again."""
    by_name = {f.name: f for fs in new_files.values() for f in fs}
    counted = {c["file"] for c in counts}
    zeros = [{"dataset": f.dataset, "file": f.name, "read": 0, "accepted": 0, "quarantined": 0, "duplicates": 0,
              "suppressed": 0, "reasons": {}} for f in by_name.values() if f.name not in counted]
    return [dict(c, content_fingerprint=by_name[c["file"]].content) if c["file"] in by_name else c
            for c in counts + zeros]


def _refuse_storage_failure(exc: BaseException, lake_root: str | Path, input_dir: str | Path) -> None:
    """A full, read-only or forbidden file system, from Python (errno) or from Spark and Delta (the JVM's
    message), becomes a refusal naming the lake (or the input) path and what to do."""
    found = storage_failure(exc)
    if found is None:
        return
    code, path = found
    what = describe_storage_failure(code)
    at = f" (at {path})" if path else ""
    if path and _is_under(path, input_dir):
        raise StorageError(
            f"cannot read the input {path}: {what}; nothing of this run was committed", where=str(input_dir),
            hint="make the input folder and its files readable by the user that runs the job, then run the same "
                 "command again") from exc
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = (f"free space on the file system that holds the lake ({lake_root}) and Spark's scratch folder "
                "(spark.local.dir, /tmp by default), or raise the file size limit (ulimit -f) or the quota, then run "
                "the same command again: it resumes this run, and nothing is ingested twice")
    else:
        hint = ("make the lake folder writable by the user that runs the job (mounted read-write, owner and mode), "
                "or give --lake a folder it may write to, then run the same command again")
    raise StorageError(f"the run cannot write to the lake {lake_root}: {what}{at}; nothing of this run was "
                       "committed", where=str(lake_root), hint=hint) from exc


def _is_under(path: str, folder: str | Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False


def _check_key_id(lake: Lake, agreement: Agreement, key_id: str) -> None:
    """Refuse a key id other than the one the office zone's pseudonyms were made with: new records would
    get other pseudonyms, and the 12/16-month rule would see the same people as new subscribers."""
    stored = lake.key_id(agreement.agreement_id)  # of its latest completed run or key rotation
    if stored is not None and key_id != stored:
        raise KeyMaterialError(
            f"agreement {agreement.agreement_id} names key id {key_id!r}, but the office zone's pseudonyms were "
            f"made with key id {stored!r} (its latest run or key rotation); pseudonyms under another key would not "
            "match them; nothing was read or written",
            where=str(lake.office_manifests),
            hint=f"if the key id is a typo, set key.key_id back to {stored!r}; a real key change needs the "
                 "office tables rewritten to the new pseudonyms first: `mobility keys rotate` (docs/operations.md)")


def _refuse_corrupt_input(exc: Exception, files: list[inp.InputFile]) -> None:
    """Turn Spark's failure on a truncated or corrupt gzip or Parquet file into a refusal naming the file(s)."""
    if not inp.is_corrupt_stream_error(exc):
        return
    bad = inp.corrupt_files(files)
    if not bad:
        return  # not a file we can name: let the original error through
    listed = "; ".join(f"{f.name}: {reason}" for f, reason in bad)
    raise InputContractError(
        f"{len(bad)} input file(s) cannot be read to their end: {listed}; nothing of this run was committed",
        where=str(bad[0][0].path),
        hint="ask the operator to deliver the file(s) again (check the transfer's size or checksum), replace "
             "them in the input folder and run the same command again; the other files are ingested then") from None
