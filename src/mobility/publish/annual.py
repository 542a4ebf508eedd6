"""``mobility release annual``: calendar-year flow tables as sums of the 12 published monthly releases.

Post-processing only: it reads ``releases/`` (each checked against the ledger) and nothing of the
office zone, draws no noise and charges no budget. That is what the table adds, not how private it
is: it says no more about a subscription than the monthly releases it sums, whose manifests state
the cumulative loss per data month and over the lifetime. The result goes to
``LAKE/derived/annual/ANNUAL_ID`` with a manifest naming every monthly release it was summed from
and that release's manifest SHA-256, so anyone can recompute it from the published files.

What is summed: each month's noisy measurements (``TABLE_noisy``, as OpenDP drew them, negatives
included), never the consistent monthly tables, so an annual sum is unbiased and its interval
exact. The annual measurement ``TABLE_noisy`` is that sum; ``TABLE`` and ``totals`` are the same
post-processing as a monthly release (``postprocess.reconcile``) applied to the annual sums: the
weighted least-squares totals, then non-negative integer cells that add up to them exactly.

Intervals: monthly noise is independent across releases and cells. A cell of the annual table
sums, over the 12 months m, n_m monthly cells (n_m > 1 when a month was broken down by sex or age
and the annual table is not), each with month m's mechanism and noise scale. Its 95% interval is
noisy sum -/+ the smallest a with P(|sum of that noise| <= a) >= 95%, computed exactly by
convolving the monthly noise laws (``privacy_budget.intervals``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mobility import faults, storage
from mobility.config import Agreement, as_agreement
from mobility.errors import LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake
from mobility.privacy_budget.boundary import MANIFEST_FORMAT
from mobility.privacy_budget.intervals import Term, half_width_95
from mobility.privacy_budget.ledger import (
    MANIFEST,
    PUBLISHED,
    Ledger,
    canonical_json,
    chain_problems,
    sha256_file,
)
from mobility.privacy_budget.postprocess import (
    CONSISTENT,
    HIGH,
    LOW,
    MEASUREMENT,
    NOISY,
    TOTALS,
    consistency_description,
    measurement_table,
    reconcile,
    totals_of,
    with_intervals,
)
from mobility.publish.sources import DERIVED_FORMAT, Source, locate
from mobility.publish.tidy import COUNT, MECHANISM_METHOD

INTERNATIONAL = "international"  # the origin x destination table every monthly flows release has
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class AnnualResult:
    annual_id: str
    path: Path
    manifest: dict
    tables: dict[str, pd.DataFrame]
    reused: bool  # True when the same sources had already been summed (stored files returned)


def monthly_sources(lake_root: str | os.PathLike, agreement_id: str, year: int) -> dict[str, Source]:
    """Per month of ``year``, the latest published flows release of the agreement (checked against the ledger).

    Refuses, naming them, when months are missing: every month must be released before the year.
    """
    entries, _ = Ledger(Lake(lake_root).ledger).read()
    broken = chain_problems(entries)
    if broken:
        entry, reason = broken[0]
        raise LedgerIntegrityError(f"ledger entry seq {entry.seq}: {reason}", where=str(Lake(lake_root).ledger),
                                   hint="run `mobility ledger verify`; nothing was derived")
    latest: dict[str, Source] = {}
    for entry in entries:  # seq order, so a later release of the same month replaces an earlier one
        if entry.status != PUBLISHED or entry.agreement_id != agreement_id or not _MONTH.match(entry.period) \
                or not entry.period.startswith(f"{year:04d}-"):
            continue
        source = locate(lake_root, entry.release_id, entries)
        tables = source.manifest.get("tables", {})
        if INTERNATIONAL in tables and tables[INTERNATIONAL]["key_columns"][:2] == ["from_country", "to_country"]:
            latest[entry.period] = source
    months = [f"{year:04d}-{m:02d}" for m in range(1, 13)]
    missing = [m for m in months if m not in latest]
    if missing:
        raise ReleaseRefusedError(
            f"annual {year} of agreement {agreement_id!r} needs a published flows release for every month; "
            f"not released: {', '.join(missing)}; nothing was derived",
            hint="publish those months with `mobility release flows` (each spends budget), then re-run")
    return {m: latest[m] for m in months}


def _common_keys(sources: dict[str, Source], table: str) -> list[str]:
    """Key columns every month has for ``table`` (breakdowns some months lack are summed out)."""
    per_month = [s.key_columns(table) for s in sources.values()]
    return [k for k in per_month[0] if all(k in keys for keys in per_month)]


def _check_format(sources: dict[str, Source]) -> None:
    old = {month: s for month, s in sources.items() if s.manifest.get("format") != MANIFEST_FORMAT}
    if old:
        listed = ", ".join(f"{month} ({s.release_id})" for month, s in old.items())
        raise ReleaseRefusedError(
            f"monthly releases {listed} were published before noisy measurements were kept "
            f"(format {next(iter(old.values())).manifest.get('format')}): their counts were set to 0 where the "
            "noise made them negative, so their sums are biased upwards and no interval of a sum holds; nothing "
            "was derived", hint="publish those months again with this version (each spends budget), or sum the "
                                "stored monthly files yourself knowing the bias")


def _measured_names(source: Source) -> list[str]:
    return [info["measures"] for info in source.manifest["tables"].values() if info.get("role") == MEASUREMENT]


@dataclass(frozen=True)
class AnnualTables:
    measured: dict[str, pd.DataFrame]  # table -> annual sums of the monthly measurements, with intervals
    consistent: dict[str, pd.DataFrame]  # table -> consistent annual table, with intervals
    totals: pd.DataFrame  # the consistent totals, with intervals
    terms: dict[str, list[Term]]  # table -> the noise of one annual cell
    consistency: dict  # what the totals are and how they were estimated (manifest)


def sum_months(sources: dict[str, Source]) -> AnnualTables:
    """Annual measurements (sums of the monthly ones, with exact intervals), consistent tables, totals,
    the noise terms of one annual cell per table, and how the totals were estimated."""
    _check_format(sources)
    first = next(iter(sources.values()))
    names = [n for n in _measured_names(first) if all(n in _measured_names(s) for s in sources.values())]
    measured, terms = {}, {}
    for name in names:
        noisy = measurement_table(name)
        keys = _common_keys(sources, noisy)
        cell_terms, parts, domain = [], [], None
        for month, source in sources.items():
            frame = source.tables[noisy]
            info = source.manifest["tables"][noisy]
            marginal = frame.groupby(keys, as_index=False, sort=True, dropna=False)[NOISY].sum() if keys \
                else pd.DataFrame({NOISY: [frame[NOISY].sum()]})
            # monthly cells in each annual cell (full cross products: the same in every annual cell)
            sizes = frame.groupby(keys, dropna=False).size() if keys else pd.Series([len(frame)])
            if sizes.nunique() != 1:
                raise ReleaseRefusedError(f"table {name!r} of {month} is not a full cross product of its keys; "
                                          "nothing was derived", hint="derive annual tables of full domains")
            cell_terms.append(Term(1, source.manifest["mechanism"], info["noise_scale"], int(sizes.iloc[0])))
            values = marginal[keys].astype(str).apply(tuple, axis=1).tolist() if keys else [()]
            if domain is None:
                domain = values
            elif values != domain:
                raise ReleaseRefusedError(f"table {name!r} of {month} has other cells than the first month "
                                          "(the agreement's countries or cells changed within the year); "
                                          "nothing was derived", hint="derive annual tables of a stable domain")
            parts.append(marginal)
        summed = pd.concat(parts).groupby(keys, as_index=False, sort=True)[NOISY].sum() if keys else \
            pd.DataFrame({NOISY: [sum(int(p[NOISY].iloc[0]) for p in parts)]})
        summed[NOISY] = summed[NOISY].astype("int64")
        measured[name] = with_intervals(summed.reset_index(drop=True), cell_terms)
        terms[name] = cell_terms
    keys_of = {n: [c for c in f.columns if c not in (NOISY, LOW, HIGH)] for n, f in measured.items()}
    totals = totals_of(first.manifest, keys_of)
    consistent, totals_frame, estimates = reconcile(measured, terms, totals)
    return AnnualTables(measured, consistent, totals_frame, terms, consistency_description(totals, estimates))


def annual_id(agreement_id: str, year: int, sources: dict[str, Source]) -> str:
    """Same monthly releases, same id: a rerun finds the stored table; a newer month gives a new id."""
    body = [[s.release_id, s.manifest_sha256] for s in sources.values()]
    return f"annual-{agreement_id}-{year:04d}-{hashlib.sha256(canonical_json(body).encode()).hexdigest()[:10]}"


def _dp_method(sources: dict[str, Source]) -> str:
    methods = {MECHANISM_METHOD[s.manifest["mechanism"]] for s in sources.values()}
    return f"{methods.pop()}_SUM" if len(methods) == 1 else "MIXED_SUM"


def build_annual(lake_root: str | os.PathLike, year: int, agreement: str | Agreement) -> AnnualResult:
    """Sum the 12 monthly flows releases of ``year`` into ``LAKE/derived/annual/ANNUAL_ID`` (charges nothing)."""
    agreement = as_agreement(agreement)
    year = int(year)
    sources = monthly_sources(lake_root, agreement.agreement_id, year)
    identifier = annual_id(agreement.agreement_id, year, sources)
    lake = Lake(lake_root)
    root = lake.derived_annual
    target = root / identifier
    # on object storage the manifest, written last, is the folder's commit marker (ADR 0014)
    if target.is_dir() if lake.local else (target / MANIFEST).is_file():
        stored = locate(lake_root, identifier)
        return AnnualResult(identifier, target, stored.manifest, stored.tables, reused=True)
    annual = sum_months(sources)
    first = next(iter(sources.values())).manifest
    tables = {**{measurement_table(n): f for n, f in annual.measured.items()}, **annual.consistent,
              TOTALS: annual.totals}
    intervals = {"interval_columns": [LOW, HIGH], "confidence": 0.95}
    info: dict[str, dict] = {}
    for name, frame in annual.measured.items():
        info[measurement_table(name)] = {
            "role": MEASUREMENT, "measures": name, "value_column": NOISY, **intervals,
            "key_columns": [c for c in frame.columns if c not in (NOISY, LOW, HIGH)],
            "error_bound_95": int(half_width_95(annual.terms[name])),
            "noise_terms": [{"mechanism": t.mechanism, "noise_scale": t.scale, "cells": t.cells}
                            for t in annual.terms[name]],
            "interval": "noisy_count -/+ error_bound_95: the exact 95% half-width of the sum of every monthly "
                        "noise draw in one annual cell (noise_terms), lower end at least 0"}
    for name, frame in annual.consistent.items():
        info[name] = {"role": CONSISTENT, "count_column": COUNT, **intervals,
                      "key_columns": [c for c in frame.columns if c not in (COUNT, LOW, HIGH)],
                      "measurement": {"table": measurement_table(name),
                                      "error_bound_95": int(half_width_95(annual.terms[name]))},
                      "interval": "the 95% interval of the cell's annual measurement, widened to include the "
                                  "consistent value"}
    info[TOTALS] = {"role": CONSISTENT, "count_column": COUNT, "key_columns": ["total"], **intervals,
                    "interval": "the exact 95% interval of the weighted least-squares estimate of the total from "
                                "the annual measurements, widened to include the consistent value"}
    storage.makedirs(root)
    if lake.local:
        for leftover in root.glob(f".tmp-{identifier}-*"):  # an earlier attempt killed before its rename
            shutil.rmtree(leftover, ignore_errors=True)
    else:  # files of an upload interrupted before its manifest: written again
        storage.remove_tree(target)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{identifier}-", dir=root if lake.local else None))
    try:
        described = {}
        for name, frame in tables.items():
            csv_path, parquet_path = work / f"{name}.csv", work / f"{name}.parquet"
            frame.to_csv(csv_path, index=False, lineterminator="\n")
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet_path)
            described[name] = {**info[name], "rows": len(frame), "months": len(sources),
                               "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                                         for p in (csv_path, parquet_path)}}
        manifest = {
            "format": DERIVED_FORMAT, "kind": "annual", "release_id": identifier,
            "agreement_id": agreement.agreement_id, "period": f"{year:04d}",
            "home_country": first["query"]["home_country"],
            "purpose": ", ".join(sorted({s.manifest["purpose"] for s in sources.values()})),
            "statistic": first["query"].get("statistic"), "dp_method": _dp_method(sources),
            "derived_from": [{"release_id": s.release_id, "period": month, "manifest_sha256": s.manifest_sha256,
                              "ledger_seq": s.manifest["ledger"]["seq"],
                              "ledger_entry_hash": s.manifest["ledger"]["entry_hash"]}
                             for month, s in sources.items()],
            "privacy": {"rho": 0.0, "epsilon": 0.0, "delta": 0.0,
                        "charged": "nothing: sums of published releases are post-processing",
                        "what_holds": "rho, epsilon and delta 0 are what this table adds, not how private it "
                                      "is: it says no more about one subscription (SIM) than the monthly "
                                      "releases it sums, whose total rho is sources_rho; each of their "
                                      "manifests states the cumulative loss per data month and over the "
                                      "lifetime of the population (privacy.cumulative_per_data_month, "
                                      "privacy.cumulative_lifetime)",
                        "sources_rho": math.fsum(float(s.manifest.get("privacy", {}).get("rho") or 0.0)
                                                 for s in sources.values())},
            "error_bound": {"confidence": 0.95,
                            "formula": "error_bound_95: smallest integer a with P(|N| <= a) >= 0.95, N the sum over "
                                       "months m of n_m independent draws of month m's noise (its mechanism and "
                                       "noise_scale), computed exactly by convolving their probability mass "
                                       "functions; n_m = monthly cells summed into one annual cell",
                            "meaning": "every table has low_95 and high_95 columns holding the exact annual value "
                                       "with probability >= 95% (see each table's 'interval'); sums are of the "
                                       "monthly noisy measurements as drawn, so they are unbiased"},
            "consistency": annual.consistency,
            "post_processing": "TABLE_noisy: sums of the monthly noisy measurements; TABLE and totals: the "
                               "monthly releases' consistency step applied to those sums",
            "tables": described, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        faults.point("annual:before-rename")
        if lake.local:
            os.rename(work, target)  # all files in place at once, or none
        else:  # one object per file, the manifest last
            storage.upload_folder(work, target, last=MANIFEST)
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    faults.point("annual:after-rename")
    return AnnualResult(identifier, target, manifest, tables, reused=False)


def describe(result: AnnualResult) -> str:
    state = "already derived earlier; stored files returned" if result.reused else "derived"
    m = result.manifest
    lines = [f"annual table {result.annual_id}: {state} (no budget charged)", f"  directory: {result.path}",
             f"  from {len(m['derived_from'])} monthly releases: "
             f"{m['derived_from'][0]['release_id']} ... {m['derived_from'][-1]['release_id']}"]
    for name, info in m["tables"].items():
        if info.get("role") != MEASUREMENT:
            continue
        lines.append(f"  {name}: {info['rows']} cells by {', '.join(info['key_columns']) or '(total)'}, "
                     f"95% error bound +/- {info['error_bound_95']:.4g}")
    return "\n".join(lines)
