"""``mobility releases list``: every release in the ledger, and every derived table, in one catalogue.

The ledger is the authority: one row per charged release (published or not), with what it cost,
the data population it was charged to and the data months it read, and its ledger entries; derived
tables (annual sums) follow with no budget and no ledger entry, and name what they were derived
from. Nothing here writes.

Each row also names its manifest ``format`` and whether the release keeps its noisy measurements
(``TABLE_noisy``, format 2: consistent tables, measurements and totals) or only clamped counts
(format 1: negative noisy counts were set to 0, so sums of them are biased upwards).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mobility.errors import InputContractError
from mobility.lake import Lake
from mobility.privacy_budget import accounts
from mobility.privacy_budget.ledger import MANIFEST, Ledger, LedgerEntry, entries_by_release
from mobility.privacy_budget.postprocess import MEASUREMENT
from mobility.privacy_budget.stored import StoredRelease, open_release
from mobility.publish.sources import DERIVED, RELEASE, derived_problems

STATUS_PUBLISHED = "published"
STATUS_UNPUBLISHED = "charged, not published"


def format_of(manifest: dict | None) -> dict:
    """The manifest format, whether the noisy measurements are kept, and which tables hold them."""
    if not manifest:
        return {"format": None, "keeps_measurements": None, "measurements": []}
    tables = manifest.get("tables") or {}
    measured = sorted(n for n, info in tables.items() if (info or {}).get("role") == MEASUREMENT)
    return {"format": manifest.get("format"), "keeps_measurements": bool(measured), "measurements": measured}


def format_words(row: dict) -> str:
    """The format of a catalogue row in words (for the text listing)."""
    if row.get("keeps_measurements") is None:
        return "format unknown (not published, or its manifest could not be read)"
    name = row.get("format") or "format not recorded"
    if row["keeps_measurements"]:
        return f"{name}: noisy measurements kept ({len(row['measurements'])} tables)"
    return f"{name}: no noisy measurements (counts were set to 0 where noise made them negative)"


def _opened(lake: Lake, release_id: str, entries: list[LedgerEntry]) -> StoredRelease | None:
    """The published release as stored (its differences from the ledger in ``problems``), or None when
    its directory is gone or its manifest or tables cannot be read."""
    try:
        return open_release(lake, release_id, verify=False, entries=entries)
    except InputContractError:
        return None


def _derived_manifest(path: Path) -> dict:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def catalogue(lake_root: str | os.PathLike) -> list[dict]:
    """Catalogue rows: releases in ledger (charge seq) order, then derived tables by id."""
    lake = Lake(lake_root)
    entries, _ = Ledger(lake.ledger).read()
    populations = accounts.populations(entries)
    rows: list[dict] = []
    for release_id, (charge, publication) in entries_by_release(entries).items():
        if charge is None:  # a publication without a charge: verification reports it
            continue
        stored = _opened(lake, release_id, entries) if publication else None
        query = json.loads(charge.query or "{}")
        tables = list((stored.manifest if stored else {}).get("tables") or query.get("tables") or {})
        rows.append({
            "kind": RELEASE, "release_id": release_id, "agreement_id": charge.agreement_id,
            "period": charge.period, "purpose": charge.purpose, "requested_by": charge.requested_by,
            "status": STATUS_PUBLISHED if publication else STATUS_UNPUBLISHED, "tables": sorted(tables),
            # charged to every data month read and to the population's lifetime (None: a format-1 charge
            # whose agreement has no policy entry yet)
            "budget": {"mechanism": charge.mechanism, "rho": charge.rho, "epsilon": charge.epsilon,
                       "delta": charge.delta, "population": accounts.population_of(charge, populations),
                       "data_months": accounts.data_months_of(charge)},
            "ledger": {"charge_seq": charge.seq, "charge_hash": charge.entry_hash,
                       "published_seq": publication.seq if publication else None,
                       "published_hash": publication.entry_hash if publication else None,
                       "manifest_sha256": publication.release_digest if publication else None},
            "path": str(lake.release_dir(release_id)) if publication else None,
            "files_match_ledger": (stored is not None and not stored.problems) if publication else None,
            "derived_from": [], **format_of(stored.manifest if stored else None),
        })
    root = lake.derived_annual
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []:
        manifest = _derived_manifest(folder)
        rows.append({
            "kind": DERIVED, "release_id": folder.name, "agreement_id": manifest.get("agreement_id"),
            "period": manifest.get("period"), "purpose": manifest.get("purpose"), "requested_by": None,
            "status": f"derived ({manifest.get('kind', 'unknown')}), no budget",
            "tables": sorted(manifest.get("tables") or {}),
            "budget": {"mechanism": None, "rho": 0.0, "epsilon": 0.0, "delta": 0.0, "population": None,
                       "data_months": []},
            "ledger": None, "path": str(folder), "files_match_ledger": None,
            "files_match_manifest": not derived_problems(folder),
            "derived_from": [{"release_id": d.get("release_id"), "manifest_sha256": d.get("manifest_sha256")}
                             for d in manifest.get("derived_from", [])],
            **format_of(manifest),
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return "no releases"
    lines = [f"{'kind':8s} {'release_id':44s} {'agreement':16s} {'period':8s} {'rho':>8s} {'ledger':>11s}  "
             "status; tables"]
    for r in rows:
        ledger = r["ledger"]
        seq = f"#{ledger['charge_seq']}/#{ledger['published_seq'] or '-'}" if ledger else "-"
        lines.append(f"{r['kind']:8s} {r['release_id']:44s} {str(r['agreement_id']):16s} {str(r['period']):8s} "
                     f"{r['budget']['rho']:>8.4g} {seq:>11s}  {r['status']}; {', '.join(r['tables'])}")
        if ledger:
            months = r["budget"]["data_months"]
            read = f"{months[0]} to {months[-1]} ({len(months)} months)" if len(months) > 1 else "".join(months)
            lines.append(f"{'':9s}purpose {r['purpose']}; population {r['budget']['population'] or 'not recorded'}, "
                         f"data months {read or 'none'}; charge {ledger['charge_hash'][:16]}; "
                         f"manifest {str(ledger['manifest_sha256'])[:16]}")
            if r["status"] == STATUS_PUBLISHED:
                lines.append(f"{'':9s}{format_words(r)}")
        else:
            lines.append(f"{'':9s}derived from {len(r['derived_from'])} releases: "
                         + ", ".join(d["release_id"] for d in r["derived_from"][:3])
                         + (" ..." if len(r["derived_from"]) > 3 else "") + f"; {format_words(r)}")
    return "\n".join(lines)
