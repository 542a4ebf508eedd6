"""Run bookkeeping: deterministic run ids, the registry of runs, and run manifests.

A run's office manifest is written last and is its commit marker: downstream stages read
only rows whose ``run_id`` has one, so a run killed part-way is invisible until a rerun
with the same id (idempotent Delta writes) completes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from mobility.lake import Lake


def derive_run_id(agreement_id: str, fingerprints: list[str]) -> str:
    digest = hashlib.sha256("\n".join([agreement_id, *sorted(fingerprints)]).encode()).hexdigest()
    return f"run-{digest[:16]}"


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def completed_runs(lake: Lake) -> dict[str, dict]:
    """Office manifests of completed runs, by run id."""
    out = {}
    if lake.office_manifests.is_dir():
        for p in sorted(lake.office_manifests.glob("*.json")):
            m = json.loads(p.read_text(encoding="utf-8"))
            out[m["run_id"]] = m
    return out


def ingested_fingerprints(lake: Lake) -> dict[str, str]:
    """Fingerprint of every input file already ingested by a completed run -> that run id."""
    out = {}
    for run_id, manifest in completed_runs(lake).items():
        for f in manifest.get("files", []):
            out[f["fingerprint"]] = run_id
    return out
