"""Progress lines for long-running commands: shown on a terminal, quiet in logs.

A line reads ``[  12.3s] stage: message (1,234 rows)`` and goes to standard error, so it never
mixes with a command's result on standard output. Whether lines are shown:

* ``MOBILITY_PROGRESS=1`` (or ``on``/``true``/``yes``) always shows them, e.g. to watch a job in a log;
* ``MOBILITY_PROGRESS=0`` (or ``off``/``false``/``no``) never shows them, e.g. in a terminal recording;
* unset or empty: shown only when standard error is a terminal (cron, CI and redirected logs stay quiet).

Lines carry no data values, only stage names, counts and times, so they are safe wherever they land.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

ENV = "MOBILITY_PROGRESS"
_ON = {"1", "on", "true", "yes", "always"}
_OFF = {"0", "off", "false", "no", "never"}

_start = time.monotonic()  # elapsed time counts from the first import, i.e. the command's start


def enabled(stream: TextIO | None = None) -> bool:
    """Whether progress lines are shown on ``stream`` (default: standard error)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in _ON:
        return True
    if forced in _OFF:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False


def restart() -> None:
    """Count elapsed time from now (a long-lived process running several jobs)."""
    global _start
    _start = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - _start


def line(stage: str, message: str, rows: int | None = None, seconds: float | None = None) -> str:
    seconds = elapsed() if seconds is None else seconds
    tail = f" ({rows:,} rows)" if rows is not None else ""
    return f"[{seconds:7.1f}s] {stage}: {message}{tail}"


def say(stage: str, message: str, rows: int | None = None) -> None:
    """One progress line: stage, what is happening, rows handled so far (if known), elapsed time."""
    stream = sys.stderr
    if enabled(stream):
        print(line(stage, message, rows), file=stream, flush=True)


@contextmanager
def step(stage: str, message: str) -> Iterator[dict]:
    """Announce a step, then its duration; set ``info["rows"]`` inside to report how many rows it handled."""
    info: dict = {"rows": None}
    began = time.monotonic()
    say(stage, message)
    yield info
    say(stage, f"{message}: done in {time.monotonic() - began:.1f}s", rows=info["rows"])


__all__ = ["ENV", "elapsed", "enabled", "line", "restart", "say", "step"]
