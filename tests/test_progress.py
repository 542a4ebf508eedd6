"""Progress lines: on a terminal by default, silent when redirected, forced either way by MOBILITY_PROGRESS."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobility import progress

LINE = re.compile(r"^\[\s*\d+\.\d+s\] (?P<stage>[^:]+): (?P<message>.*?)(?: \((?P<rows>[\d,]+) rows\))?$")
SNIPPET = ("from mobility import progress\n"
           "progress.say('anonymize', 'validating cdr', rows=12345)\n"
           "print('result on stdout')\n")


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("value,tty,shown", [
    (None, True, True), (None, False, False), ("", True, True), ("", False, False),
    ("1", False, True), ("on", False, True), ("TRUE", False, True), ("yes", False, True),
    ("0", True, False), ("off", True, False), ("False", True, False), ("no", True, False),
])
def test_terminal_decides_unless_the_variable_forces(monkeypatch, value, tty, shown):
    if value is None:
        monkeypatch.delenv(progress.ENV, raising=False)
    else:
        monkeypatch.setenv(progress.ENV, value)
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    progress.say("residence", "daily presence", rows=7)
    assert progress.enabled(stream) is shown
    assert (stream.getvalue() != "") is shown


def test_a_stream_that_cannot_tell_counts_as_not_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    closed = io.StringIO()
    closed.close()
    assert progress.enabled(closed) is False and progress.enabled(object()) is False


@given(stage=st.sampled_from(["anonymize", "residence", "release"]),
       message=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
       .filter(lambda m: m.strip() == m and ":" not in m),
       rows=st.one_of(st.none(), st.integers(0, 10**12)))
def test_a_line_shows_stage_message_rows_and_elapsed_time(stage, message, rows):
    found = LINE.match(progress.line(stage, message, rows))
    assert found and found["stage"] == stage and found["message"] == message
    assert (found["rows"] is None) == (rows is None)
    if rows is not None:
        assert int(found["rows"].replace(",", "")) == rows


def test_step_announces_start_and_end_with_rows(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "1")
    with progress.step("release", "exact counts") as info:
        info["rows"] = 1576
    lines = capsys.readouterr().err.splitlines()
    assert [LINE.match(x)["stage"] for x in lines] == ["release", "release"]
    assert "done in" in lines[1] and LINE.match(lines[1])["rows"] == "1,576"
    assert LINE.match(lines[0])["rows"] is None


def _child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != progress.ENV}
    env.update(extra)
    return env


def test_a_real_terminal_shows_progress_and_a_redirected_log_stays_quiet():
    """The child process decides by itself from its own stderr: a pseudo-terminal, then a pipe."""
    leader, follower = pty.openpty()
    try:
        child = subprocess.run([sys.executable, "-c", SNIPPET], stdout=subprocess.PIPE, stderr=follower,
                               env=_child_env(), timeout=120, check=True)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal is closed once the child has exited and all is read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    text = seen.decode().strip()
    assert LINE.match(text) and "anonymize: validating cdr (12,345 rows)" in text
    assert child.stdout.decode() == "result on stdout\n"

    logged = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, env=_child_env(), timeout=120,
                            check=True)
    assert logged.stderr == b"" and logged.stdout == b"result on stdout\n"

    forced = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True,
                            env=_child_env(**{progress.ENV: "1"}), timeout=120, check=True)
    assert b"anonymize: validating cdr (12,345 rows)" in forced.stderr
