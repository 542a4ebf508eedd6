"""What a residence run reads from the Delta log to tell whether its previous tables are still current."""

from __future__ import annotations

import json

from mobility.lake import Lake
from mobility.schemas import PRESENCE_TABLE


def _commit(lake: Lake, version: int, operation: str) -> None:
    log = lake.table(PRESENCE_TABLE) / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text(json.dumps({"commitInfo": {"operation": operation}}) + "\n"
                                              + json.dumps({"add": {"path": f"part-{version}.parquet"}}) + "\n")


def test_operations_after_a_version_oldest_first(tmp_path):
    lake = Lake(tmp_path)
    for v, op in enumerate(["WRITE", "WRITE", "DELETE", "OPTIMIZE"]):
        _commit(lake, v, op)
    assert lake.history_since(PRESENCE_TABLE, 1) == ["DELETE", "OPTIMIZE"]
    assert lake.history_since(PRESENCE_TABLE, 3) == []


def test_a_log_cleaned_past_the_version_cannot_vouch_for_what_happened(tmp_path):
    lake = Lake(tmp_path)
    for v, op in enumerate(["WRITE", "WRITE", "WRITE", "DELETE"]):
        _commit(lake, v, op)
    (lake.table(PRESENCE_TABLE) / "_delta_log" / f"{2:020d}.json").unlink()  # as Delta's log cleanup does
    assert lake.history_since(PRESENCE_TABLE, 1) is None
    assert lake.history_since(PRESENCE_TABLE, 2) == ["DELETE"]
