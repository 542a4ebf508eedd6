"""The spark-submit entry points without Spark: exit codes, one-line reasons, JSON log lines and
the job-run record, and that no number or key byte reaches a log line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agreement_helpers import make_agreement
from infra_helpers import JOBS, load_job

ENTRY = load_job("_entry")
STAGES = ("anonymize", "residence", "release_flows", "release_remittances", "retention")


def run_job(name: str, args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILITY_KEY")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(JOBS / f"{name}.py"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("stage", STAGES)
def test_every_job_parses_without_importing_spark_or_the_library(stage):
    """--help works even before the library module a job calls exists."""
    proc = run_job(stage, ["--help"])
    assert proc.returncode == 0 and "--lake" in proc.stdout and "--log-format" in proc.stdout


@pytest.mark.parametrize("stage", STAGES)
def test_a_bad_command_line_is_exit_2_and_one_line(stage):
    proc = run_job(stage, ["--no-such-option"])
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "bad command line" in proc.stderr


def test_a_refusal_is_exit_3_with_a_record_and_no_key(tmp_path):
    """Anonymization without its key stops before Spark: exit 3, one line, a failed job-run record."""
    agreement = make_agreement(tmp_path)
    (tmp_path / "input" / "cdr").mkdir(parents=True)
    proc = run_job("anonymize", ["--agreement", str(agreement), "--input", str(tmp_path / "input"),
                                 "--lake", str(tmp_path / "lake"), "--log-format", "json"])
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "MOBILITY_KEY_TEST" in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["status"] for e in lines] == ["started", "failed"]
    assert lines[-1]["error"] == "KeyMaterialError" and lines[-1]["exit_code"] == 3
    records = list((tmp_path / "lake" / "operator" / "job_runs").glob("anonymize-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "failed" and record["stage"] == "anonymize" and record["duration_s"] >= 0
    assert record["args"]["input"] == str(tmp_path / "input") and "log_format" not in record["args"]


def test_success_writes_one_record_beside_the_stage_manifest(tmp_path, capsys):
    lake = tmp_path / "lake"
    manifest = lake / "office" / "residence_manifests" / "r.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    parser = ENTRY.new_parser("test")
    parser.add_argument("--lake")

    def work(args):
        return {"lake": args.lake, "zone": "office", "inputs": {"office/events": 3}, "outputs": ["office/x"],
                "counts": {"cdr": {"read": 5}}, "delta_versions": {"presence": 1}, "stage_manifest": str(manifest),
                "run_id": "r"}

    with pytest.raises(SystemExit) as exit_:
        ENTRY.main("residence", parser, work, ["--lake", str(lake), "--log-format", "json"])
    assert exit_.value.code == 0
    (path,) = (lake / "office" / "job_runs").glob("residence-*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "succeeded" and record["stage_manifest"] == str(manifest)
    assert record["counts"] == {"cdr": {"read": 5}} and record["result"] == {"run_id": "r"}
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["status"] == "succeeded" and events[-1]["record"] == str(path)
    assert events[-1]["counts"] == {"cdr": {"read": 5}}


def test_a_stage_without_counts_records_and_logs_none(tmp_path, capsys):
    """Residence reports no counts (how many people or changes stays in the office tables): the record
    and the success line then have no ``counts`` at all rather than an empty or null one."""
    parser = ENTRY.new_parser("test")
    parser.add_argument("--lake")

    def work(args):
        return {"lake": args.lake, "zone": "office", "inputs": {}, "outputs": ["office/x"],
                "delta_versions": {"presence": 1}, "stage_manifest": None, "run_id": "r"}

    with pytest.raises(SystemExit) as exit_:
        ENTRY.main("residence", parser, work, ["--lake", str(tmp_path), "--log-format", "json"])
    assert exit_.value.code == 0
    (path,) = (tmp_path / "office" / "job_runs").glob("residence-*.json")
    record = json.loads(path.read_text())
    assert "counts" not in record and record["delta_versions"] == {"presence": 1}
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["status"] == "succeeded" and "counts" not in events[-1]


def test_the_residence_job_reports_no_count_of_people_or_changes(tmp_path, monkeypatch):
    """What jobs/residence.py hands to the record, from a manifest that (as older ones did) still holds
    counts: only ids, dates, versions and the manifest's path get through."""
    from mobility.residence import job as residence

    manifest = {"run_id": "residence-x-2025-06", "data_end": "2025-06-30", "subjects": 297, "presence_days": 81234,
                "changes": {"departure_long_term": 41}, "office_versions": {"events": 2, "residence_changes": 5}}
    result = residence.ResidenceResult("residence-x-2025-06", manifest, tmp_path / "m.json")
    monkeypatch.setattr(residence, "run", lambda *a, **k: result)
    job = load_job("residence")
    summary = job.work(job.parser().parse_args(["--agreement", "x", "--lake", str(tmp_path)]))
    text = json.dumps(summary)
    assert "counts" not in summary and not any(str(n) in text for n in (297, 81234, 41)), summary
    assert summary["run_id"] == "residence-x-2025-06" and summary["data_end"] == "2025-06-30"
    assert summary["delta_versions"] == manifest["office_versions"] and summary["inputs"] == {"office/events": 2}


def test_an_unexpected_failure_is_exit_1(tmp_path):
    parser = ENTRY.new_parser("test")
    parser.add_argument("--lake")

    def work(args):
        raise OSError("No space left on device")

    with pytest.raises(SystemExit) as exit_:
        ENTRY.main("residence", parser, work, ["--lake", str(tmp_path)])
    assert exit_.value.code == 1
    (path,) = (tmp_path / "office" / "job_runs").glob("residence-*.json")
    assert json.loads(path.read_text())["reason"] == "No space left on device"


phone = st.builds(lambda cc, rest: f"+{cc}{rest}", st.integers(1, 999), st.text("0123456789", min_size=7,
                                                                                  max_size=12))
key = st.binary(min_size=32, max_size=64).map(bytes.hex)


@settings(deadline=None)
@given(st.text(max_size=40), phone, key, st.text(max_size=40))
def test_no_number_or_key_survives_a_reason(before, number, secret, after):
    line = ENTRY.scrub(f"{before} {number} rejected with key {secret} {after}\nsecond line")
    assert number not in line and number.lstrip("+") not in line and secret not in line
    assert "\n" not in line and len(line) <= 400


def test_a_reason_keeps_dates_and_periods_readable():
    line = ENTRY.scrub("period 2024-01 is not final: the data must reach 2025-05-31")
    assert "2024-01" in line and "2025-05-31" in line
