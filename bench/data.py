"""Fixed synthetic inputs, generated once per parameter set and cached under ``bench/out/data``."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

# Named sizes: (subscribers, months) at 6 events a day; the 1m/10m pair gives the scaling exponent.
# All span 24 months (issue 9), so residence has a full 12/16-month window and a release period is
# final: about 175 CDR rows per subscriber-month, so 250 and 2,400 subscribers give ~1M and ~10M rows.
SIZES: dict[str, dict] = {
    "tiny": {"subscribers": 12, "months": 24},  # a smoke run of the harness itself, ~50k rows
    "1m": {"subscribers": 250, "months": 24},
    "10m": {"subscribers": 2400, "months": 24},
    "30m": {"subscribers": 7200, "months": 24},  # where the JVM's fixed start-up cost weighs less (BENCHMARKS.md)
}
COMMON = {"start": "2025-01", "home_country": "PHL", "seed": 20260101, "fault_rate": 0.02, "events_per_day": 6.0}
DONE = "bench-data.json"  # written last: a folder without it is an interrupted generation


def parameters(size: str) -> dict:
    if size not in SIZES:
        raise SystemExit(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    return {**SIZES[size], **COMMON}


def data_dir(out: Path, size: str) -> Path:
    params = parameters(size)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return out / "data" / f"{size}-{digest}"


def ensure(out: Path, size: str) -> dict:
    """Generate (or reuse) the dataset of ``size``; returns its description with the CDR row count."""
    folder = data_dir(out, size).resolve()
    marker = folder / DONE
    if marker.is_file():
        _ingest_view(folder)
        return {**json.loads(marker.read_text()), "folder": str(folder)}
    from mobility.synth import generate

    params = parameters(size)
    started = time.perf_counter()
    summary = generate(folder / "synth", **params)
    info = {"size": size, "parameters": params, "folder": str(folder),
            "cdr_rows": summary.rows["cdr"], "cdr_events": summary.events,
            "cdr_faults": summary.faults.get("cdr", {}), "generate_s": round(time.perf_counter() - started, 1)}
    _ingest_view(folder)
    marker.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def _ingest_view(folder: Path) -> None:
    """An input folder with only CDRs and cells, so both engines do exactly the event ingest.

    Symlinks: the anonymization job takes whatever datasets sit under its input folder, and
    payments and subscribers would add work the DuckDB floor does not do.
    """
    view = folder / "input"
    view.mkdir(exist_ok=True)
    for name in ("cdr", "cells"):
        link = view / name
        if link.is_symlink() and not link.exists():  # dangling: the cache folder moved
            link.unlink()
        if not link.exists():
            link.symlink_to(folder.resolve() / "synth" / name, target_is_directory=True)


def input_dir(out: Path, size: str) -> Path:
    return data_dir(out, size) / "input"
