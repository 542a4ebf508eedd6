"""Operator side, on the cluster that holds the key: `anonymize`, `retention enforce` and `keys rotate`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mobility.cli import options


@click.command("anonymize")
@options.agreement
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path),
              help="folder with cdr/, cells/, subscribers/, payments/")
@options.lake
@click.option("--run-id", default=None, help="run id (default: derived from the agreement and input files)")
def anonymize(agreement, input_dir, lake, run_id):
    """Operator side: validate, pseudonymize, minimize and H3-bin inputs into the office zone."""
    from mobility.anonymize.job import run

    click.echo(run(agreement, input_dir, lake, run_id=run_id).summary())


@click.group("retention")
def retention():
    """Delete personal data older than the agreement's retention period."""


@retention.command("enforce")
@options.agreement
@options.lake
@click.option("--today", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="treat this date (YYYY-MM-DD) as today (default: today)")
def retention_enforce(agreement, lake, today):
    """Delete expired rows in both zones and purge superseded files; prints a JSON summary."""
    from mobility.rights.retention import enforce

    click.echo(json.dumps(enforce(agreement, lake, today=today.date() if today else None), indent=2))


@click.group("keys")
def keys():
    """The agreement's pseudonymization key: rotate it without losing the 16-month history."""


@keys.command("rotate")
@options.agreement
@options.lake
@click.option("--new-key-id", required=True, help="id of the new key (the agreement's key.key_id afterwards)")
@click.option("--new-key-env", default=None, help="environment variable holding the new key, 64 hex digits "
                                                   "(default: MOBILITY_NEW_KEY)")
@click.option("--new-key-file", default=None, type=options.FILE, help="or a 0600 file holding the new key")
@click.option("--input", "inputs", multiple=True, type=options.FOLDER,
              help="a retained delivery folder (as given to `anonymize`) whose numbers are mapped; repeatable")
@click.option("--numbers", multiple=True, type=options.FILE,
              help="a CSV with an 'msisdn' column, e.g. the subscriber register; repeatable")
@options.as_json
def keys_rotate(agreement, lake, new_key_id, new_key_env, new_key_file, inputs, numbers, as_json):
    """Rename every stored pseudonym to the new key's, in both zones; resumable after a crash.

    Reads the agreement's current key and the new one, computes the new pseudonym of every number
    still held (the retained deliveries and/or number lists), rewrites every table and the
    suppression list in one Delta transaction each, removes the old versions and deletes the map.
    Then set the new key in the agreement. Run no other job on the lake meanwhile.
    """
    from mobility.config import KeySource
    from mobility.rights.rekey import rotate

    if new_key_env and new_key_file:
        raise click.UsageError("give at most one of --new-key-env and --new-key-file")
    from pydantic import ValidationError

    try:
        source = KeySource(file=new_key_file, key_id=new_key_id) if new_key_file else \
            KeySource(env=new_key_env or "MOBILITY_NEW_KEY", key_id=new_key_id)
    except ValidationError as exc:
        raise click.BadParameter("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                                 param_hint="--new-key-id / --new-key-env") from None
    report = rotate(agreement, lake, new_key_id, new_key=source, inputs=list(inputs), numbers=list(numbers))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.text())
