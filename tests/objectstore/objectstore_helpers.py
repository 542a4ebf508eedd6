"""Running the ``mobility`` command in a child process against a lake on the test's SeaweedFS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def charge_request(release_id: str, rho: float = 0.1, months=("2024-05",)):
    """A charge of ``rho`` on the given data months under pb_helpers.POLICY's agreement."""
    from mobility.privacy_budget.ledger import ChargeRequest

    return ChargeRequest(release_id=release_id, agreement_id="PHL-DEMO", period="2024-05", purpose="p",
                         requested_by="analyst", query={"tables": ["flows"]}, privacy_unit="subscriber",
                         mechanism="discrete_gaussian", epsilon=1.0, delta=1e-7, rho=rho, input_versions={},
                         data_months=tuple(months))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment (with the AWS_* the ``s3_env`` fixture set), without pytest's Spark gateway."""
    env = dict(os.environ)
    for name in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_CONF_DIR"):
        env.pop(name, None)
    env["PYSPARK_PYTHON"] = sys.executable
    env.update(extra or {})
    return env


def run_python(script: Path, *args: str, cwd: Path, extra_env: dict[str, str] | None = None,
               timeout: float = 1800) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` in a fresh interpreter (its own Spark JVM); output kept in the result."""
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=child_env(extra_env),
                          capture_output=True, text=True, timeout=timeout)


def mobility(*args: str, cwd: Path, extra_env: dict[str, str] | None = None,
             timeout: float = 1200) -> subprocess.CompletedProcess:
    """``mobility ARGS`` (the venv's console script) in a child process."""
    return subprocess.run([str(Path(sys.executable).parent / "mobility"), *args], cwd=cwd, env=child_env(extra_env),
                          capture_output=True, text=True, timeout=timeout)
