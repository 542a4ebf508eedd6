"""Data-subject rights, answered on whichever side holds the request: `rights registry|access|rectify|erase`;
auditors read what was asked with `rights log`."""

from __future__ import annotations

import json

import click

from mobility.cli import options


def _subject(func):
    """``options.subject`` (--msisdn, --pseudonym) and, for an agreement whose deliveries carry the operator's
    own pseudonymous ids (input_format multimno), --operator-id."""
    func = click.option("--operator-id", default=None, metavar="HEX",
                        help="operator side, multimno agreements: the person's user_id as the operator's multimno "
                             "pipeline writes it, in hex (needs the key)")(func)
    return options.subject(func)


def _emit(result, as_json: bool) -> None:
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.text())


@click.group("rights")
def rights():
    """Data-subject rights (UN HRC General Comment No. 16, para. 10): registry, access, rectify, erase."""


@rights.command("registry")
@options.agreement
@click.option("--lake", default=None, type=options.LAKE, envvar="MOBILITY_LAKE",
              help="lake whose rights log records the request (default: $MOBILITY_LAKE; none: not recorded)")
@options.as_json
def registry_command(agreement, lake, as_json):
    """Controllers, purposes, data categories per zone, legal basis and retention, from the agreement."""
    from mobility.rights import registry as reg

    view = reg.registry(agreement, lake)
    click.echo(json.dumps(view, indent=2) if as_json else reg.text(view))


@rights.command("access")
@options.agreement
@options.lake
@_subject
@options.as_json
def access_command(agreement, lake, msisdn, pseudonym, operator_id, as_json):
    """What is stored about one person, where, for what, controlled by whom, deleted when."""
    from mobility.rights.access import access

    _emit(access(agreement, lake, msisdn=msisdn, pseudonym=pseudonym, operator_id=operator_id), as_json)


@rights.command("rectify")
@options.agreement
@options.lake
@_subject
@click.option("--set", "assignments", multiple=True, required=True, metavar="FIELD=VALUE",
              help="sex=F|M|X or birth_year=YYYY (repeatable)")
@options.as_json
def rectify_command(agreement, lake, msisdn, pseudonym, operator_id, assignments, as_json):
    """Correct a subscriber's sex or birth year in every zone; later releases use the correction."""
    from mobility.rights.rectify import rectify

    _emit(rectify(agreement, lake, msisdn=msisdn, pseudonym=pseudonym, operator_id=operator_id,
                  changes=list(assignments)), as_json)


@rights.command("erase")
@options.agreement
@options.lake
@_subject
@options.as_json
def erase_command(agreement, lake, msisdn, pseudonym, operator_id, as_json):
    """Delete every row about one person in both zones, physically, and drop them from later ingests."""
    from mobility.rights.erase import erase

    _emit(erase(agreement, lake, msisdn=msisdn, pseudonym=pseudonym, operator_id=operator_id), as_json)


@rights.command("log")
@options.lake
@options.as_json
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
