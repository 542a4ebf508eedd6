"""Fixtures of the object-store tests: one SeaweedFS server for the session, a fresh lake prefix per test.

Every test here is marked ``objectstore``. When the ``weed`` binary cannot be had (no Go toolchain,
the build failed) the tests are skipped with that reason; they never pass without a server.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from seaweed import BUCKET, Seaweed, Unavailable, weed_binary

# the tests here reuse the privacy-budget and publishing tests' helpers (pb_helpers, publish_helpers)
for folder in ("privacy_budget", "publish"):
    sys.path.insert(0, str(Path(__file__).parents[1] / folder))


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A running SeaweedFS with the S3 gateway on 127.0.0.1 and the bucket ``mobility-test``."""
    try:
        binary = weed_binary()
    except Unavailable as exc:
        pytest.skip(f"SeaweedFS is not available on this machine: {exc}")
    server = Seaweed(binary, tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweed, monkeypatch) -> dict[str, str]:
    """The AWS_* environment of the server, set for this test (and the processes it starts)."""
    env = seaweed.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "MOBILITY_SHARED_LAKE"):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.fixture
def s3_lake(s3_env, request) -> str:
    """A fresh lake address, ``s3://mobility-test/<test>-<random>``, nothing under it yet."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]
    return f"s3://{BUCKET}/{name}-{uuid.uuid4().hex[:8]}"

