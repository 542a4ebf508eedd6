"""Run by the Airflow virtualenv (not the project's): load infra/airflow with Airflow's DagBag and
print, as JSON, what the DAG test checks: import errors, schedule, tasks and rendered commands."""

import datetime as dt
import json
import sys
from types import SimpleNamespace

try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3
except ImportError:
    from airflow.models.dagbag import DagBag  # Airflow 2

folder, dag_id, run_time = sys.argv[1], sys.argv[2], dt.datetime.fromisoformat(sys.argv[3])
bag = DagBag(dag_folder=folder)
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
dag = bag.dags.get(dag_id)
if dag is not None:
    env = dag.get_template_env()
    context = {"params": {k: dag.params[k] for k in dag.params}, "data_interval_end": run_time,
               **(dag.user_defined_macros or {})}
    # a run triggered in Airflow 3 without a logical date: no data_interval_end in its context, only run_after
    triggered = {**{k: v for k, v in context.items() if k != "data_interval_end"},
                 "dag_run": SimpleNamespace(run_after=run_time)}
    out.update(
        schedule=str(getattr(dag.timetable, "_expression", None) or repr(dag.timetable)),
        catchup=dag.catchup, max_active_runs=dag.max_active_runs,
        doc=dag.doc_md or "",
        tasks={t.task_id: {"retries": t.retries, "queue": t.queue, "downstream": sorted(t.downstream_task_ids),
                           "operator": type(t).__name__,
                           "command": env.from_string(t.bash_command).render(**context),
                           "command_triggered": env.from_string(t.bash_command).render(**triggered)}
               for t in dag.tasks})
print(json.dumps(out, default=str))
