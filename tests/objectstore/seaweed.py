"""A SeaweedFS server (S3 gateway) on 127.0.0.1 for the object-store tests: found or built, started, stopped.

Plain module, no fixture here (tests/objectstore/conftest.py holds them), so a script can reuse it.
The binary comes from ``infra/seaweedfs/build.sh`` (built from its Go module once, then cached);
``MOBILITY_WEED`` names another binary.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "infra" / "seaweedfs" / "build.sh"
ACCESS_KEY, SECRET_KEY, REGION = "mobility-test", "mobility-test-secret", "us-east-1"
BUCKET = "mobility-test"


class Unavailable(Exception):
    """The SeaweedFS binary cannot be had on this machine (no Go toolchain, the build failed)."""


def weed_binary(build_timeout: float = 1800) -> Path:
    """The ``weed`` binary: ``MOBILITY_WEED``, else what build.sh prints (cached after the first build)."""
    named = os.environ.get("MOBILITY_WEED")
    if named:
        if not Path(named).is_file():
            raise Unavailable(f"MOBILITY_WEED={named} is not a file")
        return Path(named)
    if shutil.which("bash") is None:
        raise Unavailable("bash is needed to run infra/seaweedfs/build.sh")
    try:
        proc = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=build_timeout)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"infra/seaweedfs/build.sh did not finish within {build_timeout:.0f} s") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise Unavailable(f"infra/seaweedfs/build.sh failed (exit {proc.returncode}): {tail}")
    return Path(lines[-1])


def free_port() -> int:
    """A free port whose gRPC companion (port + 10000, SeaweedFS's default offset) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


@dataclass
class Seaweed:
    """One ``weed server`` (master, volume, filer, S3 gateway) on loopback ports, data under ``data``."""

    binary: Path
    data: Path
    s3_port: int = field(default_factory=free_port)
    master_port: int = field(default_factory=free_port)
    volume_port: int = field(default_factory=free_port)
    filer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables every client (s3fs, delta-rs, S3A) reads: any key works, authentication is off."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self, timeout: float = 120) -> "Seaweed":
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={self.master_port}", f"-master.port.grpc={self.master_port + 10000}",
               f"-volume.port={self.volume_port}", f"-volume.port.grpc={self.volume_port + 10000}",
               f"-filer.port={self.filer_port}", f"-filer.port.grpc={self.filer_port + 10000}",
               "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={self.s3_port + 10000}",
               "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-master.volumeSizeLimitMB=64", "-volume.max=50"]
        log = open(self.data / "weed.log", "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed server exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the S3 gateway did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2) as response:
                return response.status < 500
        except urllib.error.HTTPError as exc:  # 403 and the like: the gateway is up
            return exc.code < 500
        except OSError:
            return False

    def create_bucket(self, name: str, timeout: float = 60) -> None:
        """Create a bucket (retried while the cluster still assigns its first volumes)."""
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, key=ACCESS_KEY, secret=SECRET_KEY,
                               client_kwargs={"region_name": REGION}, skip_instance_cache=True,
                               config_kwargs={"s3": {"addressing_style": "path"}})
        deadline = time.monotonic() + timeout
        while True:
            try:
                fs.mkdir(name)
                fs.pipe_file(f"{name}/.ready", b"1")
                fs.rm_file(f"{name}/.ready")
                return
            except FileExistsError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own group (start_new_session): only this server
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        path = self.data / "weed.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""
