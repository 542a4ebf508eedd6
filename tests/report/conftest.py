"""Fixtures of the report tests (helpers live in report_helpers.py, a unique module name)."""

from __future__ import annotations

import pytest

from mobility.reference import load_boundaries
from report_helpers import build_lake


@pytest.fixture(scope="session")
def report_lake(tmp_path_factory):
    """Two published releases (built once: the lake is only ever read by the report tests)."""
    return build_lake(tmp_path_factory.mktemp("report-lake"))


@pytest.fixture(scope="session")
def boundaries():
    return load_boundaries()
