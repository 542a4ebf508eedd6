"""The monthly Airflow DAG: structure without Airflow (always), and a real DagBag load when the
Airflow virtualenv exists (`make airflow-venv` creates .venv-airflow)."""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dag_stub import load_dag_module
from infra_helpers import JOBS, REPO, parse_job_args, split_submit

DAG_FILE = REPO / "infra" / "airflow" / "mobility_monthly.py"
TASKS = {"anonymize", "residence", "release_flows", "release_remittances", "retention_office",
         "retention_operator"}
EDGES = {("anonymize", "residence"), ("residence", "release_flows"), ("residence", "release_remittances"),
         ("release_flows", "retention_office"), ("release_remittances", "retention_office"),
         ("retention_office", "retention_operator")}
OPERATOR_TASKS = {"anonymize", "retention_operator"}
RUN_TIME = dt.datetime(2026, 3, 5, 3, 0, tzinfo=dt.timezone.utc)
DAG_MODULE, _ = load_dag_module(DAG_FILE)


@pytest.fixture(scope="module")
def loaded():
    return load_dag_module(DAG_FILE)


def render(template: str, module, params: dict) -> str:
    """Enough Jinja for this DAG: each {{ expression }} is a Python expression (| ds and "is defined" aside)."""
    names = {"params": SimpleNamespace(**params), "data_interval_end": RUN_TIME, "data_month": module.data_month,
             "flows_period": module.flows_period, "remittances_period": module.remittances_period,
             "shift_month": module.shift_month}

    def one(match):
        expr = match.group(1).replace("| ds", ".strftime('%Y-%m-%d')").replace(" is defined", " is not None")
        return str(eval(expr, {}, names))  # our own DAG file's templates only

    return re.sub(r"\{\{(.*?)\}\}", one, template)


def check_command(task_id: str, command: str, params: dict) -> None:
    options, job, args = split_submit(command)
    assert (JOBS / f"{job}.py").is_file(), (task_id, job)
    parsed = parse_job_args(job, args)  # raises if the DAG passes arguments the job does not take
    assert parsed.log_format == "json"
    assert options[0] == "spark-submit" and "--master" in options
    conf = options[options.index("--properties-file") + 1]
    assert conf == f"{params['repo']}/infra/spark-defaults.conf"
    lake = params["operator_lake"] if task_id in OPERATOR_TASKS else params["office_lake"]
    assert parsed.lake == lake, task_id
    if job == "retention":  # its record stays with the party that ran it
        assert parsed.side == ("operator" if task_id in OPERATOR_TASKS else "office"), task_id


def test_the_dag_file_needs_only_airflow_and_the_standard_library():
    """The scheduler's environment does not have mobility, pandas or Spark installed."""
    tree = ast.parse(DAG_FILE.read_text())
    roots = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert roots <= {"airflow", "datetime", "__future__"}, roots


def test_tasks_dependencies_retries_and_schedule(loaded):
    module, rec = loaded
    assert set(rec.tasks) == TASKS
    assert rec.edges == EDGES
    assert rec.dag["catchup"] is False and rec.dag["max_active_runs"] == 1
    minute, hour, day, month, weekday = rec.dag["schedule"].split()
    assert day.isdigit() and month == "*" and weekday == "*", "once a month"
    for task_id, task in rec.tasks.items():
        assert task.get("retries", 0) >= 1, task_id
        assert task["queue"] == ("operator" if task_id in OPERATOR_TASKS else "office"), task_id
    doc = rec.dag["doc_md"]
    assert "re-noise" in doc and "release id" in doc  # why retries are safe is stated where operators read


def test_every_command_is_a_job_with_arguments_its_parser_accepts(loaded):
    module, rec = loaded
    params = rec.dag["params"]
    for task_id, task in rec.tasks.items():
        check_command(task_id, render(task["bash_command"], module, params), params)


def test_only_operator_tasks_touch_the_operator_lake_or_the_extracts(loaded):
    module, rec = loaded
    for task_id, task in rec.tasks.items():
        if task_id not in OPERATOR_TASKS:
            assert "operator_lake" not in task["bash_command"] and "input_root" not in task["bash_command"]


def test_the_month_processed_and_released(loaded):
    module, rec = loaded
    params = rec.dag["params"]
    commands = {t: render(task["bash_command"], module, params) for t, task in rec.tasks.items()}
    assert "--input /data/operator/extracts/2026-02" in commands["anonymize"].replace(params["input_root"],
                                                                                      "/data/operator/extracts")
    flows = parse_job_args("release_flows", split_submit(commands["release_flows"])[2])
    remit = parse_job_args("release_remittances", split_submit(commands["release_remittances"])[2])
    assert remit.period == "2026-01"  # a later month (2026-02) is in
    assert flows.period == "2024-09"  # 17 months before the data month 2026-02
    assert flows.rho == remit.rho == "plan"  # the jobs resolve it with `mobility budget plan`'s rule


def test_the_dag_uses_the_library_residence_window(loaded):
    from mobility.residence.rules import ResidenceParams

    assert loaded[0].WINDOW_DAYS == ResidenceParams().window_days


def test_the_dag_flows_lag_is_the_library_lag():
    """The DAG spells out blocks.flows_lag_months (the scheduler cannot import mobility)."""
    from mobility.privacy_budget import blocks

    assert DAG_MODULE.FLOWS_LAG_MONTHS == blocks.flows_lag_months(DAG_MODULE.WINDOW_DAYS)


@settings(deadline=None)
@given(st.integers(min_value=2000 * 12, max_value=2100 * 12))
def test_flows_period_is_final_and_the_library_schedule(index):
    """Same rule as the release job's finality check, and the schedule the budget plan prices."""
    from mobility.privacy_budget import blocks
    from mobility.release.flows import final_from

    module = DAG_MODULE
    data_month = f"{index // 12:04d}-{index % 12 + 1:02d}"
    period = module.flows_period(data_month)
    assert final_from(period, module.WINDOW_DAYS) <= blocks.last_day(data_month)
    assert period == blocks.flows_period_for(data_month, module.WINDOW_DAYS)
    assert module.remittances_period(data_month) == blocks.remittances_period_for(data_month)


def test_every_crossing_month_is_released_exactly_once():
    """Four centuries of monthly runs: each crossing and payment month released once, in order, none skipped."""
    module = DAG_MODULE
    runs = [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(2000 * 12, 2400 * 12)]
    for released in ([module.flows_period(m) for m in runs], [module.remittances_period(m) for m in runs]):
        assert len(set(released)) == len(released)
        assert all(module.shift_month(a, 1) == b for a, b in zip(released, released[1:]))


def airflow_python() -> Path | None:
    """MOBILITY_AIRFLOW_PYTHON, else .venv-airflow once `make airflow-venv` has finished installing."""
    if os.environ.get("MOBILITY_AIRFLOW_PYTHON"):
        return Path(os.environ["MOBILITY_AIRFLOW_PYTHON"])
    venv = REPO / ".venv-airflow"
    return venv / "bin" / "python" if (venv / ".installed").is_file() else None


@pytest.mark.airflow
def test_airflow_loads_the_dag(tmp_path, loaded):
    python = airflow_python()
    if python is None:
        pytest.skip("no Airflow virtualenv (.venv-airflow): the DagBag load was not run; "
                    "`make airflow-venv` creates it, the structural tests above ran regardless")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYSPARK", "SPARK"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__UNIT_TEST_MODE="True")
    proc = subprocess.run([str(python), str(Path(__file__).with_name("airflow_probe.py")), str(DAG_FILE.parent),
                           "mobility_monthly", RUN_TIME.isoformat()], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["import_errors"] == {} and "mobility_monthly" in out["dags"]
    tasks = out["tasks"]
    assert set(tasks) == TASKS
    assert {(a, b) for a, t in tasks.items() for b in t["downstream"]} == EDGES
    assert out["catchup"] is False and out["max_active_runs"] == 1
    assert "0 3 5 * *" in out["schedule"]
    _, rec = loaded
    for task_id, task in tasks.items():
        assert task["operator"] == "BashOperator" and task["retries"] >= 1
        check_command(task_id, task["command"], rec.dag["params"])  # rendered by Airflow's own Jinja
        # Airflow 3's `airflow dags trigger` without a logical date: no data interval, the same month from run_after
        assert task["command_triggered"] == task["command"], task_id
