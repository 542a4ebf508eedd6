"""A Spark job that failed because an executor was lost, told as one line a person can act on.

When an executor's process dies (killed, out of memory, its node lost), Spark reruns the lost tasks
and recomputes lost shuffle output by itself. What it cannot recompute are the blocks of a local
checkpoint kept on that executor (ADR 0007: the anonymization job's validated frame; residence's
presence pass and re-run pseudonyms): their lineage is cut on purpose. Spark then retries the task
until ``spark.task.maxFailures`` and aborts the job with a Java stack trace that ends somewhere in
``LocalCheckpointRDD``. The run is not committed in that case (an anonymization run commits with its
manifest, a residence run with its own; both are idempotent), so the right action is always the
same: run the same command again.

``executor_loss(exc)`` recognises such a failure (in the exception, its causes and, for an error
from the JVM, the Java cause chain in its text) and returns an ``ExecutorLostError`` with that one
line, or ``None`` for any other failure. ``translate(exc)`` returns the error to report either way.
Callers: ``jobs/_entry.py`` (every spark-submit entry point) and the ``mobility`` command.
"""

from __future__ import annotations

import re

# What Spark says when an executor is gone, most specific first: (pattern, what it means).
_SIGNATURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND|Checkpoint block (rdd_\d+_\d+) not found"),
     "a block of a local checkpoint it held is gone with it, and local checkpoints cannot be recomputed"),
    (re.compile(r"ExecutorLostFailure|Executor heartbeat timed out|Remote RPC client disassociated"
                r"|Executor Process Lost|killed by external signal|Command exited with code 137"),
     "its tasks failed more often than Spark retries them"),
    (re.compile(r"FetchFailed"),
     "shuffle output it held could not be recomputed in time"),
)
_BLOCK = re.compile(r"Checkpoint block (rdd_\d+_\d+) not found")


class ExecutorLostError(RuntimeError):
    """A Spark job failed because an executor was lost. Exit code 1: the same command may succeed."""

    exit_code = 1

    def __init__(self, detail: str, block: str | None = None):
        self.detail, self.block = detail, block
        where = f" (block {block})" if block else ""
        super().__init__(f"a Spark executor was lost while the job ran and Spark could not recover: {detail}{where}. "
                         "The run was not committed: rerun the same command (executor logs: the Spark worker's "
                         "work directory, under the application id in the job-run record)")


def executor_loss(exc: BaseException) -> ExecutorLostError | None:
    """The executor loss behind ``exc``, as an ``ExecutorLostError``; ``None`` if it is something else."""
    if isinstance(exc, ExecutorLostError):
        return exc
    text = "\n".join(_texts(exc))
    for pattern, detail in _SIGNATURES:
        if pattern.search(text):
            block = _BLOCK.search(text)
            return ExecutorLostError(detail, block.group(1) if block else None)
    return None


def translate(exc: BaseException) -> BaseException:
    """``exc`` itself, unless it is an executor loss: then the one-line ``ExecutorLostError`` (chained)."""
    lost = executor_loss(exc)
    if lost is None or lost is exc:
        return exc
    lost.__cause__ = exc
    return lost


def _texts(exc: BaseException, limit: int = 10) -> list[str]:
    """The messages of ``exc`` and its causes; an error from the JVM gives its Java stack trace,
    "Caused by" lines included."""
    out: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        try:
            out.append(str(current))
        except Exception:  # noqa: BLE001 - the JVM may be gone: fall back to the Python side
            out.append(type(current).__name__)
        java = getattr(current, "java_exception", None)
        if java is not None:
            try:
                out.append(str(java.toString()))
            except Exception:  # noqa: BLE001 - as above
                pass
        current = current.__cause__ or current.__context__
    return out
