"""`mobility rights ...` and `mobility retention ...`: thin wrappers over the rights package."""

from __future__ import annotations

import json
from pathlib import Path

import click

_LAKE = click.Path(file_okay=False, path_type=Path)


def _emit(result, as_json: bool) -> None:
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.text())


@click.group()
def rights():
    """Data-subject rights (UN HRC General Comment No. 16, para. 10): registry, access, rectify, erase."""


@rights.command("registry")
@click.option("--agreement", required=True, help="agreement id or file")
@click.option("--lake", default=None, type=_LAKE, envvar="MOBILITY_LAKE",
              help="lake whose rights log records the request (default: $MOBILITY_LAKE; none: not recorded)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def registry_command(agreement, lake, as_json):
    """Controllers, purposes, data categories per zone, legal basis and retention, from the agreement."""
    from mobility.rights import registry as reg

    view = reg.registry(agreement, lake)
    click.echo(json.dumps(view, indent=2) if as_json else reg.text(view))


def _subject_options(func):
    func = click.option("--pseudonym", default=None, help="office side: the 64-hex pseudonym instead of a number")(func)
    return click.option("--msisdn", default=None, help="operator side: the subscriber's number (needs the key)")(func)


@rights.command("access")
@click.option("--agreement", required=True, help="agreement id or file")
@click.option("--lake", required=True, type=_LAKE, help="lake root")
@_subject_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def access_command(agreement, lake, msisdn, pseudonym, as_json):
    """What is stored about one person, where, for what, controlled by whom, deleted when."""
    from mobility.rights.access import access

    _emit(access(agreement, lake, msisdn=msisdn, pseudonym=pseudonym), as_json)


@rights.command("rectify")
@click.option("--agreement", required=True, help="agreement id or file")
@click.option("--lake", required=True, type=_LAKE, help="lake root")
@_subject_options
@click.option("--set", "assignments", multiple=True, required=True, metavar="FIELD=VALUE",
              help="sex=F|M|X or birth_year=YYYY (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def rectify_command(agreement, lake, msisdn, pseudonym, assignments, as_json):
    """Correct a subscriber's sex or birth year in every zone; later releases use the correction."""
    from mobility.rights.rectify import rectify

    _emit(rectify(agreement, lake, msisdn=msisdn, pseudonym=pseudonym, changes=list(assignments)), as_json)


@rights.command("erase")
@click.option("--agreement", required=True, help="agreement id or file")
@click.option("--lake", required=True, type=_LAKE, help="lake root")
@_subject_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def erase_command(agreement, lake, msisdn, pseudonym, as_json):
    """Delete every row about one person in both zones, physically, and drop them from later ingests."""
    from mobility.rights.erase import erase

    _emit(erase(agreement, lake, msisdn=msisdn, pseudonym=pseudonym), as_json)


@rights.command("log")
@click.option("--lake", required=True, type=_LAKE, help="lake root")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def log_command(lake, as_json):
    """Auditors: every rights request recorded in this lake (subjects as keyed hashes only)."""
    from mobility.rights.log import read

    rows = read(lake)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        ref = (r["subject_ref"] or "-")[:16]
        click.echo(f"{r['entry_time'][:19]}  {r['request']:9s} {r['agreement_id']:16s} {r['outcome']:14s} "
                   f"{ref:16s} {r['detail'] or ''}")


@click.group()
def retention():
    """Delete personal data older than the agreement's retention period."""


@retention.command("enforce")
@click.option("--agreement", required=True, help="agreement id or file")
@click.option("--lake", required=True, type=_LAKE, help="lake root")
@click.option("--today", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="treat this date (YYYY-MM-DD) as today (default: today)")
def enforce_command(agreement, lake, today):
    """Delete expired rows in both zones and purge superseded files; prints a JSON summary."""
    from mobility.rights.retention import enforce

    click.echo(json.dumps(enforce(agreement, lake, today=today.date() if today else None), indent=2))
