"""The ``mobility`` command: thin wrappers that parse arguments and call each stage's job."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from mobility.errors import MobilityError


class _Group(click.Group):
    """Turn every MobilityError into one clear message and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MobilityError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mobility")
def main():
    """Privacy-preserving migration statistics from call-detail and payment records.

    Operator side: `anonymize` (holds the key). Statistics office: `residence`, `release`.
    Auditors: `ledger`. Newcomers: `demo`.
    """


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder to write the synthetic inputs and truth/ into")
@click.option("--subscribers", default=1000, show_default=True, type=click.IntRange(10, 10_000_000))
@click.option("--months", default=24, show_default=True, type=click.IntRange(1, 120))
@click.option("--start", default="2024-01", show_default=True, help="first month, YYYY-MM")
@click.option("--home-country", default="PHL", show_default=True, help="ISO 3166-1 alpha-3 of the operator")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--fault-rate", default=0.02, show_default=True, type=click.FloatRange(0, 0.5))
@click.option("--events-per-day", default=6.0, show_default=True, type=click.FloatRange(0.1, 500))
def synth(out_dir, subscribers, months, start, home_country, seed, fault_rate, events_per_day):
    """Write a synthetic population (CDRs, cells, subscribers, payments) with ground truth."""
    from mobility.synth import generate

    summary = generate(out_dir, subscribers=subscribers, months=months, start=start,
                       home_country=home_country.upper(), seed=seed, fault_rate=fault_rate,
                       events_per_day=events_per_day)
    click.echo(json.dumps(summary.to_dict(), indent=2, default=str))


@main.command()
@click.option("--agreement", required=True, help="agreement file (conf/agreements/ID.yaml) or id")
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path),
              help="folder with cdr/, cells/, subscribers/, payments/")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path), help="lake root")
@click.option("--run-id", default=None, help="run id (default: derived from the agreement and input files)")
def anonymize(agreement, input_dir, lake, run_id):
    """Operator side: validate, pseudonymize, minimize and H3-bin inputs into the office zone."""
    from mobility.anonymize.job import run

    result = run(agreement, input_dir, lake, run_id=run_id)
    click.echo(_describe_anonymize(result))


def _describe_anonymize(result) -> str:
    state = "already completed earlier; nothing written" if result.already_done else "completed"
    lines = [f"anonymize run {result.run_id}: {state}"]
    for dataset, t in result.manifest["totals"].items():
        lines.append(f"  {dataset:12s} read {t['read']:>10,}  accepted {t['accepted']:>10,}  "
                     f"quarantined {t['quarantined']:>8,}  duplicates {t['duplicates']:>8,}  "
                     f"suppressed {t['suppressed']:>6,}")
    lines.append(f"  manifest: {result.manifest_path}")
    return "\n".join(lines)


@main.command()
@click.option("--agreement", required=True, help="agreement id or file")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path), help="lake root")
@click.option("--through", default=None, help="use data up to this month, YYYY-MM (default: all)")
def residence(agreement, lake, through):
    """Statistics office: daily presence, home cells, and residence changes by the 12/16-month rule."""
    from mobility.residence.job import run

    click.echo(_describe_residence(run(agreement, lake, through=through)))


def _describe_residence(result) -> str:
    m = result.manifest
    lines = [f"residence {result.run_id}: {m['subjects']:,} pseudonyms, {m['presence_days']:,} known days "
             f"through {m['data_end']}"]
    for kind, n in sorted(m["changes"].items()):
        lines.append(f"  {kind:28s} {n:>8,}")
    lines.append(f"  manifest: {result.manifest_path}")
    return "\n".join(lines)


@main.group()
def release():
    """Statistics office: publish differentially private tables through the release boundary."""


@main.group()
def ledger():
    """Auditors: read-only views of the privacy-budget ledger (no Spark needed)."""


def _attach(parent: click.Group, module: str, command: str) -> None:
    """Commands that live beside their stage's code, registered here so `--help` lists them all."""
    parent.add_command(getattr(importlib.import_module(module), command))


# One line per command defined in a stage's own module: (parent group, module, click object).
_attach(release, "mobility.release.flows", "flows_command")
_attach(release, "mobility.release.remittances", "remittances_command")
_attach(main, "mobility.rights.cli", "rights")
_attach(main, "mobility.rights.cli", "retention")
_attach(main, "mobility.report.cli", "report")
_attach(ledger, "mobility.report.cli", "ledger_report")
_attach(main, "mobility.publish.export", "export_command")
_attach(release, "mobility.publish.annual", "annual_command")
_attach(main, "mobility.publish.catalogue", "releases")


def _caps_of(agreements: tuple[str, ...]) -> dict:
    from mobility.config import load_agreement

    return {a.agreement_id: a.budget for a in map(load_agreement, agreements)}


@ledger.command("show")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--agreement", default=None, help="agreement id or file: only its entries, with its caps")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
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
        life = budget["lifetime"]
        click.echo(f"  {agr}: lifetime " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in life.items()))
        for year, b in budget["years"].items():
            click.echo(f"    {year}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in b.items()))


@ledger.command("verify")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--agreement", "agreements", multiple=True, help="also check totals against this agreement's caps")
@click.option("--anchor", default=None, help="a tail hash recorded at an earlier audit")
@click.option("--json", "as_json", is_flag=True)
def ledger_verify(lake, agreements, anchor, as_json):
    """Check the hash chain, sequence, caps and every release directory; non-zero exit on tampering."""
    from mobility.privacy_budget import verify

    report = verify(lake, caps=_caps_of(agreements) or None, anchor=anchor)
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else report.summary())
    sys.exit(0 if report.ok else 1)


@ledger.command("export")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def ledger_export(lake, fmt):
    """Every ledger entry, hashes included, as CSV or JSON on standard output."""
    from mobility.privacy_budget import export

    click.echo(export(lake, fmt), nl=False)


@main.command()
@click.option("--workdir", default="demo-out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--subscribers", default=400, show_default=True, type=click.IntRange(50, 100_000))
@click.option("--seed", default=7, show_default=True, type=int)
def demo(workdir, subscribers, seed):
    """Run the whole pipeline end to end on a small synthetic population and say what it produced."""
    from mobility.demo import run_demo

    run_demo(workdir, subscribers=subscribers, seed=seed)


if __name__ == "__main__":
    main()
