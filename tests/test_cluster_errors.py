"""A Spark job that failed because an executor was lost is told as one line: what happened, rerun.

The messages below are Spark's own (4.1), as seen when the standalone cluster test kills an
executor (tests/cluster/test_executor_loss.py, which checks the real thing end to end).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mobility.cluster_errors import ExecutorLostError, executor_loss, translate
from mobility.errors import QualityGateError

JOBS = Path(__file__).resolve().parents[1] / "jobs"

CHECKPOINT_LOST = (
    "An error occurred while calling o512.save.\n: org.apache.spark.SparkException: Job aborted due to stage "
    "failure: Task 0 in stage 48.0 failed 4 times, most recent failure: Lost task 0.3 in stage 48.0 (TID 97) "
    "(127.0.0.1 executor 1): org.apache.spark.SparkException: [CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND] Checkpoint "
    "block rdd_62_0 not found!\nEither the executor that originally checkpointed this partition is no longer "
    "alive, or the original RDD is unpersisted.\n\tat org.apache.spark.rdd.LocalCheckpointRDD.compute("
    "LocalCheckpointRDD.scala:60)\n")
EXECUTOR_GONE = (
    "org.apache.spark.SparkException: Job aborted due to stage failure: Task 2 in stage 7.0 failed 4 times, "
    "most recent failure: Lost task 2.3 in stage 7.0 (TID 31) (127.0.0.1 executor 3): ExecutorLostFailure "
    "(executor 3 exited caused by one of the running tasks) Reason: Command exited with code 137")
UDF_ERROR = (
    "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 4 times, "
    "most recent failure: Lost task 0.3 in stage 3.0 (TID 12) (127.0.0.1 executor 0): "
    "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\nValueError: bad cell")


class FakeJavaError(Exception):
    """Stands for py4j's Py4JJavaError: its text is the Java stack trace, causes included."""


@pytest.mark.parametrize("text, block", [(CHECKPOINT_LOST, "rdd_62_0"), (EXECUTOR_GONE, None)])
def test_a_lost_executor_is_one_line_that_says_rerun(text, block):
    lost = executor_loss(FakeJavaError(text))
    assert isinstance(lost, ExecutorLostError) and lost.exit_code == 1 and lost.block == block
    message = str(lost)
    assert "\n" not in message and "executor was lost" in message and "rerun the same command" in message
    assert "Exception" not in message and "\tat " not in message
    assert len(message) <= 400  # the job's reason keeps 400 characters: the advice must fit


def test_the_cause_is_found_down_the_chain():
    try:
        try:
            raise FakeJavaError(CHECKPOINT_LOST)
        except FakeJavaError as exc:
            raise RuntimeError("the cdr write failed") from exc
    except RuntimeError as exc:
        outer = exc
    translated = translate(outer)
    assert isinstance(translated, ExecutorLostError) and translated.__cause__ is outer


@pytest.mark.parametrize("exc", [FakeJavaError(UDF_ERROR), OSError("No space left on device"),
                                 QualityGateError("too many invalid rows")])
def test_other_failures_are_left_as_they_are(exc):
    assert executor_loss(exc) is None
    assert translate(exc) is exc


def test_a_job_that_lost_its_executor_exits_1_with_that_line(tmp_path, capsys):
    if str(JOBS) not in sys.path:
        sys.path.insert(0, str(JOBS))
    spec = importlib.util.spec_from_file_location("mobility_job__entry_for_loss", JOBS / "_entry.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    parser = entry.new_parser("test")
    parser.add_argument("--lake")

    def work(args):
        raise FakeJavaError(CHECKPOINT_LOST)

    with pytest.raises(SystemExit) as exit_:
        entry.main("anonymize", parser, work, ["--lake", str(tmp_path), "--log-format", "json"])
    assert exit_.value.code == 1
    (path,) = (tmp_path / "operator" / "job_runs").glob("anonymize-*.json")
    record = json.loads(path.read_text())
    assert record["error"] == "ExecutorLostError" and record["reason"] == str(executor_loss(FakeJavaError(
        CHECKPOINT_LOST)))
    assert capsys.readouterr().err.strip() == f"anonymize failed: {record['reason']}"


def test_a_table_whose_first_write_died_before_its_commit_is_not_a_table(tmp_path):
    """An executor lost during a table's first write leaves ``_delta_log`` with no commit in it: the
    rerun must create the table (append), not MERGE into one Delta cannot open."""
    from mobility.lake import Lake, delta_version
    from mobility.schemas import SUBSCRIBERS_TABLE

    lake = Lake(tmp_path).ensure()
    log = lake.table(SUBSCRIBERS_TABLE) / "_delta_log"
    (log / "_staged_commits").mkdir(parents=True)
    assert not lake.exists(SUBSCRIBERS_TABLE) and delta_version(lake.table(SUBSCRIBERS_TABLE)) is None
    (log / "00000000000000000000.json").write_text("{}\n")
    assert lake.exists(SUBSCRIBERS_TABLE)
