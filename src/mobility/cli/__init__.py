"""The ``mobility`` command, the only place commands are declared.

One module per kind of user (operator side, statistics office, auditor, data-subject rights, newcomer);
shared options live in ``options``. A command parses its options, calls one library function imported
when it runs (so ``mobility --help`` loads no Spark or pandas) and prints what it returned.
"""

from __future__ import annotations

import sys

import click

from mobility.cli import auditor, budget, newcomer, office, operator_side, rights
from mobility.cluster_errors import executor_loss
from mobility.errors import MobilityError, StorageError, describe_storage_failure, storage_failure


class _Group(click.Group):
    """Turn every MobilityError, a full, read-only or forbidden file system and a lost Spark executor into one
    clear message and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MobilityError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:  # a full, read-only or forbidden file system is no bug: say so, in one message
            lost = executor_loss(exc)  # nor is a lost Spark executor: the run was not committed; rerun it
            if lost is not None:
                click.echo(f"error: {lost}", err=True)
                sys.exit(lost.exit_code)
            found = storage_failure(exc)
            if found is None:
                raise
            code, path = found
            refusal = StorageError(f"{describe_storage_failure(code)}; the command did not complete",
                                   where=path or "a file the command reads or writes",
                                   hint="free space, raise the file size limit or make the path writable by this "
                                        "user, then run the same command again")
            click.echo(f"error: {refusal}", err=True)
            sys.exit(refusal.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mobility")
def main():
    """Privacy-preserving migration statistics from call-detail and payment records.

    Operator side: `anonymize`, `keys rotate` (holds the key). Statistics office: `residence`, `release`, `budget`.
    Auditors: `ledger`. Newcomers: `demo`.
    """


for command in (operator_side.anonymize, operator_side.retention, operator_side.keys,
                office.residence, office.release, office.export, office.report, office.releases, office.estimate,
                budget.budget, auditor.ledger, rights.rights, newcomer.synth, newcomer.demo):
    main.add_command(command)
