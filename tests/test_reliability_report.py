"""docs/reliability.md's generator (bench/reliability.py): JUnit parsing and tables, on a hand-made file.

No Spark and no pytest run: the JUnit XML below is what ``--junitxml`` writes for tests that call
``record_property``. A failed test must show as not held, wherever its row is.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))
reliability = importlib.import_module("bench.reliability")


def _prop(name: str, value: dict) -> str:
    return f"<properties><property name={quoteattr(name)} value={quoteattr(json.dumps(value))} /></properties>"


CELL_OK = {"stage": "residence", "point": "residence:after-presence", "outcome": "rerun equals an uninterrupted run"}
CELL_BAD = {"stage": "anonymize", "point": "anonymize:after-events", "outcome": "rerun equals an uninterrupted run"}
CELL_SKIP = {"stage": "keys rotate", "point": "rotate:after-map", "outcome": "rerun completes the rotation"}
BAD_INPUT = {"kind": "truncated gzip <cdr>", "outcome": "refused", "detail": "file names the path | and the byte"}

JUNIT = f"""<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="5" time="9.5"
 timestamp="2026-12-07T21:00:00+00:00" hostname="vm">
<testcase classname="tests.faults.test_residence_faults" name="test_killed[residence:after-presence]" time="2.0">
{_prop("fault_cell", CELL_OK)}</testcase>
<testcase classname="tests.faults.test_anonymize_faults" name="test_killed[anonymize:after-events]" time="3.0">
{_prop("fault_cell", CELL_BAD)}<failure message="AssertionError: office/events differs">long trace</failure>
</testcase>
<testcase classname="tests.rights.test_key_rotation" name="test_rotation_killed[rotate:after-map]" time="0.0">
{_prop("fault_cell", CELL_SKIP)}<skipped type="pytest.skip" message="no cluster">skipped</skipped></testcase>
<testcase classname="tests.anonymize.test_inputs_contract" name="test_truncated_gzip" time="1.0">
{_prop("bad_input", BAD_INPUT)}</testcase>
<testcase classname="tests.privacy_budget.test_pb_release_crash" name="test_release_killed[release:after-stage]"
 time="4.0" />
</testsuite></testsuites>
"""


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    return path


def _rows(tmp_path: Path) -> dict:
    return reliability.collect(reliability.parse_junit([_write(tmp_path)]))


def test_cases_are_parsed_with_their_result_and_properties(tmp_path):
    rows = _rows(tmp_path)
    cells = rows["fault_cell"]
    # pipeline order: anonymize, residence, ..., keys rotate
    assert [c["stage"] for c in cells] == ["anonymize", "residence", "keys rotate"]
    stages = ["keys rotate", "retention", "rights erase", "export", "annual", "release flows", "residence", "anonymize"]
    assert sorted(stages, key=reliability.stage_rank) == stages[::-1]
    assert [c["case"].result for c in cells] == ["failed", "passed", "skipped"]
    assert cells[0]["case"].id == "tests/faults/test_anonymize_faults.py::test_killed[anonymize:after-events]"
    assert cells[0]["case"].message == "AssertionError: office/events differs"
    assert rows["bad_input"][0]["kind"] == BAD_INPUT["kind"] and rows["bad_input"][0]["case"].held
    assert [r["case"].id for r in rows["other_faults"]] == [
        "tests/privacy_budget/test_pb_release_crash.py::test_release_killed[release:after-stage]"]
    assert reliability.counts(cells) == (2, 1, 1)  # tried, held, skipped


def test_a_failed_test_shows_as_not_held(tmp_path):
    results = {"machine": {"date": "2026-12-07 21:00 UTC", "cpu": "cpu", "cores": 2, "memory_gb": 8, "os": "os",
                           "python": "3.11", "java": "java", "pyspark": "4", "delta_spark": "4",
                           "load_average": [1.0, 1.0, 1.0]},
               "cases": [vars(c) for c in reliability.parse_junit([_write(tmp_path)])], "pytest_runs": []}
    text = reliability.markdown(results)
    failed = next(line for line in text.splitlines() if "anonymize:after-events" in line and line.startswith("|"))
    assert "**NO**" in failed and "test failed" in failed
    passed = next(line for line in text.splitlines() if "residence:after-presence" in line and line.startswith("|"))
    assert "| yes |" in passed
    skipped = next(line for line in text.splitlines() if "rotate:after-map" in line and line.startswith("|"))
    assert "skipped, not tried" in skipped and "**NO**" not in skipped
    assert "fault matrix: 2 cells tried, 1 held (1 skipped)" in text
    assert "**NOT HELD: 1 test(s) failed**" in text
    bad_input = next(line for line in text.splitlines() if line.startswith("| truncated gzip"))
    # a pipe and angle brackets in a recorded value do not break the table
    assert bad_input.count(" | ") == 4 and "&lt;cdr&gt;" in bad_input and "\\|" in bad_input
    assert "| refused |" in bad_input and "| yes |" in bad_input
