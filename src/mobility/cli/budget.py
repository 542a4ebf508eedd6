"""Statistics office and data-sharing parties, no Spark: `budget plan` (the rho per release that fits
the caps for the monthly schedule) and `budget policy` (record a change of caps in the ledger)."""

from __future__ import annotations

import json
import sys

import click

from mobility.cli import options


@click.group("budget")
def budget():
    """Privacy budget of the monthly schedule: the plan, and recording the agreement's caps."""


@budget.command("plan")
@options.agreement
@click.option("--years", type=click.IntRange(1, 50), default=None,
              help="years of monthly runs to fit into the caps (default: the agreement's budget.plan_years)")
@click.option("--start", default=None, help="first data month of the schedule, YYYY-MM (default: this month)")
@click.option("--lake", default=None, type=options.LAKE,
              help="also count what the ledger of this lake has spent (scheduled releases already charged once)")
@options.as_json
def budget_plan(agreement, years, start, lake, as_json):
    """The rho per release (flows, remittances, annual) that lets every release of the monthly schedule
    fit every cap for N years, and per data month and over the lifetime what is spent and left.

    `--rho plan` on `mobility release flows|remittances` and the jobs uses the same rho, for the
    agreement's plan_years. Exits 1 when what the ledger has spent leaves too little for the plan."""
    from mobility.config import load_agreement
    from mobility.privacy_budget.plan import plan

    loaded = load_agreement(agreement)
    if start is not None:
        from mobility.privacy_budget.blocks import check_month

        try:
            check_month(start)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--start") from None
    entries = None
    if lake is not None:
        from mobility.lake import Lake
        from mobility.privacy_budget.ledger import Ledger

        entries = Ledger(Lake(lake).ledger).read()[0]
    result = plan(loaded, years, start, ledger_entries=entries)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(result.describe())
        if result.years != loaded.budget.plan_years:
            click.echo(f"  note: `--rho plan` uses the agreement's plan_years ({loaded.budget.plan_years}), "
                       f"not --years {result.years}")
    sys.exit(0 if result.fits else 1)


@budget.command("policy")
@options.agreement
@options.lake
@click.option("--reason", required=True, help="who decided the caps and why (kept in the ledger for auditors)")
def budget_policy(agreement, lake, reason):
    """Record the agreement's caps in the ledger (a `policy` entry): how a change of caps is made.

    Releases under caps that differ from the recorded ones are refused until this is run."""
    from mobility.config import load_agreement
    from mobility.lake import Lake
    from mobility.privacy_budget import accounts
    from mobility.privacy_budget.ledger import Ledger, Policy

    loaded = load_agreement(agreement)
    policy = Policy.of(loaded)
    ledger = Ledger(Lake(lake).ledger, witness=loaded.ledger_witness)
    entry = ledger.record_policy(policy, reason)
    caps = ", ".join(f"{k}={v}" for k, v in policy.caps.recorded().items())
    if entry is None:
        recorded = accounts.latest_policy(ledger.read()[0], population=policy.population)
        at = f" (seq {recorded.seq})" if recorded is not None else ""
        click.echo(f"caps already recorded{at} for agreement {policy.agreement_id}: {caps}; nothing appended")
        return
    click.echo(f"recorded policy entry seq {entry.seq} for agreement {policy.agreement_id}: {caps}")
    click.echo(f"  agreement file sha256 {policy.agreement_sha256}")
    click.echo(f"  reason: {reason.strip()}")
    click.echo(f"  entry hash {entry.entry_hash}")
    if ledger.witness is not None:
        click.echo(f"  witnessed in {loaded.ledger_witness}")
