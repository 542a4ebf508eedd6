"""The rights log: one row per data-subject request, so an auditor can see requests were honoured.

A Delta table (written with delta-rs, no Spark needed) at ``Lake.rights_log`` in the operator zone.
The subject is recorded as ``subject_ref`` = HMAC-SHA256(log secret, key_id:pseudonym), never the
number and never the bare pseudonym: the bare pseudonym would be the very value erasure removes
from every data file, and with it the log could be joined to any surviving copy of the data. The
log secret is a random per-lake file (0600) separate from the pseudonymization key; whoever holds
it and the number can confirm that a person made a request, nobody else can, and destroying it
makes every entry unlinkable while the audit trail (what, when, outcome) stays.

On a lake on object storage (ADR 0014) the log is the same Delta table (delta-rs commits with
put-if-absent), the secret an object created only if absent (its access is the bucket's policy: there
is no file mode). Erasure, rectification and retention run there too, each holding the lake's writer
lease from its first write to its purge (``under_writer_lease``); key rotation is refused there
(``require_file_system``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import inspect
import os
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import ParamSpec, TypeVar

import pyarrow as pa

from mobility import faults, storage
from mobility.errors import MobilityError
from mobility.lake import Lake, is_delta, read_json, write_json_atomic
from mobility.rights.subject import Subject

REQUESTS = ("registry", "access", "rectify", "erase", "retention")
LOG_SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), False),
    pa.field("entry_time", pa.string(), False),  # UTC, ISO 8601
    pa.field("request", pa.string(), False),
    pa.field("agreement_id", pa.string(), False),
    pa.field("outcome", pa.string(), False),  # done, nothing_stored, refused
    pa.field("subject_ref", pa.string(), True),  # keyed hash; null for requests about no one (registry, retention)
    pa.field("detail", pa.string(), True),  # counts and table names only
])


def require_file_system(lake: Lake, request: str) -> None:
    """Refuse key rotation on a lake on object storage (ADR 0014): it rewrites every table under a new
    key in several stages and keeps its work map in folders, through the file system."""
    storage.require_local(lake.root, f"the {request} request (it rewrites every table in stages, through the "
                                     "file system)",
                          hint=f"nothing was changed; {request} is not yet available for a lake on object storage: "
                               "keep a lake whose key must be rotated in a folder (local or mounted); see "
                               "docs/operations.md, 'Lake on object storage'")


P = ParamSpec("P")
R = TypeVar("R")


def under_writer_lease(request: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a request that rewrites data (its ``lake_root`` argument names the lake) holding the lake's
    writer lease from start to end, on a lake on object storage (``storage.writer_lease``; nothing on a
    local lake): Delta's S3 log store is single-driver, so its deletes and updates must not meet another
    Spark writer, and its purge (a vacuum that keeps no history) must not remove the files of a write
    that has not committed yet. Re-entrant: the Delta writes inside it do not wait for it."""
    def wrap(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            root = signature.bind_partial(*args, **kwargs).arguments.get("lake_root")
            try:
                lake = Lake(root) if root is not None else None
                shared = lake is not None and not lake.local and lake.root.is_dir()
            except (MobilityError, OSError):  # no such lake, no store: the request refuses it itself
                shared = False
            if not shared or lake is None:
                return func(*args, **kwargs)
            with storage.writer_lease(lake.root, f"the {request} request"):
                return func(*args, **kwargs)
        return run
    return wrap


def _secret(lake: Lake) -> bytes:
    path = lake.rights_log_secret
    if not lake.local:  # created once, by whichever process comes first
        if not path.is_file():
            try:
                storage.create_exclusive(path, secrets.token_hex(32).encode("ascii"))
            except storage.AlreadyExists:
                pass
        return bytes.fromhex(path.read_text().strip())
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def subject_ref(lake: Lake, subject: Subject) -> str:
    message = f"{subject.key_id}:{subject.pseudonym}".encode()
    return hmac.new(_secret(lake), message, hashlib.sha256).hexdigest()


def record(lake_root: str | Path | None, request: str, agreement_id: str, outcome: str, *,
           subject: Subject | None = None, detail: str | None = None, request_id: str | None = None) -> dict | None:
    """Append one entry; without a lake (a registry request with no --lake) nothing is recorded.

    ``request_id``: the id a ``Pending`` request chose when it began, so a rerun can tell whether its
    entry was already written (``recorded``)."""
    if lake_root is None:
        return None
    lake = Lake(lake_root)
    if not lake.root.is_dir():
        return None  # a request against a lake that does not exist must not create one
    from deltalake import write_deltalake

    entry = {"request_id": request_id or str(uuid.uuid4()), "entry_time": datetime.now(timezone.utc).isoformat(),
             "request": request, "agreement_id": agreement_id, "outcome": outcome,
             "subject_ref": subject_ref(lake, subject) if subject is not None else None, "detail": detail}
    storage.makedirs(lake.rights_log.parent)
    write_deltalake(storage.uri(lake.rights_log), pa.Table.from_pylist([entry], schema=LOG_SCHEMA), mode="append",
                    storage_options=storage.delta_options(lake.rights_log))
    return entry


def read(lake_root: str | Path) -> list[dict]:
    lake = Lake(lake_root)
    if not is_delta(lake.rights_log):
        return []
    from deltalake import DeltaTable

    rows = DeltaTable(storage.uri(lake.rights_log),
                      storage_options=storage.delta_options(lake.rights_log)).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r["entry_time"])


def recorded(lake_root: str | Path, request_id: str) -> bool:
    """Whether the log holds an entry with ``request_id``."""
    return any(row["request_id"] == request_id for row in read(lake_root))


class Pending:
    """A request that changes data, from its start until its log entry is written.

    Erasure and retention delete in several commits and then purge; killed part-way, they are completed
    by running them again, and this record lets the rerun say what the whole request did: what the
    interrupted attempt deleted (noted *before* each delete, so a table whose delete committed just
    before the crash is not forgotten), and the id of the log entry, so it is written once. The file
    (``operator/rights_pending/NAME.json``, written atomically) names tables and counts only, and is
    removed once the entry is in the log.
    """

    def __init__(self, lake_root: str | Path, name: str, request: str, agreement_id: str) -> None:
        lake = Lake(lake_root)
        self.path = lake.operator / "rights_pending" / f"{name}.json"
        found = read_json(self.path) if self.path.is_file() else None
        self.resumed = isinstance(found, dict) and found.get("request") == request
        self.earlier: dict = found if self.resumed and isinstance(found, dict) else {}
        self.request_id: str = str(self.earlier.get("request_id") or uuid.uuid4())
        self.state: dict = {"request": request, "agreement_id": agreement_id, "request_id": self.request_id,
                            "started": self.earlier.get("started") or datetime.now(timezone.utc).isoformat(),
                            "done": copy.deepcopy(self.earlier.get("done") or {})}
        write_json_atomic(self.path, self.state)

    def earlier_done(self) -> dict:
        """What the interrupted attempt(s) noted, by kind (e.g. rows_deleted) then table."""
        return copy.deepcopy(self.earlier.get("done") or {})

    def note(self, kind: str, key: str, value) -> None:
        """Record what is about to be done (before the commit that does it)."""
        self.state["done"].setdefault(kind, {})[key] = value
        write_json_atomic(self.path, self.state)

    def finish(self, lake_root: str | Path, request: str, agreement_id: str, outcome: str, *,
               subject: Subject | None = None, detail: str | None = None) -> None:
        """Write the log entry unless an earlier attempt did, then forget the request."""
        if self.resumed:
            detail = (detail + "; " if detail else "") + "completed by a rerun after an interruption"
        if not (self.resumed and recorded(lake_root, self.request_id)):
            record(lake_root, request, agreement_id, outcome, subject=subject, detail=detail,
                   request_id=self.request_id)
        faults.point(f"{request}:after-log")
        storage.remove(self.path)
