"""Append-only, hash-chained privacy-budget ledger kept as a Delta table (delta-rs, no JVM).

One ``charged`` entry is appended before any noise is drawn for a release; once the release
directory is in place a ``published`` entry records the SHA-256 of its ``manifest.json``
(which lists the SHA-256 of every result file). A ``policy`` entry records the caps an agreement
charges under and the SHA-256 of its file: the first charge under an agreement appends one, and a
change of caps is appended by ``record_policy`` (a release under changed, unrecorded caps is refused).
A charge names the data months it reads and is checked against the caps of its population per data
month and over a lifetime (``accounts``). Each entry's ``entry_hash`` is the SHA-256 of the
canonical JSON of all its other fields, including ``prev_hash``, the previous entry's hash.
See docs/auditor-guide.md for what this proves and how to check it without this package.

Appends are atomic across hosts: each one is committed against the exact Delta version its checks
read (no automatic retry), so a writer that lost the race gets a conflict, reads the ledger again
and checks again (ADR 0004). The host file lock next to the table only spares that retry where
all writers share a host; with ``MOBILITY_SHARED_LAKE=1`` none is taken, nor on a lake on object
storage, where each commit is a PUT with ``If-None-Match: *`` (put-if-absent; a store that ignores it
is refused: ``storage.require_conditional_put``; ADR 0014). After each commit the entries a witness
outside the lake has not seen are appended to it (``witness``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from mobility import storage
from mobility.config import Agreement, BudgetCaps
from mobility.errors import BudgetExceededError, LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake, is_delta
from mobility.privacy_budget import accountant, accounts, blocks
from mobility.privacy_budget.accounts import CHARGED, POLICY, PUBLISHED
from mobility.privacy_budget.witness import Witness, minute_now

SHARED_LAKE_ENV = "MOBILITY_SHARED_LAKE"
# Each retry follows another writer's successful commit, so the loop ends; the bound turns an endless
# storm of writers (or a store whose commits always fail) into a clear error instead of a hang.
MAX_CONFLICTS = 200
GENESIS_HASH = "0" * 64
MANIFEST = "manifest.json"
NOT_PUBLISHED = "release is not recorded as published in the ledger"

LEDGER_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("entry_time", pa.string()), ("status", pa.string()),
    ("release_id", pa.string()), ("agreement_id", pa.string()), ("period", pa.string()),
    ("purpose", pa.string()), ("requested_by", pa.string()), ("query", pa.string()),
    ("privacy_unit", pa.string()), ("mechanism", pa.string()), ("epsilon", pa.float64()),
    ("delta", pa.float64()), ("rho", pa.float64()), ("input_versions", pa.string()),
    ("release_digest", pa.string()), ("prev_hash", pa.string()), ("entry_hash", pa.string()),
    # format 2 (data months and populations): absent from entries written before, and then left out
    # of their hash, so an older ledger still verifies and is extended in place
    ("population", pa.string()), ("data_months", pa.string()), ("caps", pa.string()),
    ("agreement_sha256", pa.string()),
])
COLUMNS = LEDGER_SCHEMA.names
FORMAT2_COLUMNS = ("population", "data_months", "caps", "agreement_sha256")
LEGACY_COLUMNS = [c for c in COLUMNS if c not in FORMAT2_COLUMNS]
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
    with (open(path, "rb") if storage.is_local(path) else storage.open_binary(path)) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_record(record: Mapping[str, Any]) -> str:
    """Entry hash: SHA-256 of the canonical JSON of every column except ``entry_hash``; a format-2
    column that is null (entries written before it existed) is left out of the JSON."""
    body = {k: record.get(k) for k in COLUMNS
            if k != "entry_hash" and (k not in FORMAT2_COLUMNS or record.get(k) is not None)}
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
    population: str | None = None
    data_months: str | None = None  # canonical JSON list of YYYY-MM
    caps: str | None = None  # canonical JSON of the caps (policy entries)
    agreement_sha256: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "LedgerEntry":
        values: dict[str, Any] = {}  # each field's value, converted to its declared type
        for f in fields(cls):
            v = record.get(f.name)
            if f.name in FORMAT2_COLUMNS:
                v = None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            elif f.name == "seq":
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

    @property
    def months(self) -> list[str]:
        """The data months a charge read (inferred from the query for format-1 entries)."""
        return accounts.data_months_of(self)

    def computed_hash(self) -> str:
        return hash_record(self.record())


@dataclass(frozen=True)
class Policy:
    """What charges are checked against: an agreement's caps, the SHA-256 of its file, its witness."""

    agreement_id: str
    caps: BudgetCaps
    agreement_sha256: str
    witness: Path | None = None

    @classmethod
    def of(cls, agreement: Agreement) -> "Policy":
        return cls(agreement.agreement_id, agreement.budget, agreement.sha256, agreement.ledger_witness)

    @property
    def population(self) -> str:
        return self.caps.population

    def draft(self, reason: str) -> dict:
        """A ``policy`` entry (no budget) recording these caps."""
        return {"status": POLICY, "release_id": "", "agreement_id": self.agreement_id, "period": "",
                "purpose": "", "requested_by": "", "query": canonical_json({"reason": reason}),
                "privacy_unit": "", "mechanism": "", "epsilon": 0.0, "delta": 0.0, "rho": 0.0,
                "input_versions": "{}", "release_digest": "", "population": self.population,
                "data_months": "[]", "caps": canonical_json(self.caps.recorded()),
                "agreement_sha256": self.agreement_sha256}


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
    data_months: tuple[str, ...] = ()  # the months of data the release reads (blocks charged)

    def matches(self, entry: LedgerEntry) -> list[str]:
        """Fields in which an existing charge for the same release_id differs from this request."""
        mine = {"agreement_id": self.agreement_id, "period": self.period, "purpose": self.purpose,
                "query": canonical_json(self.query), "privacy_unit": self.privacy_unit,
                "mechanism": self.mechanism, "input_versions": canonical_json(dict(self.input_versions))}
        if entry.data_months is not None:  # a format-1 charge names none
            mine["data_months"] = canonical_json(list(self.data_months))
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

    table = DeltaTable(storage.uri(path), storage_options=storage.delta_options(path))
    rows: list[dict] = []
    for uri in table.file_uris():
        rows.extend(_file_rows(uri.removeprefix("file://")) if storage.is_local(path) else _object_rows(uri))
    return rows, table.version()


_FILE_ROWS: dict[tuple[str, int, int], list[dict]] = {}
_OBJECT_ROWS: dict[str, list[dict]] = {}


def _object_rows(uri: str) -> list[dict]:
    """Rows of one ledger data file on object storage, read once per process (delta-rs names each data
    file uniquely and never writes it again; ``mobility ledger verify`` reads every one afresh)."""
    rows = _OBJECT_ROWS.get(uri)
    if rows is None:
        with storage.open_binary(storage.as_path(uri)) as handle:
            rows = pq.ParquetFile(handle).read().to_pylist()
        if len(_OBJECT_ROWS) > 100_000:
            _OBJECT_ROWS.clear()
        _OBJECT_ROWS[uri] = rows
    return [dict(r) for r in rows]


def _file_rows(path: str) -> list[dict]:
    """Rows of one ledger data file, read once per process: a ledger file is written once and never
    changed, so only the files of new commits are read (keyed by size and mtime too, so a file edited
    in place is read again and its edit seen)."""
    info = os.stat(path)
    key = (path, info.st_size, info.st_mtime_ns)
    rows = _FILE_ROWS.get(key)
    if rows is None:
        rows = pq.ParquetFile(path).read().to_pylist()
        if len(_FILE_ROWS) > 100_000:
            _FILE_ROWS.clear()
        _FILE_ROWS[key] = rows
    return [dict(r) for r in rows]


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

    def __init__(self, path: str | os.PathLike, *, lock_timeout: float = 600.0,
                 witness: str | os.PathLike | None = None):
        self.path = storage.as_path(path)
        self.path = self.path.resolve() if storage.is_local(self.path) else self.path
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout
        # no host lock on object storage: there is no file lock, and the commit alone is atomic there
        self.shared = shared_lake() or not storage.is_local(self.path)
        self.witness = Witness(witness) if witness is not None else None

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

    def spent(self, agreement_id: str) -> float:
        """rho charged to ``agreement_id`` over its lifetime (its population may carry more)."""
        return accountant.compose(e.rho for e in self.read()[0]
                                  if e.status == CHARGED and e.agreement_id == agreement_id)

    def spent_by(self, population: str) -> accounts.Spent:
        """rho charged to ``population``: lifetime and per data month."""
        return accounts.spent(self.read()[0], population)

    def ledger_id(self) -> str | None:
        """The Delta table's metadata id, which names this ledger in a witness (None before the first entry)."""
        if not is_delta(self.path):
            return None
        from deltalake import DeltaTable

        return str(DeltaTable(storage.uri(self.path), storage_options=storage.delta_options(self.path)).metadata().id)

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
                                      entry_time=minute_now())  # to the minute: no finer timing is kept
        values["entry_hash"] = hash_record(values)
        entry = LedgerEntry.from_record(values)
        table = pa.Table.from_pylist([entry.record()], schema=LEDGER_SCHEMA)
        # the commit itself names the entry, so the Delta history can be matched against the rows;
        # no automatic retry: a retried append would land on top of entries these checks never saw
        commit = CommitProperties(custom_metadata={"mobility.seq": str(entry.seq),
                                                   "mobility.entry_hash": entry.entry_hash},
                                  max_commit_retries=0)
        storage.makedirs(self.path.parent)
        storage.require_conditional_put(self.path)  # on object storage: put-if-absent makes the commit atomic
        options = storage.delta_options(self.path)
        try:
            if version is None:  # the first entry creates the table, unless another writer just did
                write_deltalake(storage.uri(self.path), table, mode="error", commit_properties=commit,
                                configuration=TABLE_PROPERTIES, storage_options=options)
            else:
                current = DeltaTable(storage.uri(self.path), version=version, storage_options=options)
                # an older ledger gains the format-2 columns with its first format-2 entry
                legacy = [f.name for f in current.schema().fields] == LEGACY_COLUMNS
                write_deltalake(current, table, mode="append", commit_properties=commit,
                                schema_mode="merge" if legacy else None)
        except (CommitFailedError, DeltaError) as exc:
            if _read_rows(self.path)[1] != version:  # the table moved on since it was read
                raise _Conflict(entry.seq) from exc
            raise
        if self.witness is not None:
            ledger_id = self.ledger_id()
            assert ledger_id is not None  # the commit above created the table
            try:
                self.witness.record(ledger_id, [*entries, entry])
            except LedgerIntegrityError as exc:  # committed: the next append witnesses it; noise may go on
                logging.getLogger(__name__).warning("ledger entry seq %d is committed but not yet witnessed: %s",
                                                    entry.seq, exc)
        return entry

    def _appending(self, step: Callable[[list[LedgerEntry], int | None], _T]) -> _T:
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

    def charge(self, request: ChargeRequest, policy: Policy, *, existing_ok: bool = True) -> LedgerEntry:
        """Atomically check the caps and append one ``charged`` entry (or return the existing one).

        The charge counts against every data month in ``request.data_months`` and against the lifetime
        of the policy's population. The first charge under an agreement first appends a ``policy``
        entry recording its caps; caps that differ from the recorded ones are refused. On refusal
        nothing is written. ``existing_ok=False`` refuses a release id charged meanwhile by another
        process (the release boundary, which must not draw noise for a charge it did not make).
        """
        for name in ("epsilon", "rho"):
            value = getattr(request, name)
            if not math.isfinite(value) or value <= 0:
                raise ReleaseRefusedError(f"{name} must be a positive number, got {value!r}; nothing was charged")
        defect = accountant.loss_defect(request.mechanism, request.epsilon, request.delta, request.rho)
        if defect:
            raise ReleaseRefusedError(f"release {request.release_id!r}: {defect}; nothing was charged")
        if request.agreement_id != policy.agreement_id:
            raise ReleaseRefusedError(f"release {request.release_id!r} names agreement {request.agreement_id!r} but "
                                      f"is charged under agreement {policy.agreement_id!r}; nothing was charged")
        if not request.data_months:
            raise ReleaseRefusedError(f"release {request.release_id!r} declares no data months; every release "
                                      "names the months of data it reads; nothing was charged")
        for month in request.data_months:
            try:
                blocks.check_month(month)
            except ValueError as exc:
                raise ReleaseRefusedError(f"release {request.release_id!r}: data month {exc}; "
                                          "nothing was charged") from None
        if self.witness is not None:  # an unreachable witness refuses before anything is charged
            self.witness.check_writable()

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
            needs_policy = _check_policy(entries, policy, request.release_id)
            current = accounts.spent(entries, policy.population, extra={policy.agreement_id: policy.population})
            over = accounts.overruns(current, request.rho, request.data_months, policy.caps.recorded())
            if over:
                raise _refusal(request, policy, over)
            if needs_policy:  # its own commit; a conflict on the charge below re-reads and finds it recorded
                entry = self._append(entries, version, policy.draft(f"first charge under agreement "
                                                                    f"{policy.agreement_id}"))
                entries, version = [*entries, entry], (version + 1 if version is not None else 0)
            draft = {"status": CHARGED, "release_id": request.release_id, "agreement_id": request.agreement_id,
                     "period": request.period, "purpose": request.purpose, "requested_by": request.requested_by,
                     "query": canonical_json(request.query), "privacy_unit": request.privacy_unit,
                     "mechanism": request.mechanism, "epsilon": float(request.epsilon),
                     "delta": float(request.delta), "rho": float(request.rho),
                     "input_versions": canonical_json(dict(request.input_versions)), "release_digest": "",
                     "population": policy.population, "data_months": canonical_json(list(request.data_months)),
                     "caps": None, "agreement_sha256": policy.agreement_sha256}
            return self._append(entries, version, draft)

        return self._appending(step)

    def record_policy(self, policy: Policy, reason: str) -> LedgerEntry | None:
        """Append a ``policy`` entry recording the agreement's caps (None when they are recorded already).

        This is how a change of caps is made: it stays in the ledger for every auditor to see, and
        releases under the new caps are accepted from then on.
        """
        if not reason or not reason.strip():
            raise ReleaseRefusedError("a change of caps needs a reason (who decided it, and why)")

        def step(entries: list[LedgerEntry], version: int | None) -> LedgerEntry | None:
            mine = accounts.latest_policy(entries, agreement_id=policy.agreement_id)
            theirs = accounts.latest_policy(entries, population=policy.population)
            if mine is not None and mine.population == policy.population and theirs is not None \
                    and accounts.recorded_caps(theirs) == policy.caps.recorded() \
                    and mine.agreement_sha256 == policy.agreement_sha256:
                return None
            return self._append(entries, version, policy.draft(reason.strip()))

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
            draft = {k: v for k, v in charge.record().items()
                     if k not in ("seq", "prev_hash", "entry_hash", "entry_time")}
            draft.update(status=PUBLISHED, epsilon=0.0, delta=0.0, rho=0.0, release_digest=manifest_digest)
            return self._append(entries, version, draft)

        return self._appending(step)


_T = TypeVar("_T")


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


def _check_policy(entries: list[LedgerEntry], policy: Policy, release_id: str) -> bool:
    """Whether a ``policy`` entry must be recorded before this charge; refuses unrecorded cap changes."""
    mine = accounts.latest_policy(entries, agreement_id=policy.agreement_id)
    theirs = accounts.latest_policy(entries, population=policy.population)
    hint = (f"if the change was decided, record it: `mobility budget policy --agreement {policy.agreement_id} "
            "--lake LAKE --reason '...'` (the change then stands in the ledger for auditors); otherwise "
            "restore the agreement file")
    if mine is not None and mine.population != policy.population:
        raise ReleaseRefusedError(
            f"release {release_id!r}: agreement {policy.agreement_id} names population {policy.population!r} "
            f"but the ledger records it under {mine.population!r} (seq {mine.seq}); nothing was charged", hint=hint)
    if theirs is not None and accounts.recorded_caps(theirs) != policy.caps.recorded():
        raise ReleaseRefusedError(
            f"release {release_id!r}: the caps in agreement {policy.agreement_id} "
            f"({canonical_json(policy.caps.recorded())}) differ from those recorded for population "
            f"{policy.population!r} at seq {theirs.seq} ({theirs.caps}); nothing was charged", hint=hint)
    return mine is None


def _refusal(request: ChargeRequest, policy: Policy, over: list[accounts.Overrun]) -> BudgetExceededError:
    first = over[0]
    delta = policy.caps.delta
    others = f" ({len(over) - 1} more cap(s) would pass too: {', '.join(o.cap for o in over[1:4])})" \
        if len(over) > 1 else ""
    return BudgetExceededError(
        f"release {request.release_id!r} would pass the {first.cap} cap of population {policy.population!r}: "
        f"spent rho={first.spent_rho:.6g}, asked rho={first.asked_rho:.6g}, left rho={first.left_rho:.6g} "
        f"(epsilon={accounts.cumulative_epsilon(first.left_rho, delta):.4g} at delta={delta:g}) of cap "
        f"rho={first.cap_rho:.6g}{others}. Nothing was charged.",
        hint=f"request at most rho={min(o.left_rho for o in over):.6g}, release fewer tables or months, "
             "or follow `mobility budget plan`")


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
