"""Monthly cycle of one data-sharing agreement: anonymize -> residence -> releases -> retention.

Each task is one ``spark-submit jobs/STAGE.py`` (see docs/operations.md). A run on the 5th of a
month processes the previous month's operator extract (``INPUT_ROOT/YYYY-MM``, the "data month").

* ``anonymize`` runs on the operator's premises: it is routed to the Airflow queue ``operator``,
  whose workers alone have the key's environment variable. Every other task runs on the office's
  queue and never sees the key.
* ``residence`` brings presence and residence changes up to the month incrementally: it recomputes
  only the months delivered since its last run (found in the anonymization run manifests) and
  re-runs the 12/16 rule for the pseudonyms whose decision can still change.
* ``release_flows`` publishes crossing month M - 17 once data month M is in: the 12/16-month rule
  decides a crossing within 487 days (crossing day included), and data through P + 17 decides every
  crossing of any month P. The lag is fixed, so each crossing month is released exactly once, in
  order, never skipped or asked for twice. ``release_remittances`` publishes the month before the
  data month (a later month must be in).
* Both releases run with ``--rho plan``: the rho ``mobility budget plan`` derives from the agreement's
  caps so that every release of this schedule fits the cap per data month and the lifetime cap for
  the agreement's ``plan_years`` (a number in ``flows_rho`` / ``remittances_rho`` overrides it).
* ``retention_*`` deletes what is older than the agreement's retention period on each side.

Retries do not re-noise and do not charge twice: the jobs derive each release id from the request
(agreement, period, purpose, breakdowns, budget), so a retry after a crash finds the charged or
published release under the same id and returns it (or refuses, with the budget still spent)
instead of drawing new noise. Anonymization retries reuse the run id derived from the input files,
and Delta's idempotent writes skip what the failed attempt had committed. Exit code 3 means the
pipeline refused (bad input, budget cap, period not final): a retry fails the same way, so
``retries`` are for exit code 1 (lost executors, full disks) and stay small.
"""

from __future__ import annotations

import datetime as dt

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.operators.bash import BashOperator

DAG_ID = "mobility_monthly"
# Per crossing: window of 487 days, crossing day included (mobility.residence.rules.ResidenceParams).
WINDOW_DAYS = 487
# Months from a data month to the crossing month it releases: data through P + 17 decides every crossing of
# any month P with the 487-day window. The scheduler cannot import mobility, so this is the value of
# mobility.privacy_budget.blocks.flows_lag_months(WINDOW_DAYS), spelled out; tests/infra/test_airflow_dag.py
# checks that the two stay equal (and so does the budget plan, which prices exactly this schedule).
FLOWS_LAG_MONTHS = 17


def shift_month(month: str, months: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def data_month(run_time: dt.datetime) -> str:
    """The month whose extract a run processes: the calendar month before the run's own."""
    return shift_month(run_time.strftime("%Y-%m"), -1)


def flows_period(month: str) -> str:
    """The crossing month released once data month ``month`` is in (blocks.flows_period_for): a fixed
    lag, so consecutive data months release consecutive crossing months, each exactly once."""
    return shift_month(month, -FLOWS_LAG_MONTHS)


def remittances_period(month: str) -> str:
    """The payment month released once data month ``month`` is in (blocks.remittances_period_for)."""
    return shift_month(month, -1)


SUBMIT = (
    "spark-submit --master {{ params.spark_master }} --deploy-mode client "
    "--properties-file {{ params.repo }}/infra/spark-defaults.conf "
    "--conf spark.pyspark.python={{ params.python }} {{ params.spark_options }} "
    "{{ params.repo }}/jobs/"
)
# When the run is for: data_interval_end, the run time under Airflow 3's cron timetable and Airflow 2's alike.
# A run triggered in Airflow 3 without a logical date (`airflow dags trigger`, the UI's button) has no data
# interval, and data_interval_end is then undefined: such a run is for the time it was triggered (run_after).
RUN_TIME = "(data_interval_end if data_interval_end is defined else dag_run.run_after)"
MONTH = "{{ data_month(" + RUN_TIME + ") }}"
COMMON_OFFICE = "--agreement {{ params.agreement }} --lake {{ params.office_lake }} --log-format json"
RELEASE = "--purpose {purpose} --requested-by {{{{ params.requested_by }}}} --rho {rho}"

default_args = {
    "owner": "statistics-office",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=20),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(hours=12),
}

with DAG(
    dag_id=DAG_ID,
    description="mobility: anonymize, residence, DP releases, retention for one agreement, monthly",
    doc_md=__doc__,
    schedule="0 3 5 * *",  # 03:00 UTC on the 5th: the operator's extract of last month is in
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # each residence run continues the tables the previous one left: months in order
    default_args=default_args,
    user_defined_macros={"data_month": data_month, "flows_period": flows_period,
                         "remittances_period": remittances_period, "shift_month": shift_month},
    params={
        "repo": "/opt/mobility",
        "python": "/opt/mobility/venv/bin/python",  # has mobility installed, on driver and executors
        "spark_master": "spark://spark-master:7077",
        # more spark-submit options (a --conf here beats the properties file): this deployment's sizing
        # (--executor-memory 8g --conf spark.sql.shuffle.partitions=2000), --jars, a log4j file
        "spark_options": "",
        "agreement": "/opt/mobility/conf/agreements/demo-phl-2026.yaml",
        "input_root": "/data/operator/extracts",
        # the handover: OPERATOR_LAKE/office and OFFICE_LAKE/office are one shared folder (docs/operations.md
        # section 3); anonymize writes it, the office's tasks read it
        "operator_lake": "/data/operator/lake",
        "office_lake": "/data/office/lake",
        "requested_by": "nso-migration-unit",
        # "plan": the rho `mobility budget plan --agreement A` gives each kind (fits every cap for plan_years)
        "flows_rho": "plan",
        "remittances_rho": "plan",
    },
    tags=["mobility", "differential-privacy"],
) as dag:
    anonymize = BashOperator(
        task_id="anonymize",
        queue="operator",  # only the operator's workers hold the key
        bash_command=SUBMIT + "anonymize.py --agreement {{ params.agreement }} "
        "--input {{ params.input_root }}/" + MONTH + " --lake {{ params.operator_lake }} --log-format json",
    )
    residence = BashOperator(
        task_id="residence",
        queue="office",
        bash_command=SUBMIT + "residence.py " + COMMON_OFFICE + " --through " + MONTH,
    )
    release_flows = BashOperator(
        task_id="release_flows",
        queue="office",
        retries=1,
        bash_command=SUBMIT + "release_flows.py " + COMMON_OFFICE
        + " --period {{ flows_period(data_month(" + RUN_TIME + ")) }} --by sex,age_band "
        + RELEASE.format(purpose="migration-statistics", rho="{{ params.flows_rho }}"),
    )
    release_remittances = BashOperator(
        task_id="release_remittances",
        queue="office",
        retries=1,
        bash_command=SUBMIT + "release_remittances.py " + COMMON_OFFICE
        + " --period {{ remittances_period(data_month(" + RUN_TIME + ")) }} "
        + RELEASE.format(purpose="remittance-statistics", rho="{{ params.remittances_rho }}"),
    )
    retention_office = BashOperator(
        task_id="retention_office",
        queue="office",
        bash_command=SUBMIT + "retention.py " + COMMON_OFFICE + " --today {{ " + RUN_TIME + " | ds }}",
    )
    retention_operator = BashOperator(
        task_id="retention_operator",
        queue="operator",
        bash_command=SUBMIT + "retention.py --agreement {{ params.agreement }} --lake {{ params.operator_lake }} "
        "--side operator --log-format json --today {{ " + RUN_TIME + " | ds }}",
    )

    # The two retentions last and one after the other: where the office zone is handed over as one shared
    # folder both cut its tables, and a delete and purge must not run under residence, a release or each other.
    anonymize >> residence >> [release_flows, release_remittances] >> retention_office >> retention_operator
