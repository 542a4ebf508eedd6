"""Every command has help, and errors are one clear message with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from mobility.cli import main
from mobility.cli.office import EXPORT_FORMATS


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", [()] + list(_commands(main)))
def test_help_everywhere(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_bad_agreement_is_one_line_error_not_a_traceback(tmp_path):
    result = CliRunner().invoke(main, ["anonymize", "--agreement", str(tmp_path / "x.yaml"),
                                       "--input", str(tmp_path), "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 2
    assert "configuration file not found" in result.output and "Traceback" not in result.output


def test_help_loads_no_spark_or_pandas():
    loaded = subprocess.run([sys.executable, "-c", "import sys, mobility.cli; print(*sys.modules, sep='\\n')"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not {"pandas", "pyarrow", "pyspark", "opendp"} & set(loaded)


def test_export_offers_every_format_the_exporter_writes():
    from mobility.publish.export import FORMATS

    assert EXPORT_FORMATS == FORMATS
