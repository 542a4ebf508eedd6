"""Privacy auditors, on any machine with Python and no Spark: `ledger show|verify|export|report`."""

from __future__ import annotations

import json
import sys

import click

from mobility.cli import options


@click.group("ledger")
def ledger():
    """Auditors: read-only views of the privacy-budget ledger (no Spark needed)."""


def _caps_of(agreements: tuple[str, ...]) -> dict:
    from mobility.config import load_agreement

    return {a.agreement_id: a.budget for a in map(load_agreement, agreements)}


def _figures(budget: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in budget.items())


@ledger.command("show")
@options.lake
@click.option("--agreement", default=None, help="agreement id or file: only its entries, with its caps")
@options.as_json
def ledger_show(lake, agreement, as_json):
    """Entries and the budget spent and left per agreement and calendar year."""
    from mobility.privacy_budget import show

    agreement_id, caps = None, {}
    if agreement:
        caps = _caps_of((agreement,))
        agreement_id = next(iter(caps))
    view = show(lake, agreement_id=agreement_id, caps=caps)
    if as_json:
        click.echo(json.dumps(view, indent=2, default=str))
        return
    click.echo(f"ledger {view['ledger']} (Delta version {view['delta_version']}): {len(view['entries'])} entries")
    for e in view["entries"]:
        click.echo(f"  #{e['seq']:<4} {e['entry_time'][:19]}  {e['status']:9s} {e['release_id']:32s} "
                   f"rho={e['rho']:.4g} eps={e['epsilon']:.4g} delta={e['delta']:.1g}  {e['entry_hash'][:12]}")
    for agr, budget in view["budget"].items():
        click.echo(f"  {agr}: lifetime " + _figures(budget["lifetime"]))
        for year, spent in budget["years"].items():
            click.echo(f"    {year}: " + _figures(spent))


@ledger.command("verify")
@options.lake
@click.option("--agreement", "agreements", multiple=True, help="also check totals against this agreement's caps")
@click.option("--anchor", default=None, help="a tail hash recorded at an earlier audit")
@options.as_json
def ledger_verify(lake, agreements, anchor, as_json):
    """Check the hash chain, sequence, caps and every release directory; non-zero exit on tampering."""
    from mobility.privacy_budget import verify

    report = verify(lake, caps=_caps_of(agreements) or None, anchor=anchor)
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else report.summary())
    sys.exit(0 if report.ok else 1)


@ledger.command("export")
@options.lake
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def ledger_export(lake, fmt):
    """Every ledger entry, hashes included, as CSV or JSON on standard output."""
    from mobility.privacy_budget import export

    click.echo(export(lake, fmt), nl=False)


@ledger.command("report")
@options.lake
@click.option("--out", required=True, type=options.FILE, help="HTML file to write")
@click.option("--agreement", "agreements", multiple=True,
              help="only this agreement (file or id), with its caps; repeat for several (default: all in the ledger)")
def ledger_report(lake, out, agreements):
    """Write one self-contained HTML page: cumulative budget per agreement against its caps, with the entries."""
    from mobility.report.ledger_report import write_ledger_report

    click.echo(f"ledger report: {write_ledger_report(lake, out, agreements)}")
