"""An executor lost in the middle of a job on the standalone cluster (issue #24, part 3).

The application's executor JVM (CoarseGrainedExecutorBackend) is killed with SIGKILL, as a lost
node or the kernel's out-of-memory killer would; the worker then starts a new one. Both stages keep
frames as local checkpoints in the executors' block stores (ADR 0007; residence's presence pass and
re-run pseudonyms), and those blocks die with the executor: their lineage is cut, so Spark cannot
recompute them. The job must then either complete through Spark's own retries or fail with one line
that says an executor was lost and to rerun the same command (exit 1, nothing committed); the rerun
must give exactly the office tables of a local run. (It did not at first: the subscribers table's
first write died before its Delta commit and left a ``_delta_log`` without one, which the rerun took
for a table and tried to MERGE into; ``Lake.exists`` now asks for a commit.) Each test records what happened under the
property ``executor_loss`` for the reliability report (``--junitxml``).

The kill is placed by the driver's own progress lines (``MOBILITY_PROGRESS=1``), not by a sleep:
* anonymization: at "writing the quarantine and the office zone", when every row's fate has been
  settled from the checkpoint and counted, before the writes read it again;
* residence: at "12/16-month rule over presence spells", when presence and home cells are written
  and the re-run pseudonyms are held as a local checkpoint that the rule's job joins on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from cluster_helpers import (
    Standalone,
    anonymize_locally,
    kill_executor,
    start_submit,
    submit,
    synthetic_population,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.faults, pytest.mark.timeout(2400)]

# Small: the point is where the executor dies, not the volume. Long enough for residence changes.
SHARES = {"stayer": 0.5, "short_trip": 0.1, "emigrant_long_term": 0.25, "returning_migrant": 0.1,
          "immigrant": 0.05}
START, MONTHS = "2023-01", 14
ANONYMIZE_TABLES = ("events", "subscribers", "payments")
RESIDENCE_TABLES = ("presence", "home_cells", "residence_changes")
# What the driver prints (MOBILITY_PROGRESS=1) just before the phase whose executor we kill.
ANONYMIZE_MARK = "anonymize: writing the quarantine and the office zone"
RESIDENCE_MARK = "residence: 12/16-month rule over presence spells"
# The one line a user must see: an executor was lost, and to rerun the same command.
CLEAN_FAILURE = re.compile(r"^(anonymize|residence) failed: .*executor.* lost.*rerun the same command", re.I)
WAIT = 900  # generous: the machine is shared; every wait polls and returns as soon as it can


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Standalone(tmp_path_factory.mktemp("standalone-loss"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    return synthetic_population(tmp_path_factory.mktemp("executor-loss"), subscribers=20, months=MONTHS, start=START,
                                seed=31, behaviours=SHARES)


@pytest.fixture(scope="module")
def local_lake(population, spark):
    """The reference: the same two stages in-process on local Spark."""
    from mobility.residence.job import run as residence

    lake = population["root"] / "local-lake"
    anonymize_locally(population, lake, spark)
    residence(population["agreement"], lake, spark=spark)
    return lake


def job_env(population, stage):
    env = {"MOBILITY_PROGRESS": "1"}  # the driver's progress lines place the kill
    if stage == "anonymize":
        env["MOBILITY_KEY_TEST"] = population["key"]
    return env


def stage_args(population, lake, stage):
    args = ["--agreement", str(population["agreement"]), "--lake", str(lake), "--log-format", "json"]
    return [*args, "--input", str(population["input"])] if stage == "anonymize" else args


def run_killing_executor(cluster, population, lake, stage, mark):
    """Submit STAGE, SIGKILL the application's executor when the driver prints ``mark``, wait for the
    job's end: (completed process, what was killed)."""
    job = start_submit(cluster.url, stage, stage_args(population, lake, stage), population["root"],
                       f"{stage}-executor-killed", env_extra=job_env(population, stage))
    try:
        # spark-submit merges the Python driver's stderr (progress lines) into its stdout
        wait_for(f"the driver to print {mark!r}", lambda: mark in job.stdout(), WAIT, alive=job)
        app_id = wait_for("the application on the master",
                          lambda: next((a["id"] for a in cluster.state().get("activeapps", [])), None), 60, alive=job)
        victim = kill_executor(cluster.worker_port, app_id)
        done = job.wait(timeout=WAIT)
    finally:
        job.kill()  # no-op once it has exited; never leave a driver behind
    return done, victim


def rerun(cluster, population, lake, stage):
    """The same command again, undisturbed (checked by ``assert_rerun_completed``, after recording)."""
    return submit(cluster.url, stage, stage_args(population, lake, stage), population["root"],
                  job_env(population, stage))


def assert_rerun_completed(proc, stage):
    assert proc.returncode == 0, (f"the rerun of {stage} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    assert json_events(proc.stdout)[-1]["status"] == "succeeded"


def outcome_of(done, again, stage) -> str:
    if done.returncode == 0:
        return "completed through retries"
    then = "rerun completed" if again is not None and again.returncode == 0 else \
        f"rerun failed (exit {None if again is None else again.returncode})"
    return f"failed with '{failure_line(done, stage)}' then {then}"


def json_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def assert_clean_failure(done, stage) -> str:
    """Exit 1 (a retry may succeed), one line that says what happened and what to do (the driver's
    stderr, which spark-submit merges into its stdout), the same reason in the JSON log line."""
    assert done.returncode == 1, f"{stage} exited {done.returncode}; output ends: {done.stdout[-2000:]}"
    said = [ln for ln in done.stdout.splitlines() if ln.startswith(f"{stage} failed: ")]
    assert len(said) == 1, done.stdout[-3000:]
    line = failure_line(done, stage)
    assert CLEAN_FAILURE.match(line), f"not a clean one-line cause: {line!r}"
    assert "\tat " not in line and "Exception" not in line and "Traceback" not in line, line
    failed = [e for e in json_events(done.stdout) if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["exit_code"] == 1, done.stdout[-3000:]
    assert failed[0]["error"] == "ExecutorLostError" and line == f"{stage} failed: {failed[0]['reason']}"
    return line


def delta_rows(spark, path: Path) -> pd.DataFrame:
    df = spark.read.format("delta").load(str(path)).toPandas()
    return df.sort_values(list(df.columns)).reset_index(drop=True).astype(str)


def differences(spark, local: Path, remote: Path, tables: tuple[str, ...]) -> list[str]:
    """What differs between the local run's tables and the cluster's ([] when identical)."""
    found = []
    for table in tables:
        expected, got = delta_rows(spark, local / table), delta_rows(spark, remote / table)
        if len(expected) == 0:  # the comparison must compare something
            found.append(f"{table}: no rows in the local run")
            continue
        try:
            pd.testing.assert_frame_equal(expected, got, obj=table)
        except AssertionError as exc:
            found.append(str(exc))
    return found


def record(record_property, stage, killed, outcome, identical):
    record_property("executor_loss", json.dumps({"stage": stage, "killed": killed, "outcome": outcome,
                                                 "identical": identical}))


@pytest.fixture(scope="module")
def anonymized(cluster, population, local_lake):
    """Anonymization on the cluster with its executor killed after the counts, then rerun if it failed."""
    from mobility.lake import Lake

    lake = population["root"] / "cluster-lake"
    done, victim = run_killing_executor(cluster, population, lake, "anonymize", ANONYMIZE_MARK)
    result = {"lake": lake, "done": done, "victim": victim, "committed_after_first": Lake(lake).completed_runs()}
    if done.returncode != 0:
        result["rerun"] = rerun(cluster, population, lake, "anonymize")
    return result


def test_executor_lost_during_anonymization(spark, cluster, population, local_lake, anonymized, record_property):
    done, victim = anonymized["done"], anonymized["victim"]
    lake = anonymized["lake"]
    killed = (f"executor {victim.executor_id} of the application (SIGKILL) once the driver printed "
              f"'{ANONYMIZE_MARK}': every row's fate counted from the DISK_ONLY local checkpoint, the writes next")
    outcome = outcome_of(done, anonymized.get("rerun"), "anonymize")
    diff = differences(spark, local_lake / "office", lake / "office", ANONYMIZE_TABLES) \
        + differences(spark, local_lake / "operator", lake / "operator", ("quarantine",))
    record(record_property, "anonymize", killed, outcome, not diff)

    if done.returncode == 0:
        assert json_events(done.stdout)[-1]["status"] == "succeeded"
    else:
        assert_clean_failure(done, "anonymize")
        assert anonymized["committed_after_first"] == {}, "a failed run must commit nothing"
        assert_rerun_completed(anonymized["rerun"], "anonymize")
    # the worker replaced the executor: the application did not run out of resources
    assert [e for e in executors_started(cluster, victim.app_id) if e != victim.executor_id], \
        "no replacement executor was started"
    assert not diff, "\n".join(diff)


def test_executor_lost_during_residence(spark, cluster, population, local_lake, anonymized, record_property):
    lake = anonymized["lake"]
    done, victim = run_killing_executor(cluster, population, lake, "residence", RESIDENCE_MARK)
    killed = (f"executor {victim.executor_id} of the application (SIGKILL) once the driver printed "
              f"'{RESIDENCE_MARK}': presence and home cells written, the re-run pseudonyms held as a local "
              "checkpoint, the rule's job next")
    committed = sorted(p.name for p in (lake / "office" / "residence_manifests").glob("*.json"))
    again = rerun(cluster, population, lake, "residence") if done.returncode != 0 else None
    outcome = outcome_of(done, again, "residence")
    diff = differences(spark, local_lake / "office", lake / "office", RESIDENCE_TABLES)
    record(record_property, "residence", killed, outcome, not diff)

    if done.returncode == 0:
        assert json_events(done.stdout)[-1]["status"] == "succeeded"
    else:
        assert_clean_failure(done, "residence")
        assert committed == [], "a failed run must commit nothing"
        assert_rerun_completed(again, "residence")
    assert not diff, "\n".join(diff)


def failure_line(done, stage) -> str:
    said = [ln for ln in done.stdout.splitlines() if ln.startswith(f"{stage} failed: ")]
    return said[-1] if said else f"exit {done.returncode} without a '{stage} failed:' line"


def executors_started(cluster, app_id) -> list[str]:
    """Ids of the executors the worker started for ``app_id`` (one folder each in its work dir)."""
    folder = cluster.tmp / "work" / app_id
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
