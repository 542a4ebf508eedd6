"""A witness of the ledger kept outside the lake: one append-only line per ledger entry.

The agreement names ``ledger_witness:``, a directory that the auditor or another party controls.
After each ledger commit the writer appends, for every entry the witness has not seen yet, one
JSON line ``{"seq": N, "entry_hash": "...", "time": "YYYY-MM-DDTHH:MM+00:00"}`` to
``WITNESS_DIR/<ledger table id>.jsonl`` (the Delta table's metadata id names the ledger, so one
directory can witness several lakes). The file only grows; a line is never rewritten.

What it proves: a ledger that is shorter than its witness, or whose entry at some seq has another
hash, was rolled back or rewritten after those entries were witnessed. What it does not prove:
anything about entries appended after the last witnessed line, or about a witness directory the
lake's operators can also edit (see docs/auditor-guide.md).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from mobility.errors import LedgerIntegrityError

SUFFIX = ".jsonl"
_HASH = re.compile(r"^[0-9a-f]{64}$")


class _Entry(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def entry_hash(self) -> str: ...


def minute_now() -> str:
    """UTC now, to the minute: the ledger and the witness record no finer time."""
    return datetime.now(timezone.utc).replace(second=0, microsecond=0).isoformat(timespec="minutes")


class Witness:
    """The witness directory; ``record`` appends what it has not seen, ``lines`` reads it back."""

    def __init__(self, directory: str | os.PathLike):
        if str(directory).startswith(("s3:", "s3a:")):  # lines are appended in place: a file system's job
            raise LedgerIntegrityError("the ledger witness must be a folder (local or mounted), not object storage",
                                       where=str(directory),
                                       hint="name a folder the auditor controls as ledger_witness; the lake itself "
                                            "may be on object storage; nothing was charged")
        self.directory = Path(directory)

    def path_for(self, ledger_id: str) -> Path:
        return self.directory / f"{ledger_id}{SUFFIX}"

    def lines(self, ledger_id: str) -> list[dict]:
        return read_lines(self.path_for(ledger_id))

    def check_writable(self) -> None:
        """Refuse (before any charge) when the witness directory cannot be created or written."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerIntegrityError(f"the ledger witness directory cannot be created: {exc}",
                                       where=str(self.directory),
                                       hint="mount the agreement's ledger_witness directory; "
                                            "nothing was charged") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise LedgerIntegrityError("the ledger witness directory is not writable", where=str(self.directory),
                                       hint="give this process write access to the agreement's ledger_witness "
                                            "directory; nothing was charged")

    def record(self, ledger_id: str, entries: Sequence[_Entry]) -> int:
        """Append a line for each of ``entries`` (in seq order) beyond the last witnessed seq; returns how many."""
        path = self.path_for(ledger_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            known = parse_witness(path)
            seen = max((line.seq for line in known.lines), default=0)
            new = [e for e in sorted(entries, key=lambda e: e.seq) if e.seq > seen]
            if not new:
                return 0
            stamp = minute_now()
            # a torn last line (an interrupted append) stays a line of its own, never glued to a new one
            text = ("\n" if known.unterminated else "") + "".join(
                json.dumps({"seq": e.seq, "entry_hash": e.entry_hash, "time": stamp},
                           sort_keys=True, separators=(",", ":")) + "\n" for e in new)
            # one write of whole lines in append mode: concurrent writers interleave lines, never bytes
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, text.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            return len(new)
        except OSError as exc:
            raise LedgerIntegrityError(
                f"could not append to the ledger witness: {exc}", where=str(path),
                hint="check the agreement's ledger_witness directory is mounted and writable; the ledger entry "
                     "is committed and is witnessed by the next append") from None


def read_lines(path: Path) -> list[dict]:
    """The witness file's lines as dicts ([] when it does not exist); a torn last line is skipped."""
    if not path.is_file():
        return []
    found = []
    for raw in path.read_text(encoding="ascii", errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            found.append(line)
    return found


@dataclass(frozen=True)
class Line:
    """One witnessed entry: the ledger's ``seq`` and ``entry_hash`` at ``time``, on line ``number``."""

    seq: int
    entry_hash: str
    time: str
    number: int


@dataclass
class WitnessFile:
    """A witness file read strictly: valid lines, and the numbers and texts of lines that are not."""

    path: Path
    lines: list[Line] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    unterminated: bool = False  # the file does not end with a newline (an append was interrupted)

    @property
    def last(self) -> Line | None:
        """The line with the highest seq (None when nothing is witnessed)."""
        return max(self.lines, key=lambda line: line.seq, default=None)

    def by_seq(self) -> dict[int, list[Line]]:
        found: dict[int, list[Line]] = {}
        for line in self.lines:
            found.setdefault(line.seq, []).append(line)
        return found


def _line(raw: str, number: int) -> Line | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    seq, digest, time = value.get("seq"), value.get("entry_hash"), value.get("time")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not isinstance(digest, str) \
            or not _HASH.match(digest) or not isinstance(time, str):
        return None
    return Line(seq, digest, time, number)


def parse_witness(path: Path) -> WitnessFile:
    """Every line of the witness file at ``path``, checked: ``{"seq": N >= 1, "entry_hash": 64 hex,
    "time": "..."}``; anything else is listed as malformed. A missing file reads as empty; an
    unreadable one raises ``OSError``."""
    found = WitnessFile(Path(path))
    if not found.path.is_file():
        return found
    data = found.path.read_bytes()
    found.unterminated = bool(data) and not data.endswith(b"\n")
    for number, raw in enumerate(data.decode("ascii", errors="replace").split("\n"), start=1):
        if not raw.strip():
            continue
        line = _line(raw, number)
        if line is None:
            found.malformed.append((number, raw[:80]))
        else:
            found.lines.append(line)
    return found
