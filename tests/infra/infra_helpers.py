"""Load a jobs/*.py entry point by path and parse a command line with its own argparse parser."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"


def load_job(name: str):
    if str(JOBS) not in sys.path:
        sys.path.insert(0, str(JOBS))  # the jobs import _entry as a sibling module
    spec = importlib.util.spec_from_file_location(f"mobility_job_{name}", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_job_args(name: str, args: list[str]):
    """The job's own parser on ``args``; raises the job's UsageError when they do not parse."""
    return load_job(name).parser().parse_args(args)


def split_submit(command: str) -> tuple[list[str], str, list[str]]:
    """spark-submit OPTIONS .../jobs/NAME.py ARGS -> (options, NAME, ARGS)."""
    words = shlex.split(command)
    at = next(i for i, w in enumerate(words) if w.endswith(".py") and "/jobs/" in w)
    return words[:at], Path(words[at]).stem, words[at + 1:]
