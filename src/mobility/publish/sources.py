"""Finding a published release or a derived table in a lake, checked before anything is read from it.

Releases live in ``LAKE/releases/RELEASE_ID`` and are opened with ``open_release`` (checked against
the ledger); derived tables (annual totals of published releases) live in ``Lake.derived_annual``,
outside the release boundary's folder so ledger verification never mistakes them for unregistered
releases, and are checked against their own manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from mobility.errors import InputContractError, LedgerIntegrityError
from mobility.lake import Lake
from mobility.privacy_budget.ledger import MANIFEST, LedgerEntry, sha256_file
from mobility.privacy_budget.stored import open_release, read_tables

RELEASE, DERIVED = "release", "derived"
DERIVED_FORMAT = "mobility-derived-manifest/1"


@dataclass(frozen=True)
class Source:
    """A release or derived table whose files matched their manifest (and, for a release, the ledger)."""

    release_id: str
    path: Path
    manifest: dict
    kind: str  # RELEASE or DERIVED

    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables, read from Parquet on first use (annual tables look at superseded months too)."""
        return read_tables(self.path, self.manifest)

    @property
    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST)

    def table_names(self) -> list[str]:
        return list(self.manifest.get("tables", {}))

    def key_columns(self, table: str) -> list[str]:
        return list(self.manifest["tables"][table]["key_columns"])


def derived_problems(path: Path) -> list[str]:
    """Why a derived directory does not match its own manifest ([] when it does)."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return [f"{MANIFEST} is missing"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError:
        return [f"{MANIFEST} is not valid JSON"]
    problems = []
    if manifest.get("format") != DERIVED_FORMAT or manifest.get("release_id") != path.name:
        problems.append(f"{MANIFEST} is not a {DERIVED_FORMAT} manifest of {path.name!r}")
    listed = {MANIFEST}
    for name, table in (manifest.get("tables") or {}).items():
        for file_name, info in (table.get("files") or {}).items():
            listed.add(file_name)
            if not (path / file_name).is_file():
                problems.append(f"file {file_name} of table {name} is missing")
            elif sha256_file(path / file_name) != info.get("sha256"):
                problems.append(f"file {file_name} of table {name} was altered (SHA-256 differs)")
    extra = sorted(p.name for p in path.iterdir() if p.name not in listed)
    if extra:
        problems.append(f"files not listed in the manifest: {', '.join(extra)}")
    return problems


def locate(lake_root: str | os.PathLike, release_id: str, entries: list[LedgerEntry] | None = None) -> Source:
    """The release (or derived table) ``release_id``, refused if its files or ledger entries disagree.

    ``entries``: the ledger already read by the caller (saves one Delta read per release).
    """
    lake = Lake(lake_root)
    release_id = str(release_id)
    derived_dir = lake.derived_annual / release_id
    if lake.release_dir(release_id).is_dir() and not release_id.startswith("."):
        stored = open_release(lake, release_id, entries=entries)
        return Source(release_id, stored.path, stored.manifest, RELEASE)
    if derived_dir.is_dir() and not release_id.startswith("."):
        problems = derived_problems(derived_dir)
        if problems:
            raise LedgerIntegrityError(f"derived table {release_id!r} does not match its manifest: "
                                       + "; ".join(problems), where=str(derived_dir),
                                       hint="rebuild it with `mobility release annual`")
        manifest = json.loads((derived_dir / MANIFEST).read_text(encoding="utf-8"))
        return Source(release_id, derived_dir, manifest, DERIVED)
    raise InputContractError(f"no release or derived table {release_id!r}",
                             where=f"{lake.releases}, {lake.derived_annual}",
                             hint="list what was published with `mobility releases list --lake LAKE`")
