"""One real run of the monthly DAG: `airflow dags test` from .venv-airflow, its tasks submitted with
spark-submit to a Spark standalone master on 127.0.0.1, over a small synthetic world.

The world is what a deployment has on the 5th of a month: the operator's extracts of the months
before, already anonymized into the lake (a backlog, submitted here before the DAG runs), and this
month's extract, ``INPUT_ROOT/YYYY-MM``, which the DAG's ``anonymize`` task ingests. The two lakes
share their ``office/`` folder, as the handover volume does in docs/operations.md section 3.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra_helpers import REPO

CLUSTER_TESTS = REPO / "tests" / "cluster"
if str(CLUSTER_TESTS) not in sys.path:  # the standalone cluster and spark-submit helpers
    sys.path.append(str(CLUSTER_TESTS))

# Standalone is for the test module, which cannot import cluster_helpers before this module set sys.path
from cluster_helpers import QUIET_LOG4J, Standalone, cluster_env, submit_command  # noqa: E402, F401

DAG_ID = "mobility_monthly"
DAG_FOLDER = REPO / "infra" / "airflow"
# The run of 2026-02-05 03:00 UTC processes data month 2026-01 and releases crossing month 2024-08
# (17 months back) and payment month 2025-12.
LOGICAL_DATE = "2026-02-05T03:00:00+00:00"
DATA_MONTH, FLOWS_PERIOD, REMITTANCES_PERIOD = "2026-01", "2024-08", "2025-12"
# 25 months from 2024-01: enough history before 2024-08 for crossings in it, data through the month.
START, MONTHS = "2024-01", 25
# Migrant-rich and small: crossings in every release month with 60 subscribers.
SHARES = {"stayer": 0.5, "short_trip": 0.1, "emigrant_long_term": 0.2, "temporary_worker": 0.05,
          "returning_migrant": 0.1, "immigrant": 0.03, "inbound_roamer": 0.02}
KEY_ENV = "MOBILITY_KEY_TEST"
# Sized for two shared cores; the DAG's spark_options param carries it (a --conf beats spark-defaults.conf).
# Each job here is a minute of JVM start-up and warm-up around seconds of work: the client compiler alone
# and the serial collector take about 40% off each job's CPU time.
SHORT_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SPARK_OPTIONS = " ".join([
    "--driver-memory 1g --executor-memory 1g --total-executor-cores 2",
    "--conf spark.sql.shuffle.partitions=4", "--conf spark.databricks.delta.snapshotPartitions=2",
    "--conf spark.ui.enabled=false",
    f"--conf 'spark.driver.extraJavaOptions={SHORT_JVM} -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}'",
    f"--conf 'spark.executor.extraJavaOptions={SHORT_JVM}'",
])


def airflow_python() -> Path | None:
    """MOBILITY_AIRFLOW_PYTHON, else .venv-airflow once `make airflow-venv` has finished installing."""
    if os.environ.get("MOBILITY_AIRFLOW_PYTHON"):
        return Path(os.environ["MOBILITY_AIRFLOW_PYTHON"])
    venv = REPO / ".venv-airflow"
    return venv / "bin" / "python" if (venv / ".installed").is_file() else None


def why_no_airflow() -> str | None:
    """None when Airflow's CLI can run here, else the reason (the run test skips with it)."""
    python = airflow_python()
    if python is None:
        return "no Airflow virtualenv (.venv-airflow): `make airflow-venv` creates it"
    if not (python.parent / "airflow").is_file():
        return f"no airflow command next to {python}"
    probe = subprocess.run([str(python), "-c", "import airflow.sdk, airflow.providers.standard"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return f"Airflow does not import from {python}: {probe.stderr.strip().splitlines()[-1:]}"
    return None


@dataclass
class World:
    root: Path
    agreement: Path
    key: str
    input_root: Path
    operator_lake: Path
    office_lake: Path
    witness: Path


def make_world(root: Path) -> World:
    """The synthetic extract split into a backlog and this month's delivery, an agreement, a key, two lakes."""
    import yaml

    from agreement_helpers import make_agreement
    from mobility.synth import generate

    generate(root / "synth", subscribers=60, months=MONTHS, start=START, home_country="PHL", seed=23,
             fault_rate=0.02, events_per_day=3.0, behaviours=SHARES)
    input_root = root / "extracts"
    for name, this_month in (("backlog", False), (DATA_MONTH, True)):
        delivery = input_root / name
        for folder in ("cells", "subscribers"):  # the registers come with every delivery
            shutil.copytree(root / "synth" / folder, delivery / folder)
        for folder in ("cdr", "payments"):
            (delivery / folder).mkdir(parents=True)
            for part in sorted((root / "synth" / folder).iterdir()):
                if (DATA_MONTH in part.name) == this_month:
                    shutil.copy2(part, delivery / folder / part.name)
    agreement = make_agreement(root, max_invalid_share=0.2)
    witness = root / "auditor-witness"  # outside both lakes, as an auditor keeps it
    data = yaml.safe_load(agreement.read_text())
    data["ledger_witness"] = str(witness)
    agreement.write_text(yaml.safe_dump(data))
    operator_lake, office_lake = root / "operator-lake", root / "office-lake"
    (operator_lake / "office").mkdir(parents=True)
    office_lake.mkdir()
    (office_lake / "office").symlink_to(operator_lake / "office", target_is_directory=True)  # the handover
    return World(root, agreement, secrets.token_hex(32), input_root, operator_lake, office_lake, witness)


def anonymize_backlog(world: World, master: str) -> None:
    """The months before the DAG's, anonymized into the operator's lake as an earlier delivery would be."""
    args = ["--agreement", str(world.agreement), "--input", str(world.input_root / "backlog"),
            "--lake", str(world.operator_lake), "--log-format", "json"]
    cmd = submit_command(master, "anonymize", args, world.root, extra_conf={
        "spark.driver.extraJavaOptions": f"{SHORT_JVM} -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}",
        "spark.executor.extraJavaOptions": SHORT_JVM})
    proc = subprocess.run(cmd, env={**cluster_env(world.root), KEY_ENV: world.key}, capture_output=True, text=True,
                          timeout=1800, cwd=world.root)
    assert proc.returncode == 0, f"backlog anonymization exited {proc.returncode}: {proc.stderr[-2000:]}"


def dag_conf(world: World, master: str) -> dict:
    """The DAG's params for this run (`airflow dags test -c`): this checkout, this venv, this cluster."""
    return {"repo": str(REPO), "python": sys.executable, "spark_master": master, "spark_options": SPARK_OPTIONS,
            "agreement": str(world.agreement), "input_root": str(world.input_root),
            "operator_lake": str(world.operator_lake), "office_lake": str(world.office_lake),
            "requested_by": "airflow-run-test", "flows_rho": "plan", "remittances_rho": "plan"}


def airflow_env(home: Path, key: str) -> dict[str, str]:
    """Airflow's own settings in a fresh AIRFLOW_HOME with SQLite; spark-submit from this venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYSPARK", "SPARK"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAG_FOLDER),
               AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               SPARK_LOCAL_IP="127.0.0.1")
    env[KEY_ENV] = key  # the one worker here serves both queues, the operator's included
    return env


@dataclass
class DagRun:
    returncode: int
    seconds: float
    log: Path
    db: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _query(db: Path, sql: str) -> list[dict]:
    """Rows of Airflow's metadata database (read-only) about this DAG, as dictionaries."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, (DAG_ID,))]
    finally:
        con.close()


def task_rows(db: Path) -> list[dict]:
    """The DAG's task instances as Airflow recorded them (state, try, start and end)."""
    return _query(db, "SELECT run_id, task_id, state, try_number, start_date, end_date FROM task_instance "
                      "WHERE dag_id = ? ORDER BY start_date")


def dag_runs(db: Path) -> list[dict]:
    return _query(db, "SELECT run_id, state, logical_date, data_interval_end, start_date, end_date FROM dag_run "
                      "WHERE dag_id = ?")


def run_dag(world: World, master: str, timeout: float = 2400) -> DagRun:
    """`airflow db migrate`, then `airflow dags test DAG LOGICAL_DATE -c CONF`. A task that fails would wait
    for its retry (20 minutes): the first failed or up-for-retry task instance stops the run at once."""
    python = airflow_python()
    assert python is not None
    airflow = str(python.parent / "airflow")
    home = world.root / "airflow-home"
    home.mkdir()
    env = airflow_env(home, world.key)
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, cwd=home, capture_output=True, text=True,
                             timeout=600)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stderr[-3000:]}"
    log, db = world.root / "airflow-dags-test.log", home / "airflow.db"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([airflow, "dags", "test", DAG_ID, LOGICAL_DATE, "-c",
                                 json.dumps(dag_conf(world, master))],
                                env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            if time.monotonic() - started > timeout or _a_task_failed(db):
                break
            time.sleep(5)
    finally:
        if proc.poll() is None:
            _stop(proc)
    return DagRun(proc.returncode, time.monotonic() - started, log, db)


def _a_task_failed(db: Path) -> bool:
    try:
        return any(r["state"] in ("failed", "up_for_retry", "upstream_failed") for r in task_rows(db))
    except sqlite3.Error:  # busy, or not created yet: look again at the next poll
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop `airflow dags test` and what it started: the tasks' bash and spark-submit run in sessions of
    their own (Airflow's subprocess hook), so they are found as descendants, by pid, before it exits."""
    children = _descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in [proc.pid, *children]:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
