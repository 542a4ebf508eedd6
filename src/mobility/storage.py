"""Where a lake lives: a local folder, or a prefix on S3-compatible object storage (ADR 0014).

``Lake(root)`` takes either a folder or ``s3://bucket/prefix``. A local root stays a plain
``pathlib.Path`` and every path under it behaves exactly as before. An ``s3://`` root becomes a
universal-pathlib ``UPath`` over s3fs: the same methods the lake's callers use (``/``, ``glob``,
``iterdir``, ``is_dir``, ``is_file``, ``read_text``, ``write_text``, ``read_bytes``, ``open``,
``unlink``), each an S3 request. Such paths are typed as ``Path`` for the callers; what needs the
operating system (``os.*``, ``tempfile``, ``shutil``, file locks, a rename) asks ``is_local``
first and does the object-store equivalent, or refuses with ``StorageError`` (``require_local``).

Endpoint and credentials come from the environment, as Hadoop's S3A and delta-rs read them:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), ``AWS_REGION``,
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for a store other than Amazon S3, and
``AWS_ALLOW_HTTP=true`` for a plain-HTTP endpoint. One set of variables serves the three clients:
s3fs (manifests, releases), delta-rs (ledger, rights log) and Spark's S3A (office and operator
tables, see ``mobility.spark``).

What object storage does not give (docs/operations.md, "Lake on object storage"): a rename, so a
folder is never moved into place (a single PUT is atomic for readers, and a folder's commit
marker is the object written last), and mutual exclusion between Spark drivers on a Delta table
(Delta's S3 log store is single-driver), so every Spark write to a lake on object storage holds
the lake's writer lease (``writer_lease``), an object created with a conditional PUT.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import IO, Any, cast

from mobility.errors import StorageError

SCHEMES = ("s3://", "s3a://")
S3A = "org.apache.hadoop.fs.s3a.S3AFileSystem"
LEASE = "_lease/writer.json"
LEASE_SECONDS_ENV = "MOBILITY_LEASE_SECONDS"  # a lease not renewed for this long is stale (default 600)
LEASE_WAIT_ENV = "MOBILITY_LEASE_WAIT"  # how long a writer waits for a held lease (default 600)
_HEARTBEAT = 0.2  # renew the lease every this share of its lifetime

# set once an s3:// lake is opened in this process: a Spark session built from then on has S3A
_object_store_used = False


def is_uri(value: object) -> bool:
    """An ``s3://`` (or ``s3a://``) lake address, as given on the command line or in a setting."""
    return isinstance(value, str) and value.startswith(SCHEMES)


def is_local(path: object) -> bool:
    """A path on this host's file system (everything but an object-store path or address)."""
    return isinstance(path, (PurePath, os.PathLike)) or isinstance(path, str) and not is_uri(path)


def object_store_used() -> bool:
    """Whether this process opened a lake on object storage (``mobility.spark`` then adds S3A)."""
    return _object_store_used


def expect_object_store() -> None:
    """Build the process's Spark session with S3A even before a lake on object storage is opened."""
    global _object_store_used
    _object_store_used = True


def lake_path(root: str | os.PathLike[str] | Path) -> Path:
    """The root of a lake: a resolved local folder, or the ``UPath`` of ``s3://bucket/prefix``."""
    global _object_store_used
    if is_local(root):
        return Path(root).resolve()
    text = str(root)
    if text.startswith("s3a://"):
        text = "s3://" + text.removeprefix("s3a://")
    bucket = text.removeprefix("s3://").split("/", 1)[0]
    if not bucket:
        raise StorageError(f"{text!r} names no bucket", where=text, hint="give the lake as s3://BUCKET/PREFIX")
    settings = S3Settings.from_env()
    from upath import UPath

    _object_store_used = True
    return cast(Path, UPath(text.rstrip("/"), **settings.fsspec_options()))


def as_path(path: str | os.PathLike[str] | Path) -> Path:
    """A path given as a path (local, or on object storage) or as text (a local path or an s3:// address)."""
    if isinstance(path, str):
        return lake_path(path) if is_uri(path) else Path(path)
    return Path(path) if is_local(path) else cast(Path, path)


def uri(path: Path) -> str:
    """The address of ``path`` for delta-rs, Spark and records: a local path, or ``s3://bucket/key``."""
    return str(path)


def require_local(path: Path, what: str, hint: str) -> None:
    """Refuse ``what`` on a lake on object storage (it needs a file system: a rename, a lock, os calls)."""
    if not is_local(path):
        raise StorageError(f"{what} is not supported on a lake on object storage", where=uri(path), hint=hint)


# ---- settings from the environment ---------------------------------------------------------------
def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class S3Settings:
    """What the AWS_* environment says about the object store, for s3fs, delta-rs and S3A alike."""

    endpoint: str | None
    region: str | None
    allow_http: bool
    virtual_hosted: bool

    @classmethod
    def from_env(cls) -> "S3Settings":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        settings = cls(endpoint, region, _flag("AWS_ALLOW_HTTP"), _flag("AWS_VIRTUAL_HOSTED_STYLE_REQUEST"))
        if endpoint and endpoint.startswith("http://") and not settings.allow_http:
            raise StorageError(f"the object-store endpoint {endpoint} is plain HTTP but AWS_ALLOW_HTTP is not "
                               "'true'", where="AWS_ENDPOINT_URL",
                               hint="set AWS_ALLOW_HTTP=true (delta-rs refuses plain HTTP otherwise), or use https")
        return settings

    @property
    def secure(self) -> bool:
        return not (self.endpoint or "").startswith("http://")

    def fsspec_options(self) -> dict[str, Any]:
        """s3fs options: no listing cache (Spark and delta-rs write the same prefixes from other clients)."""
        options: dict[str, Any] = {"use_listings_cache": False}
        if self.endpoint:
            options["endpoint_url"] = self.endpoint
        if self.region:
            options["client_kwargs"] = {"region_name": self.region}
        if not self.virtual_hosted:
            options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
        return options

    def delta_options(self) -> dict[str, str]:
        """delta-rs storage options; the credentials it reads from the environment itself."""
        options = {"conditional_put": "etag"}  # commits are PUTs with If-None-Match: put-if-absent
        if self.endpoint:
            options["AWS_ENDPOINT_URL"] = self.endpoint
        if self.region:
            options["AWS_REGION"] = self.region
        if self.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        if not self.virtual_hosted:
            options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        return options

    def hadoop_conf(self) -> dict[str, str]:
        """Spark settings for Hadoop's S3A: ``s3://`` served by S3A too, so one address serves every client."""
        conf = {"spark.hadoop.fs.s3.impl": S3A,
                "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
                "spark.hadoop.fs.s3a.path.style.access": "false" if self.virtual_hosted else "true"}
        if self.endpoint:
            conf["spark.hadoop.fs.s3a.endpoint"] = self.endpoint
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "true" if self.secure else "false"
        if self.region:
            conf["spark.hadoop.fs.s3a.endpoint.region"] = self.region
        return conf


def delta_options(path: object) -> dict[str, str] | None:
    """Storage options for a delta-rs table at ``path`` (None for a local one)."""
    return None if is_local(path) else S3Settings.from_env().delta_options()


def bucket_exists(root: Path) -> bool:
    """Whether the bucket of an object-store path exists (OSError when the store cannot be asked)."""
    return bool(_fs(root).exists(_key(root).split("/", 1)[0]))


# ---- objects and folders ------------------------------------------------------------------------
def _fs(path: Path) -> Any:
    return cast(Any, path).fs


def _key(path: Path) -> str:
    return cast(Any, path).path


def makedirs(path: Path) -> None:
    """Create a local folder (and its parents); object storage has no folders to create."""
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """One object (one PUT: readers see all of it or none) or a local file."""
    if is_local(path):
        path.write_bytes(data)
    else:
        _fs(path).pipe_file(_key(path), data)


def remove_tree(path: Path) -> None:
    """Delete a folder and everything under it; nothing when it is not there."""
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        _fs(path).rm(_key(path), recursive=True)
    except FileNotFoundError:
        pass


def remove(path: Path) -> None:
    """Delete one file or object; nothing when it is not there."""
    if is_local(path):
        path.unlink(missing_ok=True)
        return
    try:
        _fs(path).rm_file(_key(path))
    except FileNotFoundError:
        pass


def names(folder: Path) -> list[str]:
    """Names of what is directly in ``folder`` ([] when it is not there)."""
    if is_local(folder):
        return os.listdir(folder) if folder.is_dir() else []
    try:
        return [p.rsplit("/", 1)[-1] for p in _fs(folder).ls(_key(folder), detail=False)]
    except FileNotFoundError:
        return []


def files(folder: Path) -> list[Path]:
    """Every file (object) under ``folder``, at any depth ([] when there is none)."""
    if is_local(folder):
        return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    prefix = _key(folder).rstrip("/") + "/"
    try:
        found = _fs(folder).find(prefix)
    except FileNotFoundError:
        return []
    return [folder / key[len(prefix):] for key in sorted(found) if key.startswith(prefix) and key != prefix]


def open_binary(path: Path) -> IO[bytes]:
    """``path`` opened for reading bytes (pyarrow reads Parquet from it)."""
    return cast(IO[bytes], path.open("rb"))


def upload_folder(local: Path, target: Path, *, last: str | None = None) -> None:
    """Copy the files of the local folder ``local`` to ``target``, one object each, ``last`` after all others:
    on object storage that object is the folder's commit marker (no folder appears at once)."""
    files = sorted(p for p in local.iterdir() if p.is_file())
    ordered = [p for p in files if p.name != last] + [p for p in files if p.name == last]
    for path in ordered:
        write_bytes(target / path.name, path.read_bytes())


# ---- conditional writes and the writer lease ----------------------------------------------------
class AlreadyExists(Exception):
    """A conditional create found the object already there."""


def _refused_code(exc: BaseException) -> str | None:
    """The S3 error code of a refused conditional write (412 PreconditionFailed, 409 a concurrent one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = str((response.get("Error") or {}).get("Code", ""))
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return code or str(status)
        current = current.__cause__ or current.__context__
    return None


def create_exclusive(path: Path, data: bytes) -> None:
    """Create the object only if it does not exist (``If-None-Match: *``); ``AlreadyExists`` when it does
    (or when another create of it is under way)."""
    try:
        _fs(path).pipe_file(_key(path), data, mode="create")
    except FileExistsError:
        raise AlreadyExists() from None
    except OSError as exc:
        if _refused_code(exc) is not None:
            raise AlreadyExists() from None
        raise


_PROBED: dict[str, bool] = {}


def _probed(folder: Path) -> bool:
    """Whether the store refuses a second create of one object, tried in ``folder`` (next to what relies on
    it, where this process may write) once per bucket and process."""
    bucket = _key(folder).split("/", 1)[0]
    if bucket not in _PROBED:
        probe = folder / f".probe-{uuid.uuid4().hex}"
        create_exclusive(probe, b"1")
        try:
            create_exclusive(probe, b"2")
            honoured = False
        except AlreadyExists:
            honoured = True
        remove(probe)
        _PROBED[bucket] = honoured
    return _PROBED[bucket]


def require_conditional_put(path: Path) -> None:
    """Refuse to rely on put-if-absent where the object store ignores ``If-None-Match: *``."""
    if is_local(path):
        return
    root = f"s3://{_key(path).split('/', 1)[0]}"
    if not _probed(path.parent):
        raise StorageError("the object store does not honour conditional writes (a PUT with If-None-Match: * "
                           "replaced an existing object): neither the ledger nor the writer lease can be atomic "
                           "there", where=root,
                           hint="use a store with S3 conditional writes (Amazon S3, MinIO, SeaweedFS and others) "
                                "or a local lake")


def _seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class _Held:
    path: Path
    record: dict
    depth: int = 1
    stop: threading.Event | None = None
    thread: threading.Thread | None = None


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


def lease_path(root: Path) -> Path:
    return root / LEASE


def _lease_record(what: str) -> dict:
    return {"holder": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "what": what,
            "acquired": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _age(path: Path) -> float | None:
    """Seconds since the lease object was last written (None when it is gone)."""
    try:
        info = _fs(path).info(_key(path))
    except FileNotFoundError:
        return None
    modified = info.get("LastModified") or info.get("mtime")
    if not isinstance(modified, datetime):
        return 0.0
    return (datetime.now(timezone.utc) - modified).total_seconds()


def _heartbeat(path: Path, record: dict, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            current = json.loads(path.read_bytes())
            if current.get("holder") != record["holder"]:
                return  # taken over as stale: the holder's next write is refused (ensure_lease)
            write_bytes(path, json.dumps(record, sort_keys=True).encode())
        except (OSError, ValueError):
            continue


@contextmanager
def writer_lease(root: Path, what: str) -> Iterator[None]:
    """Hold the lake's writer lease for the block (a no-op on a local lake).

    Delta's S3 log store lets two Spark drivers commit the same version of a table, one silently
    replacing the other; so every Spark write to a lake on object storage holds this lease, an object
    created with a conditional PUT and renewed while held. A second writer waits for it
    (``MOBILITY_LEASE_WAIT`` seconds, 600 by default) and is then refused with the holder's name; a
    lease not renewed for ``MOBILITY_LEASE_SECONDS`` (600) is stale (its holder died) and is taken over.
    Re-entrant within a process.
    """
    if is_local(root):
        yield
        return
    path = lease_path(root)
    key = uri(path)
    with _held_lock:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
    if held is None:
        held = _acquire(path, what)
        with _held_lock:
            _held[key] = held
    try:
        yield
    finally:
        with _held_lock:
            held.depth -= 1
            done = held.depth == 0
            if done:
                del _held[key]
        if done:
            _release(held)


def _acquire(path: Path, what: str) -> _Held:
    require_conditional_put(path)
    lifetime = _seconds(LEASE_SECONDS_ENV, 600.0)
    deadline = time.monotonic() + _seconds(LEASE_WAIT_ENV, 600.0)
    record = _lease_record(what)
    data = json.dumps(record, sort_keys=True).encode()
    while True:
        try:
            create_exclusive(path, data)
            break
        except AlreadyExists:
            pass
        age = _age(path)
        if age is not None and age > lifetime:  # its holder stopped renewing it: gone
            _take_over(path, lifetime)
            continue
        if time.monotonic() > deadline:
            try:
                other = json.loads(path.read_bytes())
            except (OSError, ValueError):
                other = {}
            raise StorageError(
                f"another writer holds the lake's writer lease: {other.get('what', '?')} on host "
                f"{other.get('host', '?')} (pid {other.get('pid', '?')}) since {other.get('acquired', '?')}; "
                "one Spark writer at a time per lake on object storage", where=uri(path),
                hint="run the stages of one lake one after the other (retry when that job has finished); if it "
                     f"is gone, its lease becomes stale after {lifetime:.0f} s without renewal "
                     f"({LEASE_SECONDS_ENV}), or delete the lease object after checking")
        time.sleep(1.0)
    stop = threading.Event()
    thread = threading.Thread(target=_heartbeat, args=(path, record, stop, max(1.0, lifetime * _HEARTBEAT)),
                              name="mobility-lease", daemon=True)
    thread.start()
    return _Held(path, record, stop=stop, thread=thread)


def _holder(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_bytes()).get("holder"))
    except (OSError, ValueError):
        return None


def _take_over(path: Path, lifetime: float) -> None:
    """Remove a stale lease: only the one process that creates its takeover marker does, so two
    processes that both found it stale cannot remove each other's fresh lease; and only while it is
    still that holder's and still stale."""
    holder = _holder(path)
    if holder is None:
        return
    try:
        create_exclusive(path.with_name(f"takeover-{holder}"), json.dumps(_lease_record("takeover")).encode())
    except AlreadyExists:
        return  # another process takes it over; compete for the lease it frees
    age = _age(path)
    if age is not None and age > lifetime and _holder(path) == holder:
        remove(path)


def _release(held: _Held) -> None:
    if held.stop is not None:
        held.stop.set()
    if held.thread is not None:
        held.thread.join(timeout=30)
    try:
        current = json.loads(held.path.read_bytes())
    except (OSError, ValueError):
        return
    if current.get("holder") == held.record["holder"]:
        remove(held.path)
