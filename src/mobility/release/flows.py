"""Release of monthly migration flows: read the office zone, count exactly, hand over to ``publish``.

Order: check the request (purpose, budget, breakdowns) -> pin the Delta versions read -> refuse a
period that is not final -> exact counts on the public domains (Spark) -> the release boundary,
which charges the ledger, adds OpenDP noise and writes ``LAKE/releases/RELEASE_ID``. Every
refusal before the boundary charges nothing; exact counts never leave memory except into it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from mobility import progress
from mobility.aggregate import domains as D
from mobility.aggregate.flows import (
    GROUPS,
    INTERNATIONAL,
    MAX_CONTRIBUTIONS,
    TABLES,
    FlowSpec,
    domain_sizes,
    exact_tables,
    flow_shares,
    flow_totals,
    key_columns,
    last_day_of,
)
from mobility.config import Agreement, as_agreement
from mobility.errors import InputContractError
from mobility.estimate.factors import Factors, load_factors
from mobility.estimate.people import estimate_tables, people_table
from mobility.lake import Lake
from mobility.privacy_budget.blocks import flow_data_months
from mobility.privacy_budget.boundary import ReleaseRequest, ReleaseResult, publish
from mobility.privacy_budget.mechanisms import Budget
from mobility.release.inputs import breakdown_profile, pin
from mobility.release.request import check_request, parse_by, refuse, release_id_for
from mobility.residence.rules import ResidenceParams
from mobility.schemas import CHANGES_TABLE

PRIVACY_UNIT = "subscriber (pseudonym): at most one long-term residence change per crossing month"
CHANGES_COLUMNS = ("pseudonym", "from_country", "to_country", "crossing_date", "kind", "direction", "h3_cell")


@dataclass(frozen=True)
class FlowInputs:
    """The exact tables of one period and what they were computed from (memory only)."""

    spec: FlowSpec
    tables: dict[str, pd.DataFrame]
    input_versions: dict[str, int]
    data_end: dt.date
    window_days: int


def default_release_id(agreement_id: str, period: str, purpose: str, by: Sequence[str],
                       epsilon: float | None = None, rho: float | None = None) -> str:
    """Same request, same id: a retry finds the stored release instead of drawing new noise."""
    return release_id_for("flows", agreement_id, period, purpose, TABLES, by, Budget(epsilon, rho))


def final_from(period: str, window_days: int) -> dt.date:
    """First data_end at which every crossing of ``period`` can be decided."""
    # the window counts the crossing day, so a crossing on the last day needs window_days - 1 more days
    return last_day_of(period) + dt.timedelta(days=window_days - 1)


def check_final(period: str, data_end: dt.date, window_days: int) -> None:
    needed = final_from(period, window_days)
    if data_end < needed:
        refuse(f"period {period} is not final: a crossing on its last day is decided within {window_days} days "
               f"(crossing day included), so the data must reach {needed.isoformat()} but end on "
               f"{data_end.isoformat()}; {period} becomes releasable with data through {needed:%Y-%m}",
               hint=f"wait for data through {needed:%Y-%m}, re-run `mobility residence`, then release")


# ---- reading the office zone ---------------------------------------------------------------------
def residence_manifest(lake: Lake, agreement_id: str, changes_version: int) -> dict:
    """The residence manifest that describes the residence_changes version being read."""
    folder = lake.residence_manifests
    candidates = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("agreement_id") == agreement_id:
            candidates.append(manifest)
    if not candidates:
        raise InputContractError(f"no residence manifest for agreement {agreement_id}", where=str(folder),
                                 hint=f"run `mobility residence --agreement {agreement_id}` first")
    matching = [m for m in candidates
                if (m.get("office_versions") or {}).get(CHANGES_TABLE.name) == changes_version]
    if not matching:
        seen = sorted({str((m.get("office_versions") or {}).get(CHANGES_TABLE.name)) for m in candidates})
        raise InputContractError(
            f"no residence manifest describes {CHANGES_TABLE.name} version {changes_version} "
            f"(manifests describe versions {', '.join(seen)})", where=str(folder),
            hint="the table was rewritten after its manifest; re-run `mobility residence`")
    manifest = max(matching, key=lambda m: str(m.get("data_end", "")))
    try:
        dt.date.fromisoformat(str(manifest.get("data_end")))
    except ValueError:
        raise InputContractError(f"residence manifest {manifest.get('run_id')!r} has no valid data_end "
                                 "(YYYY-MM-DD)", where=str(folder), hint="re-run `mobility residence`") from None
    return manifest


def read_flow_inputs(agreement: Agreement, lake_root: str | os.PathLike, period: str, by: Sequence[str] = (),
                     spark=None, boundaries=None) -> FlowInputs:
    """Pin versions, refuse a non-final period, then count exactly (every domain cell, zeros included)."""
    from mobility.spark import get_spark

    lake = Lake(lake_root)
    versions: dict[str, int] = {}
    changes_version = pin(lake, CHANGES_TABLE, versions, "no residence changes yet",
                          "run `mobility residence` on the office zone first")
    manifest = residence_manifest(lake, agreement.agreement_id, changes_version)
    params = manifest.get("params") or {}
    window_days = int(params.get("window_days", ResidenceParams().window_days))
    resolution = int(params.get("home_cell_resolution", ResidenceParams().home_cell_resolution))
    data_end = dt.date.fromisoformat(manifest["data_end"])
    check_final(period, data_end, window_days)

    spark = spark or get_spark("mobility-release")
    changes = lake.read(spark, CHANGES_TABLE, changes_version)
    missing = [c for c in CHANGES_COLUMNS if c not in changes.columns]
    if missing:
        raise InputContractError(f"residence changes lack column(s) {missing}", where=str(lake.table(CHANGES_TABLE)),
                                 hint="re-run `mobility residence` with this version of the package")
    profile = breakdown_profile(spark, lake, agreement.agreement_id, [b for b in by if b in D.BY_COLUMNS], versions)

    cells = tuple(D.cell_domain(agreement.home_country, resolution, boundaries)[:-1])
    spec = FlowSpec(home=agreement.home_country, countries=tuple(agreement.countries), period=period,
                    by=tuple(by), cells=cells, age_bands=D.bands_from(agreement.age_bands))
    return FlowInputs(spec, exact_tables(changes, profile, spec), versions, data_end, window_days)


def flow_query(inputs: FlowInputs) -> dict:
    """What the release counts, in public terms; it goes into the ledger and the manifest."""
    spec = inputs.spec
    resolution = None
    if spec.cells:
        import h3

        resolution = h3.get_resolution(spec.cells[0])
    return {
        "statistic": "long-term residence changes (12/16-month rule) by crossing month",
        "period": spec.period, "home_country": spec.home, "countries": list(spec.countries),
        "other_country": f"{D.OTHER}: any country not in the agreement's list",
        "international_domain": "ordered pairs with the home country on exactly one side",
        "cells": f"H3 res {resolution} overlapping {spec.home}; {D.UNKNOWN}: no cell or a cell outside them",
        "by": list(spec.by), "tables": key_columns(spec), "domain_sizes": domain_sizes(spec),
        # named only when the agreement sets its own bands, so earlier releases keep matching their charges
        **({"age_bands": list(D.age_band_values(spec.age_bands))} if spec.age_bands != D.AGE_BANDS else {}),
        # named only with the breakdown, so earlier releases keep matching their charges
        **({"arrival_type": f"arrivals to {spec.home}: {D.RETURNING} when the same pseudonym has an earlier "
                            f"long-term departure from {spec.home} in the residence changes, else {D.FIRST_ARRIVAL}; "
                            f"departures: {D.NOT_ARRIVAL}"} if D.ARRIVAL_TYPE in spec.by else {}),
        "bounding": "the first long-term change per pseudonym in the month (by crossing_date)",
        "finality": f"data_end {inputs.data_end.isoformat()} >= last day of the period + "
                    f"{inputs.window_days - 1} days",
    }


def release_flows(agreement: str | Agreement, lake_root: str | os.PathLike, period: str, *, purpose: str,
                  requested_by: str, epsilon: float | None = None, rho: float | None = None,
                  by: str | Sequence[str] | None = (), release_id: str | None = None, spark=None,
                  boundaries=None) -> ReleaseResult:
    """Publish the three flow tables of crossing month ``period`` through the release boundary."""
    agreement = as_agreement(agreement)
    budget = check_request(agreement, period, purpose, epsilon, rho)
    by = parse_by(by, D.FLOW_BY_COLUMNS)
    release_id = release_id or release_id_for("flows", agreement.agreement_id, period, purpose, TABLES, by, budget)
    factors = load_factors(agreement.population_factors, agreement.agreement_id, D.bands_from(agreement.age_bands)) \
        if agreement.population_factors is not None else None  # a bad file is refused before anything is read
    progress.say("release", f"exact counts of crossing month {period} on the public domains")
    inputs = read_flow_inputs(agreement, lake_root, period, by, spark=spark, boundaries=boundaries)
    request = ReleaseRequest(
        release_id=release_id, agreement_id=agreement.agreement_id, period=period, purpose=purpose,
        requested_by=requested_by, query=flow_query(inputs), privacy_unit=PRIVACY_UNIT,
        epsilon=budget.epsilon, rho=budget.rho, input_versions=inputs.input_versions,
        max_contributions=MAX_CONTRIBUTIONS, data_months=tuple(flow_data_months(period, inputs.window_days)),
        table_groups=GROUPS, table_shares=flow_shares(agreement.budget.flows_subnational_share),
        totals=flow_totals(inputs.spec))
    progress.say("release", "charging the ledger, adding OpenDP noise, writing the release",
                 rows=sum(len(t) for t in inputs.tables.values()))
    return publish(lake_root, request, inputs.tables, agreement,
                   derive=people_estimates(inputs.spec, factors) if factors is not None else None)


def people_estimates(spec: FlowSpec, factors: Factors):
    """The release's post-processing into people (``estimate.people``), for ``publish``'s ``derive``."""
    keys = key_columns(spec)

    def derive(measured, consistent, terms):
        return estimate_tables(measured, consistent, terms, keys, spec.home, list(spec.by), factors,
                               international=INTERNATIONAL)
    return derive


def describe(result: ReleaseResult, rows: int = 10) -> str:
    """Where the release is, what it cost, how noisy it is, and the first rows of the international table."""
    m = result.manifest
    state = "already published earlier; stored files returned (no new noise, nothing charged)" \
        if result.reused else "published"
    p = m["privacy"]
    lines = [f"release {result.release_id}: {state}",
             f"  directory: {result.path}",
             f"  international table: {result.path / (INTERNATIONAL + '.csv')}",
             f"  mechanism: {m['mechanism']}  rho={p['rho']:.6g}  epsilon={p['epsilon']:.6g}  delta={p['delta']:.3g}"]
    for name in (t for t in TABLES if t in m["tables"]):
        info = m["tables"][name]
        noisy = m["tables"].get(f"{name}_noisy") or info  # format 1 kept no measurement
        lines.append(f"  {name}: {info['rows']} cells (consistent: non-negative, adds up; measurement "
                     f"{name}_noisy.csv: 95% error bound +/- {noisy['error_bound_95']:.4g} per cell)")
    if "totals" in result.tables:
        for row in result.tables["totals"].itertuples(index=False):
            lines.append(f"  national {row.total}: {row.count:,} (95% interval {row.low_95:,} to {row.high_95:,})")
    people = result.tables.get(people_table("totals"))
    if people is not None:
        for row in people.itertuples(index=False):
            lines.append(f"  national {row.total} in people (population estimate, factors of "
                         f"{m['tables'][people_table('totals')]['derived']['factors']['reference_date']}): "
                         f"{row.people:,} (95% interval {row.low_95:,} to {row.high_95:,})")
    head = result.tables[INTERNATIONAL].head(rows)
    lines.append(f"  {INTERNATIONAL} (first {len(head)} rows, consistent table with 95% intervals):")
    lines.extend("    " + line for line in head.to_string(index=False).splitlines())
    return "\n".join(lines)
