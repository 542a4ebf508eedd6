"""Verification detects edited, deleted, inserted and reordered entries, rewrites and altered releases."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.lake import Lake
from mobility.privacy_budget import Ledger, publish, verify
from mobility.privacy_budget.ledger import (
    COLUMNS,
    GENESIS_HASH,
    LEDGER_SCHEMA,
    TABLE_PROPERTIES,
    LedgerEntry,
    chain_problems,
    hash_record,
)
from pb_helpers import CAPS, POLICY, flows, request, rewrite_ledger


def _entries(root):
    return Ledger.of_lake(root).entries()


def _seq(root, release_id: str, status: str = "charged") -> int:
    """The seq of a release's entry (the ledger opens with a ``policy`` entry recording the caps)."""
    return next(e.seq for e in Ledger.of_lake(root).read()[0] if e.release_id == release_id and e.status == status)


def _records(root) -> list[dict]:
    return [e.record() for e in Ledger.of_lake(root).read()[0]]


def test_untouched_lake_verifies(published_lake):
    report = verify(published_lake, caps={"PHL-DEMO": CAPS})
    assert report.ok, report.summary()
    entries = Ledger.of_lake(published_lake).read()[0]
    assert [e.status for e in entries].count("charged") == 3 and entries[0].status == "policy"
    assert report.entries == len(entries) and report.releases == 3 and report.delta_version == len(entries) - 1
    assert report.data_files == len(entries) and not report.unreferenced_files
    assert report.first_bad_seq is None and report.summary().startswith("OK")


def test_edited_row_is_named(published_lake):
    frame = _entries(published_lake)
    seq = _seq(published_lake, "flows-2024-04")
    frame.loc[frame["seq"] == seq, "rho"] = 0.001  # understate a charge
    rewrite_ledger(Lake(published_lake).ledger, frame)
    report = verify(published_lake)
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_release_id) == (seq, "flows-2024-04")
    assert "edited" in report.reason
    assert any("not an append" in str(p) for p in report.problems)


def test_deleted_row_is_detected(published_lake):
    frame = _entries(published_lake)
    rewrite_ledger(Lake(published_lake).ledger, frame[frame["seq"] != 2])
    report = verify(published_lake)
    assert not report.ok and report.first_bad_seq == 3 and "deleted" in report.reason


def test_deleted_tail_is_detected_by_history_and_release_directory(published_lake):
    frame = _entries(published_lake)
    rewrite_ledger(Lake(published_lake).ledger, frame[frame["seq"] < frame["seq"].max()])
    report = verify(published_lake)
    assert not report.ok
    assert any("not recorded as published" in str(p) for p in report.problems)
    assert any("not an append" in str(p) for p in report.problems)


def test_inserted_row_is_detected(published_lake):
    frame = _entries(published_lake)
    fake = frame[frame["status"] == "charged"].head(1).copy()
    fake["release_id"], fake["rho"] = "ghost", 0.2
    frame.loc[frame["seq"] >= 2, "seq"] += 1
    fake["seq"] = 2
    rewrite_ledger(Lake(published_lake).ledger, pd.concat([frame, fake]))
    report = verify(published_lake)
    assert not report.ok and report.first_bad_seq == 2 and report.first_bad_release_id == "ghost"


def test_reordered_rows_are_detected(published_lake):
    frame = _entries(published_lake)
    swap = {3: 5, 5: 3}  # two charges trade places
    frame["seq"] = frame["seq"].map(lambda s: swap.get(s, s))
    rewrite_ledger(Lake(published_lake).ledger, frame)
    report = verify(published_lake)
    assert not report.ok and report.first_bad_seq == 3


def _rechain_and_rewrite(lake, rows: list[dict]) -> None:
    """What a careful attacker does after editing rows: recompute every hash, then rewrite the table."""
    prev = GENESIS_HASH
    for row in rows:
        row["prev_hash"] = prev
        row["entry_hash"] = prev = hash_record(row)
    rewrite_ledger(Lake(lake).ledger, pd.DataFrame(rows, columns=COLUMNS))


def test_fully_rechained_rewrite_is_still_caught(published_lake):
    # a careful attacker recomputes every hash after lowering a charge
    rows = _records(published_lake)
    rows[_seq(published_lake, "flows-2024-03") - 1]["rho"] = 0.0001
    _rechain_and_rewrite(published_lake, rows)
    report = verify(published_lake)
    assert not report.ok
    reasons = " ".join(str(p) for p in report.problems)
    assert "not an append" in reasons and "does not name charge entry" in reasons


def test_rebuilt_ledger_is_caught_by_an_anchor(published_lake):
    from deltalake import CommitProperties, write_deltalake

    anchor = verify(published_lake).tail_hash
    ledger_path = Lake(published_lake).ledger
    rows = _records(published_lake)[:_seq(published_lake, "flows-2024-04", "published")]
    shutil.rmtree(ledger_path)
    for row in rows:  # rebuild row by row with the ledger's own commit metadata: history looks clean
        meta = {"mobility.seq": str(row["seq"]), "mobility.entry_hash": row["entry_hash"]}
        write_deltalake(str(ledger_path), pa.Table.from_pylist([row], schema=LEDGER_SCHEMA), mode="append",
                        configuration=TABLE_PROPERTIES, commit_properties=CommitProperties(custom_metadata=meta))
    shutil.rmtree(Lake(published_lake).releases / "flows-2024-05")  # and hide the last release
    assert verify(published_lake).ok, verify(published_lake).summary()  # internally consistent...
    report = verify(published_lake, anchor=anchor)
    assert not report.ok and "anchor" in report.reason  # ...but not the ledger the auditor saw


def test_rebuilt_ledger_with_new_times_is_caught_by_the_releases(published_lake, monkeypatch):
    records = _records(published_lake)
    ledger_path = Lake(published_lake).ledger
    shutil.rmtree(ledger_path)
    # rebuilt a minute later or more (entry times are kept to the minute: within the same minute the
    # rebuilt entries would be the same entries, only the table's id and a witness tell them apart)
    monkeypatch.setattr("mobility.privacy_budget.ledger.minute_now", lambda: "2099-01-01T00:00+00:00")
    ledger = Ledger(ledger_path)
    for record in records:  # re-append through the normal path: fresh times, fresh hashes
        entries, version = ledger.read()
        ledger._append(entries, version, {k: v for k, v in record.items() if k in COLUMNS})
    report = verify(published_lake)
    assert not report.ok and "does not name charge entry" in report.reason


@pytest.mark.parametrize("edit", ["csv", "parquet", "manifest", "extra_file", "deleted_file"])
def test_altered_release_files_are_detected(published_lake, edit):
    folder = Lake(published_lake).releases / "flows-2024-04"
    if edit == "csv":
        text = (folder / "flows.csv").read_text().splitlines()
        origin, destination, count, *interval = text[1].split(",")
        text[1] = ",".join([origin, destination, str(int(count) + 1), *interval])
        (folder / "flows.csv").write_text("\n".join(text) + "\n")
    elif edit == "parquet":
        data = bytearray((folder / "flows.parquet").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "flows.parquet").write_bytes(bytes(data))
    elif edit == "manifest":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["privacy"]["rho"] = 0.001
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    elif edit == "extra_file":
        (folder / "raw_counts.csv").write_text("origin,destination,count\n")
    else:
        (folder / "flows.parquet").unlink()
    report = verify(published_lake)
    assert not report.ok and report.first_bad_release_id == "flows-2024-04"
    assert report.first_bad_seq == _seq(published_lake, "flows-2024-04")


def test_release_directory_without_entry_is_detected(published_lake):
    releases = Lake(published_lake).releases
    shutil.copytree(releases / "flows-2024-05", releases / "flows-2024-06")
    report = verify(published_lake)
    assert not report.ok and report.first_bad_release_id == "flows-2024-06"
    assert "no charge entry" in report.reason


def test_missing_release_directory_is_detected(published_lake):
    shutil.rmtree(Lake(published_lake).releases / "flows-2024-03")
    report = verify(published_lake)
    assert not report.ok and "missing" in report.reason


def test_caps_given_are_compared_with_the_recorded_ones_not_used_for_totals(published_lake):
    tight = CAPS.model_copy(update={"rho_per_data_month": 0.08, "rho_lifetime": 0.08})  # each release charged 0.05
    report = verify(published_lake, caps={"PHL-DEMO": tight})
    assert not report.ok and "looser than its file's" in report.reason
    assert "rho_lifetime 2 recorded for population" in report.reason and "> 0.08 in the file" in report.reason
    assert not any("passes the" in str(p) for p in report.problems)  # totals go by the recorded caps


def test_a_lowered_recorded_cap_names_the_first_charge_over_it(published_lake):
    # an editor lowers the caps the policy entry recorded and re-chains every hash after it
    rows = _records(published_lake)
    caps = json.loads(rows[0]["caps"])
    caps.update(rho_per_data_month=0.08, rho_lifetime=0.08)
    rows[0]["caps"] = json.dumps(caps, sort_keys=True, separators=(",", ":"))
    _rechain_and_rewrite(published_lake, rows)
    report = verify(published_lake)
    over = [p for p in report.problems if "passes the" in p.reason]
    assert len(over) == 1 and over[0].seq == _seq(published_lake, "flows-2024-04")
    assert "lifetime cap: spent rho=0.05 + this charge rho=0.05 > cap rho=0.08" in over[0].reason


def test_charging_refuses_a_broken_chain(published_lake):
    frame = _entries(published_lake)
    frame.loc[frame["seq"] == 1, "requested_by"] = "someone else"
    rewrite_ledger(Lake(published_lake).ledger, frame)
    with pytest.raises(Exception, match="refusing to append"):
        publish(published_lake, request("new"), {"flows": flows()}, POLICY)


# ---- property: any single-field change in any entry breaks the chain at that entry ---------------
def _chain(n: int) -> list[dict]:
    rows, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        row = {"seq": seq, "entry_time": f"2024-01-0{seq}T00:00:00+00:00", "status": "charged",
               "release_id": f"r{seq}", "agreement_id": "A", "period": "2024-01", "purpose": "p",
               "requested_by": "x", "query": "{}", "privacy_unit": "u", "mechanism": "discrete_gaussian",
               "epsilon": 1.0, "delta": 1e-7, "rho": 0.01, "input_versions": "{}", "release_digest": "",
               "prev_hash": prev}
        row["entry_hash"] = prev = hash_record(row)
        rows.append(row)
    return rows


_new_value = {
    "int": st.integers(-5, 10**6),
    "float": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "str": st.text(max_size=70),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 5))
def test_any_single_field_change_is_detected_at_that_entry(data, n):
    rows = _chain(n)
    index = data.draw(st.integers(0, n - 1), label="entry")
    column = data.draw(st.sampled_from(COLUMNS), label="column")
    old = rows[index].get(column)  # format-2 columns are absent (None) in these format-1 rows
    kind = "int" if column == "seq" else "float" if column in ("epsilon", "delta", "rho") else "str"
    new = data.draw(_new_value[kind].filter(lambda v: v != old), label="new value")
    rows[index][column] = new
    entries = [LedgerEntry.from_record(r) for r in rows]
    problems = chain_problems(entries)
    assert problems, f"change of {column} in entry {index + 1} went unnoticed"
    assert problems[0][0] is entries[index]
