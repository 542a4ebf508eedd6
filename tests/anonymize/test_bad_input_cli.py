"""Bad input through the `mobility` command in a process of its own (issue #24): exit code 2, one message
naming the file or lake path and what to do, never a Python traceback, nothing committed.

Each test records its row of the table "Bad input: what each kind gets" (docs/contracts.md) as a
``bad_input`` property, which a report generator reads from pytest's --junitxml output.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anon_fixtures import CDR_HEADER, make_agreement, make_inputs, write_csv

MOBILITY = Path(sys.executable).with_name("mobility")


def _record(record_property, kind: str, outcome: str, detail: str) -> None:
    record_property("bad_input", json.dumps({"kind": kind, "outcome": outcome, "detail": detail[:200]}))


def _anonymize(agreement: Path, inputs: Path, lake: Path, key: str, **popen) -> subprocess.CompletedProcess:
    env = dict(os.environ, MOBILITY_KEY_TEST=key)
    return subprocess.run([str(MOBILITY), "anonymize", "--agreement", str(agreement), "--input", str(inputs),
                           "--lake", str(lake)], env=env, capture_output=True, text=True, timeout=600, **popen)


def _refused(outcome: subprocess.CompletedProcess, *expected: str) -> str:
    assert outcome.returncode == 2, outcome.stderr
    assert "Traceback" not in outcome.stderr and "Traceback" not in outcome.stdout
    message = outcome.stderr[outcome.stderr.index("error: "):]
    for text in (*expected, "What to do:"):
        assert text in message, message
    return message


def _corrupt_parquet(path: Path) -> None:
    path.write_bytes(b"PAR1 but then nothing of a Parquet file")


def _int_msisdn_parquet(path: Path) -> None:
    pq.write_table(pa.table({"msisdn": pa.array([639171234567], pa.int64()), "event_time": ["2025-01-05T21:40:00"],
                             "event_type": ["call_out"], "cell_id": ["C1"],
                             "visited_plmn": pa.array([None], pa.string())}), path)


def _semicolons(path: Path) -> None:
    path.write_text(";".join(CDR_HEADER) + "\n")


@pytest.mark.parametrize("name, write, expected, kind", [
    ("broken.parquet", _corrupt_parquet, "not a readable Parquet file",
     "corrupt Parquet (garbage bytes, cut off, empty)"),
    ("drifted.parquet", _int_msisdn_parquet, "'msisdn' is int64", "schema-drifted Parquet: a column of another type"),
    ("semicolons.csv", _semicolons, "separated by semicolons", "header separated by semicolons, tabs or pipes"),
])
def test_the_command_refuses_a_bad_file_with_exit_2_and_no_traceback(tmp_path, record_property, name, write,
                                                                      expected, kind):
    inputs = make_inputs(tmp_path / "input")
    write(inputs / "cdr" / name)
    outcome = _anonymize(make_agreement(tmp_path), inputs, tmp_path / "lake", secrets.token_hex(32))
    message = _refused(outcome, name, expected)
    assert not (tmp_path / "lake").exists()  # refused before the lake is touched
    _record(record_property, kind, "refused", message.splitlines()[0].split(": ", 2)[-1])


def _as_nobody():
    """preexec_fn: run the child as 'nobody', for whom a 0555 folder is read-only (root writes anywhere)."""
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setgroups([])
    os.setuid(nobody.pw_uid)


def test_a_lake_on_a_read_only_path_is_refused_naming_it(record_property):
    """chmod 0555 on the lake folder. Run as root, the command runs as 'nobody' (root may write anyway);
    skipped where that is not possible."""
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pwd.getpwnam("nobody")
            subprocess.run([str(MOBILITY), "--version"], preexec_fn=_as_nobody, capture_output=True, check=True)
        except (KeyError, OSError, subprocess.CalledProcessError):
            pytest.skip("running as root, and 'nobody' cannot run this installation (the in-process test "
                        "test_a_read_only_file_system_is_refused_naming_the_lake covers the refusal)")
    # a folder the unprivileged child can read (pytest's tmp_path is private to its user)
    root = Path(tempfile.mkdtemp(prefix="mobility-ro-lake-"))
    try:
        root.chmod(0o755)
        inputs = make_inputs(root / "input")
        agreement = make_agreement(root)
        lake = root / "lake"
        lake.mkdir()
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        lake.chmod(0o555)
        outcome = _anonymize(agreement, inputs, lake, secrets.token_hex(32), cwd=root,
                             preexec_fn=_as_nobody if as_root else None)
        message = _refused(outcome, f"the run cannot write to the lake {lake}", "permission denied",
                           "make the lake folder writable")
        assert list(lake.iterdir()) == []  # nothing written
        _record(record_property, "a lake on a read-only path", "refused", message.splitlines()[0].split(": ", 2)[-1])
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(root)


@pytest.mark.parametrize("code, says", [(errno.EROFS, "the file system is read-only"),
                                         (errno.EACCES, "permission denied")])
def test_a_read_only_file_system_is_refused_naming_the_lake(tmp_path, monkeypatch, record_property, code, says):
    """The same refusal as above for any user: the lake's folders cannot be created (a read-only mount)."""
    from click.testing import CliRunner

    from mobility.cli import main
    from mobility.lake import Lake

    def read_only(self):
        raise OSError(code, os.strerror(code), str(self.operator))

    monkeypatch.setattr(Lake, "ensure", read_only)
    monkeypatch.setenv("MOBILITY_KEY_TEST", secrets.token_hex(32))
    lake = tmp_path / "lake"
    outcome = CliRunner().invoke(main, ["anonymize", "--agreement", str(make_agreement(tmp_path)),
                                        "--input", str(make_inputs(tmp_path / "input")), "--lake", str(lake)])
    assert outcome.exit_code == 2 and "Traceback" not in outcome.output
    assert f"the run cannot write to the lake {lake}: {says} (at {lake / 'operator'})" in outcome.output
    assert "make the lake folder writable" in outcome.output
    _record(record_property, "a lake on a read-only path", "refused", f"the run cannot write to the lake: {says}")


# Spark's start copies its jars (up to 30 MB) into its scratch folder, so a file-size limit small enough
# for a test input would stop the JVM before the run. The child starts Spark first, then sets the limit
# on itself and on the running JVM (prlimit), then runs the same `mobility` command.
_LIMITED = """
import resource, sys
from mobility.spark import get_spark
spark = get_spark("mobility-anonymize")
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
resource.prlimit(spark._jvm.java.lang.ProcessHandle.current().pid(), resource.RLIMIT_FSIZE, (limit, limit))
from mobility.cli import main
main(sys.argv[2:], prog_name="mobility")
"""


@pytest.mark.slow  # a Spark process of its own (about 20 s), then a run in this one
@pytest.mark.spark
def test_a_full_disk_during_the_writes_is_refused_and_a_rerun_completes(tmp_path, spark, monkeypatch,
                                                                       record_property):
    from mobility.anonymize.job import run

    key = secrets.token_hex(32)
    inputs = make_inputs(tmp_path / "input")
    rows = [(f"+6391712{i:05d}", f"2025-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00", "call_out", "C1", "",
             str(i % 600), "", "") for i in range(2000)]
    write_csv(inputs / "cdr" / "more.csv", CDR_HEADER, rows)
    agreement, lake = make_agreement(tmp_path), tmp_path / "lake"
    limit = 16 * 1024  # bytes per file: the run's Delta files and scratch blocks are larger
    outcome = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(limit), "anonymize", "--agreement", str(agreement),
         "--input", str(inputs), "--lake", str(lake)],
        env=dict(os.environ, MOBILITY_KEY_TEST=key), capture_output=True, text=True, timeout=900)
    message = _refused(outcome, f"the run cannot write to the lake {lake}", "a file size limit was hit",
                       "nothing of this run was committed", "run the same command again")
    assert not list((lake / "office" / "manifests").glob("*.json"))  # not committed
    assert list((lake / "operator" / "manifests").glob("*.started.json"))  # the run's marker, left behind
    _record(record_property, "a full disk or file size limit during a write", "refused",
            message.splitlines()[0].split(": ", 2)[-1])

    monkeypatch.setenv("MOBILITY_KEY_TEST", key)
    again = run(str(agreement), inputs, lake, spark=spark)  # the same command, without the limit
    assert not again.already_done and (lake / "office" / "manifests" / f"{again.run_id}.json").is_file()
    assert again.manifest["totals"]["cdr"]["read"] == 2000 + 20
    assert not list((lake / "operator" / "manifests").glob("*.started.json"))


def test_any_command_says_a_full_disk_in_one_line(tmp_path, monkeypatch):
    """The `mobility` command's fallback for the stages that do not name their lake themselves."""
    from click.testing import CliRunner

    import mobility.synth
    from mobility.cli import main

    target = tmp_path / "out" / "cdr" / "part-0.csv"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(mobility.synth, "generate", full)
    outcome = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "out")])
    assert outcome.exit_code == 2 and "Traceback" not in outcome.output
    assert f"error: {target}: no space is left on the device" in outcome.output and "What to do:" in outcome.output
    monkeypatch.setattr(mobility.synth, "generate", lambda *a, **k: 1 / 0)
    assert isinstance(CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "out")]).exception,
                      ZeroDivisionError)  # anything else is a bug and stays one
