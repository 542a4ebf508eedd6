"""``mobility release annual``: calendar-year flow tables as sums of the 12 published monthly releases.

Post-processing only: it reads ``releases/`` (each checked against the ledger) and nothing of the
office zone, draws no noise and charges no budget. That is what the table adds, not how private it
is: it says no more about a subscription than the monthly releases it sums, whose manifests state
the cumulative loss per data month and over the lifetime. The result goes to
``LAKE/derived/annual/ANNUAL_ID`` with a manifest naming every monthly release it was summed from
and that release's manifest SHA-256, so anyone can recompute it from the published files.

Error bound: monthly noise is independent across releases and cells. A cell of the annual table
sums, over the 12 months m, n_m monthly cells (n_m > 1 when a month was broken down by sex or age
and the annual table is not), each with month m's mechanism and noise scale. ``error_bound_95`` is
the smallest integer a with P(|sum of that noise| <= a) >= 95%, computed exactly by convolving the
monthly noise distributions (``privacy_budget.intervals``). The manifest also gives the sum's
variance, sum_m n_m * v_m with

    v_m = sigma_m^2 (discrete Gaussian, an upper bound), v_m = 2 e^(-1/b) / (1 - e^(-1/b))^2 (discrete Laplace)

(Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for Differential Privacy": the discrete
Gaussian's variance is at most sigma^2; the discrete Laplace variance is exact.) Monthly values
were clamped at 0 before publication, which biases sums of near-zero cells upwards; the bound
describes the noise, not that bias.
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

from mobility.config import Agreement, as_agreement
from mobility.errors import LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake
from mobility.privacy_budget.intervals import NoiseTerm, sum_error_bound_95
from mobility.privacy_budget.ledger import (
    MANIFEST,
    PUBLISHED,
    Ledger,
    canonical_json,
    chain_problems,
    sha256_file,
)
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
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


def noise_variance(mechanism: str, scale: float) -> float:
    """Variance of one cell's noise (an upper bound for the discrete Gaussian)."""
    if mechanism == DISCRETE_GAUSSIAN:
        return float(scale) ** 2
    if mechanism == DISCRETE_LAPLACE:
        p = math.exp(-1.0 / float(scale))
        return 2.0 * p / (1.0 - p) ** 2
    raise ValueError(f"unknown mechanism {mechanism!r}")


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


def sum_months(sources: dict[str, Source]) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Annual tables (key columns + count) and, per table, its noise variance and error bound."""
    names = [n for n in next(iter(sources.values())).table_names() if all(n in s.table_names()
                                                                          for s in sources.values())]
    tables, noise = {}, {}
    for name in names:
        keys = _common_keys(sources, name)
        terms, parts, domain = [], [], None
        for month, source in sources.items():
            frame = source.tables[name]
            marginal = frame.groupby(keys, as_index=False, sort=True, dropna=False)[COUNT].sum() if keys \
                else pd.DataFrame({COUNT: [frame[COUNT].sum()]})
            # monthly cells in the widest annual cell (in full cross products, in every annual cell)
            cells = int(frame.groupby(keys, dropna=False).size().max()) if keys else len(frame)
            terms.append(NoiseTerm(source.manifest["mechanism"], source.manifest["tables"][name]["noise_scale"],
                                   cells))
            values = marginal[keys].astype(str).apply(tuple, axis=1).tolist() if keys else [()]
            if domain is None:
                domain = values
            elif values != domain:
                raise ReleaseRefusedError(f"table {name!r} of {month} has other cells than the first month "
                                          "(the agreement's countries or cells changed within the year); "
                                          "nothing was derived", hint="derive annual tables of a stable domain")
            parts.append(marginal)
        summed = pd.concat(parts).groupby(keys, as_index=False, sort=True)[COUNT].sum() if keys else \
            pd.DataFrame({COUNT: [sum(int(p[COUNT].iloc[0]) for p in parts)]})
        summed[COUNT] = summed[COUNT].astype("int64")
        tables[name] = summed.reset_index(drop=True)
        noise[name] = {"key_columns": keys,
                       "noise_variance": math.fsum(t.cells * noise_variance(t.mechanism, t.scale) for t in terms),
                       "error_bound_95": sum_error_bound_95(terms)}
    return tables, noise


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
    root = Lake(lake_root).derived_annual
    target = root / identifier
    if target.is_dir():
        stored = locate(lake_root, identifier)
        return AnnualResult(identifier, target, stored.manifest, stored.tables, reused=True)
    tables, noise = sum_months(sources)
    first = next(iter(sources.values())).manifest
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{identifier}-", dir=root))
    try:
        described = {}
        for name, frame in tables.items():
            csv_path, parquet_path = work / f"{name}.csv", work / f"{name}.parquet"
            frame.to_csv(csv_path, index=False, lineterminator="\n")
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet_path)
            described[name] = {**noise[name], "rows": len(frame), "count_column": COUNT, "months": len(sources),
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
                                       "functions; noise_variance: sum over months of n_m * v_m, v_m = sigma^2 "
                                       "(discrete Gaussian, an upper bound) or 2e^(-1/b)/(1-e^(-1/b))^2 (discrete "
                                       "Laplace); n_m = monthly cells summed into one annual cell",
                            "meaning": "each annual cell's sum of noisy monthly counts is within +/- error_bound_95 "
                                       "of the sum of exact counts with probability >= 95%, before monthly "
                                       "clamping at 0, which can bias near-zero sums upwards"},
            "tables": described, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.rename(work, target)  # all files in place at once, or none
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return AnnualResult(identifier, target, manifest, tables, reused=False)


def describe(result: AnnualResult) -> str:
    state = "already derived earlier; stored files returned" if result.reused else "derived"
    m = result.manifest
    lines = [f"annual table {result.annual_id}: {state} (no budget charged)", f"  directory: {result.path}",
             f"  from {len(m['derived_from'])} monthly releases: "
             f"{m['derived_from'][0]['release_id']} ... {m['derived_from'][-1]['release_id']}"]
    for name, info in m["tables"].items():
        lines.append(f"  {name}: {info['rows']} cells by {', '.join(info['key_columns']) or '(total)'}, "
                     f"95% error bound +/- {info['error_bound_95']:.4g}")
    return "\n".join(lines)
