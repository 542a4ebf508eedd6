"""Making a deletion physical: purge deletion vectors, vacuum with no retention, scrub the Delta log.

A Delta DELETE only writes a new version; the old Parquet files stay for time travel, and the
JSON commits, checkpoints and version checksums (.crc) of ``_delta_log`` carry per-file min/max
statistics whose string prefixes (32 characters) are enough to identify a pseudonym or a raw
number. See docs/adr/0005-erasure-reaches-delta-history.md.

On a lake on object storage (ADR 0014) the same steps act on objects: the vacuum deletes them, and a
scrubbed log file is written back in one PUT (readers see the old object or the new one, never a part;
there is no rename). The caller holds the lake's writer lease throughout (``log.under_writer_lease``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mobility import faults, storage
from mobility.rights.catalog import Table
from mobility.spark import session_conf

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
STATS_KEYS = ("minValues", "maxValues")


def data_files(path: Path) -> set[Path]:
    """Data files of a table (not its log, not Hadoop's hidden checksum sidecars)."""
    if not storage.is_local(path):
        return {p for p in storage.files(path) if "_delta_log" not in p.parts and not p.name.startswith(".")}
    return {p for p in Path(path).rglob("*") if p.is_file() and "_delta_log" not in p.parts
            and not p.name.startswith(".")}


def purge(spark, tables: list[Table]) -> dict[str, int]:
    """Rewrite files with deletion vectors, vacuum every superseded file, scrub identifier statistics.

    Returns the number of files removed per table. Run it when no other job writes to these tables:
    a zero-hour vacuum also removes files of a write that has not committed yet.
    """
    from delta.tables import DeltaTable

    removed = {}
    with session_conf(spark, RETENTION_CHECK, "false"):  # lift Delta's 7-day vacuum guard for this purge only
        for table in tables:
            delta = DeltaTable.forPath(spark, str(table.path))
            if _uses_deletion_vectors(table.path, delta):
                # deleted rows still sit in files a deletion vector masks; rewrite them out first
                spark.sql(f"REORG TABLE delta.`{table.path}` APPLY (PURGE)")
            before = data_files(table.path)
            _vacuum_now(table.path, delta)
            removed[table.label] = len(before - data_files(table.path))
    # killed here, the files are gone but the log still holds identifier statistics: a rerun of the
    # erasure or retention purges again (nothing left to vacuum) and scrubs
    faults.point("purge:after-vacuum")
    for table in tables:
        scrub_log(table.path, table.identifier_columns)
    _forget_cached_logs(spark)
    return removed


def _vacuum_now(path: Path, delta) -> None:
    """Remove every file the current version does not reference.

    delta-rs first: no Spark jobs, and nothing printed on standard output (Spark's VACUUM prints a
    line there, which would corrupt the commands' JSON output). Spark when delta-rs cannot write the table.
    """
    from deltalake import DeltaTable

    try:
        DeltaTable(storage.uri(path), storage_options=storage.delta_options(path)).vacuum(
            retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    except Exception:  # noqa: BLE001  (a table feature delta-rs does not support)
        delta.vacuum(0.0)
    if not storage.is_local(path):
        return  # S3A writes no checksum sidecars
    for sidecar in Path(path).rglob(".*.crc"):  # Hadoop checksums of files that are gone
        if "_delta_log" not in sidecar.parts and not sidecar.with_name(sidecar.name[1:-4]).exists():
            sidecar.unlink()


def _uses_deletion_vectors(path: Path, delta) -> bool:
    """Read from the log with delta-rs (a Spark job per table costs more than the answer), else ask Spark."""
    from deltalake import DeltaTable

    try:
        table = DeltaTable(storage.uri(path), storage_options=storage.delta_options(path))
        config = table.metadata().configuration or {}
    except Exception:  # noqa: BLE001  (a table feature delta-rs cannot read)
        config = delta.detail().collect()[0]["properties"] or {}
    return str(config.get("delta.enableDeletionVectors", "false")).lower() == "true"


def _forget_cached_logs(spark) -> None:
    """Delta caches parsed logs per session; drop them so nothing reads the pre-scrub statistics."""
    try:
        spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    except Exception:  # noqa: BLE001  (an older or remote session: the cache only costs speed)
        pass


# ---- the log -------------------------------------------------------------------------------------

def _scrub_stats(stats, columns: tuple[str, ...]):
    """Drop the identifier columns' min/max (data skipping on them is lost; counts stay)."""
    if isinstance(stats, str):
        try:
            parsed = json.loads(stats)
        except ValueError:
            return stats
        return json.dumps(_scrub_stats(parsed, columns), separators=(",", ":"))
    if isinstance(stats, dict):
        for key in STATS_KEYS:
            if isinstance(stats.get(key), dict):
                stats[key] = _drop_columns(stats[key], columns)
    return stats


def _drop_columns(values: dict, columns: tuple[str, ...]) -> dict:
    return {k: v for k, v in values.items() if k not in columns}


def _scrub_action(node, columns: tuple[str, ...]):
    """Walk any JSON value and scrub every ``stats`` / ``stats_parsed`` it contains."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("stats", "stats_parsed") and value is not None:
                out[key] = _scrub_stats(value, columns)
            else:
                out[key] = _scrub_action(value, columns)
        return out
    if isinstance(node, list):
        return [_scrub_action(v, columns) for v in node]
    return node


def _replace(path: Path, data: bytes) -> None:
    if not storage.is_local(path):  # one PUT: readers get the old object or the new one, never a part
        storage.write_bytes(path, data)
        return
    tmp = path.with_name(f".{path.name}.scrub-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    path.with_name(f".{path.name}.crc").unlink(missing_ok=True)  # a Hadoop checksum of the old bytes


def _scrub_json_lines(path: Path, columns: tuple[str, ...]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [json.dumps(_scrub_action(json.loads(ln), columns), separators=(",", ":")) if ln.strip() else ln
           for ln in lines]
    if out != lines:
        _replace(path, ("\n".join(out) + "\n").encode("utf-8"))


def _scrub_parquet(path: Path, columns: tuple[str, ...]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path if storage.is_local(path) else pa.BufferReader(path.read_bytes()))
    rows = table.to_pylist()
    scrubbed = [_scrub_action(r, columns) for r in rows]
    if scrubbed != rows:
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(scrubbed, schema=table.schema), buffer)
        _replace(path, buffer.getvalue().to_pybytes())


def scrub_log(table_path: Path, columns: tuple[str, ...]) -> None:
    """Remove identifier statistics from every commit, compaction, checkpoint and sidecar of a table.

    Version checksums (.crc) are optional caches holding a copy of every file's statistics: they
    are deleted rather than rewritten, so Delta never compares a scrubbed file list with them.
    """
    if not columns:
        return
    if not storage.is_local(table_path):
        _scrub_objects(storage.as_path(table_path) / "_delta_log", columns)
        return
    log_dir = Path(table_path) / "_delta_log"
    for leftover in log_dir.rglob(".*.scrub-tmp"):  # a scrub killed between its write and its rename
        leftover.unlink()
    for path in sorted(p for p in log_dir.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue
        if path.suffix == ".crc":
            path.unlink()
        elif path.suffix == ".json":
            _scrub_json_lines(path, columns)
        elif path.suffix == ".parquet":
            _scrub_parquet(path, columns)


def _scrub_objects(log_dir: Path, columns: tuple[str, ...]) -> None:
    """``scrub_log`` on object storage: each log object rewritten in one PUT, version checksums deleted."""
    for path in storage.files(log_dir):
        if path.name.startswith("."):
            continue
        if path.suffix == ".crc":
            storage.remove(path)
        elif path.suffix == ".json":
            _scrub_json_lines(path, columns)
        elif path.suffix == ".parquet":
            _scrub_parquet(path, columns)
