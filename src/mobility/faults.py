"""Fault injection for the crash tests: a process killed (SIGKILL) at a named commit point.

Each stage calls ``point("stage:where")`` at the places where a crash leaves a different state on
disk (after a table write, after a manifest, ...). When the environment variable ``MOBILITY_FAULT``
names that point, the process kills itself there, exactly as an out-of-memory killer or a lost node
would: no ``finally`` block, no atexit hook, no flush. Unset (always, outside the tests) it costs one
dictionary lookup. The matrix of points and what a rerun must give is in docs/reliability.md.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "MOBILITY_FAULT"


def point(name: str) -> None:
    """Kill this process at ``name`` when ``MOBILITY_FAULT`` names it (tests only)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
