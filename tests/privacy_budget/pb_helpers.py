"""Shared helpers of the privacy-budget tests: a 3x3 country flow table, requests, a ledger rewrite."""

from __future__ import annotations

import itertools

import pandas as pd
import pyarrow as pa

from mobility.config import BudgetCaps
from mobility.privacy_budget import ReleaseRequest
from mobility.privacy_budget.ledger import LEDGER_SCHEMA

COUNTRIES = ["ARE", "PHL", "SAU"]
CAPS = BudgetCaps(rho_per_year=1.0, rho_lifetime=2.0, delta=1e-7)


def flows(counts=(40, 0, 3, 0, 250, 0, 7, 1, 0)) -> pd.DataFrame:
    """Full origin x destination domain, zeros included."""
    frame = pd.DataFrame(list(itertools.product(COUNTRIES, COUNTRIES)), columns=["origin", "destination"])
    frame["count"] = pd.Series(counts, dtype="int64")
    return frame


def request(release_id: str = "flows-2024-05", **overrides) -> ReleaseRequest:
    fields = dict(release_id=release_id, agreement_id="PHL-DEMO", period="2024-05", purpose="migration-flows",
                  requested_by="analyst@office", query={"tables": ["flows"], "group_by": ["origin", "destination"]},
                  privacy_unit="subscriber (pseudonym), at most 1 change per period", rho=0.05,
                  input_versions={"office/moves": 4})
    fields.update(overrides)
    return ReleaseRequest(**fields)


def rewrite_ledger(ledger_path, frame: pd.DataFrame) -> None:
    """What an attacker with write access does: lift append-only, then overwrite with a doctored frame."""
    from deltalake import DeltaTable, write_deltalake

    DeltaTable(str(ledger_path)).alter.set_table_properties({"delta.appendOnly": "false"})
    table = pa.Table.from_pandas(frame, schema=LEDGER_SCHEMA, preserve_index=False)
    write_deltalake(str(ledger_path), table, mode="overwrite")
