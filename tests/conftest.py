"""Shared fixtures: one local Spark session for the whole run, small seeded data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)


@pytest.fixture(scope="session")
def spark():
    from mobility.spark import get_spark

    session = get_spark("mobility-tests", {"spark.sql.shuffle.partitions": "4",
                                           "spark.default.parallelism": "4"})
    yield session
    session.stop()
