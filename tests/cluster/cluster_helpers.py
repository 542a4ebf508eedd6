"""A Spark standalone cluster (one master, one worker) on 127.0.0.1, and spark-submit against it.

Plain module (tests/cluster is on sys.path through pytest's rootdir handling); no fixture here,
so a script can reuse it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

REPO = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"
SPARK_SUBMIT = SPARK_HOME / "bin" / "spark-submit"
QUIET_LOG4J = REPO / "src" / "mobility" / "data" / "log4j2-quiet.properties"
# Small on purpose: the machine has 2 cores shared with other work.
WORKER_CORES, WORKER_MEMORY, EXECUTOR_MEMORY, DRIVER_MEMORY = 2, "2g", "1g", "1g"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(tmp / "logs"),
               SPARK_DAEMON_MEMORY="512m", SPARK_WORKER_DIR=str(tmp / "work"),
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_NO_DAEMONIZE="1")
    # under pytest, the parent's gateway variables would make get_spark think it was submitted
    for name in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_CONF_DIR"):
        env.pop(name, None)
    return env


@dataclass
class Standalone:
    tmp: Path
    master_port: int = field(default_factory=free_port)
    master_ui: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    worker_ui: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def _daemon(self, name: str, args: list[str]) -> None:
        log = open(self.tmp / "logs" / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen([str(SPARK_CLASS), *args], env=cluster_env(self.tmp), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True))  # own group: stop() kills the JVM too

    def start(self, timeout: float = 120) -> "Standalone":
        (self.tmp / "logs").mkdir(parents=True, exist_ok=True)
        (self.tmp / "work").mkdir(parents=True, exist_ok=True)
        self._daemon("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                "--port", str(self.master_port), "--webui-port", str(self.master_ui)])
        self._daemon("worker", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                "--port", str(self.worker_port), "--webui-port", str(self.worker_ui),
                                "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
                                "--work-dir", str(self.tmp / "work"), self.url])
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a cluster daemon exited early; see {self.tmp / 'logs'}\n{self.logs_tail()}")
            if self.alive_workers() >= 1:
                return self
            time.sleep(1)
        raise RuntimeError(f"no worker registered within {timeout:.0f}s; see {self.tmp / 'logs'}\n{self.logs_tail()}")

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.master_ui}/json/", timeout=5) as r:
            return json.loads(r.read())

    def alive_workers(self) -> int:
        try:
            return sum(1 for w in self.state().get("workers", []) if w.get("state") == "ALIVE")
        except OSError:
            return 0

    def stop(self) -> None:
        """Terminate both daemons and anything they started (executors), then make sure."""
        for p in self.procs:
            _signal_group(p, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(p, signal.SIGKILL)  # executors of a stuck worker share its group
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def logs_tail(self, lines: int = 30) -> str:
        out = []
        for log in sorted((self.tmp / "logs").glob("*.log")):
            out.append(f"--- {log.name}")
            out.extend(log.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # the group id is the daemon's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def delta_jars() -> list[str]:
    """The Delta jars cached by `python -m mobility.spark --warm`, or [] (then --packages is used)."""
    from mobility.spark import _cached_delta_jars

    return _cached_delta_jars()


def properties_file(tmp: Path, use_packages: bool) -> Path:
    """infra/spark-defaults.conf as shipped, less the Maven coordinates when the jars are passed directly."""
    lines = (REPO / "infra" / "spark-defaults.conf").read_text().splitlines()
    if not use_packages:
        lines = [ln for ln in lines if not ln.strip().startswith("spark.jars.packages")]
    path = tmp / "spark-defaults.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def submit_command(master: str, job: str, args: list[str], tmp: Path,
                   extra_conf: dict[str, str] | None = None) -> list[str]:
    """The spark-submit command line for jobs/JOB.py ARGS against ``master`` (``extra_conf`` last: it wins)."""
    jars = delta_jars()
    cmd = [str(SPARK_SUBMIT), "--master", master, "--deploy-mode", "client",
           "--properties-file", str(properties_file(tmp, use_packages=not jars)),
           "--driver-memory", DRIVER_MEMORY, "--executor-memory", EXECUTOR_MEMORY,
           "--total-executor-cores", str(WORKER_CORES),
           "--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.ui.enabled=false",
           # Delta replays its log with 50 tasks by default: on two cores the tiny tasks dominate
           "--conf", "spark.databricks.delta.snapshotPartitions=2",
           "--conf", f"spark.pyspark.python={sys.executable}",
           "--conf", f"spark.pyspark.driver.python={sys.executable}",
           "--conf", f"spark.driver.extraJavaOptions=-Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}"]
    for key, value in (extra_conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    if jars:
        cmd += ["--jars", ",".join(jars)]
    return [*cmd, str(REPO / "jobs" / f"{job}.py"), *args]


def submit(master: str, job: str, args: list[str], tmp: Path, env_extra: dict[str, str] | None = None,
           timeout: float = 900) -> subprocess.CompletedProcess:
    """spark-submit jobs/JOB.py ARGS to ``master``; stdout/stderr also kept under tmp/submit-JOB.log."""
    cmd = submit_command(master, job, args, tmp)
    env = cluster_env(tmp)
    env.update(env_extra or {})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp,
                          start_new_session=True)
    (tmp / f"submit-{job}.log").write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


# --- fault injection on a running application: find its executors and kill them -------------------


@dataclass
class Submission:
    """A spark-submit running in the background, its stdout and stderr going to files (to watch)."""

    proc: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = 900) -> subprocess.CompletedProcess:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return subprocess.CompletedProcess(self.proc.args, code, self.stdout(), self.stderr())

    def kill(self) -> None:
        """Kill the submission's process group, if it is still running (never a reused pid's)."""
        if self.proc.poll() is not None:
            return
        _signal_group(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass


def start_submit(master: str, job: str, args: list[str], tmp: Path, name: str,
                 env_extra: dict[str, str] | None = None,
                 extra_conf: dict[str, str] | None = None) -> Submission:
    """Like ``submit`` but returns at once; output goes to tmp/NAME.stdout and tmp/NAME.stderr."""
    cmd = submit_command(master, job, args, tmp, extra_conf)
    env = cluster_env(tmp)
    env.update(env_extra or {})
    out, err = tmp / f"{name}.stdout", tmp / f"{name}.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:  # the child keeps its own copies of the descriptors
        proc = subprocess.Popen(cmd, env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=tmp,
                                start_new_session=True)
    return Submission(proc, out, err)


def wait_for(what: str, check, timeout: float, interval: float = 0.2, alive: Submission | None = None):
    """Poll ``check()`` until it returns something truthy (returned); fail after ``timeout`` seconds,
    or at once if ``alive`` (a submission) has exited meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(f"the job exited ({alive.proc.returncode}) before {what}:\n"
                                 f"{alive.stderr()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class ExecutorProcess:
    pid: int
    app_id: str
    executor_id: str


def executor_processes(worker_port: int, app_id: str | None = None) -> list[ExecutorProcess]:
    """The executor JVMs (CoarseGrainedExecutorBackend) a worker listening on ``worker_port`` runs,
    of application ``app_id`` if given: read from /proc, so only this machine's (and this cluster's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "org.apache.spark.executor.CoarseGrainedExecutorBackend" not in args:
            continue
        opts = dict(zip(args, args[1:]))
        if not opts.get("--worker-url", "").endswith(f"@127.0.0.1:{worker_port}"):
            continue
        if app_id is not None and opts.get("--app-id") != app_id:
            continue
        found.append(ExecutorProcess(int(entry.name), opts.get("--app-id", ""), opts.get("--executor-id", "")))
    return found


def kill_executor(worker_port: int, app_id: str, timeout: float = 30) -> ExecutorProcess:
    """SIGKILL the application's one running executor, as a lost node or the kernel's OOM killer would,
    and wait until its process is gone."""
    running = executor_processes(worker_port, app_id)
    assert len(running) == 1, f"expected one executor of {app_id}, found {running}"
    victim = running[0]
    os.kill(victim.pid, signal.SIGKILL)
    wait_for(f"executor {victim.executor_id} (pid {victim.pid}) to exit", lambda: _gone(victim.pid), timeout)
    return victim


def _gone(pid: int) -> bool:
    """The process has exited (a zombie awaiting its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def synthetic_population(root: Path, *, subscribers: int, months: int, start: str, seed: int,
                         behaviours: dict[str, float]) -> dict:
    """A small synthetic operator extract under ``root/input``, its agreement and a fresh key (hex)."""
    import secrets

    from agreement_helpers import make_agreement
    from mobility.synth import generate

    generate(root / "input", subscribers=subscribers, months=months, start=start, home_country="PHL", seed=seed,
             fault_rate=0.02, events_per_day=3.0, behaviours=behaviours)
    agreement = make_agreement(root, max_invalid_share=0.2)
    return {"root": root, "input": root / "input", "agreement": agreement, "key": secrets.token_hex(32)}


def anonymize_locally(population: dict, lake: Path, spark) -> None:
    """The reference anonymization in-process; the key is set only while it runs (the office stages
    that follow must not need it)."""
    from mobility.anonymize.job import run as anonymize

    previous = os.environ.get("MOBILITY_KEY_TEST")
    os.environ["MOBILITY_KEY_TEST"] = population["key"]
    try:
        anonymize(population["agreement"], population["input"], lake, spark=spark)
    finally:
        if previous is None:
            os.environ.pop("MOBILITY_KEY_TEST", None)
        else:
            os.environ["MOBILITY_KEY_TEST"] = previous
