"""Privacy auditors, on any machine with Python and no Spark: `ledger show|verify|export|report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mobility.cli import options


@click.group("ledger")
def ledger():
    """Auditors: read-only views of the privacy-budget ledger (no Spark needed)."""


def _agreements(refs: tuple[str, ...]) -> list:
    from mobility.config import load_agreement

    return [load_agreement(ref) for ref in refs]


def _caps_of(agreements: tuple[str, ...]) -> dict:
    return {a.agreement_id: a.budget for a in _agreements(agreements)}


def _figures(budget: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in budget.items()
                     if k != "delta")


@ledger.command("show")
@options.lake
@click.option("--agreement", default=None,
              help="agreement id or file: only its entries, and the budget of its population")
@options.as_json
def ledger_show(lake, agreement, as_json):
    """Entries and the budget spent and left per data population: lifetime and per data month."""
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
        click.echo(f"  #{e['seq']:<4} {e['entry_time'][:19]}  {e['status']:9s} {e['release_id'] or '-':32s} "
                   f"rho={e['rho']:.4g} eps={e['epsilon']:.4g} delta={e['delta']:.1g}  {e['entry_hash'][:12]}")
    for population, budget in view["budget"].items():
        caps_ = budget["caps"]
        where = {"ledger": f"recorded at seq {budget['caps_seq']}", "agreement file": "from the agreement file, "
                 "not recorded in the ledger yet"}.get(budget["caps_source"], "no caps recorded")
        limits = (f"rho per data month {caps_['rho_per_data_month']:g}, lifetime {caps_['rho_lifetime']:g}, "
                  f"delta {caps_['delta']:g}; " if caps_ else "")
        click.echo(f"  population {population} ({limits}{where}; agreements "
                   f"{', '.join(budget['agreements']) or '-'}): {budget['charges']} charges")
        click.echo("    lifetime: " + _figures(budget["lifetime"]))
        for month, spent in budget["data_months"].items():
            click.echo(f"    {month}: " + _figures(spent))
    for agr, legacy in view["unassigned"].items():
        click.echo(f"  agreement {agr}: {legacy['charges']} format-1 charges, rho={legacy['spent_rho']:.4g}, "
                   "in no population yet (no policy entry records its caps)")


@ledger.command("verify")
@options.lake
@click.option("--agreement", "agreements", multiple=True,
              help="compare this agreement's caps with those the ledger records (and use its ledger_witness)")
@click.option("--anchor", default=None, help="a tail hash recorded at an earlier audit")
@click.option("--witness", "witnesses", multiple=True, type=click.Path(path_type=Path),
              help="witness directory (an agreement's ledger_witness) or witness .jsonl file; repeatable")
@options.as_json
def ledger_verify(lake, agreements, anchor, witnesses, as_json):
    """Check the hash chain, Delta history, data files, caps, witness and every release directory;
    non-zero exit on tampering or rollback."""
    from mobility.privacy_budget import verify

    loaded = _agreements(agreements)
    chosen = list(witnesses)
    if not chosen:  # the witness the agreements name, said out loud so the auditor knows what was compared
        for agreement in loaded:
            if agreement.ledger_witness is not None and agreement.ledger_witness not in chosen:
                chosen.append(agreement.ledger_witness)
                click.echo(f"using the witness agreement {agreement.agreement_id} names: "
                           f"{agreement.ledger_witness}", err=True)
    report = verify(lake, caps={a.agreement_id: a for a in loaded} or None, anchor=anchor,
                    witness=chosen or None)
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
