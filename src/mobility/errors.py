"""Errors a user can act on: each says what, where, what was expected and what to do."""

from __future__ import annotations

import errno
import re


class MobilityError(Exception):
    """Base of every error the CLI turns into a one-line message and a non-zero exit."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.where = where
        self.hint = hint
        parts = [f"{where}: {message}" if where else message]
        if hint:
            parts.append(f"What to do: {hint}")
        super().__init__("\n".join(parts))


class ConfigError(MobilityError):
    """A configuration file is missing or does not validate."""


class InputContractError(MobilityError):
    """An input file is missing or does not match its contract."""


class KeyMaterialError(MobilityError):
    """The pseudonymization key is missing, too short or badly protected."""


class QualityGateError(MobilityError):
    """Too many input rows were invalid; the run committed nothing."""


class BudgetExceededError(MobilityError):
    """A release would exceed a privacy-budget cap; nothing was charged."""


class ReleaseRefusedError(MobilityError):
    """A release request is not admissible (period not final, purpose not declared, ...)."""


class LedgerIntegrityError(MobilityError):
    """The ledger or a release directory does not match its hash chain."""


class StorageError(MobilityError):
    """A file system the job writes to (or reads from) is full, read-only or not permitted to it."""


# The errors of a full, read-only or forbidden file system, as Python raises them (errno) and as the
# JVM words them in the IOExceptions that come out of Spark and Delta.
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space is left on the device (the file system is full)",
    errno.EDQUOT: "the disk quota is exhausted (the file system is full for this user)",
    errno.EFBIG: "a file size limit was hit (file too large: a ulimit -f or the file system's limit)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
}
_STORAGE_MESSAGES = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
    "Operation not permitted": errno.EPERM,
}
_JAVA_PATH = re.compile(r"(/[^\s:'\"()\[\]]+)\s*\((?:" + "|".join(_STORAGE_MESSAGES) + r")\)")


def storage_failure(exc: BaseException) -> tuple[int, str | None] | None:
    """(errno, path or None) when ``exc`` (or an exception it was raised from) is a full, read-only or
    forbidden file system; None otherwise. Only the path and the kind are taken from the message:
    nothing else of it (which may hold data) is repeated."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            return current.errno, (str(current.filename) if current.filename is not None else None)
        current = current.__cause__ or current.__context__
    text = str(exc)
    for marker, code in _STORAGE_MESSAGES.items():
        if marker in text:
            path = _JAVA_PATH.search(text)
            return code, (path.group(1) if path else None)
    return None


def describe_storage_failure(code: int) -> str:
    return _STORAGE_ERRNOS[code]
