"""Statistics office, office zone only: `residence`, `release flows|remittances|annual`, `export`, `report`,
`releases list`, `estimate combine`."""

from __future__ import annotations

import json

import click

from mobility.cli import options

# mobility.publish.export.FORMATS spelled out, so `--help` loads no pandas; tests/test_cli.py keeps them equal
EXPORT_FORMATS = ("sdmx-csv", "csv", "parquet")


@click.command("residence")
@options.agreement
@options.lake
@click.option("--through", default=None, help="use data up to this month, YYYY-MM (default: all)")
@click.option("--rebuild", is_flag=True, help="recompute every month from the events (default: only the months "
                                             "delivered since the last run)")
def residence(agreement, lake, through, rebuild):
    """Statistics office: daily presence, home cells, and residence changes by the 12/16-month rule.

    Incremental by month: a run recomputes the months whose events arrived since the last run and
    re-runs the rule for the pseudonyms whose decision can still change; --rebuild gives the same tables
    from all the events."""
    from mobility.residence.job import run

    click.echo(run(agreement, lake, through=through, rebuild=rebuild).summary())


@click.group("release")
def release():
    """Statistics office: publish differentially private tables through the release boundary."""


def _planned(agreement, rho, kind: str):
    """``--rho plan``: the agreement (loaded once) and the rho `mobility budget plan` gives ``kind``."""
    if rho != "plan":
        return agreement, rho
    from mobility.config import as_agreement
    from mobility.privacy_budget.plan import planned_rho

    loaded = as_agreement(agreement)
    return loaded, planned_rho(loaded, kind)


@release.command("flows")
@options.release("crossing month, YYYY-MM; must be final (16 months of data after it)",
                 "breakdowns of the international table, a comma list of sex, age_band and arrival_type "
                 "(returning residents and first arrivals)")
@click.option("--release-id", default=None, help="default: derived from agreement, period, purpose, --by, budget")
def flows(agreement, lake, period, by, epsilon, rho, purpose, requested_by, release_id):
    """Statistics office: publish differentially private migration flows of one crossing month."""
    from mobility.release.flows import describe, release_flows

    agreement, rho = _planned(agreement, rho, "flows")
    click.echo(describe(release_flows(agreement, lake, period, purpose=purpose, requested_by=requested_by,
                                      epsilon=epsilon, rho=rho, by=by, release_id=release_id)))


@release.command("remittances")
@options.release("month of the transfers, YYYY-MM; a later month must be ingested",
                 "breakdowns by the sender: sex, age_band or sex,age_band")
def remittances(agreement, lake, period, by, epsilon, rho, purpose, requested_by):
    """Statistics office: publish differentially private remittance corridors of one month."""
    from mobility.release.remittances import describe, release_remittances

    agreement, rho = _planned(agreement, rho, "remittances")
    click.echo(describe(release_remittances(agreement, lake, period, purpose=purpose, requested_by=requested_by,
                                            epsilon=epsilon, rho=rho, by=by)))


@release.command("annual")
@options.lake
@click.option("--year", required=True, type=click.IntRange(1900, 9999), help="calendar year, YYYY")
@options.agreement
def annual(lake, year, agreement):
    """Statistics office: annual flow tables summed from the year's 12 published monthly releases (no budget)."""
    from mobility.publish.annual import build_annual, describe

    click.echo(describe(build_annual(lake, year, agreement)))


@click.command("export")
@options.lake
@click.option("--release", "release_id", required=True, help="release id (or derived annual table id)")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="sdmx-csv", show_default=True)
@click.option("--out", "out_dir", required=True, type=options.FOLDER, help="folder to write the export into")
def export(lake, release_id, fmt, out_dir):
    """Publish a release as SDMX-CSV (with its structure) or as tidy CSV / Parquet with standard codes."""
    from mobility.publish.export import describe, export_release

    click.echo(describe(export_release(lake, release_id, fmt, out_dir)))


@click.command("report")
@options.lake
@click.option("--release", "release_id", required=True, help="release id (a folder under LAKE/releases/)")
@click.option("--out", required=True, type=options.FILE, help="HTML file to write")
@click.option("--agreement", "agreements", multiple=True,
              help="agreement file or id, for its budget caps (default: looked up by the release's agreement id)")
@click.option("--boundaries", default=None, type=options.FILE,
              help="boundary file under the map (default: the shipped Natural Earth countries)")
def report(lake, release_id, out, agreements, boundaries):
    """Write one self-contained HTML page on a release: map, largest flows, privacy in plain words, ledger."""
    from mobility import progress
    from mobility.reference import load_boundaries
    from mobility.report.release_report import write_release_report

    progress.say("report", f"rendering release {release_id}")
    path = write_release_report(lake, release_id, out, agreements=agreements, boundaries=load_boundaries(boundaries))
    click.echo(f"release report: {path}")


@click.group("releases")
def releases():
    """Portals and auditors: what was published (every release, its cost and ledger entries)."""


@releases.command("list")
@options.lake
@options.as_json
def list_releases(lake, as_json):
    """Every release (id, agreement, period, tables, purpose, budget, ledger entries) and derived table."""
    from mobility.publish.catalogue import catalogue, format_rows

    rows = catalogue(lake)
    click.echo(json.dumps(rows, indent=2) if as_json else format_rows(rows))


@click.group("estimate")
def estimate():
    """Statistics office: estimates of people from several operators' releases (no budget)."""


@estimate.command("combine")
@click.option("--release", "releases_", multiple=True, required=True, type=click.Path(file_okay=False),
              metavar="LAKE/releases/RELEASE_ID",
              help="one flows release per operator, each in its own lake and checked against its own ledger "
                   "(repeat, at least twice)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="new folder for the national table")
@options.as_json
def combine(releases_, out, as_json):
    """Pool the population estimates of several operators' flows releases of the same period and query."""
    from mobility.estimate.combine import combine as run

    result = run(list(releases_), out)
    click.echo(json.dumps(result.manifest, indent=2) if as_json else result.text())
