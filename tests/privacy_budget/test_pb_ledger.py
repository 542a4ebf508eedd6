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
