"""Options several commands take, each declared once so its name, type and help read the same everywhere."""

from __future__ import annotations

from pathlib import Path

import click

FOLDER = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)


class _Lake(click.ParamType):
    """A lake root: a folder, or s3://bucket/prefix on S3-compatible object storage (kept as text)."""

    name = "FOLDER|s3://BUCKET/PREFIX"

    def convert(self, value, param, ctx):
        from mobility import storage

        if isinstance(value, str) and storage.is_uri(value):
            return value
        return FOLDER.convert(value, param, ctx)


LAKE = _Lake()
lake = click.option("--lake", required=True, type=LAKE, help="lake root: a folder or s3://bucket/prefix")
agreement = click.option("--agreement", required=True, help="agreement id or file (conf/agreements/ID.yaml)")
as_json = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


class _Rho(click.ParamType):
    """A rho-zCDP budget: a number, or "plan" (resolved by the command under its agreement)."""

    name = "RHO|plan"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "plan":
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'plan'", param, ctx)


RHO = _Rho()


def subject(func):
    """Who a rights request is about: a number on the operator side, a pseudonym on the office side."""
    func = click.option("--pseudonym", default=None, help="office side: the 64-hex pseudonym instead of a number")(func)
    return click.option("--msisdn", default=None, help="operator side: the subscriber's number (needs the key)")(func)


def release(period_help: str, by_help: str):
    """What every `mobility release` that draws noise takes: agreement, lake, period, breakdowns, budget, purpose."""
    declared = [
        agreement,
        lake,
        click.option("--period", required=True, help=period_help),
        click.option("--by", default=None, help=by_help),
        click.option("--epsilon", type=float, default=None, help="pure epsilon-DP budget (discrete Laplace)"),
        click.option("--rho", type=RHO, default=None,
                     help="rho-zCDP budget (discrete Gaussian), or 'plan': the rho `mobility budget plan` gives"),
        click.option("--purpose", required=True, help="one of the agreement's declared purpose ids"),
        click.option("--requested-by", required=True, help="who asked for the release (name or role)"),
    ]

    def apply(func):
        for option in reversed(declared):
            func = option(func)
        return func
    return apply
