"""Shared wrapper for spark-submit entry points: one-line failure reason, exit codes, JSON logs."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable


def main(stage: str, work: Callable[[], dict]) -> None:
    started = time.time()
    try:
        summary = work()
    except Exception as exc:  # the scheduler needs one line and a non-zero exit, whatever failed
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _log(stage, "failed", {"reason": reason, "error": type(exc).__name__}, started)
        print(f"{stage} failed: {reason}", file=sys.stderr)
        sys.exit(1)
    _log(stage, "succeeded", summary, started)
    sys.exit(0)


def _log(stage: str, status: str, fields: dict, started: float) -> None:
    if os.environ.get("MOBILITY_JSON_LOGS"):
        print(json.dumps({"stage": stage, "status": status, "duration_s": round(time.time() - started, 1),
                          **fields}, default=str), flush=True)
