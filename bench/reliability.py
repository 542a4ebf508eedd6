"""Reliability figures (issue #24): fault matrix, bad input, executor loss, a key rotation at 1m events.

``python -m bench.reliability [--junit FILE ...] [--skip-rotation] [--events N] [--out PATH] [--work DIR]``
(``make reliability``) writes ``docs/reliability.md`` from two sources:

1. **The reliability tests**, in two pytest runs, each writing a JUnit XML file under ``WORK``:

   - ``pytest -m faults tests``: every test marked ``faults`` (the fault matrix in ``tests/faults/``,
     the release crash tests, the key-rotation crash tests, the executor-loss cluster test);
   - ``pytest -m "not faults" PATHS``: the bad-input tests (``BAD_INPUT_PATHS``; those marked
     ``faults`` already ran in the first run).

   A marker filter applies to a whole pytest run, so two runs are the simple way to apply ``-m faults``
   to the whole tests/ folder and no filter to the bad-input files. Both run with
   ``--continue-on-collection-errors``: a test file that does not import shows as an error, and the
   other tests still run. The tests say what they tried with ``record_property`` (JSON values):
   ``fault_cell`` {stage, point, outcome}, ``bad_input`` {kind, outcome, detail}, ``executor_loss``
   {stage, killed, outcome, identical}. A cell **held** when its test passed (no ``failure``,
   ``error`` or ``skipped`` in the XML); a failed test is listed as NOT held, never left out; a
   skipped one as not tried. ``--junit FILE`` (repeatable) reads earlier XML files instead of running
   the tests; a test without properties is listed by its id (fault tests) or counted (the rest of the
   bad-input files, each one that did not pass listed by its id).

2. **A key rotation** (``mobility.rights.rekey.rotate``) of a lake of about ``--events`` CDR rows
   (default 1,000,000): a synthetic extract of 12 months (``mobility.synth.generate``, cached under
   ``bench/out/data``; a rerun skips the generation), anonymized under a fresh random key into a
   fresh lake and run through residence (one child process), then rotated to a second random key in a
   fresh child process measured by ``bench.monitor.run_child`` (wall, CPU seconds and peak resident
   memory of the whole process tree). The child also times the ``rotate`` call alone (wall and CPU
   of its process tree, the Spark session start excluded). Afterwards every Delta table of both zones
   is counted with delta-rs. No key is written anywhere: both live in the children's environment
   only, so the lake is anonymized again on every run. ``--skip-rotation`` keeps the last measured
   rotation (``WORK/rotation-latest.json``), labelled with its date, or says it was not measured.

The whole file is rewritten on every run. Exit status 1 when a test did not hold, a pytest run
ended abnormally or the rotation failed (the file is written first); 0 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = ROOT / "bench" / "out" / "reliability"
DEFAULT_DOC = ROOT / "docs" / "reliability.md"

# ---------------------------------------------------------------- the tests

BAD_INPUT_PATHS = ("tests/anonymize/test_inputs_contract.py", "tests/anonymize/test_bad_input_*.py",
                   "tests/anonymize/test_anonymize_job.py", "tests/test_config.py")
PYTEST = ("-q", "-p", "no:cacheprovider", "--continue-on-collection-errors")
PROPERTIES = ("fault_cell", "bad_input", "executor_loss")
# pipeline order of the fault matrix's stages: (prefixes of the stage name, as the tests spell it)
STAGE_ORDER = (("anonymi",), ("residence",), ("release", "publish"), ("annual",), ("export",), ("eras",),
               ("retention",), ("key", "rotat"))


def bad_input_files() -> list[str]:
    """The bad-input test files present now (others are being written), relative to the repository."""
    found: list[str] = []
    for pattern in BAD_INPUT_PATHS:
        found += sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern) if p.is_file())
    return list(dict.fromkeys(found))


def test_runs() -> list[tuple[str, list[str]]]:
    """(name, pytest arguments) of the two runs."""
    return [("faults", ["-m", "faults", "tests"]), ("inputs", ["-m", "not faults", *bad_input_files()])]


def run_tests(work: Path) -> tuple[list[Path], list[dict]]:
    """Both pytest runs, one after the other; their JUnit files and how each went."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    files, runs = [], []
    for name, args in test_runs():
        if name == "inputs" and len(args) == 2:  # no bad-input file: a path-less run would run the whole suite
            continue
        junit, log = work / f"junit-{name}.xml", work / "logs" / f"pytest-{name}.log"
        junit.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", *PYTEST, f"--junitxml={junit}", *args]
        print(f"[reliability] pytest ({name}): {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        with open(log, "w") as fh:
            code = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode  # the log follows the run
        seconds = round(time.perf_counter() - started, 1)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        print(f"[reliability] pytest ({name}): exit {code} after {seconds} s: {tail[0]}", flush=True)
        runs.append({"name": name, "args": args, "exit": code, "seconds": seconds, "log": str(log),
                     "junit": str(junit), "last_line": tail[0]})
        if not junit.is_file():
            raise SystemExit(f"pytest ({name}) wrote no JUnit XML (exit {code}); see {log}")
        files.append(junit)
    return files, runs


@dataclass
class Case:
    """One <testcase> of a JUnit file."""

    id: str
    result: str  # passed | failed | error | skipped | xfail
    message: str = ""
    seconds: float = 0.0
    properties: list[tuple[str, str]] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.result == "passed"

    @property
    def tried(self) -> bool:
        return self.result != "skipped"

    @property
    def path(self) -> str:
        return self.id.split("::", 1)[0]


def test_id(classname: str, name: str) -> str:
    """pytest's node id back from JUnit's classname (dotted module path, then classes) and name."""
    if not classname:
        return name  # a collection error: the name is the module
    parts = classname.split(".")
    for i, part in enumerate(parts):
        if part.startswith("test_") or part.endswith("_test"):
            return "/".join(parts[:i + 1]) + ".py::" + "::".join([*parts[i + 1:], name])
    return f"{classname}::{name}"


RANK = {"error": 4, "failed": 3, "xfail": 2, "skipped": 1, "passed": 0}


def _result(testcase: ET.Element) -> tuple[str, str]:
    found = ("passed", "")
    for child in testcase:
        if child.tag in ("failure", "error"):
            kind = "failed" if child.tag == "failure" else "error"
        elif child.tag == "skipped":
            kind = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
        else:
            continue
        text = (child.get("message") or child.text or "").strip()
        if RANK[kind] > RANK[found[0]]:
            found = (kind, text.splitlines()[0] if text else "")
    return found


def parse_junit(paths: list[Path]) -> list[Case]:
    """Every test case of the files, in order. A test found in two files (``--junit`` given runs that
    overlap) keeps its worse result, with that run's properties only: a row never mixes two runs."""
    cases: dict[str, Case] = {}
    for path in paths:
        for tc in ET.parse(path).getroot().iter("testcase"):
            result, message = _result(tc)
            props = [(p.get("name", ""), p.get("value", "")) for p in tc.iter("property")]
            case = Case(test_id(tc.get("classname", ""), tc.get("name", "")), result, message,
                        float(tc.get("time") or 0), props)
            seen = cases.get(case.id)
            if seen is None or RANK[case.result] > RANK[seen.result]:
                cases[case.id] = case
    return list(cases.values())


def repeated_tests(paths: list[Path]) -> int:
    """How many test ids appear in more than one of the files."""
    seen: dict[str, int] = {}
    for path in paths:
        ids = {test_id(tc.get("classname", ""), tc.get("name", "")) for tc in ET.parse(path).getroot().iter("testcase")}
        for name in ids:
            seen[name] = seen.get(name, 0) + 1
    return sum(n > 1 for n in seen.values())


def junit_runs(paths: list[Path]) -> list[dict]:
    """When and where each file's tests ran (its <testsuite> attributes)."""
    out = []
    for path in paths:
        for suite in ET.parse(path).getroot().iter("testsuite"):
            out.append({"junit": str(path), "timestamp": suite.get("timestamp", ""), "host": suite.get("hostname", ""),
                        "tests": int(suite.get("tests") or 0), "seconds": float(suite.get("time") or 0)})
    return out


def _value(raw: str, keys: tuple[str, ...]) -> dict:
    """A property's JSON value; a value that is not a JSON object is shown raw (and its test still counts)."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {**dict.fromkeys(keys, "?"), "outcome": f"(unreadable property: {raw})"}
    return {k: value.get(k, "?") for k in keys}


KEYS = {"fault_cell": ("stage", "point", "outcome"), "bad_input": ("kind", "outcome", "detail"),
        "executor_loss": ("stage", "killed", "outcome", "identical")}


def _in(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def collect(cases: list[Case]) -> dict:
    """Rows of each table; each row carries its test case. Tests without properties go to ``other_faults``
    (fault tests) or ``other_inputs`` (the rest of the bad-input files)."""
    out: dict[str, list] = {"fault_cell": [], "bad_input": [], "executor_loss": [], "other_faults": [],
                            "other_inputs": []}
    for case in cases:
        mine = [(str(n), str(v)) for n, v in case.properties if n in PROPERTIES]
        for name, raw in dict.fromkeys(mine):  # a property recorded twice is one row
            out[name].append({**_value(raw, KEYS[name]), "case": case})
        if not mine:
            out["other_inputs" if _in(case.path, BAD_INPUT_PATHS) else "other_faults"].append({"case": case})
    out["fault_cell"] = by_stage(out["fault_cell"])
    out["executor_loss"] = by_stage(out["executor_loss"])
    return out


def stage_rank(stage: str) -> int:
    """Place in STAGE_ORDER of the first word of the stage's name that names a stage ("release flows",
    "rights erase", "keys rotate"); unknown stages go last."""
    for word in str(stage).lower().replace(":", " ").replace("/", " ").split():
        for i, prefixes in enumerate(STAGE_ORDER):
            if word.startswith(prefixes):
                return i
    return len(STAGE_ORDER)


def by_stage(rows: list[dict]) -> list[dict]:
    """Pipeline order; stages of one rank (and unknown stages) in the order first seen; rows within a stage
    in the order the tests ran."""
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(str(r["stage"]), i)
    return sorted(rows, key=lambda r: (stage_rank(r["stage"]), first[str(r["stage"])]))


# ---------------------------------------------------------------- rendering

def cell(value) -> str:
    """A value fit for one Markdown table cell."""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    text = " ".join(str(value).split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def held_cell(case: Case) -> str:
    if case.held:
        return "yes"
    if case.result == "skipped":
        return cell("skipped, not tried" + (f": {short(case.message, 80)}" if case.message else ""))
    why = {"failed": "test failed", "error": "test error", "xfail": "expected failure"}[case.result]
    return "**NO**: " + cell(why + (f": {short(case.message)}" if case.message else ""))


def tid(case: Case) -> str:
    return f"`{case.id}`".replace("|", "\\|")


def counts(rows: list[dict]) -> tuple[int, int, int]:
    """(tried, held, skipped) over the rows' test cases."""
    cases = [r["case"] for r in rows]
    return sum(c.tried for c in cases), sum(c.held for c in cases), sum(not c.tried for c in cases)


def not_held(rows: dict) -> list[Case]:
    """Every test case that was tried and did not pass, once."""
    found: dict[str, Case] = {}
    for name in (*PROPERTIES, "other_faults", "other_inputs"):
        for r in rows[name]:
            if r["case"].tried and not r["case"].held:
                found.setdefault(r["case"].id, r["case"])
    return list(found.values())


def _fmt_s(x) -> str:
    return f"{x:,.1f}" if isinstance(x, int | float) else "?"


def rotation_summary(rot: dict | None) -> str:
    if not rot:
        return "key rotation not measured"
    if rot.get("error"):
        return "key rotation **FAILED** (see below)"
    m = rot["rotation"]
    return (f"key rotation of {rot['events']['input_cdr_rows']:,} events: {_fmt_s(m['job_s'])} s wall, "
            f"{_fmt_s(m['job_cpu_s'])} CPU-s, {m['peak_rss_mb']['total']:,} MB peak, "
            f"{sum(m['report']['rows_rewritten'].values()):,} rows rewritten, "
            f"{sum(m['report']['files_removed'].values()):,} files removed")


def summary_lines(rows: dict, rot: dict | None, pytest_runs: list[dict]) -> list[str]:
    tried, held, skipped = counts(rows["fault_cell"])
    b_tried, b_held, _ = counts(rows["bad_input"])
    kinds = {str(r["kind"]) for r in rows["bad_input"] if r["case"].tried}
    outcomes: dict[str, int] = {}
    for r in rows["bad_input"]:
        if r["case"].tried:
            outcomes[str(r["outcome"])] = outcomes.get(str(r["outcome"]), 0) + 1
    e_tried, e_held, _ = counts(rows["executor_loss"])
    identical = sum(r["identical"] is True for r in rows["executor_loss"] if r["case"].tried)
    line = (f"**Summary:** fault matrix: {tried} cells tried, {held} held"
            + (f" ({skipped} skipped)" if skipped else "")
            + f"; bad input: {len(kinds)} kinds tried in {b_tried} tests, {b_held} held"
            + (f" ({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))})" if outcomes else "")
            + f"; executor loss: {e_tried} runs, {e_held} held, {identical} with output identical to an "
              f"undisturbed run; {rotation_summary(rot)}.")
    lines = [line, ""]
    bad = not_held(rows)
    if bad:
        lines += [f"**NOT HELD: {len(bad)} test(s) failed** (each is marked NO in its table below):", ""]
        lines += [f"- {tid(c)}: {cell(c.result)}" + (f": {cell(short(c.message))}" if c.message else "")
                  for c in bad]
        lines.append("")
    else:
        lines += ["Every test tried held.", ""]
    for run in pytest_runs:
        if run.get("exit") not in (None, 0, 1, 5):
            lines += [f"**The pytest run '{run['name']}' ended abnormally (exit {run['exit']}: "
                      f"{cell(run['last_line'])}); the tables below may be incomplete.**", ""]
    return lines


def fault_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return ["No fault cells recorded."]
    lines = ["| stage | point | outcome | held? | test |", "|---|---|---|---|---|"]
    lines += [f"| {cell(r['stage'])} | {cell(r['point'])} | {cell(r['outcome'])} | {held_cell(r['case'])} | "
              f"{tid(r['case'])} |" for r in rows]
    return lines


def other_fault_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "Other fault tests (no cell recorded):", "", "| test | held? |", "|---|---|"]
    return lines + [f"| {tid(r['case'])} | {held_cell(r['case'])} |" for r in rows]


def bad_input_lines(rows: list[dict], others: list[dict]) -> list[str]:
    lines = ["| kind | outcome | detail | held? | test |", "|---|---|---|---|---|"] if rows else \
        ["No bad-input kinds recorded."]
    lines += [f"| {cell(r['kind'])} | {cell(r['outcome'])} | {cell(r['detail'])} | {held_cell(r['case'])} | "
              f"{tid(r['case'])} |" for r in rows]
    if others:
        cases = [r["case"] for r in others]
        files = sorted({c.path for c in cases})
        lines += ["", f"Other tests of these files (no kind recorded): {len(cases)}, {sum(c.held for c in cases)} "
                      f"passed, {sum(not c.tried for c in cases)} skipped ({', '.join(f'`{f}`' for f in files)})."]
        failing = [c for c in cases if c.tried and not c.held]
        if failing:
            lines += ["", "| test | held? |", "|---|---|"] + [f"| {tid(c)} | {held_cell(c)} |" for c in failing]
    return lines


def executor_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return ["No executor-loss runs recorded."]
    lines = ["| stage | killed | outcome | identical | held? |", "|---|---|---|---|---|"]
    return lines + [f"| {cell(r['stage'])} | {cell(r['killed'])} | {cell(r['outcome'])} | {cell(r['identical'])} | "
                    f"{held_cell(r['case'])} |" for r in rows]


def rotation_lines(rot: dict | None) -> list[str]:
    if not rot:
        return ["Not measured (`--skip-rotation`, and no earlier measurement under the work folder)."]
    lines = []
    if rot.get("reused"):
        lines += [f"Measured by an earlier run ({rot['measured']}); this run was given `--skip-rotation`.", ""]
    ev, data = rot["events"], rot["data"]
    lines += [f"Lake: a synthetic operator extract of {data['parameters']['months']} months, "
              f"{data['parameters']['subscribers']:,} subscribers at {data['parameters']['events_per_day']:g} "
              f"events a day (`mobility.synth.generate`, seed {data['parameters']['seed']}, fault rate "
              f"{data['parameters']['fault_rate']:g}): {ev['input_cdr_rows']:,} CDR rows and "
              f"{data['payments_rows']:,} payment rows delivered with the cell list and the subscriber register, "
              f"anonymized under one random key (counterpart numbers pseudonymized) into "
              f"{ev.get('office_events', 0):,} office events, then a residence run. The rotation renames every "
              "pseudonym to a second random key, taking the numbers from that delivery (`inputs=[delivery]`).", ""]
    if rot.get("error"):
        return lines + ["**The rotation FAILED:**", "", "```", rot["error"].strip(), "```"]
    m = rot["rotation"]
    mem = m["peak_rss_mb"]
    rep = m["report"]
    lines += ["| figure | value |", "|---|---:|",
              f"| events (CDR rows delivered) | {ev['input_cdr_rows']:,} |",
              f"| wall s, the `rotate` call | {_fmt_s(m['job_s'])} |",
              f"| CPU s, the `rotate` call (driver, JVM, Python workers) | {_fmt_s(m['job_cpu_s'])} |",
              f"| wall s / CPU s, the whole process (Spark session start included) | "
              f"{_fmt_s(m['process_wall_s'])} / {_fmt_s(m['cpu_s'])} |",
              f"| peak memory, MB resident (driver / JVM / workers) | {mem['total']:,} ({mem['driver']:,} / "
              f"{mem['jvm']:,} / {mem['workers']:,}) |",
              f"| rows rewritten | {sum(rep['rows_rewritten'].values()):,} |",
              f"| superseded files removed | {sum(rep['files_removed'].values()):,} |",
              f"| load average (1 min) before / after | {m['load_before'][0]:.1f} / {m['load_after'][0]:.1f} |",
              "", "| table | rows | rows rewritten | files removed |", "|---|---:|---:|---:|"]
    sizes = rot.get("tables", {})
    for label in sorted(set(sizes) | set(rep["rows_rewritten"]) | set(rep["files_removed"])):
        n = sizes.get(label)
        rw, fr = rep["rows_rewritten"].get(label), rep["files_removed"].get(label)
        lines.append(f"| {label} | {'' if n is None else f'{n:,}'} | {'—' if rw is None else f'{rw:,}'} | "
                     f"{'—' if fr is None else f'{fr:,}'} |")
    if rep.get("rows_without_number"):
        lines += ["", "Rows whose number was not in the delivery (renamed to a random pseudonym): "
                  + ", ".join(f"{k} {v:,}" for k, v in rep["rows_without_number"].items()) + "."]
    prep, conf = rot.get("prepare", {}), m.get("spark", {})
    lines += ["", "The `rotate` call is the whole rotation: the old-to-new map from the delivery's numbers, the "
                  "rewrite of each table holding a pseudonym (one Delta transaction each), the physical removal of "
                  "the superseded files and the record. It runs in a fresh process with the local Spark defaults "
                  "(`mobility.spark.get_spark`"
                  + (f": {conf['master']}, {conf['driver_memory']} driver memory, {conf['shuffle_partitions']} "
                     "shuffle partitions" if conf else "")
                  + "), so the JVM's start-up compilation is included, as in a `spark-submit` of the rotation. "
                  "Peak memory is the largest sum of resident memory over the process tree at one 0.25 s sample "
                  "(`bench/monitor.py`). Wall time on a shared machine grows with the load; CPU time much less. "
                  f"Preparing the lake (not in the figures above): generation {_fmt_s(data.get('generate_s'))} s"
                  f"{' (cached from an earlier run)' if data.get('cached') else ''}, anonymization "
                  f"{_fmt_s(prep.get('anonymize_s'))} s, residence {_fmt_s(prep.get('residence_s'))} s (wall)."]
    return lines


def size_name(n: int) -> str:
    """1m, 10m, 250k: the lake size as the benchmarks name it."""
    for unit, name in ((1_000_000, "m"), (1_000, "k")):
        if n >= unit and n % unit == 0:
            return f"{n // unit:,}{name}"
    return f"{n:,}"


def machine_line(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores{' (virtual machine)' if m.get('virtualized') else ''}, "
            f"{m['memory_gb']} GB RAM, {m['os']}; Python {m['python']}, {m['java']}, PySpark {m['pyspark']}, "
            f"delta-spark {m['delta_spark']}; code {m.get('commit', 'unknown')}; load average (1/5/15 min) "
            f"{' / '.join(str(x) for x in m['load_average'])} at the start")


def markdown(results: dict) -> str:
    rows = collect([Case(**c) for c in results["cases"]])
    rot = results.get("rotation")
    m = results["machine"]
    lines = ["# Reliability", "",
             f"Generated by `make reliability` on {m['date']} on {machine_line(m)}.", "",
             *summary_lines(rows, rot, results.get("pytest_runs") or []),
             "A test **held** when it passed; a failed test is marked **NO**; a skipped one was not tried. Each "
             "row is what one test tried and checked (recorded with pytest's `record_property`).", ""]
    source = results.get("junit_runs") or []
    if results.get("reused_junit"):
        lines += ["Test results read from earlier JUnit files: " + "; ".join(
            f"`{Path(j['junit']).name}` ({j['tests']} tests, run {j['timestamp']} on {j['host']})" for j in source)
            + "." + (f" {results['repeated_tests']} test(s) appear in more than one file; each is shown with its "
                     "worse result." if results.get("repeated_tests") else ""), ""]
    lines += ["## Fault matrix", "",
              "A stage killed (SIGKILL) at a commit point, then run again: the outcome the test checked.", "",
              *fault_lines(rows["fault_cell"]), *other_fault_lines(rows["other_faults"]), "",
              "## Bad input", "", "Inputs a stage must refuse, quarantine, accept or skip: what it did.", "",
              *bad_input_lines(rows["bad_input"], rows["other_inputs"]), "",
              "## Executor loss", "", "A Spark executor killed during a stage on a standalone cluster.", "",
              *executor_lines(rows["executor_loss"]), "",
              f"## Key rotation at {size_name(results.get('events_asked', 1_000_000))} events", "",
              *rotation_lines(rot), "",
              "## How to regenerate", "", *regenerate_lines(results), ""]
    return "\n".join(lines)


def regenerate_lines(results: dict) -> list[str]:
    runs = results.get("pytest_runs") or []
    took = []
    if runs:
        took.append("the tests " + " + ".join(f"{r['seconds']:,.0f} s ({r['name']})" for r in runs))
    rot = results.get("rotation") or {}
    if rot.get("part_s") is not None:
        took.append(f"the rotation part {rot['part_s']:,.0f} s (generation or cache, anonymization, residence, "
                    "rotation" + (f"; measured {rot['measured']}" if rot.get("reused") else "") + ")")
    return [
        "`make reliability` (or `.venv/bin/python -m bench.reliability`) rewrites this whole file; do not edit it by "
        "hand. It runs `pytest -m faults tests` (every test marked `faults`) and `pytest -m \"not faults\"` on the "
        "bad-input files (" + ", ".join(f"`{p}`" for p in BAD_INPUT_PATHS) + "), each writing a JUnit XML file "
        "under `bench/out/reliability/`, reads the cells the tests recorded, then measures the key rotation. "
        "Options: `--junit FILE` (repeatable) reads earlier JUnit files instead of running the tests; "
        "`--skip-rotation` keeps the last rotation measured; `--events N` sets the lake size; `--out PATH` writes "
        "elsewhere. Pass them as `make reliability RELIABILITY_ARGS=\"...\"`. It exits with status 1 when a test "
        "did not hold or the rotation failed."
        + (f" This run took {'; '.join(took)}." if took else "")]


# ---------------------------------------------------------------- the rotation (parent)

DATA = {"months": 12, "start": "2025-01", "home_country": "PHL", "seed": 20260101, "fault_rate": 0.02,
        "events_per_day": 6.0}
# CDR rows per subscriber-month of mobility.synth at 6 events a day; the yield varies with the population drawn
# (162 at 591 subscribers): the default 1,000,000 gives 514 subscribers and 1,070,798 rows
ROWS_PER_SUBSCRIBER_MONTH = 162
DONE = "bench-data.json"
KEY_ENV, NEW_KEY_ENV, NEW_KEY_ID = "MOBILITY_KEY_BENCH_ROTATION", "MOBILITY_NEW_KEY_BENCH_ROTATION", "k-rotated"
AGREEMENT_ID = "bench-rotation"


def ensure_input(data_root: Path, events: int) -> dict:
    """Generate (or reuse) the extract of about ``events`` CDR rows; an operator delivery under ``input``."""
    params = {**DATA, "subscribers": max(2, round(events / (ROWS_PER_SUBSCRIBER_MONTH * DATA["months"])))}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    folder = (data_root / f"rotation-{params['subscribers']}s-{params['months']}m-{digest}").resolve()
    marker = folder / DONE
    if marker.is_file():
        info = {**json.loads(marker.read_text()), "cached": True}
    else:
        from mobility.synth import generate

        print(f"[reliability] generating {params['months']} months x {params['subscribers']:,} subscribers under "
              f"{folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        summary = generate(folder / "synth", **params)
        info = {"parameters": params, "folder": str(folder), "cdr_rows": summary.rows["cdr"],
                "payments_rows": summary.rows.get("payments", 0), "subscribers_rows": summary.rows.get("subscribers"),
                "generate_s": round(time.perf_counter() - started, 1)}
        marker.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        info["cached"] = False
    view = folder / "input"  # the delivery: the datasets only (no truth, no synth.json)
    view.mkdir(exist_ok=True)
    for name in ("cdr", "payments", "cells", "subscribers"):
        link = view / name
        if link.is_symlink() and not link.exists():
            link.unlink()
        if not link.exists():
            link.symlink_to(folder / "synth" / name, target_is_directory=True)
    info["input"] = str(view)
    return info


def write_agreement(work: Path) -> Path:
    """The demo agreement with this bench's id and key variable, counterparts pseudonymized, a 20 % gate."""
    base = yaml.safe_load((ROOT / "src/mobility/data/demo-phl-2026.yaml").read_text())
    base.update({"agreement_id": AGREEMENT_ID, "key": {"env": KEY_ENV, "key_id": "k-bench"},
                 "max_invalid_share": 0.2, "counterpart": "pseudonymize"})
    path = work / "agreements" / f"{AGREEMENT_ID}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base))
    return path


def table_rows(lake: Path) -> dict[str, int]:
    """Rows of every Delta table of both zones (delta-rs), by label."""
    from deltalake import DeltaTable

    from mobility.lake import Lake
    from mobility.rights.catalog import ZONES, delta_dirs

    out = {}
    for zone in ZONES:
        root = getattr(Lake(lake), zone)
        for path in delta_dirs(root):
            out[f"{zone}/{path.relative_to(root).as_posix()}"] = DeltaTable(str(path)).to_pyarrow_dataset().count_rows()
    return out


def measure_rotation(work: Path, events: int) -> dict:
    """Generate (cached), anonymize and run residence into a fresh lake, then rotate it in a measured child."""
    from bench.monitor import run_child

    data = ensure_input(ROOT / "bench" / "out" / "data", events)
    print(f"[reliability] extract: {data['cdr_rows']:,} CDR rows ({'cached' if data['cached'] else 'generated'})",
          flush=True)
    agreement = write_agreement(work)
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {KEY_ENV: secrets.token_hex(32), NEW_KEY_ENV: secrets.token_hex(32)}  # never written anywhere
    common = ["--agreement", str(agreement), "--input", data["input"], "--lake", str(lake)]
    out = {"measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "data": data,
           "events": {"input_cdr_rows": data["cdr_rows"]}}
    print("[reliability] anonymizing and running residence into a fresh lake", flush=True)
    try:
        out["prepare"] = run_child("bench.reliability", ["--child", "prepare", *common], work / "prepare.json",
                                   logs / "prepare.log", env)
    except RuntimeError as exc:
        out["error"] = f"preparing the lake (anonymize, residence) failed, so nothing was rotated: {exc}"
        print(f"[reliability] {out['error']}", flush=True)
        return out
    before = table_rows(lake)
    out["events"]["office_events"] = before.get("office/events", 0)
    out["tables_before"] = before
    print(f"[reliability] rotating {before.get('office/events', 0):,} office events to a new key", flush=True)
    try:
        rot = run_child("bench.reliability", ["--child", "rotate", *common], work / "rotate.json",
                        logs / "rotate.log", env)
    except RuntimeError as exc:
        out["error"] = str(exc)
        print(f"[reliability] the rotation FAILED:\n{exc}", flush=True)
        return out
    out["rotation"] = rot
    out["tables"] = table_rows(lake)
    print(f"[reliability] rotation {rot['job_s']} s, {rot['job_cpu_s']} CPU-s, peak {rot['peak_rss_mb']['total']:,} "
          "MB", flush=True)
    return out


# ---------------------------------------------------------------- children

def child_prepare(args) -> None:
    from mobility.spark import get_spark

    spark = get_spark("bench-reliability-prepare")
    from mobility.anonymize.job import run as anonymize
    from mobility.residence.job import run as residence

    t = time.perf_counter()
    done = anonymize(args.agreement, args.input, args.lake, spark=spark)
    anonymize_s = time.perf_counter() - t
    t = time.perf_counter()
    residence(args.agreement, args.lake, spark=spark)
    residence_s = time.perf_counter() - t
    spark.stop()
    args.result.write_text(json.dumps({"anonymize_s": round(anonymize_s, 1), "residence_s": round(residence_s, 1),
                                       "totals": done.manifest.get("totals")}, indent=2, default=str))


def child_rotate(args) -> None:
    from bench.monitor import tree_cpu_s
    from mobility.spark import get_spark

    t = time.perf_counter()
    spark = get_spark("bench-reliability-rotate")
    session_s = time.perf_counter() - t
    from mobility.config import KeySource
    from mobility.rights.rekey import rotate

    cpu0, t = tree_cpu_s(), time.perf_counter()
    report = rotate(str(args.agreement), args.lake, NEW_KEY_ID, new_key=KeySource(env=NEW_KEY_ENV, key_id=NEW_KEY_ID),
                    inputs=[args.input], spark=spark)
    job_s, job_cpu = time.perf_counter() - t, tree_cpu_s() - cpu0
    conf = {"master": spark.sparkContext.master, "driver_memory": spark.conf.get("spark.driver.memory", "?"),
            "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions", "?")}
    spark.stop()
    args.result.write_text(json.dumps({"session_start_s": round(session_s, 1), "job_s": round(job_s, 1),
                                       "job_cpu_s": round(job_cpu, 1), "spark": conf, "report": report.to_dict()},
                                      indent=2))


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.splitlines()[0])
    ap.add_argument("--junit", type=Path, action="append", default=[],
                    help="read this JUnit XML file instead of running the tests (repeatable)")
    ap.add_argument("--skip-rotation", action="store_true",
                    help="do not measure the rotation; keep the last one measured under WORK, if any")
    ap.add_argument("--events", type=int, default=1_000_000, help="CDR rows of the rotated lake (default 1,000,000)")
    ap.add_argument("--out", type=Path, default=DEFAULT_DOC, help="the Markdown file (default docs/reliability.md)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help="JUnit files, logs, the lake and results (default bench/out/reliability)")
    ap.add_argument("--child", choices=("prepare", "rotate"), help=argparse.SUPPRESS)
    ap.add_argument("--agreement", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "prepare":
        child_prepare(args)
        return 0
    if args.child == "rotate":
        child_rotate(args)
        return 0

    from bench import machine

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine.describe(), "events_asked": args.events, "pytest_runs": []}
    if args.junit:
        missing = [str(p) for p in args.junit if not p.is_file()]
        if missing:
            raise SystemExit(f"no such JUnit file: {', '.join(missing)}")
        files, results["reused_junit"] = args.junit, True
    else:
        started = time.perf_counter()
        files, results["pytest_runs"] = run_tests(work)
        results["tests_part_s"] = round(time.perf_counter() - started, 1)
    results["junit_runs"] = junit_runs(files)
    cases = parse_junit(files)
    results["repeated_tests"] = repeated_tests(files)
    results["cases"] = [vars(c) for c in cases]

    latest_rotation = work / "rotation-latest.json"
    if args.skip_rotation:
        if latest_rotation.is_file():
            results["rotation"] = {**json.loads(latest_rotation.read_text()), "reused": True}
            results["events_asked"] = results["rotation"].get("events_asked", args.events)
    else:
        started = time.perf_counter()
        rot = measure_rotation(work, args.events)
        rot["part_s"] = round(time.perf_counter() - started, 1)
        results["rotation"] = rot
        latest_rotation.write_text(json.dumps({**rot, "events_asked": args.events}, indent=2, default=str) + "\n")

    (work / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    rows = collect(cases)
    failed = not_held(rows)
    abnormal = [r for r in results["pytest_runs"] if r["exit"] not in (0, 1, 5)]
    rot_failed = bool((results.get("rotation") or {}).get("error"))
    print(f"[reliability] wrote {args.out}: {summary_lines(rows, results.get('rotation'), results['pytest_runs'])[0]}")
    for c in failed:
        print(f"[reliability] NOT HELD: {c.id} ({c.result})")
    return 1 if failed or abnormal or rot_failed else 0


if __name__ == "__main__":
    sys.exit(main())
