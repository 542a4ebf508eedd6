"""Monthly cycle of one data-sharing agreement: anonymize -> residence -> releases -> retention.

Each task is one ``spark-submit jobs/STAGE.py`` (see docs/operations.md). A run on the 5th of a
month processes the previous month's operator extract (``INPUT_ROOT/YYYY-MM``, the "data month").

* ``anonymize`` runs on the operator's premises: it is routed to the Airflow queue ``operator``,
  whose workers alone have the key's environment variable. Every other task runs on the office's
  queue and never sees the key.
* ``residence`` re-derives presence and residence changes from all completed runs up to the month.
* ``release_flows`` publishes the latest crossing month that this month made final (the 12/16-month
  rule decides a crossing within 487 days, so the month released lags the data by 16-17 months).
  ``release_remittances`` publishes the month before the data month (a later month must be in).
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


def last_day(month: str) -> dt.date:
    year, mon = int(month[:4]), int(month[5:7])
    first_next = dt.date(year + mon // 12, mon % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def shift_month(month: str, months: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def data_month(run_time: dt.datetime) -> str:
    """The month whose extract a run processes: the calendar month before the run's own."""
    return shift_month(run_time.strftime("%Y-%m"), -1)


def final_flows_period(month: str, window_days: int = WINDOW_DAYS) -> str:
    """Latest crossing month whose every crossing is decided by data through ``month``."""
    period = shift_month(month, -(window_days // 28))  # a safe start, then walk forward
    while last_day(shift_month(period, 1)) + dt.timedelta(days=window_days - 1) <= last_day(month):
        period = shift_month(period, 1)
    return period


SUBMIT = (
    "spark-submit --master {{ params.spark_master }} --deploy-mode client "
    "--properties-file {{ params.repo }}/infra/spark-defaults.conf "
    "--conf spark.pyspark.python={{ params.python }} "
    "{{ params.repo }}/jobs/"
)
# data_interval_end is the run time under Airflow 3's cron timetable and Airflow 2's alike.
MONTH = "{{ data_month(data_interval_end) }}"
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
    max_active_runs=1,  # residence overwrites its tables; months run one after another
    default_args=default_args,
    user_defined_macros={"data_month": data_month, "final_flows_period": final_flows_period,
                         "shift_month": shift_month},
    params={
        "repo": "/opt/mobility",
        "python": "/opt/mobility/venv/bin/python",  # has mobility installed, on driver and executors
        "spark_master": "spark://spark-master:7077",
        "agreement": "/opt/mobility/conf/agreements/demo-phl-2026.yaml",
        "input_root": "/data/operator/extracts",
        "operator_lake": "/data/operator/lake",
        "office_lake": "/data/office/lake",
        "requested_by": "nso-migration-unit",
        "flows_rho": 0.25,
        "remittances_rho": 0.25,
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
        + " --period {{ final_flows_period(data_month(data_interval_end)) }} --by sex,age_band "
        + RELEASE.format(purpose="migration-statistics", rho="{{ params.flows_rho }}"),
    )
    release_remittances = BashOperator(
        task_id="release_remittances",
        queue="office",
        retries=1,
        bash_command=SUBMIT + "release_remittances.py " + COMMON_OFFICE
        + " --period {{ shift_month(data_month(data_interval_end), -1) }} "
        + RELEASE.format(purpose="remittance-statistics", rho="{{ params.remittances_rho }}"),
    )
    retention_office = BashOperator(
        task_id="retention_office",
        queue="office",
        bash_command=SUBMIT + "retention.py " + COMMON_OFFICE + " --today {{ data_interval_end | ds }}",
    )
    retention_operator = BashOperator(
        task_id="retention_operator",
        queue="operator",
        bash_command=SUBMIT + "retention.py --agreement {{ params.agreement }} --lake {{ params.operator_lake }} "
        "--side operator --log-format json --today {{ data_interval_end | ds }}",
    )

    anonymize >> residence >> [release_flows, release_remittances] >> retention_office
    anonymize >> retention_operator
