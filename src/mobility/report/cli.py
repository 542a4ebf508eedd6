"""`mobility report` and `mobility ledger report`: write one self-contained HTML page and print its path."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path), help="lake root")
@click.option("--release", "release_id", required=True, help="release id (a folder under LAKE/releases/)")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HTML file to write")
@click.option("--agreement", "agreements", multiple=True,
              help="agreement file or id, for its budget caps (default: looked up by the release's agreement id)")
@click.option("--boundaries", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="boundary file under the map (default: the shipped Natural Earth countries)")
def report(lake, release_id, out, agreements, boundaries):
    """Write one self-contained HTML page on a release: map, largest flows, privacy in plain words, ledger."""
    from mobility import progress
    from mobility.reference import load_boundaries
    from mobility.report.release_report import write_release_report

    progress.say("report", f"rendering release {release_id}")
    path = write_release_report(lake, release_id, out, agreements=tuple(agreements),
                                boundaries=load_boundaries(boundaries))
    click.echo(f"release report: {path}")


@click.command("report")
@click.option("--lake", required=True, type=click.Path(file_okay=False, path_type=Path), help="lake root")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HTML file to write")
@click.option("--agreement", "agreements", multiple=True,
              help="only this agreement (file or id), with its caps; repeat for several (default: all in the ledger)")
def ledger_report(lake, out, agreements):
    """Write one self-contained HTML page: cumulative budget per agreement against its caps, with the entries."""
    from mobility.report.ledger_report import write_ledger_report

    click.echo(f"ledger report: {write_ledger_report(lake, out, tuple(agreements))}")
