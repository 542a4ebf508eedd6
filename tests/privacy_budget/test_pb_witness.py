"""The witness outside the lake, rolled-back ledgers, data files no commit references, old ledgers.

The rollback of issue #19: deleting the newest ``_delta_log`` commits together with the newest
release directory must fail ``verify`` with the witness (the ledger is shorter than its witness), and
fail it without the witness too while the data files of the deleted commits are still there.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobility.config import BudgetCaps
from mobility.errors import BudgetExceededError, LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake
from mobility.privacy_budget import Ledger, accountant, export, publish, show, verify
from mobility.privacy_budget.audit import _referenced
from mobility.privacy_budget.ledger import (
    COLUMNS,
    FORMAT2_COLUMNS,
    GENESIS_HASH,
    LEDGER_SCHEMA,
    LEGACY_COLUMNS,
    TABLE_PROPERTIES,
    ChargeRequest,
    Policy,
    _Conflict,
    hash_record,
)
from mobility.privacy_budget.witness import Witness, parse_witness
from pb_helpers import CAPS, flows, policy, request

PERIODS = ["2024-03", "2024-04", "2024-05"]


def _publish(lake: Path, period: str, witness: Path | None, rho: float = 0.05):
    return publish(lake, request(f"flows-{period}", period=period, data_months=(period,), rho=rho),
                   {"flows": flows()}, policy(witness=witness))


@pytest.fixture
def witnessed(tmp_path):
    """A lake with three releases published under a witness: (lake, witness directory)."""
    lake, witness_dir = tmp_path / "lake", tmp_path / "witness"
    for period in PERIODS:
        _publish(lake, period, witness_dir)
    return lake, witness_dir


def _commits(lake: Path) -> list[Path]:
    return sorted((Lake(lake).ledger / "_delta_log").glob("[0-9]*.json"))


def _witness_file(lake: Path, witness_dir: Path) -> Path:
    ledger_id = Ledger.of_lake(lake).ledger_id()
    assert ledger_id is not None
    return Witness(witness_dir).path_for(ledger_id)


def _reasons(report) -> str:
    return "\n".join(str(p) for p in report.problems)


# ---- the untouched lake -----------------------------------------------------------------------------
def test_untouched_lake_verifies_against_its_witness(witnessed):
    lake, witness_dir = witnessed
    report = verify(lake, witness=witness_dir, caps={"PHL-DEMO": CAPS})
    assert report.ok, report.summary()
    entries = Ledger.of_lake(lake).read()[0]
    assert report.entries == len(entries) == 7  # a policy entry, then a charge and a publication per release
    assert report.witnessed_seq == 7 and report.formats == [2]
    assert report.data_files == 7 and report.unreferenced_files == []
    lines = parse_witness(_witness_file(lake, witness_dir)).lines
    assert [(line.seq, line.entry_hash) for line in lines] == [(e.seq, e.entry_hash) for e in entries]
    assert all(line.time.endswith("+00:00") and len(line.time) == len("2026-01-01T00:00+00:00") for line in lines)
    as_dict = report.to_dict()
    assert as_dict["witnessed_seq"] == 7 and as_dict["witnesses"][0]["file"].endswith(".jsonl")
    assert "witnessed through seq 7" in report.summary()
    # the witness file itself, or the lake verified without a witness, are fine too
    assert verify(lake, witness=_witness_file(lake, witness_dir)).ok
    assert verify(lake).ok


# ---- the rollback of issue #19 ----------------------------------------------------------------------
def test_rollback_of_the_newest_commits_and_release_fails_verification(witnessed):
    lake, witness_dir = witnessed
    ledger = Ledger.of_lake(lake)
    spent_before = ledger.spent_by(CAPS.population).lifetime
    for commit in _commits(lake)[-2:]:  # the charge and the publication of flows-2024-05
        commit.unlink()
    shutil.rmtree(Lake(lake).releases / "flows-2024-05")
    assert ledger.spent_by(CAPS.population).lifetime == pytest.approx(spent_before - 0.05)  # the budget came back

    report = verify(lake, witness=witness_dir)
    assert not report.ok and report.entries == 5
    assert report.first_bad_seq == 6
    assert "shorter than its witness" in report.reason and "rollback" in report.reason
    assert "seq 6..7" in report.reason

    blind = verify(lake)  # no witness: the data files of the deleted commits are still in the table
    assert not blind.ok and blind.first_bad_seq == 6 and blind.first_bad_release_id == "flows-2024-05"
    assert "referenced by no commit" in blind.reason and "rollback" in blind.reason
    assert len(blind.unreferenced_files) == 2

    # the same release published again with fresh noise: the witness still holds the old seq 6 and 7
    _publish(lake, "2024-05", witness_dir)
    again = verify(lake, witness=witness_dir)
    assert not again.ok and "diverges from its witness at seq" in _reasons(again)


def test_rollback_that_also_removes_the_data_files_is_caught_by_the_witness_only(witnessed):
    lake, witness_dir = witnessed
    referenced_before, _ = _referenced(Lake(lake).ledger)
    for commit in _commits(lake)[-2:]:
        commit.unlink()
    referenced_after, _ = _referenced(Lake(lake).ledger)
    for name in referenced_before - referenced_after:
        (Lake(lake).ledger / name).unlink()
    shutil.rmtree(Lake(lake).releases / "flows-2024-05")
    assert verify(lake).ok  # internally consistent: what a witness is for
    report = verify(lake, witness=witness_dir)
    assert not report.ok and "shorter than its witness" in report.reason


# ---- the witness itself -----------------------------------------------------------------------------
def _rewrite_witness(path: Path, edit) -> None:
    lines = [json.loads(raw) for raw in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n"
                            for line in edit(lines)))


def test_a_witnessed_hash_the_ledger_no_longer_has_fails(witnessed):
    lake, witness_dir = witnessed
    path = _witness_file(lake, witness_dir)

    def forge(lines):
        lines[2]["entry_hash"] = "f" * 64
        return lines
    _rewrite_witness(path, forge)
    report = verify(lake, witness=witness_dir)
    assert not report.ok and report.first_bad_seq == 3
    assert "diverges from its witness at seq 3" in report.reason


def test_duplicate_witness_lines_are_fine_but_two_hashes_for_one_seq_fail(witnessed):
    lake, witness_dir = witnessed
    path = _witness_file(lake, witness_dir)
    _rewrite_witness(path, lambda lines: lines + lines[-3:])  # two writers witnessed the same entries
    assert verify(lake, witness=witness_dir).ok

    _rewrite_witness(path, lambda lines: lines + [dict(lines[3], entry_hash="e" * 64)])
    report = verify(lake, witness=witness_dir)
    assert not report.ok and "2 different hashes for seq 4" in _reasons(report)


def test_a_ledger_longer_than_its_witness_is_only_a_note(witnessed):
    lake, witness_dir = witnessed
    _publish(lake, "2024-06", witness=None)  # appended by a process that does not know the witness
    report = verify(lake, witness=witness_dir)
    assert report.ok, report.summary()
    assert report.entries == 9 and report.witnessed_seq == 7
    assert any("seq 8..9 are not witnessed yet" in n for n in report.notes)
    _publish(lake, "2024-07", witness=witness_dir)  # the next witnessed append catches the witness up
    assert verify(lake, witness=witness_dir).witnessed_seq == 11


@pytest.mark.parametrize("case", ["empty_dir", "no_such_path", "other_ledger_file", "malformed", "empty_file"])
def test_a_missing_or_malformed_witness_fails(witnessed, tmp_path, case):
    lake, witness_dir = witnessed
    path = _witness_file(lake, witness_dir)
    if case == "empty_dir":
        target = tmp_path / "elsewhere"
        target.mkdir()
        expected = "never witnessed there"
    elif case == "no_such_path":
        target, expected = tmp_path / "nowhere", "does not exist"
    elif case == "other_ledger_file":
        target = tmp_path / "00000000-0000-0000-0000-000000000000.jsonl"
        shutil.copy(path, target)
        expected = "not this one"
    elif case == "malformed":
        with open(path, "a") as handle:
            handle.write('{"seq": "eight"}\n')
        target, expected = witness_dir, "is not a witness record"
    else:
        path.write_text("")
        target, expected = witness_dir, "witnesses no entry"
    report = verify(lake, witness=target)
    assert not report.ok and expected in _reasons(report), report.summary()


def test_a_torn_last_witness_line_is_a_note_and_the_next_append_starts_a_new_line(witnessed):
    lake, witness_dir = witnessed
    path = _witness_file(lake, witness_dir)
    with open(path, "a") as handle:
        handle.write('{"entry_hash":"ab')  # an append interrupted mid-line
    report = verify(lake, witness=witness_dir)
    assert report.ok and any("interrupted" in n for n in report.notes), report.summary()
    _publish(lake, "2024-06", witness_dir)
    assert parse_witness(path).lines[-1].seq == 9  # not glued to the torn fragment
    report = verify(lake, witness=witness_dir)
    assert not report.ok and "line 8 is not a witness record" in _reasons(report)  # an edit now, not a tear


def test_a_recreated_ledger_has_no_witness_file(witnessed):
    lake, witness_dir = witnessed
    records = [e.record() for e in Ledger.of_lake(lake).read()[0]]
    shutil.rmtree(Lake(lake).ledger)
    ledger = Ledger(Lake(lake).ledger)
    for record in records:  # the same entries re-appended: a new Delta table id
        entries, version = ledger.read()
        ledger._append(entries, version, {k: v for k, v in record.items() if k in COLUMNS})
    report = verify(lake, witness=witness_dir)
    assert not report.ok and "recreated" in _reasons(report)


def test_an_append_that_lost_a_commit_race_leaves_a_note_not_a_problem(tmp_path):
    ledger = Ledger(tmp_path / "ledger", witness=tmp_path / "witness")
    ledger.record_policy(policy(), "first caps")
    stale = ledger.read()
    ledger.record_policy(policy(CAPS.model_copy(update={"rho_lifetime": 3.0})), "raised")
    with pytest.raises(_Conflict):  # what a losing writer sees: its commit conflicts, its file stays
        ledger._append(*stale, policy().draft("lost"))
    report = verify(tmp_path, witness=tmp_path / "witness")
    assert report.ok, report.summary()
    assert len(report.unreferenced_files) == 1 and any("lost a commit race" in n for n in report.notes)


def test_adds_kept_only_in_a_checkpoint_count_as_referenced(witnessed):
    from deltalake import DeltaTable

    lake, witness_dir = witnessed
    table = Lake(lake).ledger
    DeltaTable(str(table)).create_checkpoint()
    assert verify(lake, witness=witness_dir).ok
    referenced, unreadable = _referenced(table)
    first = next(json.loads(raw)["add"]["path"] for raw in _commits(lake)[0].read_text().splitlines()
                 if '"add"' in raw)
    _commits(lake)[0].unlink()  # log clean-up removed the commit: the checkpoint still names its file
    assert first in _referenced(table)[0] and not unreadable and len(referenced) == 7


def test_the_cli_uses_the_witness_the_agreement_names(witnessed, tmp_path):
    from click.testing import CliRunner

    from agreement_helpers import make_agreement
    from mobility.cli import main
    from mobility.config import load_agreement

    lake, witness_dir = witnessed
    agreement_file = make_agreement(tmp_path, agreement_id="PHL-DEMO", ledger_witness=str(witness_dir),
                                    budget=CAPS.recorded())
    assert load_agreement(agreement_file).ledger_witness == witness_dir

    runner = CliRunner()
    result = runner.invoke(main, ["ledger", "verify", "--lake", str(lake), "--agreement", str(agreement_file),
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert "using the witness agreement PHL-DEMO names" in result.stderr
    assert json.loads(result.stdout)["witnessed_seq"] == 7

    for commit in _commits(lake)[-2:]:
        commit.unlink()
    result = runner.invoke(main, ["ledger", "verify", "--lake", str(lake), "--witness", str(witness_dir)])
    assert result.exit_code == 1 and "shorter than its witness" in result.stdout


# ---- a ledger written before data months (format 1) -------------------------------------------------
LEGACY_SCHEMA = pa.schema([f for f in LEDGER_SCHEMA if f.name in LEGACY_COLUMNS])


def legacy_ledger(path: Path, periods=("2024-01", "2024-02"), rho: float = 0.1) -> list[dict]:
    """A ledger as the code before format 2 wrote it: its columns only, hashes without the new keys."""
    from deltalake import CommitProperties, write_deltalake

    rows, prev = [], GENESIS_HASH
    for seq, period in enumerate(periods, start=1):
        row = {"seq": seq, "entry_time": f"2025-0{seq}-01T09:30:12+00:00", "status": "charged",
               "release_id": f"remittances-{period}", "agreement_id": "PHL-DEMO", "period": period,
               "purpose": "remittance-corridors", "requested_by": "analyst", "query": "{}",
               "privacy_unit": "sender", "mechanism": "discrete_gaussian", "epsilon": 2.0, "delta": 1e-7,
               "rho": rho, "input_versions": "{}", "release_digest": "", "prev_hash": prev}
        row["entry_hash"] = prev = hash_record(row)
        commit = CommitProperties(custom_metadata={"mobility.seq": str(seq), "mobility.entry_hash": prev})
        write_deltalake(str(path), pa.Table.from_pylist([row], schema=LEGACY_SCHEMA),
                        mode="error" if seq == 1 else "append", commit_properties=commit,
                        configuration=TABLE_PROPERTIES if seq == 1 else None)
        rows.append(row)
    return rows


def _charge(release_id: str, months: tuple[str, ...], rho: float = 0.1, agreement_id: str = "PHL-DEMO",
            ) -> ChargeRequest:
    return ChargeRequest(release_id=release_id, agreement_id=agreement_id, period=months[0],
                         purpose="remittance-corridors", requested_by="analyst", query={"tables": ["corridors"]},
                         privacy_unit="sender", mechanism="discrete_gaussian", delta=1e-7, rho=rho,
                         epsilon=accountant.rho_to_epsilon(rho, 1e-7), input_versions={}, data_months=months)


def test_an_old_ledger_verifies_and_still_verifies_once_extended(tmp_path):
    from deltalake import DeltaTable

    rows = legacy_ledger(Lake(tmp_path).ledger)
    report = verify(tmp_path, caps={"PHL-DEMO": CAPS})
    assert report.ok and report.formats == [1], report.summary()
    assert any("belong to no population yet" in n for n in report.notes)
    assert any("records no policy" in n for n in report.notes)
    assert show(tmp_path)["unassigned"]["PHL-DEMO"]["charges"] == 2

    witness_dir = tmp_path / "witness"
    ledger = Ledger(Lake(tmp_path).ledger, witness=witness_dir)
    ledger.charge(_charge("remittances-2024-03", ("2024-03",)), policy())
    assert [f.name for f in DeltaTable(str(ledger.path)).schema().fields] == COLUMNS
    entries = ledger.read()[0]
    assert [e.status for e in entries] == ["charged", "charged", "policy", "charged"]
    assert [e.entry_hash for e in entries[:2]] == [r["entry_hash"] for r in rows]  # old hashes unchanged
    report = verify(tmp_path, witness=witness_dir, caps={"PHL-DEMO": CAPS})
    assert report.ok and report.formats == [1, 2] and report.witnessed_seq == 4, report.summary()
    assert not any("no population" in n for n in report.notes)  # the policy entry took them in
    budget = show(tmp_path)["budget"][CAPS.population]
    assert budget["lifetime"]["spent_rho"] == pytest.approx(0.3) and budget["caps_seq"] == 3
    assert set(budget["data_months"]) == {"2024-01", "2024-02", "2024-03"}

    # export: the format-2 columns are there, empty for the format-1 entries
    frame = pd.read_csv(io.StringIO(export(tmp_path, "csv")), keep_default_na=False)
    assert list(frame.columns) == COLUMNS
    assert all(frame.loc[frame["seq"] <= 2, c].eq("").all() for c in FORMAT2_COLUMNS)
    assert frame.loc[frame["seq"] == 4, "data_months"].item() == '["2024-03"]'
    records = json.loads(export(tmp_path, "json"))
    assert records[0]["data_months"] is None and all(hash_record(r) == r["entry_hash"] for r in records)


def test_charges_over_the_recorded_caps_are_named(tmp_path):
    ledger = Ledger(Lake(tmp_path).ledger)
    ledger.charge(_charge("a", ("2024-03", "2024-04"), rho=0.4), policy())
    ledger.charge(_charge("b", ("2024-04",), rho=0.4), policy())
    assert verify(tmp_path).ok
    # what an editor of the table would do: lower the recorded per-month cap, then rebuild the chain
    records = [e.record() for e in ledger.read()[0]]
    caps = json.loads(records[0]["caps"])
    caps["rho_per_data_month"] = 0.5
    records[0]["caps"] = json.dumps(caps, sort_keys=True, separators=(",", ":"))
    shutil.rmtree(ledger.path)
    for record in records:
        entries, version = ledger.read()
        ledger._append(entries, version, {k: v for k, v in record.items() if k in COLUMNS})
    report = verify(tmp_path)
    assert not report.ok and report.first_bad_release_id == "b"
    assert "data month 2024-04 cap" in report.reason and "spent rho=0.4" in report.reason


def test_agreement_caps_are_compared_with_the_recorded_ones(witnessed):
    lake, _ = witnessed
    assert verify(lake, caps={"PHL-DEMO": CAPS}).ok
    looser_file = CAPS.model_copy(update={"rho_lifetime": 5.0})  # the file allows more than was enforced
    report = verify(lake, caps={"PHL-DEMO": looser_file})
    assert report.ok and any("not tighter" in n for n in report.notes)
    tighter_file = CAPS.model_copy(update={"rho_per_data_month": 0.5})  # the ledger enforced looser caps
    report = verify(lake, caps={"PHL-DEMO": tighter_file})
    assert not report.ok and "rho_per_data_month 1 recorded" in report.reason
    other = CAPS.model_copy(update={"population": "someone-else"})
    report = verify(lake, caps={"PHL-DEMO": other})
    assert not report.ok and "names population 'someone-else'" in report.reason


# ---- property: what the API accepts verifies; any cut-off tail of commits does not ------------------
_TIGHT = BudgetCaps(population="prop-pop", rho_per_data_month=0.3, rho_lifetime=0.6, delta=1e-7)
_MONTHS = ["2024-01", "2024-02", "2024-03"]
_operation = st.one_of(
    st.tuples(st.just("charge"), st.sampled_from(["r1", "r2", "r3"]), st.sampled_from([0.05, 0.1, 0.2]),
              st.lists(st.sampled_from(_MONTHS), min_size=1, max_size=2, unique=True)),
    st.tuples(st.just("publish"), st.sampled_from(["p1", "p2"]), st.sampled_from([0.05, 0.2]),
              st.lists(st.sampled_from(_MONTHS), min_size=1, max_size=2, unique=True)),
    st.tuples(st.just("policy"), st.sampled_from(["A", "B"]), st.sampled_from([0.3, 0.4, 0.6]), st.just([])),
)


def _apply(lake: Path, witness_dir: Path, op) -> None:
    kind, name, amount, months = op
    if kind == "policy":
        caps = _TIGHT.model_copy(update={"rho_lifetime": amount * 2, "rho_per_data_month": amount})
        Ledger(Lake(lake).ledger, witness=witness_dir).record_policy(Policy(name, caps, "b" * 64), "changed")
        return
    caps = _TIGHT
    recorded = Ledger(Lake(lake).ledger).read()[0]
    latest = [e for e in recorded if e.status == "policy"]
    if latest:  # charge under the caps the population has now (a change of caps was recorded)
        caps = BudgetCaps.model_validate(json.loads(latest[-1].caps))
    if kind == "charge":
        Ledger(Lake(lake).ledger, witness=witness_dir).charge(
            _charge(name, tuple(sorted(months)), rho=amount, agreement_id="A"),
            Policy("A", caps, "b" * 64, witness_dir))
    else:
        publish(lake, request(name, agreement_id="A", period=min(months), data_months=tuple(sorted(months)),
                              rho=amount), {"flows": flows()}, Policy("A", caps, "b" * 64, witness_dir))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_operation, min_size=1, max_size=5), data=st.data())
def test_any_accepted_sequence_verifies_and_any_cut_tail_does_not(ops, data):
    with tempfile.TemporaryDirectory() as tmp:
        lake, witness_dir = Path(tmp) / "lake", Path(tmp) / "witness"
        for op in ops:
            try:
                _apply(lake, witness_dir, op)
            except (BudgetExceededError, ReleaseRefusedError, LedgerIntegrityError):
                pass  # refused: nothing was written
        commits = _commits(lake) if (Lake(lake).ledger / "_delta_log").is_dir() else []
        if not commits:
            return
        report = verify(lake, witness=witness_dir)
        assert report.ok, report.summary()
        cut = data.draw(st.integers(1, len(commits)), label="commits cut off the end")
        for commit in commits[-cut:]:
            commit.unlink()
        assert not verify(lake).ok  # the data files of the deleted commits are still there
        report = verify(lake, witness=witness_dir)
        assert not report.ok and ("shorter than its witness" in _reasons(report)
                                  or "no readable ledger table" in _reasons(report))
