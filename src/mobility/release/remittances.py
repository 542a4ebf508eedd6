"""Release of monthly remittance corridors (SDG 10.c.1 cost, 17.3.2 volume) through ``publish``.

Order: check the request (purpose, budget, breakdowns, corridors) -> pin the Delta versions read
-> refuse a month that is not complete -> refuse a month with a transfer the FX table cannot
convert -> exact bounded sums on the public domain (Spark) -> the release boundary, which charges
the ledger once, adds OpenDP noise to the five measures and writes them with the cost ratios
derived from them. Every refusal before the boundary charges nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mobility.aggregate import domains as D
from mobility.aggregate import remittances as R
from mobility.config import Agreement, as_agreement
from mobility.errors import InputContractError
from mobility.lake import Lake
from mobility.privacy_budget.blocks import payment_data_months
from mobility.privacy_budget.boundary import ReleaseRequest, ReleaseResult, publish
from mobility.privacy_budget.consistency import Part, Total
from mobility.privacy_budget.mechanisms import ALPHA, Budget, plan_noise
from mobility.privacy_budget.postprocess import cell_half_width
from mobility.privacy_budget.sums import has_measurements, sum_cells
from mobility.release.inputs import breakdown_profile, pin
from mobility.release.request import check_request, parse_by, refuse, release_id_for
from mobility.schemas import PAYMENTS_TABLE


def privacy_unit(bounds: R.Bounds) -> str:
    return (f"sender (pseudonym) in one calendar month: at most {bounds.max_transfers} corridor transfers, "
            f"amounts clamped to USD {bounds.amount_min_usd:g}-{bounds.amount_max_usd:g}, "
            f"costs to 0-{bounds.cost_max_pct:g}% of the amount")


def default_release_id(agreement_id: str, period: str, purpose: str, by: Sequence[str],
                       epsilon: float | None = None, rho: float | None = None) -> str:
    """Same request, same id: a rerun finds the stored release (or a refusal) instead of new noise."""
    return release_id_for("remittances", agreement_id, period, purpose, R.MEASURES, by, Budget(epsilon, rho))


def _months(payments) -> tuple[str | None, str | None]:
    from pyspark.sql import functions as F

    row = payments.agg(F.min("month").alias("lo"), F.max("month").alias("hi")).collect()[0]
    return row["lo"], row["hi"]


def check_complete(period: str, first: str | None, last: str | None) -> None:
    """A month is releasable once payments of a later month have been ingested (files arrive monthly)."""
    if first is None or last is None:  # the min and max of one column: both set or both None
        raise InputContractError("no payments of this agreement in the office zone",
                                 hint="anonymize a payments file on the operator side first")
    if period < first:
        refuse(f"no payments data for {period}: the office zone holds payments from {first} to {last}",
                hint=f"request a month from {first} to the month before {last}")
    if period >= last:
        refuse(f"period {period} is not complete: the latest payments ingested are from {last}, so more "
                f"transfers of {period} may still arrive",
                hint="release a month before the latest one, or wait for the next month's payments file")


def check_fx(fx: R.FxTable, keys: Sequence) -> dict:
    rates, missing = fx.rates_for(keys)
    if missing:
        shown = ", ".join(f"{c} on {d.isoformat()}" for c, d in missing[:8]) + (" ..." if len(missing) > 8 else "")
        refuse(f"the FX table {fx.path} has no rate for {len(missing)} currency/date pair(s) of the period: "
                f"{shown}",
                hint=f"add a monthly row (currency,YYYY-MM-01,monthly,units_per_usd,source) or daily rows to "
                     f"{fx.path} (or point MOBILITY_FX at a complete table), then release again")
    return rates


def release_remittances(agreement: str | Agreement, lake_root: str | os.PathLike, period: str, *, purpose: str,
                        requested_by: str, epsilon: float | None = None, rho: float | None = None,
                        by: str | Sequence[str] | None = None, spark=None) -> ReleaseResult:
    """Publish the remittance corridors of month ``period`` (local time) through the release boundary."""
    from mobility.spark import get_spark

    agreement = as_agreement(agreement)
    budget = check_request(agreement, period, purpose, epsilon, rho)
    by = parse_by(by)
    if not agreement.corridors:
        refuse(f"agreement {agreement.agreement_id} lists no corridors",
               hint="add sender_country/receiver_country pairs under 'corridors' in the agreement")
    bounds = R.Bounds.of(agreement.remittance_bounds)
    spec = R.RemittanceSpec(R.corridor_list(agreement.corridors), period, by,
                            D.bands_from(agreement.age_bands), bounds)
    plan = plan_noise(shares=R.SHARES, sensitivity=bounds.max_transfers, delta=agreement.budget.delta,
                      epsilon=budget.epsilon, rho=budget.rho, sensitivities=bounds.sensitivities())  # no noise drawn
    fx = R.load_fx()

    lake = Lake(lake_root)
    versions: dict[str, int] = {}
    payments_version = pin(lake, PAYMENTS_TABLE, versions, "no payments in the office zone",
                           "anonymize a payments file on the operator side first")
    spark = spark or get_spark("mobility-release-remittances")
    payments = lake.committed(spark, PAYMENTS_TABLE, agreement.agreement_id, payments_version)
    check_complete(period, *_months(payments))
    transfers = R.corridor_transfers(payments, spec, agreement.time_zone).cache()
    try:
        rates = check_fx(fx, R.fx_keys(transfers))
        profile = breakdown_profile(spark, lake, agreement.agreement_id, by, versions)
        tables = R.exact_tables_spark(transfers, profile, spec, rates)
    finally:
        transfers.unpersist()

    error_bounds = {name: cell_half_width(plan, name) for name in plan.tables}
    request = ReleaseRequest(
        release_id=release_id_for("remittances", agreement.agreement_id, period, purpose, R.MEASURES, by, budget),
        agreement_id=agreement.agreement_id, period=period, purpose=purpose, requested_by=requested_by,
        query=remittance_query(spec, fx), privacy_unit=privacy_unit(bounds),
        epsilon=budget.epsilon, rho=budget.rho, input_versions=versions, max_contributions=bounds.max_transfers,
        table_shares=R.SHARES, table_sensitivities=bounds.sensitivities(),
        data_months=tuple(payment_data_months(period)), totals=remittance_totals(spec))
    confidence = 1 - 2 * ALPHA  # union bound over numerator and denominator

    def derive(noisy, _consistent, _terms):
        return {R.COST_PCT: (R.cost_ratios(noisy, spec, error_bounds), R.ratio_description(error_bounds, confidence))}

    return publish(lake_root, request, tables, agreement, derive=derive)


def remittance_totals(spec: R.RemittanceSpec) -> tuple[Total, ...]:
    """Each measure adds up from its cells to the corridors and to its total over every corridor."""
    corridor = tuple(R.CORRIDOR_KEYS[:2])
    levels = (corridor, tuple(R.CORRIDOR_KEYS)) if spec.by else (corridor,)
    return tuple(Total(m, (Part(m, {}, levels),)) for m in R.MEASURES)


def remittance_query(spec: R.RemittanceSpec, fx: R.FxTable) -> dict:
    """What the release counts, in public terms (ledger and manifest)."""
    assert spec.bounds is not None  # a release spec is bounded
    return {
        "statistic": "remittance transfers per corridor and channel in a calendar month (local time); "
                     "SDG 17.3.2 volume and SDG 10.c.1 cost",
        "period": spec.period, "corridors": [list(c) for c in spec.corridors], "channels": list(spec.channels),
        "by": list(spec.by), "by_of": "the sender's subscriber record (sex; age reached in the transfer's year)",
        **({"age_bands": list(D.age_band_values(spec.age_bands))} if "age_band" in spec.by else {}),
        "measures": {R.TRANSFERS: "number of transfers", R.VOLUME: "sum of amounts, whole USD",
                     R.COST: "sum of total cost (fee + FX margin) in basis points of the amount sent",
                     R.TRANSFERS_NEAR: f"transfers of USD {R.NEAR_BAND_USD[0]:g}-{R.NEAR_BAND_USD[1]:g}",
                     R.COST_NEAR: f"cost sum (basis points) of transfers of USD "
                                  f"{R.NEAR_BAND_USD[0]:g}-{R.NEAR_BAND_USD[1]:g}"},
        "budget_shares": dict(R.SHARES), "bounding": spec.bounds.describe(), "fx": fx.describe(),
        "tables": {m: spec.keys for m in R.MEASURES}, "domain_sizes": R.domain_sizes(spec),
        "derived": {R.COST_PCT: "mean cost % overall and near USD 200, with an interval (see manifest)"},
    }


def describe(result: ReleaseResult, rows: int = 12) -> str:
    """Where the release is, what it cost, its error bounds, and the headline rows."""
    m = result.manifest
    state = "already published earlier; stored files returned (no new noise, nothing charged)" \
        if result.reused else "published"
    p = m["privacy"]
    lines = [f"release {result.release_id}: {state}", f"  directory: {result.path}",
             f"  mechanism: {m['mechanism']}  rho={p['rho']:.6g}  epsilon={p['epsilon']:.6g}  delta={p['delta']:.3g}",
             f"  privacy unit: {m['privacy_unit']}"]
    for name in R.MEASURES:
        info = m["tables"].get(f"{name}_noisy") or m["tables"][name]  # format 1 kept no measurement
        lines.append(f"  {name}: {info['rows']} cells, share {info['budget_share']:.2f}, sensitivity "
                     f"{info['sensitivity']['d_in']}, 95% error bound +/- {info['error_bound_95']:,} per noisy cell")
    keys = list(R.CORRIDOR_KEYS)

    def summed(measure: str, label: str):
        if not has_measurements(m, measure):  # format 1: sums of clamped cells, no interval
            return result.tables[measure].groupby(keys, as_index=False)[D.COUNT].sum() \
                .rename(columns={D.COUNT: label})
        out = sum_cells(m, result.tables, measure, keys)
        out[f"{label}_95"] = [f"{lo:,}-{hi:,}" for lo, hi in zip(out["low_95"], out["high_95"])]
        return out.rename(columns={D.COUNT: label})[[*keys, label, f"{label}_95"]]

    table = summed(R.TRANSFERS, "transfers").merge(summed(R.VOLUME, "usd"), on=keys)
    if not m["query"]["by"]:  # with --by the ratios are per subgroup: see cost_pct.csv
        cost = result.tables[R.COST_PCT]
        cost = cost[cost["amount_band"] == R.ALL_BAND][[*keys, "mean_cost_pct", "cost_pct_low", "cost_pct_high"]]
        table = table.merge(cost, on=keys, how="left")
    table = table.sort_values(["transfers"], ascending=False, kind="stable").head(rows)
    lines.append(f"  corridors x channels (first {len(table)} by transfers; consistent sums with their 95% "
                 "intervals; cost % from the noisy measurements, with its interval):")
    lines.extend("    " + line for line in table.to_string(index=False).splitlines())
    return "\n".join(lines)
