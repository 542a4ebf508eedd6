"""Operator side, on the cluster that holds the key: `anonymize` and `retention enforce`."""

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
