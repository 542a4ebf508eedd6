"""The monthly DAG run by Airflow itself: `airflow dags test` for one month from .venv-airflow, every task a
spark-submit to a Spark standalone master on 127.0.0.1 (the kind of master the DAG's deployment uses),
over a small synthetic extract. Every task succeeds, once, in the DAG's dependency order as Airflow's
metadata database records it; the month's releases verify against the ledger and its witness.

Skipped, saying why, when .venv-airflow is missing or Airflow does not import there (`make airflow-venv`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dag_run_helpers import (
    DATA_MONTH,
    FLOWS_PERIOD,
    REMITTANCES_PERIOD,
    Standalone,
    anonymize_backlog,
    dag_runs,
    make_world,
    run_dag,
    task_rows,
    why_no_airflow,
)
from dag_stub import load_dag_module
from infra_helpers import REPO

# The run takes minutes on two cores; on a machine shared with other test runs, several times that.
pytestmark = [pytest.mark.airflow_run, pytest.mark.slow, pytest.mark.timeout(3600)]

_, DAG = load_dag_module(REPO / "infra" / "airflow" / "mobility_monthly.py")


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory):
    reason = why_no_airflow()
    if reason is not None:
        pytest.skip(f"{reason}; the monthly DAG was not run under Airflow")
    world = make_world(tmp_path_factory.mktemp("dag-run"))
    cluster = Standalone(world.root / "standalone")
    try:
        cluster.start()
        anonymize_backlog(world, cluster.url)
        run = run_dag(world, cluster.url)
    finally:
        cluster.stop()  # whatever happened, including a failed start
    tasks = {row["task_id"]: row for row in task_rows(run.db)}
    summary = {"dag_run_seconds": round(run.seconds, 1), "returncode": run.returncode,
               "tasks": {t: {k: r[k] for k in ("state", "try_number", "start_date", "end_date")}
                         for t, r in tasks.items()}}
    (world.root / "dag-run-summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))  # shown with -rP: the run's wall time and each task's
    return SimpleNamespace(world=world, run=run, tasks=tasks, runs=dag_runs(run.db))


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _records(folder: Path, stage: str) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{stage}-*.json"))]
    return sorted(found, key=lambda r: r["started"])


def test_every_task_succeeded_once_in_the_dags_order(dag_run, record_property):
    record_property("airflow_dag_run_seconds", round(dag_run.run.seconds, 1))
    states = {t: (r["state"], r["try_number"]) for t, r in dag_run.tasks.items()}
    context = f"task states {states}\n--- airflow dags test, last lines:\n{dag_run.run.log_tail()}"
    assert set(dag_run.tasks) == set(DAG.tasks), context
    assert all(state == ("success", 1) for state in states.values()), context
    assert dag_run.run.returncode == 0, context
    assert len(dag_run.runs) == 1 and dag_run.runs[0]["state"] == "success", dag_run.runs
    assert dag_run.runs[0]["logical_date"].startswith("2026-02-05 03:00:00"), dag_run.runs
    for upstream, downstream in DAG.edges:  # each task started after every task it depends on had ended
        ended, started = _when(dag_run.tasks[upstream]["end_date"]), _when(dag_run.tasks[downstream]["start_date"])
        assert ended <= started, (upstream, downstream, context)


def test_the_run_processed_its_data_month_and_released_the_scheduled_periods(dag_run):
    world = dag_run.world
    operator_runs = world.operator_lake / "operator" / "job_runs"
    office_runs = world.office_lake / "office" / "job_runs"
    backlog, monthly = _records(operator_runs, "anonymize")  # the earlier delivery, then the DAG's task
    assert Path(monthly["args"]["input"]) == world.input_root / DATA_MONTH
    manifest = json.loads(Path(monthly["stage_manifest"]).read_text())
    assert manifest["months"] == {"events": [DATA_MONTH], "payments": [DATA_MONTH]}
    assert {f["file"] for f in manifest["skipped_files"]} >= {"subscribers/subscribers.csv"}  # already in
    [residence] = _records(office_runs, "residence")
    assert residence["args"]["through"] == DATA_MONTH and residence["result"]["data_end"] == "2026-01-31"
    [flows] = _records(office_runs, "release-flows")
    [remittances] = _records(office_runs, "release-remittances")
    assert flows["args"]["period"] == FLOWS_PERIOD and remittances["args"]["period"] == REMITTANCES_PERIOD
    assert flows["result"]["budget_from"] == remittances["result"]["budget_from"] == "plan"
    retention = _records(operator_runs, "retention") + _records(office_runs, "retention")
    assert sorted(r["args"]["side"] for r in retention) == ["office", "operator"]
    assert {r["args"]["today"] for r in retention} == {"2026-02-05"}
    for record in (backlog, monthly, residence, flows, remittances, *retention):
        assert record["status"] == "succeeded", record


def test_the_releases_verify_against_the_ledger_and_its_witness(dag_run):
    from deltalake import DeltaTable

    from mobility.config import load_agreement
    from mobility.privacy_budget import verify

    world = dag_run.world
    agreement = load_agreement(world.agreement)
    report = verify(world.office_lake, caps={agreement.agreement_id: agreement}, witness=world.witness)
    assert report.ok, report.summary()
    assert report.releases == 2 and not report.problems, report.summary()
    assert report.witnessed_seq == report.entries  # the witness outside the lake saw every entry
    released = {}
    for folder in (world.office_lake / "releases").iterdir():
        manifest = json.loads((folder / "manifest.json").read_text())
        released[manifest["purpose"]] = manifest["period"]
        assert manifest["release_id"] == folder.name and manifest["privacy"]["rho"] > 0
    assert released == {"migration-statistics": FLOWS_PERIOD, "remittance-statistics": REMITTANCES_PERIOD}
    # the flows release counted real crossings: the month it released has some in the office's table
    changes = DeltaTable(str(world.office_lake / "office" / "residence_changes")).to_pandas(columns=["crossing_date"])
    assert (changes["crossing_date"].astype(str).str[:7] == FLOWS_PERIOD).sum() >= 1
