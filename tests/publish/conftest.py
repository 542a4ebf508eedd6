"""A lake with the twelve monthly flows releases of 2025, built once and copied by tests that write."""

from __future__ import annotations

import shutil

import pytest

from publish_helpers import agreement, months, publish_month


@pytest.fixture(scope="session")
def year_lake_template(tmp_path_factory):
    """2025: January-June broken down by sex, July-December not; one month on discrete Laplace."""
    root = tmp_path_factory.mktemp("publish-year")
    agr, path = agreement(root)
    lake = root / "lake"
    for period in months(2025):
        month = int(period[-2:])
        publish_month(lake, agr, period, by=("sex",) if month <= 6 else (),
                      epsilon=0.5 if month == 9 else None)
    return lake, agr, path


@pytest.fixture
def year_lake(year_lake_template, tmp_path):
    """A private copy of the 2025 lake (tests may derive, export or tamper)."""
    template, agr, path = year_lake_template
    lake = tmp_path / "lake"
    shutil.copytree(template, lake)
    return lake, agr, path
