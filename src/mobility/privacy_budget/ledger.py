"""Append-only, hash-chained privacy-budget ledger kept as a Delta table (delta-rs, no JVM).

One ``charged`` entry is appended before any noise is drawn for a release; once the release
directory is in place a ``published`` entry records the SHA-256 of its ``manifest.json``
(which lists the SHA-256 of every result file). Each entry's ``entry_hash`` is the SHA-256 of the
canonical JSON of all its other fields, including ``prev_hash``, the previous entry's hash.
See docs/auditor-guide.md for what this proves and how to check it without this package.

Appends are atomic across hosts: each one is committed against the exact Delta version its checks
read (no automatic retry), so a writer that lost the race gets a conflict, reads the ledger again
and checks again (ADR 0004). The host file lock next to the table only spares that retry where
all writers share a host; with ``MOBILITY_SHARED_LAKE=1`` none is taken.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from mobility.config import BudgetCaps
from mobility.errors import BudgetExceededError, LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake, is_delta
from mobility.privacy_budget import accountant

SHARED_LAKE_ENV = "MOBILITY_SHARED_LAKE"
# Each retry follows another writer's successful commit, so the loop ends; the bound turns an endless
# storm of writers (or a store whose commits always fail) into a clear error instead of a hang.
MAX_CONFLICTS = 200
GENESIS_HASH = "0" * 64
CHARGED = "charged"
PUBLISHED = "published"
MANIFEST = "manifest.json"
NOT_PUBLISHED = "release is not recorded as published in the ledger"

LEDGER_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("entry_time", pa.string()), ("status", pa.string()),
    ("release_id", pa.string()), ("agreement_id", pa.string()), ("period", pa.string()),
    ("purpose", pa.string()), ("requested_by", pa.string()), ("query", pa.string()),
    ("privacy_unit", pa.string()), ("mechanism", pa.string()), ("epsilon", pa.float64()),
    ("delta", pa.float64()), ("rho", pa.float64()), ("input_versions", pa.string()),
    ("release_digest", pa.string()), ("prev_hash", pa.string()), ("entry_hash", pa.string()),
])
COLUMNS = LEDGER_SCHEMA.names
_FLOATS = ("epsilon", "delta", "rho")

# Keep the whole commit history: verification reads it to prove the table only ever grew by appends.
TABLE_PROPERTIES = {"delta.appendOnly": "true", "delta.enableExpiredLogCleanup": "false",
                    "delta.logRetentionDuration": "interval 36500 days"}


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII, floats as Python's shortest round-trip repr, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_record(record: Mapping[str, Any]) -> str:
    """Entry hash: SHA-256 of the canonical JSON of every column except ``entry_hash``."""
    body = {k: record[k] for k in COLUMNS if k != "entry_hash"}
    return sha256_hex(canonical_json(body).encode("ascii"))


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    entry_time: str
    status: str
    release_id: str
    agreement_id: str
    period: str
    purpose: str
    requested_by: str
    query: str
    privacy_unit: str
    mechanism: str
    epsilon: float
    delta: float
    rho: float
    input_versions: str
    release_digest: str
    prev_hash: str
    entry_hash: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "LedgerEntry":
        values: dict[str, Any] = {}  # each field's value, converted to its declared type
        for f in fields(cls):
            v = record.get(f.name)
            if f.name == "seq":
                v = int(v) if v is not None else -1
            elif f.name in _FLOATS:
                v = float(v) if v is not None else math.nan
            else:
                v = "" if v is None else str(v)
            values[f.name] = v
        return cls(**values)

    def record(self) -> dict:
        return asdict(self)

    @property
    def year(self) -> int:
        return accountant.year_of(self.period)

    def computed_hash(self) -> str:
        return hash_record(self.record())


@dataclass(frozen=True)
class ChargeRequest:
    """What a release charges; built by the release boundary before any noise is drawn."""

    release_id: str
    agreement_id: str
    period: str
    purpose: str
    requested_by: str
    query: Mapping[str, Any]
    privacy_unit: str
    mechanism: str
    epsilon: float
    delta: float
    rho: float
    input_versions: Mapping[str, int]

    def matches(self, entry: LedgerEntry) -> list[str]:
        """Fields in which an existing charge for the same release_id differs from this request."""
        mine = {"agreement_id": self.agreement_id, "period": self.period, "purpose": self.purpose,
                "query": canonical_json(self.query), "privacy_unit": self.privacy_unit,
                "mechanism": self.mechanism, "input_versions": canonical_json(dict(self.input_versions))}
        diff = [k for k, v in mine.items() if getattr(entry, k) != v]
        if not math.isclose(entry.rho, self.rho, rel_tol=1e-9):
            diff.append("rho")
        return diff


def _read_rows(path: Path) -> tuple[list[dict], int | None]:
    """Rows of the current Delta version and that version (None when there is no table yet).

    Files are read with ``ParquetFile`` rather than a pyarrow dataset scan, whose worker threads
    can abort the interpreter at exit right after a delta-rs write (delta-rs issue #2184).
    """
    if not is_delta(path):
        return [], None
    from deltalake import DeltaTable

    table = DeltaTable(str(path))
    rows: list[dict] = []
    for uri in table.file_uris():
        rows.extend(pq.ParquetFile(uri.removeprefix("file://")).read().to_pylist())
    return rows, table.version()


def _empty_frame() -> pd.DataFrame:
    return LEDGER_SCHEMA.empty_table().to_pandas()


def chain_problems(entries: list[LedgerEntry]) -> list[tuple[LedgerEntry, str]]:
    """Hash-chain defects in seq order: (entry, reason) for edited, deleted, inserted or reordered rows."""
    problems = []
    prev = GENESIS_HASH
    seen_seq: set[int] = set()
    for position, entry in enumerate(entries, start=1):
        if entry.seq in seen_seq:
            problems.append((entry, f"seq {entry.seq} appears twice (row inserted)"))
        elif entry.seq != position:
            problems.append((entry, f"expected seq {position}, found {entry.seq} (row deleted or inserted)"))
        seen_seq.add(entry.seq)
        if entry.computed_hash() != entry.entry_hash:
            problems.append((entry, "entry_hash does not match the entry's contents (row edited)"))
        if entry.prev_hash != prev:
            problems.append((entry, "prev_hash does not link to the previous entry "
                                    "(row deleted, inserted or reordered)"))
        prev = entry.entry_hash
    return problems


class Ledger:
    """The ledger table at ``path`` (``Lake(root).ledger``), locked by ``<path>.lock`` next to it."""

    def __init__(self, path: str | os.PathLike, *, lock_timeout: float = 600.0):
        self.path = Path(path).resolve()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout
        self.shared = shared_lake()

    @classmethod
    def of_lake(cls, lake_root: str | os.PathLike) -> "Ledger":
        return cls(Lake(lake_root).ledger)

    # ---- reading -------------------------------------------------------------------------
    def read(self) -> tuple[list[LedgerEntry], int | None]:
        rows, version = _read_rows(self.path)
        entries = sorted((LedgerEntry.from_record(r) for r in rows), key=lambda e: e.seq)
        return entries, version

    def entries(self) -> pd.DataFrame:
        entries, _ = self.read()
        if not entries:
            return _empty_frame()
        return pd.DataFrame([e.record() for e in entries], columns=COLUMNS).reset_index(drop=True)

    def find(self, release_id: str) -> LedgerEntry | None:
        """The charge entry of ``release_id`` (None when it was never charged)."""
        return release_entries(self.read()[0], release_id)[0]

    def publication(self, release_id: str) -> LedgerEntry | None:
        return release_entries(self.read()[0], release_id)[1]

    def spent(self, agreement_id: str, year: int | None = None) -> float:
        """rho charged to ``agreement_id`` (in the calendar year of the release period, if given)."""
        return _spent(self.read()[0], agreement_id, year)

    # ---- writing -------------------------------------------------------------------------
    @contextmanager
    def _host_lock(self) -> Iterator[None]:
        """Writers on this host one at a time: a fast path that spares them commit conflicts. The cap
        does not depend on it (every append is committed against the version it checked), so a lake
        shared by several hosts (``MOBILITY_SHARED_LAKE=1``) takes none."""
        if self.shared:
            yield
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise LedgerIntegrityError(
                f"could not lock the ledger within {self.lock_timeout:.0f} s", where=str(self.lock_path),
                hint="another release may be running; retry, or check the filesystem supports file locks") from None
        try:
            yield
        finally:
            lock.release()

    def _tail(self) -> tuple[list[LedgerEntry], int | None]:
        entries, version = self.read()
        bad = chain_problems(entries)
        if bad:
            entry, reason = bad[0]
            raise LedgerIntegrityError(
                f"refusing to append: entry seq {entry.seq} (release {entry.release_id!r}): {reason}",
                where=str(self.path), hint="run `mobility ledger verify` and restore the ledger from a trusted copy")
        return entries, version

    def _append(self, entries: list[LedgerEntry], version: int | None, draft: dict) -> LedgerEntry:
        """Commit one entry as Delta version ``version + 1`` (version 0 when there is no table), or raise
        ``_Conflict`` when another writer committed after ``entries`` were read."""
        from deltalake import CommitProperties, DeltaTable, write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        values: dict[str, Any] = dict(draft, seq=len(entries) + 1,
                                      prev_hash=entries[-1].entry_hash if entries else GENESIS_HASH,
                                      entry_time=datetime.now(timezone.utc).isoformat(timespec="microseconds"))
        values["entry_hash"] = hash_record(values)
        entry = LedgerEntry.from_record(values)
        table = pa.Table.from_pylist([entry.record()], schema=LEDGER_SCHEMA)
        # the commit itself names the entry, so the Delta history can be matched against the rows;
        # no automatic retry: a retried append would land on top of entries these checks never saw
        commit = CommitProperties(custom_metadata={"mobility.seq": str(entry.seq),
                                                   "mobility.entry_hash": entry.entry_hash},
                                  max_commit_retries=0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if version is None:  # the first entry creates the table, unless another writer just did
                write_deltalake(str(self.path), table, mode="error", commit_properties=commit,
                                configuration=TABLE_PROPERTIES)
            else:
                write_deltalake(DeltaTable(str(self.path), version=version), table, mode="append",
                                commit_properties=commit)
        except (CommitFailedError, DeltaError) as exc:
            if _read_rows(self.path)[1] != version:  # the table moved on since it was read
                raise _Conflict(entry.seq) from exc
            raise
        return entry

    def _appending(self, step: Callable[[list[LedgerEntry], int | None], LedgerEntry]) -> LedgerEntry:
        """Read the ledger, let ``step`` check it and append; after a conflict read and check again."""
        for _ in range(MAX_CONFLICTS):
            with self._host_lock():
                entries, version = self._tail()
                try:
                    return step(entries, version)
                except _Conflict:
                    continue
        raise LedgerIntegrityError(
            f"{MAX_CONFLICTS} appends in a row lost to other writers' commits", where=str(self.path),
            hint="retry when fewer releases run at once; check that the storage gives atomic commits")

    def charge(self, request: ChargeRequest, caps: BudgetCaps, *, existing_ok: bool = True) -> LedgerEntry:
        """Atomically check the caps and append one ``charged`` entry (or return the existing one).

        The year cap applies to the calendar year of ``request.period``. On refusal nothing is written.
        ``existing_ok=False`` refuses a release id charged meanwhile by another process (the release
        boundary, which must not draw noise for a charge it did not make).
        """
        for name in ("epsilon", "rho"):
            value = getattr(request, name)
            if not math.isfinite(value) or value <= 0:
                raise ReleaseRefusedError(f"{name} must be a positive number, got {value!r}; nothing was charged")
        year = accountant.year_of(request.period)

        def step(entries: list[LedgerEntry], version: int | None) -> LedgerEntry:
            existing, _ = release_entries(entries, request.release_id)
            if existing is not None:
                diff = request.matches(existing)
                if diff:
                    raise ReleaseRefusedError(
                        f"release_id {request.release_id!r} was already charged (seq {existing.seq}) for a "
                        f"different request; differing fields: {', '.join(diff)}",
                        hint="use a new release_id for a different query or budget")
                if not existing_ok:
                    raise ReleaseRefusedError(
                        f"release_id {request.release_id!r} was charged (seq {existing.seq}) by another process "
                        "while this one prepared it; nothing was charged here and no noise was drawn",
                        hint="run the same request again once that release is published: it returns the stored files")
                return existing
            _check_caps(entries, request, caps, year)
            draft = {"status": CHARGED, "release_id": request.release_id, "agreement_id": request.agreement_id,
                     "period": request.period, "purpose": request.purpose, "requested_by": request.requested_by,
                     "query": canonical_json(request.query), "privacy_unit": request.privacy_unit,
                     "mechanism": request.mechanism, "epsilon": float(request.epsilon),
                     "delta": float(request.delta), "rho": float(request.rho),
                     "input_versions": canonical_json(dict(request.input_versions)), "release_digest": ""}
            return self._append(entries, version, draft)

        return self._appending(step)

    def record_publication(self, release_id: str, manifest_digest: str) -> LedgerEntry:
        """Append the ``published`` entry naming the manifest's SHA-256 (idempotent for the same digest)."""
        def step(entries: list[LedgerEntry], version: int | None) -> LedgerEntry:
            charge, done = release_entries(entries, release_id)
            if charge is None:
                raise LedgerIntegrityError(f"release {release_id!r} has no charge entry; it cannot be published",
                                           where=str(self.path))
            if done is not None:
                if done.release_digest != manifest_digest:
                    raise LedgerIntegrityError(
                        f"release {release_id!r} was published (seq {done.seq}) with another manifest digest",
                        where=str(self.path), hint="the release directory was altered; run `mobility ledger verify`")
                return done
            draft = {k: v for k, v in charge.record().items() if k not in ("seq", "prev_hash", "entry_hash")}
            draft.update(status=PUBLISHED, epsilon=0.0, delta=0.0, rho=0.0, release_digest=manifest_digest)
            return self._append(entries, version, draft)

        return self._appending(step)


class _Conflict(Exception):
    """Another writer committed to the ledger between this writer's read and its commit."""


def shared_lake() -> bool:
    """``MOBILITY_SHARED_LAKE=1``: several hosts write this lake, so no host lock is taken or trusted."""
    return os.environ.get(SHARED_LAKE_ENV, "").strip() == "1"


def entries_by_release(entries: Iterable[LedgerEntry]) -> dict[str, tuple[LedgerEntry | None, LedgerEntry | None]]:
    """Each release id's (charge, publication) entries, in the order first seen; None where there is none.

    The first entry of each status counts: appending refuses a second one (verification reports it).
    """
    found: dict[str, tuple[LedgerEntry | None, LedgerEntry | None]] = {}
    for e in entries:
        charge, publication = found.get(e.release_id, (None, None))
        if e.status == CHARGED and charge is None:
            found[e.release_id] = (e, publication)
        elif e.status == PUBLISHED and publication is None:
            found[e.release_id] = (charge, e)
    return found


def release_entries(entries: Iterable[LedgerEntry], release_id: str) -> tuple[LedgerEntry | None, LedgerEntry | None]:
    """(charge, publication) entries of ``release_id``; None where there is none."""
    return entries_by_release(entries).get(release_id, (None, None))


def _spent(entries: list[LedgerEntry], agreement_id: str, year: int | None) -> float:
    return accountant.compose(e.rho for e in entries if e.status == CHARGED and e.agreement_id == agreement_id
                              and (year is None or e.year == year))


def _check_caps(entries: list[LedgerEntry], request: ChargeRequest, caps: BudgetCaps, year: int) -> None:
    for label, cap, spent in (
        (f"per-year cap for {year}", caps.rho_per_year, _spent(entries, request.agreement_id, year)),
        ("lifetime cap", caps.rho_lifetime, _spent(entries, request.agreement_id, None)),
    ):
        if not accountant.fits(spent, request.rho, cap):
            left = accountant.remaining(cap, spent, caps.delta)
            raise BudgetExceededError(
                f"release {request.release_id!r} would exceed the {label} of agreement {request.agreement_id!r}: "
                f"spent rho={spent:.6g}, requested rho={request.rho:.6g}, remaining rho={left.remaining_rho:.6g} "
                f"(epsilon={left.remaining_epsilon:.4g} at delta={caps.delta:g}) of cap rho={cap:.6g}. "
                "Nothing was charged.",
                hint=f"request at most rho={left.remaining_rho:.6g}, release fewer tables, "
                     "or amend the agreement's budget caps")


# ---- release directories (shared with stored.py and audit.py) -----------------------------------
def release_dir_problems(release_dir: Path, charge: LedgerEntry | None,
                         publication: LedgerEntry | None) -> list[str]:
    """Why a release directory does not match its ledger entries ([] when it does)."""
    manifest_path = release_dir / MANIFEST
    if charge is None:
        return ["release directory has no charge entry in the ledger"]
    if not manifest_path.is_file():
        return [f"{MANIFEST} is missing"]
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError:
        return [f"{MANIFEST} is not valid JSON"]
    problems = []
    if publication is None:
        problems.append(NOT_PUBLISHED)
    elif publication.release_digest != sha256_hex(raw):
        problems.append(f"{MANIFEST} SHA-256 differs from the digest in published entry seq {publication.seq}")
    ledger_ref = manifest.get("ledger", {}) if isinstance(manifest, dict) else {}
    if manifest.get("release_id") != release_dir.name:
        problems.append(f"{MANIFEST} names release {manifest.get('release_id')!r}")
    if ledger_ref.get("entry_hash") != charge.entry_hash or ledger_ref.get("seq") != charge.seq:
        problems.append(f"{MANIFEST} does not name charge entry seq {charge.seq} and its hash")
    listed = {MANIFEST}
    for table_name, table in (manifest.get("tables") or {}).items():
        for file_name, info in (table.get("files") or {}).items():
            listed.add(file_name)
            path = release_dir / file_name
            if not path.is_file():
                problems.append(f"file {file_name} of table {table_name} is missing")
            elif sha256_file(path) != info.get("sha256"):
                problems.append(f"file {file_name} of table {table_name} was altered (SHA-256 differs)")
    extra = sorted(p.name for p in release_dir.iterdir() if p.name not in listed)
    if extra:
        problems.append(f"files not listed in the manifest: {', '.join(extra)}")
    return problems
