"""The lake: every zone path, every manifest and every stage's Delta write, in one place.

One root holds both zones in a demo; in production the operator zone sits on the operator's
premises and only ``office/`` is handed over. The root is a local folder or ``s3://bucket/prefix``
on S3-compatible object storage (``mobility.storage``, ADR 0014). The tables themselves are declared in
``mobility.schemas`` (name, zone, schema, partitioning); this module says where they are and
writes them. See docs/architecture.md, section 2.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobility import storage
from mobility.errors import StorageError
from mobility.schemas import MONTH as MONTH_COLUMN
from mobility.schemas import OFFICE, OPERATOR, TableSpec, conform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True, init=False)
class Lake:
    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # a local folder stays a resolved pathlib.Path; s3://bucket/prefix is a UPath (mobility.storage)
        object.__setattr__(self, "root", storage.lake_path(root))

    @property
    def local(self) -> bool:
        """False for a lake on object storage."""
        return storage.is_local(self.root)

    # ---- zones and tables ------------------------------------------------------------------
    # operator zone: raw-facing, where the key is used; never leaves the operator
    @property
    def operator(self) -> Path:
        return self.root / OPERATOR

    # office zone: pseudonymized, minimized; what the statistics office receives
    @property
    def office(self) -> Path:
        return self.root / OFFICE

    def table(self, spec: TableSpec) -> Path:
        """Folder of a declared Delta table."""
        return self.root / spec.zone / spec.name

    def office_table(self, name: str) -> Path:
        return self.office / name

    @property
    def quarantine(self) -> Path:
        return self.operator / "quarantine"

    @property
    def cells(self) -> Path:
        return self.operator / "cells"

    @property
    def suppression(self) -> Path:
        """Keyed pseudonyms never to be ingested again (erasures, opt-outs)."""
        return self.operator / "suppression"

    @property
    def rights_log(self) -> Path:
        return self.operator / "rights_log"

    @property
    def rights_log_secret(self) -> Path:
        return self.operator / "rights_log.secret"

    # ---- manifests and run records ---------------------------------------------------------
    @property
    def operator_manifests(self) -> Path:
        return self.operator / "manifests"

    @property
    def office_manifests(self) -> Path:
        """One JSON per completed anonymization run: the runs' commit markers."""
        return self.office / "manifests"

    @property
    def key_rotations(self) -> Path:
        """One JSON per completed key rotation: from then on the lake's pseudonyms are under its new key id."""
        return self.office / "key_rotations"

    def key_rotation_work(self, new_key_id: str) -> Path:
        """A rotation's map while it runs (old and new pseudonyms): deleted when it completes."""
        return self.office / "_key_rotation" / new_key_id

    @property
    def residence_manifests(self) -> Path:
        return self.office / "residence_manifests"

    def run_manifest(self, zone: str, run_id: str) -> Path:
        """An anonymization run's manifest: the operator's copy, or the office's commit marker."""
        return self.root / zone / "manifests" / f"{run_id}.json"

    def started_marker(self, run_id: str) -> Path:
        """Written when an anonymization run starts, removed when it commits: a crashed run leaves it."""
        return self.operator_manifests / f"{run_id}.started.json"

    def job_runs(self, zone: str) -> Path:
        """Records of the spark-submit entry points (``jobs/``) on one side."""
        return self.root / zone / "job_runs"

    def completed_runs(self, agreement_id: str | None = None) -> dict[str, dict]:
        """Office manifests of completed anonymization runs (of one agreement, if given), by run id."""
        out = {}
        if self.office_manifests.is_dir():
            for p in sorted(self.office_manifests.glob("*.json")):
                m = json.loads(p.read_text(encoding="utf-8"))
                if agreement_id is None or m.get("agreement_id") == agreement_id:
                    out[m["run_id"]] = m
        return out

    def key_rotation_records(self, agreement_id: str) -> list[dict]:
        folder = self.key_rotations
        records = [read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        return [r for r in records if isinstance(r, dict) and r.get("agreement_id") == agreement_id]

    def key_id(self, agreement_id: str) -> str | None:
        """The key id the agreement's stored pseudonyms are under: the newest of its completed
        anonymization runs and key rotations (None: nothing stored yet)."""
        found = [(str(m.get("finished", "")), m["key_id"]) for m in self.completed_runs(agreement_id).values()
                 if m.get("key_id")]
        found += [(str(r.get("finished", "")), r["new_key_id"]) for r in self.key_rotation_records(agreement_id)
                  if r.get("new_key_id")]
        return max(found)[1] if found else None

    def ingested_fingerprints(self) -> dict[str, str]:
        """Fingerprint of every input file already ingested by a completed run -> that run id."""
        return {f["fingerprint"]: run_id for run_id, manifest in self.completed_runs().items()
                for f in manifest.get("files", [])}

    # ---- publication and audit -------------------------------------------------------------
    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def release_dir(self, release_id: str) -> Path:
        return self.releases / release_id

    def release_stage(self, release_id: str) -> Path:
        """Where a charged release's noisy measurements are kept, as drawn, until it is published."""
        return self.releases / f".stage-{release_id}"

    @property
    def releases_lock(self) -> Path:
        """File lock: one publisher at a time on this host."""
        return self.root / "releases.lock"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    @property
    def derived_annual(self) -> Path:
        """Annual tables summed from published monthly releases (no budget), outside ``releases/``."""
        return self.root / "derived" / "annual"

    def ensure(self) -> "Lake":
        if not self.local:  # prefixes need no creating; a missing bucket is not created by accident
            bucket = storage.uri(self.root).removeprefix("s3://").split("/", 1)[0]
            try:
                found = storage.bucket_exists(self.root)
            except OSError as exc:
                raise StorageError(f"the object store cannot be reached: {type(exc).__name__}: {exc}",
                                   where=storage.uri(self.root),
                                   hint="check AWS_ENDPOINT_URL, AWS_REGION and the credentials (AWS_ACCESS_KEY_ID, "
                                        "AWS_SECRET_ACCESS_KEY) in the environment") from None
            if not found:
                raise StorageError(f"bucket {bucket!r} does not exist", where=storage.uri(self.root),
                                   hint="create the bucket first (the lake's prefix inside it is created by writing)")
            return self
        for p in (self.operator, self.office, self.releases):
            p.mkdir(parents=True, exist_ok=True)
        return self

    # ---- Delta reads and writes of the declared tables ---------------------------------------
    def exists(self, spec: TableSpec) -> bool:
        return has_commit(self.table(spec))

    def version(self, spec: TableSpec) -> int | None:
        return delta_version(self.table(spec))

    def _spark_path(self, spark: "SparkSession", spec: TableSpec) -> str:
        """The table's address for Spark (s3:// is served by S3A: ``mobility.spark``)."""
        if not self.local:
            from mobility.spark import require_object_store

            require_object_store(spark, storage.uri(self.root))
        return storage.uri(self.table(spec))

    def read(self, spark: "SparkSession", spec: TableSpec, version: int | None = None) -> "DataFrame":
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self._spark_path(spark, spec))

    def committed(self, spark: "SparkSession", spec: TableSpec, agreement_id: str,
                  version: int | None = None) -> "DataFrame":
        """Rows of one agreement written by completed anonymization runs only: the office manifest is a
        run's commit marker, so rows of a run killed part-way stay invisible (ADR 0003)."""
        from pyspark.sql import functions as F

        runs = list(self.completed_runs(agreement_id))
        return self.read(spark, spec, version).where((F.col("agreement_id") == agreement_id)
                                                     & F.col("run_id").isin(runs))

    def _writer(self, df: "DataFrame", spec: TableSpec, mode: str, txn_app_id: str | None):
        writer = df.write.format("delta").mode(mode)
        if spec.stats_columns and not self.exists(spec):  # a new table: existing ones keep their properties
            writer = writer.option("delta.dataSkippingStatsColumns", spec.stats_columns)
        if txn_app_id is not None:
            # Delta records (txnAppId, txnVersion) in the table's log and skips a later write with the
            # same pair: a rerun of a crashed run writes only what it had not committed (ADR 0003).
            writer = writer.option("txnAppId", txn_app_id).option("txnVersion", 0)
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        return writer

    def _save(self, df: "DataFrame", spec: TableSpec, mode: str, txn_app_id: str | None,
              **options: str) -> None:
        """One Spark Delta write; on object storage under the lake's writer lease (Delta's S3 log store
        is single-driver: ``storage.writer_lease``)."""
        path = self._spark_path(df.sparkSession, spec)
        with storage.writer_lease(self.root, f"Delta {mode} of {spec.name}"):
            writer = self._writer(df, spec, mode, txn_app_id)
            for key, value in options.items():
                writer = writer.option(key, value)
            writer.save(path)

    def append(self, df: "DataFrame", spec: TableSpec, *, txn_app_id: str | None = None) -> None:
        """Append the table's declared columns (idempotent when ``txn_app_id`` is given)."""
        self._save(conform(df, spec.schema), spec, "append", txn_app_id)

    def overwrite(self, df: "DataFrame", spec: TableSpec, *, txn_app_id: str | None = None) -> None:
        """Replace the table's contents with ``df`` (its declared columns) in one Delta commit."""
        self._save(conform(df, spec.schema), spec, "overwrite", txn_app_id, overwriteSchema="true")

    def replace(self, spark: "SparkSession", df: "DataFrame", spec: TableSpec) -> "DataFrame":
        """Overwrite the table with ``df`` and read it back: later steps read the stored rows, not the plan."""
        self.overwrite(df, spec)
        return self.read(spark, spec)

    def upsert(self, spark: "SparkSession", df: "DataFrame", spec: TableSpec, keys: tuple[str, ...],
               update: tuple[str, ...]) -> None:
        """MERGE ``df`` on ``keys``: matched rows get the ``update`` columns, new rows are inserted."""
        from delta.tables import DeltaTable

        df = conform(df, spec.schema)
        path = self._spark_path(spark, spec)
        with storage.writer_lease(self.root, f"Delta merge into {spec.name}"):
            if not self.exists(spec):
                self._writer(df, spec, "append", None).save(path)
                return
            (DeltaTable.forPath(spark, path).alias("t")
             .merge(df.alias("s"), " AND ".join(f"t.{k} = s.{k}" for k in keys))
             .whenMatchedUpdate(set={c: f"s.{c}" for c in update})
             .whenNotMatchedInsertAll().execute())

    def replace_months(self, spark: "SparkSession", df: "DataFrame", spec: TableSpec,
                       months: list[str]) -> None:
        """Replace exactly the ``month`` partitions listed with ``df`` (its rows must lie in them): a
        re-delivered month replaces its own partition and nothing else."""
        if not months:
            return
        rows = conform(df, spec.schema)
        if not self.exists(spec):
            self._save(rows, spec, "overwrite", None)
            return
        listed = ", ".join("'" + m.replace("'", "") + "'" for m in sorted(months))
        self._save(rows, spec, "overwrite", None, replaceWhere=f"{MONTH_COLUMN} IN ({listed})")

    def months_written(self, spec: TableSpec, txn_app_id: str) -> list[str]:
        """The ``month`` partitions the commit tagged ``txn_app_id`` added files to, read from the Delta
        log (no data is scanned); [] when no commit carries that tag."""
        log = self.table(spec) / "_delta_log"
        if not log.is_dir():
            return []
        for commit in sorted(log.glob("*.json"), reverse=True):
            actions = [json.loads(line) for line in commit.read_text(encoding="utf-8").splitlines() if line.strip()]
            if any((a.get("txn") or {}).get("appId") == txn_app_id for a in actions):
                values = {(a["add"].get("partitionValues") or {}).get(MONTH_COLUMN) for a in actions if "add" in a}
                return sorted(str(v) for v in values if v is not None)
        return []

    def history_since(self, spec: TableSpec, version: int) -> list[str] | None:
        """Operations of the commits after ``version`` (oldest first), from the Delta log; None when
        the log no longer holds every one of them (Delta's log cleanup removes old commit files), so
        that what happened since cannot be told."""
        commits = commit_files(self.table(spec))
        later = sorted(v for v in commits if v > version)
        if later and later != list(range(version + 1, later[-1] + 1)):
            return None
        infos = [commit_info(commits[v]) for v in later]
        return [str(info.get("operation", "")) for info in infos if info]

    def versions(self, *specs: TableSpec) -> dict[str, int]:
        """Current Delta version of each table that exists, by name (what manifests record)."""
        found = {spec.name: self.version(spec) for spec in specs}
        return {name: v for name, v in found.items() if v is not None}


def anonymize_txn_id(run_id: str) -> str:
    """The Delta transaction id of an anonymization run's writes: it makes reruns idempotent (ADR 0003)
    and names the commits whose months a residence run reads (``Lake.months_written``)."""
    return f"mobility-anonymize:{run_id}"


def is_delta(path: Path) -> bool:
    return (storage.as_path(path) / "_delta_log").is_dir()


def commit_files(path: Path) -> dict[int, Path]:
    """The JSON commit files still in a table's Delta log, by version."""
    log = storage.as_path(path) / "_delta_log"
    return {int(c.stem): c for c in log.glob("*.json") if c.stem.isdigit()} if log.is_dir() else {}


def commit_info(commit: Path) -> dict | None:
    """The ``commitInfo`` action of one commit file (operation, metrics, userMetadata), if it has one."""
    for line in commit.read_text(encoding="utf-8").splitlines():
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info:
            return info
    return None


def has_commit(path: Path) -> bool:
    """A Delta table Delta itself can open: its log holds a commit or a checkpoint. A first write
    that fails before its commit (a lost executor, a killed job) leaves ``_delta_log`` without one;
    the rerun must then create the table, not MERGE into it (tests/cluster/test_executor_loss.py)."""
    log = storage.as_path(path) / "_delta_log"
    if storage.is_local(log) and not log.is_dir():
        return False
    return any(name[:20].isdigit() and name.endswith((".json", ".parquet")) for name in storage.names(log))


def delta_version(path: Path) -> int | None:
    """Current version of a Delta table (recorded in manifests), or None when there is none."""
    if not has_commit(path):
        return None
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaProtocolError

    try:  # delta-rs reads the log directly: a Spark history query took about 0.3 s a table
        return int(DeltaTable(storage.uri(path), storage_options=storage.delta_options(path)).version())
    except DeltaProtocolError:  # a table feature delta-rs cannot read: ask the session's Delta
        from delta.tables import DeltaTable as SparkDeltaTable
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise
        return int(SparkDeltaTable.forPath(spark, storage.uri(path)).history(1).collect()[0]["version"])


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write a manifest or record whole or not at all (temporary file, then an atomic rename; on object
    storage one PUT, which readers see whole or not at all)."""
    if not storage.is_local(path):
        storage.write_bytes(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8"))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
