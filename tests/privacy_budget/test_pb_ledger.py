"""Ledger charges: caps per calendar year and lifetime, idempotence, refusals write nothing, races."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from mobility.config import BudgetCaps
from mobility.errors import BudgetExceededError, ReleaseRefusedError
from mobility.privacy_budget import Ledger, verify
from mobility.privacy_budget.ledger import GENESIS_HASH, ChargeRequest, hash_record


def charge_request(release_id: str, rho: float = 0.1, period: str = "2024-05", **overrides) -> ChargeRequest:
    fields = dict(release_id=release_id, agreement_id="PHL-DEMO", period=period, purpose="migration-flows",
                  requested_by="analyst", query={"tables": ["flows"]}, privacy_unit="subscriber",
                  mechanism="discrete_gaussian", epsilon=2.0, delta=1e-7, rho=rho, input_versions={"office/x": 1})
    fields.update(overrides)
    return ChargeRequest(**fields)


CAPS = BudgetCaps(rho_per_year=0.3, rho_lifetime=0.5, delta=1e-7)


def test_charges_form_a_hash_chain(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    first = ledger.charge(charge_request("a"), CAPS)
    second = ledger.charge(charge_request("b"), CAPS)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.entry_hash
    assert second.entry_hash == hash_record(second.record())
    frame = ledger.entries()
    assert list(frame["seq"]) == [1, 2] and list(frame["release_id"]) == ["a", "b"]
    assert ledger.find("b") == second and ledger.find("missing") is None
    assert (tmp_path / "ledger.lock").exists()


def test_year_cap_uses_calendar_year_of_period_and_lifetime_spans_years(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("dec", rho=0.3, period="2023-12"), CAPS)
    ledger.charge(charge_request("jan", rho=0.15, period="2024-01"), CAPS)  # new year: fits
    assert ledger.spent("PHL-DEMO", 2023) == pytest.approx(0.3)
    assert ledger.spent("PHL-DEMO", 2024) == pytest.approx(0.15)
    assert ledger.spent("PHL-DEMO") == pytest.approx(0.45)
    assert ledger.spent("OTHER") == 0.0
    with pytest.raises(BudgetExceededError) as refusal:
        ledger.charge(charge_request("feb", rho=0.1, period="2024-02"), CAPS)  # 2024 ok, lifetime 0.55 > 0.5
    message = str(refusal.value)
    assert "lifetime cap" in message and "spent rho=0.45" in message and "requested rho=0.1" in message
    assert "remaining rho=0.05" in message and "epsilon=" in message and "delta=1e-07" in message


def test_refusal_names_the_year_and_writes_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a", rho=0.25), CAPS)
    _, version = ledger.read()
    with pytest.raises(BudgetExceededError, match=r"per-year cap for 2024.*remaining rho=0\.05"):
        ledger.charge(charge_request("b", rho=0.1), CAPS)
    entries, after = ledger.read()
    assert after == version and [e.release_id for e in entries] == ["a"]


def test_three_equal_charges_exactly_fill_a_cap(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    for name in "abc":
        ledger.charge(charge_request(name, rho=0.1), CAPS)
    with pytest.raises(BudgetExceededError):
        ledger.charge(charge_request("d", rho=1e-6), CAPS)


def test_recharging_a_release_id_returns_the_existing_entry(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    first = ledger.charge(charge_request("a"), CAPS)
    again = ledger.charge(charge_request("a", requested_by="someone else"), CAPS)
    assert again == first and len(ledger.entries()) == 1
    with pytest.raises(ReleaseRefusedError, match="different request.*rho"):
        ledger.charge(charge_request("a", rho=0.2), CAPS)
    with pytest.raises(ReleaseRefusedError, match="query"):
        ledger.charge(charge_request("a", query={"tables": ["stocks"]}), CAPS)


@pytest.mark.parametrize("field", ["rho", "epsilon"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf")])
def test_non_positive_budget_never_charged(tmp_path, field, value):
    ledger = Ledger(tmp_path / "ledger")
    with pytest.raises(ReleaseRefusedError):
        ledger.charge(charge_request("a", **{field: value}), CAPS)
    assert ledger.read() == ([], None)


def _race(ledger_path, release_id, barrier, results):
    from mobility.privacy_budget import Ledger as ChildLedger

    barrier.wait()
    try:
        entry = ChildLedger(ledger_path).charge(charge_request(release_id, rho=0.1), CAPS)
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
    assert sorted(seq for _, kind, seq in outcomes if kind == "charged") == [1, 2, 3]
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.spent("PHL-DEMO", 2024) == pytest.approx(0.3)
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
                charge_request(f"w{worker}-r{r}", rho=0.1), CAPS)
            results.put((r, worker, "charged", entry.seq))
        except BudgetExceededError as exc:
            results.put((r, worker, "refused", str(exc)))
        except Exception as exc:  # surfaces in the parent's assertion
            results.put((r, worker, "error", repr(exc)))


def test_separate_processes_on_a_shared_lake_never_overspend_a_cap(tmp_path, monkeypatch):
    # MOBILITY_SHARED_LAKE=1: no host lock at all, as for writers on several hosts; only the commit
    # against the version each cap check read keeps the cap (3 charges of 0.1 fit the 0.3 year cap)
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
        assert sorted(seq for _, _, kind, seq in mine if kind == "charged") == [1, 2, 3]  # no seq twice
        ledger = Ledger(tmp_path / f"round-{r}" / "ledger")
        assert not ledger.lock_path.exists()  # no host lock was taken
        assert ledger.spent("PHL-DEMO", 2024) == pytest.approx(0.3)
        assert ledger.charge(charge_request("after", agreement_id="OTHER"), CAPS).seq == 4  # still appendable
        report = verify(tmp_path / f"round-{r}", caps={"PHL-DEMO": CAPS, "OTHER": CAPS})
        assert report.ok and report.entries == 4, report.summary()


def test_a_cap_check_on_a_stale_read_is_made_again_not_committed(tmp_path, monkeypatch):
    # another writer commits between this writer's read and its commit: the commit conflicts, the
    # ledger is read again and the cap checked again, which now refuses
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a", rho=0.15), CAPS)
    stale = ledger.read()
    Ledger(tmp_path / "ledger").charge(charge_request("b", rho=0.1), CAPS)  # spent 0.25 of 0.3
    reads, real = iter([stale]), Ledger.read
    monkeypatch.setattr(Ledger, "read", lambda self: next(reads, None) or real(self))
    with pytest.raises(BudgetExceededError, match="per-year cap for 2024"):
        ledger.charge(charge_request("c", rho=0.1), CAPS)  # fits what it first read (0.15), not the truth (0.25)
    monkeypatch.setattr(Ledger, "read", real)
    assert [e.release_id for e in ledger.read()[0]] == ["a", "b"]
    assert verify(tmp_path, caps={"PHL-DEMO": CAPS}).ok


def test_without_the_shared_setting_the_host_lock_is_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.delenv("MOBILITY_SHARED_LAKE", raising=False)
    ledger = Ledger(tmp_path / "ledger")
    ledger.charge(charge_request("a"), CAPS)
    assert not ledger.shared and ledger.lock_path.exists()
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")
    assert Ledger(tmp_path / "ledger").shared
