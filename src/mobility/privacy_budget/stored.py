"""A published release as stored: ``LAKE/releases/RELEASE_ID`` opened and checked against the ledger.

The one way the release boundary (a rerun), reports, exports, annual tables and the catalogue read
a release: its manifest, its tables from Parquet and its ``charged`` and ``published`` ledger
entries, with the directory's files checked against them (``release_dir_problems``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mobility import storage
from mobility.errors import InputContractError, LedgerIntegrityError
from mobility.lake import Lake
from mobility.privacy_budget.ledger import MANIFEST, Ledger, LedgerEntry, release_dir_problems, release_entries


@dataclass(frozen=True)
class StoredRelease:
    release_id: str
    path: Path
    manifest: dict
    charge: LedgerEntry | None  # never None when opened with verify=True
    publication: LedgerEntry | None
    problems: list[str]  # how the directory differs from its ledger entries ([] when verified)

    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables, read from Parquet on first use (the catalogue needs only the manifest)."""
        return read_tables(self.path, self.manifest)


def release_ids(lake: Lake) -> list[str]:
    """Release directories of the lake, by id (temporary ``.tmp-*`` directories left out)."""
    if not lake.releases.is_dir():
        return []
    return sorted(p.name for p in lake.releases.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_tables(folder: Path, manifest: dict) -> dict[str, pd.DataFrame]:
    """Each table the manifest lists, read from its Parquet file in ``folder``."""
    tables = {}
    for name in manifest.get("tables", {}):
        path = folder / f"{name}.parquet"
        try:
            if storage.is_local(path):
                tables[name] = pq.ParquetFile(path).read().to_pandas()
            else:
                with storage.open_binary(path) as handle:
                    tables[name] = pq.ParquetFile(handle).read().to_pandas()
        except (OSError, pa.ArrowException) as exc:
            raise InputContractError(
                f"table {name!r} listed in the manifest has no readable Parquet file: {exc}", where=str(path),
                hint="run `mobility ledger verify`; the release may be incomplete or altered") from None
    return tables


def refuse_problems(release_id: str, path: Path, problems: list[str]) -> None:
    """The refusal of a release directory that does not match its ledger entries (nothing when it does)."""
    if problems:
        raise LedgerIntegrityError(f"release {release_id!r} does not match the ledger: " + "; ".join(problems),
                                   where=str(path),
                                   hint="do not use or publish it; run `mobility ledger verify` and investigate")


def open_release(lake: Lake | str | os.PathLike, release_id: str, *, verify: bool = True,
                 entries: list[LedgerEntry] | None = None) -> StoredRelease:
    """Manifest, tables and ledger entries of the published release ``release_id``.

    ``verify``: refuse (``LedgerIntegrityError``) a directory whose files or manifest differ from
    its ledger entries; with False the differences are returned in ``problems``, for a report that
    shows them. ``entries``: the ledger already read by the caller (saves one Delta read per release).
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    release_id = str(release_id)
    path = lake.release_dir(release_id)
    if "/" in release_id or release_id.startswith(".") or not path.is_dir():
        known = release_ids(lake)
        listed = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
        raise InputContractError(f"no release {release_id!r} in this lake (releases here: {listed})",
                                 where=str(lake.releases),
                                 hint="pass --release one of the listed ids (`mobility ledger show` lists them)")
    charge, publication = release_entries(Ledger(lake.ledger).read()[0] if entries is None else entries, release_id)
    problems = release_dir_problems(path, charge, publication)
    if verify:
        refuse_problems(release_id, path, problems)
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputContractError(f"manifest is missing or not valid JSON: {exc}", where=str(manifest_path),
                                 hint="run `mobility ledger verify`; the release may have been altered") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables", {}), dict):
        raise InputContractError("manifest has no 'tables' mapping", where=str(manifest_path),
                                 hint="run `mobility ledger verify`; the release may have been altered")
    return StoredRelease(release_id, path, manifest, charge, publication, problems)
