"""Shared helpers of the privacy-budget tests: a 3x3 country flow table, requests, a ledger rewrite."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pyarrow as pa

from mobility.config import BudgetCaps
from mobility.privacy_budget import ReleaseRequest
from mobility.privacy_budget.ledger import LEDGER_SCHEMA, Policy

COUNTRIES = ["ARE", "PHL", "SAU"]
POPULATION = "demo-operator-subscribers"
CAPS = BudgetCaps(population=POPULATION, rho_per_data_month=1.0, rho_lifetime=2.0, delta=1e-7)
# what a release is charged under: the caps, the agreement file's digest, no witness
POLICY = Policy("PHL-DEMO", CAPS, "a" * 64)


def policy(caps: BudgetCaps = CAPS, agreement_id: str = "PHL-DEMO", witness=None, digest: str = "a" * 64) -> Policy:
    return Policy(agreement_id, caps, digest, witness)


def flows(counts=(40, 0, 3, 0, 250, 0, 7, 1, 0)) -> pd.DataFrame:
    """Full origin x destination domain, zeros included."""
    frame = pd.DataFrame(list(itertools.product(COUNTRIES, COUNTRIES)), columns=["origin", "destination"])
    frame["count"] = pd.Series(counts, dtype="int64")
    return frame


def request(release_id: str = "flows-2024-05", **overrides) -> ReleaseRequest:
    fields = dict(release_id=release_id, agreement_id="PHL-DEMO", period="2024-05", purpose="migration-flows",
                  requested_by="analyst@office", query={"tables": ["flows"], "group_by": ["origin", "destination"]},
                  privacy_unit="subscriber (pseudonym), at most 1 change per period", rho=0.05,
                  input_versions={"office/moves": 4}, data_months=("2024-05",))
    fields.update(overrides)
    return ReleaseRequest(**fields)


def rewrite_ledger(ledger_path, frame: pd.DataFrame) -> None:
    """What an attacker with write access does: lift append-only, then overwrite with a doctored frame."""
    from deltalake import DeltaTable, write_deltalake

    DeltaTable(str(ledger_path)).alter.set_table_properties({"delta.appendOnly": "false"})
    table = pa.Table.from_pandas(frame, schema=LEDGER_SCHEMA, preserve_index=False)
    write_deltalake(str(ledger_path), table, mode="overwrite")


def write_format1_ledger(ledger_path, charges) -> None:
    """A ledger as the package wrote it before data months (format 1): one commit per entry, the 18
    original columns, hashes over them. ``charges`` are (release_id, period, rho, query) tuples."""
    from deltalake import CommitProperties, write_deltalake

    from mobility.privacy_budget.ledger import GENESIS_HASH, LEGACY_COLUMNS, TABLE_PROPERTIES, hash_record

    schema = pa.schema([LEDGER_SCHEMA.field(c) for c in LEGACY_COLUMNS])
    prev = GENESIS_HASH
    for seq, (release_id, period, rho, query) in enumerate(charges, start=1):
        record = {"seq": seq, "entry_time": f"2025-01-{seq:02d}T10:00:00.000000+00:00", "status": "charged",
                  "release_id": release_id, "agreement_id": "PHL-DEMO", "period": period,
                  "purpose": "migration-statistics", "requested_by": "analyst",
                  "query": json.dumps(query, sort_keys=True, separators=(",", ":")),
                  "privacy_unit": "subscriber", "mechanism": "discrete_gaussian",
                  "epsilon": 1.0, "delta": 1e-7, "rho": rho, "input_versions": "{}", "release_digest": "",
                  "prev_hash": prev}
        record["entry_hash"] = prev = hash_record(record)
        commit = CommitProperties(custom_metadata={"mobility.seq": str(seq), "mobility.entry_hash": prev})
        write_deltalake(str(ledger_path), pa.Table.from_pylist([record], schema=schema),
                        mode="error" if seq == 1 else "append", commit_properties=commit,
                        configuration=TABLE_PROPERTIES if seq == 1 else None)
