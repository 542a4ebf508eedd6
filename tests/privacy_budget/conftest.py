"""Fixtures of the privacy-budget tests (helpers live in pb_helpers.py, a unique module name)."""

from __future__ import annotations

import pytest

from mobility.privacy_budget import publish
from pb_helpers import POLICY, flows, request


@pytest.fixture
def published_lake(tmp_path):
    """A lake with three published releases: seven ledger entries (the agreement's policy, then a charge
    and a publication each)."""
    for period in ["2024-03", "2024-04", "2024-05"]:
        publish(tmp_path, request(f"flows-{period}", period=period, data_months=(period,)), {"flows": flows()},
                POLICY)
    return tmp_path
