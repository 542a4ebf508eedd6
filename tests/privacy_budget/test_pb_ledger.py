"""Ledger charges: caps per data month and lifetime of a population, caps recorded in the ledger,
idempotence, refusals write nothing, races across processes with and without a host lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobility.config import BudgetCaps
from mobility.errors import BudgetExceededError, ReleaseRefusedError
from mobility.privacy_budget import Ledger, accountant, accounts, verify
from mobility.privacy_budget.ledger import GENESIS_HASH, ChargeRequest, Policy, hash_record


def charge_request(release_id: str, rho: float = 0.1, period: str = "2024-05", months=None,
                   **overrides) -> ChargeRequest:
    fields = dict(release_id=release_id, agreement_id="PHL-DEMO", period=period, purpose="migration-flows",
                  requested_by="analyst", query={"tables": ["flows"]}, privacy_unit="subscriber",
                  mechanism="discrete_gaussian", epsilon=_epsilon_of(rho), delta=1e-7,
                  rho=rho, input_versions={"office/x": 1},
                  data_months=tuple(months if months is not None else (period,)))
    fields.update(overrides)
    return ChargeRequest(**fields)


def _epsilon_of(rho: float) -> float:
    """The epsilon a discrete Gaussian of ``rho`` is charged at (any positive value for a refused rho)."""
    return accountant.bun_steinke_epsilon(rho, 1e-7) if 0 < rho < float("inf") else 1.0


CAPS = BudgetCaps(population="phl-subscribers", rho_per_data_month=0.3, rho_lifetime=0.5, delta=1e-7)
POLICY = Policy("PHL-DEMO", CAPS, "a" * 64)


def test_charges_form_a_hash_chain_after_the_recorded_policy(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    first = ledger.charge(charge_request("a"), POLICY)
    second = ledger.charge(charge_request("b"), POLICY)
    assert (first.seq, second.seq) == (2, 3)
    entries, _ = ledger.read()
    policy = entries[0]
    assert policy.status == "policy" and policy.prev_hash == GENESIS_HASH and first.prev_hash == policy.entry_hash
    assert json.loads(policy.caps) == CAPS.recorded() and policy.agreement_sha256 == "a" * 64
    assert second.prev_hash == first.entry_hash and second.entry_hash == hash_record(second.record())
    assert first.population == "phl-subscribers" and json.loads(first.data_months) == ["2024-05"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d\+00:00", first.entry_time)  # to the minute
    frame = ledger.entries()
    assert list(frame["seq"]) == [1, 2, 3] and list(frame["release_id"]) == ["", "a", "b"]
    assert ledger.find("b") == second and ledger.find("missing") is None
    assert (tmp_path / "ledger.lock").exists()


def test_each_data_month_has_its_own_cap_and_the_lifetime_spans_them(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("dec", rho=0.3, months=["2023-12"]), POLICY)
    ledger.charge(charge_request("jan", rho=0.15, months=["2024-01", "2024-02"]), POLICY)  # other months: fits
    spent = ledger.spent_by("phl-subscribers")
    assert spent.by_month == pytest.approx({"2023-12": 0.3, "2024-01": 0.15, "2024-02": 0.15})
    assert spent.lifetime == pytest.approx(0.45) and ledger.spent("PHL-DEMO") == pytest.approx(0.45)
    assert ledger.spent("OTHER") == 0.0
    with pytest.raises(BudgetExceededError) as refusal:
        ledger.charge(charge_request("feb", rho=0.1, months=["2024-03"]), POLICY)  # month ok, lifetime 0.55 > 0.5
    message = str(refusal.value)
    assert "lifetime cap of population 'phl-subscribers'" in message
    assert "spent rho=0.45" in message and "asked rho=0.1" in message
    assert "left rho=0.05" in message and "epsilon=" in message and "delta=1e-07" in message


def test_refusal_names_the_data_month_and_writes_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a", rho=0.25, months=["2024-04", "2024-05"]), POLICY)
    _, version = ledger.read()
    with pytest.raises(BudgetExceededError, match=r"data month 2024-05 cap.*spent rho=0\.25, asked rho=0\.1, "
                                                  r"left rho=0\.05"):
        ledger.charge(charge_request("b", rho=0.1, months=["2024-05", "2024-06"]), POLICY)
    entries, after = ledger.read()
    assert after == version and [e.release_id for e in entries] == ["", "a"]
    # months the first charge did not read still have their whole cap
    assert ledger.charge(charge_request("c", rho=0.2, months=["2024-06"]), POLICY).seq == 3


def test_three_equal_charges_exactly_fill_a_cap(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    for name in "abc":
        ledger.charge(charge_request(name, rho=0.1), POLICY)
    with pytest.raises(BudgetExceededError, match="data month 2024-05"):
        ledger.charge(charge_request("d", rho=1e-6), POLICY)


def test_agreements_naming_one_population_share_its_caps(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a", rho=0.3), POLICY)
    renewed = Policy("PHL-DEMO-2027", CAPS, "b" * 64)  # a new agreement id over the same subscribers
    with pytest.raises(BudgetExceededError, match="data month 2024-05"):
        ledger.charge(charge_request("b", rho=0.1, agreement_id="PHL-DEMO-2027"), renewed)
    entry = ledger.charge(charge_request("c", rho=0.2, months=["2024-06"], agreement_id="PHL-DEMO-2027"), renewed)
    assert ledger.spent_by("phl-subscribers").lifetime == pytest.approx(0.5)
    statuses = [(e.status, e.agreement_id) for e in ledger.read()[0]]
    assert statuses == [("policy", "PHL-DEMO"), ("charged", "PHL-DEMO"), ("policy", "PHL-DEMO-2027"),
                        ("charged", "PHL-DEMO-2027")] and entry.seq == 4
    other = Policy("KEN-DEMO", BudgetCaps(population="ken-subscribers", rho_per_data_month=0.3,
                                          rho_lifetime=0.5), "c" * 64)
    assert ledger.charge(charge_request("d", rho=0.3, agreement_id="KEN-DEMO"), other).population == "ken-subscribers"


def test_changed_caps_are_refused_until_recorded_as_a_policy_entry(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a", rho=0.3), POLICY)
    raised = Policy("PHL-DEMO", CAPS.model_copy(update={"rho_per_data_month": 0.4}), "d" * 64)
    with pytest.raises(ReleaseRefusedError, match=r"differ from those recorded.*seq 1.*nothing was charged") as refusal:
        ledger.charge(charge_request("b", rho=0.1), raised)
    assert "mobility budget policy" in str(refusal.value)
    assert len(ledger.read()[0]) == 2
    with pytest.raises(ReleaseRefusedError, match="reason"):
        ledger.record_policy(raised, "  ")
    recorded = ledger.record_policy(raised, "board decision 2026-12: month cap 0.4")
    assert recorded is not None and recorded.seq == 3 and json.loads(recorded.caps)["rho_per_data_month"] == 0.4
    assert json.loads(recorded.query)["reason"].startswith("board decision")
    assert ledger.record_policy(raised, "again") is None  # already recorded: nothing appended
    assert ledger.charge(charge_request("b", rho=0.1), raised).seq == 4
    with pytest.raises(ReleaseRefusedError, match="differ from those recorded"):  # the old file is refused now
        ledger.charge(charge_request("c", rho=0.05, months=["2024-07"]), POLICY)
    moved = Policy("PHL-DEMO", CAPS.model_copy(update={"population": "elsewhere"}), "e" * 64)
    with pytest.raises(ReleaseRefusedError, match="records it under 'phl-subscribers'"):
        ledger.charge(charge_request("d", rho=0.05), moved)


def test_a_release_must_declare_months_of_its_own_agreement(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    with pytest.raises(ReleaseRefusedError, match="declares no data months"):
        ledger.charge(charge_request("a", months=()), POLICY)
    with pytest.raises(ReleaseRefusedError, match="data month"):
        ledger.charge(charge_request("a", months=["2024-13"]), POLICY)
    with pytest.raises(ReleaseRefusedError, match="charged under agreement 'PHL-DEMO'"):
        ledger.charge(charge_request("a", agreement_id="OTHER"), POLICY)
    assert ledger.read() == ([], None)


def test_recharging_a_release_id_returns_the_existing_entry(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    first = ledger.charge(charge_request("a"), POLICY)
    again = ledger.charge(charge_request("a", requested_by="someone else"), POLICY)
    assert again == first and len(ledger.entries()) == 2
    with pytest.raises(ReleaseRefusedError, match="different request.*rho"):
        ledger.charge(charge_request("a", rho=0.2), POLICY)
    with pytest.raises(ReleaseRefusedError, match="query"):
        ledger.charge(charge_request("a", query={"tables": ["stocks"]}), POLICY)
    with pytest.raises(ReleaseRefusedError, match="data_months"):
        ledger.charge(charge_request("a", months=["2024-06"]), POLICY)


_MONTHS = [f"2024-{m:02d}" for m in range(1, 7)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sets(st.sampled_from(_MONTHS), min_size=1, max_size=3),
                          st.sampled_from([0.05, 0.1, 0.15, 0.2])), min_size=1, max_size=10))
def test_no_sequence_of_charges_passes_a_cap(tmp_path_factory, charges):
    ledger = Ledger(tmp_path_factory.mktemp("ledger") / "ledger")
    expected_month: dict[str, float] = {}
    for i, (months, rho) in enumerate(charges):
        fits = all(expected_month.get(m, 0.0) + rho <= CAPS.rho_per_data_month + 1e-9 for m in months) \
            and ledger.spent_by(CAPS.population).lifetime + rho <= CAPS.rho_lifetime + 1e-9
        try:
            ledger.charge(charge_request(f"r{i}", rho=rho, months=sorted(months)), POLICY)
            assert fits, (months, rho, expected_month)
            for m in months:
                expected_month[m] = expected_month.get(m, 0.0) + rho
        except BudgetExceededError:
            assert not fits, (months, rho, expected_month)
    spent = accounts.spent(ledger.read()[0], CAPS.population)
    assert all(v <= CAPS.rho_per_data_month * (1 + 1e-9) for v in spent.by_month.values())
    assert spent.lifetime <= CAPS.rho_lifetime * (1 + 1e-9)
    assert spent.by_month == pytest.approx({m: v for m, v in expected_month.items()})


@pytest.mark.parametrize("field", ["rho", "epsilon"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf")])
def test_non_positive_budget_never_charged(tmp_path, field, value):
    ledger = Ledger(tmp_path / "ledger")
    with pytest.raises(ReleaseRefusedError):
        ledger.charge(charge_request("a", **{field: value}), POLICY)
    assert ledger.read() == ([], None)


def _race(ledger_path, release_id, barrier, results):
    from mobility.privacy_budget import Ledger as ChildLedger

    barrier.wait()
    try:
        entry = ChildLedger(ledger_path).charge(charge_request(release_id, rho=0.1), POLICY)
        results.put((release_id, "charged", entry.seq))
    except BudgetExceededError as exc:
        results.put((release_id, "refused", str(exc)))
    except Exception as exc:  # surfaces in the parent's assertion
        results.put((release_id, "error", repr(exc)))


def test_racing_processes_never_exceed_a_cap(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    workers = [ctx.Process(target=_race, args=(tmp_path / "ledger", f"race-{i}", barrier, results))
               for i in range(8)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=180) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    kinds = sorted(kind for _, kind, _ in outcomes)
    assert kinds == ["charged"] * 3 + ["refused"] * 5, outcomes
    assert sorted(seq for _, kind, seq in outcomes if kind == "charged") == [2, 3, 4]  # seq 1: the policy
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.spent_by(CAPS.population).month("2024-05") == pytest.approx(0.3)
    report = verify(tmp_path, caps={"PHL-DEMO": CAPS})
    assert report.ok, report.summary()


def _race_rounds(ledger_root, worker, rounds, barrier, results):
    """One process of several, with no lock shared with the others: each round, charge the same
    fresh ledger at the same moment as they do."""
    import os

    from mobility.privacy_budget import Ledger as ChildLedger

    assert os.environ["MOBILITY_SHARED_LAKE"] == "1"
    for r in range(rounds):
        barrier.wait()
        try:
            entry = ChildLedger(ledger_root / f"round-{r}" / "ledger").charge(
                charge_request(f"w{worker}-r{r}", rho=0.1), POLICY)
            results.put((r, worker, "charged", entry.seq))
        except BudgetExceededError as exc:
            results.put((r, worker, "refused", str(exc)))
        except Exception as exc:  # surfaces in the parent's assertion
            results.put((r, worker, "error", repr(exc)))


def test_separate_processes_on_a_shared_lake_never_overspend_a_cap(tmp_path, monkeypatch):
    # MOBILITY_SHARED_LAKE=1: no host lock at all, as for writers on several hosts; only the commit
    # against the version each cap check read keeps the cap (3 charges of 0.1 fit the 0.3 month cap)
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")
    workers, rounds = 6, 8
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_race_rounds, args=(tmp_path, w, rounds, barrier, results)) for w in range(workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in range(workers * rounds)]
    for p in procs:
        p.join(timeout=60)
    assert not [o for o in outcomes if o[2] == "error"], outcomes
    for r in range(rounds):
        mine = [o for o in outcomes if o[0] == r]
        assert sorted(kind for _, _, kind, _ in mine) == ["charged"] * 3 + ["refused"] * (workers - 3), mine
        assert sorted(seq for _, _, kind, seq in mine if kind == "charged") == [2, 3, 4]  # no seq twice
        ledger = Ledger(tmp_path / f"round-{r}" / "ledger")
        assert not ledger.lock_path.exists()  # no host lock was taken
        assert ledger.spent_by(CAPS.population).month("2024-05") == pytest.approx(0.3)
        assert ledger.charge(charge_request("after", months=["2024-06"]), POLICY).seq == 5  # still appendable
        report = verify(tmp_path / f"round-{r}", caps={"PHL-DEMO": CAPS})
        assert report.ok and report.entries == 5, report.summary()


def test_a_cap_check_on_a_stale_read_is_made_again_not_committed(tmp_path, monkeypatch):
    # another writer commits between this writer's read and its commit: the commit conflicts, the
    # ledger is read again and the cap checked again, which now refuses
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a", rho=0.15), POLICY)
    stale = ledger.read()
    Ledger(tmp_path / "ledger").charge(charge_request("b", rho=0.1), POLICY)  # spent 0.25 of 0.3
    reads, real = iter([stale]), Ledger.read
    monkeypatch.setattr(Ledger, "read", lambda self: next(reads, None) or real(self))
    with pytest.raises(BudgetExceededError, match="data month 2024-05 cap"):
        ledger.charge(charge_request("c", rho=0.1), POLICY)  # fits what it first read (0.15), not the truth (0.25)
    monkeypatch.setattr(Ledger, "read", real)
    assert [e.release_id for e in ledger.read()[0]] == ["", "a", "b"]
    assert verify(tmp_path, caps={"PHL-DEMO": CAPS}).ok


def test_without_the_shared_setting_the_host_lock_is_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.delenv("MOBILITY_SHARED_LAKE", raising=False)
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a"), POLICY)
    assert not ledger.shared and ledger.lock_path.exists()
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")
    assert Ledger(tmp_path / "ledger").shared


def test_an_older_ledger_is_read_by_data_month_and_extended_in_place(tmp_path):
    from pb_helpers import write_format1_ledger

    flows_query = {"query": {"statistic": "long-term residence changes (12/16-month rule) by crossing month",
                             "finality": "data_end 2025-10-01 >= last day of the period + 486 days"}}
    write_format1_ledger(tmp_path / "ledger", [("flows-old", "2024-05", 0.2, flows_query),
                                                ("remit-old", "2024-06", 0.1, {"query": {"measures": ["x"]}})])
    ledger = Ledger(tmp_path / "ledger")
    old, _ = ledger.read()
    assert [e.population for e in old] == [None, None]
    assert old[0].months[0] == "2023-05" and old[0].months[-1] == "2025-09" and old[1].months == ["2024-06"]
    assert accounts.unassigned(old) == old  # no policy names their population yet
    # the first format-2 charge records the policy, which claims the agreement's older charges
    with pytest.raises(BudgetExceededError, match=r"data month 2024-06 cap.*spent rho=0\.3"):
        ledger.charge(charge_request("new", rho=0.05, months=["2024-06"]), POLICY)
    assert ledger.charge(charge_request("new", rho=0.15, months=["2026-01"]), POLICY).seq == 4
    entries, _ = ledger.read()
    assert [e.status for e in entries] == ["charged", "charged", "policy", "charged"]
    assert all(e.computed_hash() == e.entry_hash for e in entries)  # format-1 hashes unchanged
    assert ledger.spent_by(CAPS.population).lifetime == pytest.approx(0.45)
    with pytest.raises(BudgetExceededError, match="lifetime cap"):
        ledger.charge(charge_request("more", rho=0.1, months=["2026-02"]), POLICY)


def test_a_charge_whose_epsilon_does_not_follow_from_its_rho_is_refused(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    with pytest.raises(ReleaseRefusedError, match="Bun-Steinke bound"):  # rho 0.001 at delta 1e-7: epsilon < 0.26
        ledger.charge(charge_request("a", rho=0.001, epsilon=2.0), POLICY)
    with pytest.raises(ReleaseRefusedError, match="epsilon\\^2/2"):
        ledger.charge(charge_request("b", rho=0.5, epsilon=0.5, delta=0.0, mechanism="discrete_laplace"), POLICY)
    assert ledger.read() == ([], None)


def test_an_unwritable_witness_refuses_before_anything_is_charged(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the witness directory should be")
    ledger = Ledger(tmp_path / "ledger", witness=blocker / "witness")
    with pytest.raises(Exception, match="witness directory cannot be created"):
        ledger.charge(charge_request("a"), POLICY)
    assert ledger.read() == ([], None)
