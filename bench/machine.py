"""What the figures were measured on: CPU, cores, memory, OS, library versions, load."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    kb = int(re.search(r"MemTotal:\s+(\d+)", text).group(1))
    return round(kb / 2**20, 1)


def _os() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip('"')
                return f"{name} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _java() -> str:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    first = (done.stderr or done.stdout).splitlines()
    return first[0] if first else "unknown"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    """The measured code: commit, and whether src/ had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head}{' with uncommitted changes in src/' if dirty else ''}" if head else "unknown"


def describe() -> dict:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gb": _memory_gb(), "os": _os(),
        "virtualized": Path("/proc/cpuinfo").is_file() and "hypervisor" in Path("/proc/cpuinfo").read_text(),
        "python": platform.python_version(), "java": _java(),
        "pyspark": _version("pyspark"), "delta_spark": _version("delta-spark"), "duckdb": _version("duckdb"),
        "pandas": _version("pandas"), "pyarrow": _version("pyarrow"),
        "load_average": [round(x, 2) for x in os.getloadavg()], "commit": _commit(),
    }
