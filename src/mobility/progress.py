"""Progress lines for long-running commands: shown on a terminal, quiet in logs."""

from __future__ import annotations

import os
import sys
import time

_START = time.time()


def say(stage: str, message: str) -> None:
    if sys.stderr.isatty() or os.environ.get("MOBILITY_PROGRESS"):
        print(f"[{time.time() - _START:6.1f}s] {stage}: {message}", file=sys.stderr, flush=True)
