"""The budget plan: rho per release that fits every cap for the monthly schedule, `mobility budget`,
`--rho plan`, and a replay of more than five years of the DAG's schedule against a real ledger."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from agreement_helpers import DEMO_AGREEMENT, make_agreement
from mobility.cli import main
from mobility.config import BudgetCaps, load_agreement
from mobility.errors import BudgetExceededError, ConfigError
from mobility.privacy_budget import accountant, accounts, blocks, publish
from mobility.privacy_budget import plan as P
from mobility.privacy_budget.boundary import ReleaseRequest
from mobility.privacy_budget.ledger import Ledger, Policy

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "infra" / "airflow" / "mobility_monthly.py"
POPULATION = "plan-test-subscribers"


def caps(**overrides) -> BudgetCaps:
    values = dict(population=POPULATION, rho_per_data_month=3.0, rho_lifetime=10.0, delta=1e-7)
    values.update(overrides)
    return BudgetCaps(**values)


def dag_module():
    """The DAG file, loaded with the stand-in airflow package of tests/infra (no Airflow needed)."""
    spec = importlib.util.spec_from_file_location("pb_plan_dag_stub", REPO / "tests" / "infra" / "dag_stub.py")
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    return stub.load_dag_module(DAG_FILE)[0]


def significant_digits(value: float) -> int:
    return len(Decimal(repr(value)).normalize().as_tuple().digits)


# ---- the rule -------------------------------------------------------------------------------------
def test_the_demo_agreement_plan():
    demo = load_agreement(DEMO_AGREEMENT)
    rates = P.rates(demo.budget)
    assert rates.flows_reads == 30 and rates.years == 5
    assert rates.binding == "lifetime"
    assert (rates.flows, rates.remittances) == (0.08333, 0.08333)
    assert P.planned_rho(demo, "flows") == 0.08333 and P.planned_rho(demo, "annual") == 0.0
    with pytest.raises(ValueError, match="no planned rho"):
        P.planned_rho(demo, "weekly")


@pytest.mark.parametrize("month_cap,lifetime,years,share", [
    (3.0, 10.0, 5, 0.5), (1.0, 2.0, 1, 0.5), (0.5, 100.0, 5, 0.8), (3.0, 10.0, 50, 0.3),
    (0.1, 0.1, 1, 0.01), (2.0, 6.0, 5, 0.5), (7e-6, 1e-3, 7, 0.6), (1.0, 1000.0, 2, 0.99),
])
def test_planned_rho_fits_both_caps_and_wastes_at_most_the_rounding(month_cap, lifetime, years, share):
    c = caps(rho_per_data_month=month_cap, rho_lifetime=lifetime, flows_share=share)
    r = P.rates(c, years)
    reads = P.max_flows_reads()
    assert accountant.fits(0.0, math.fsum([r.flows] * reads + [r.remittances]), c.rho_per_data_month)
    assert accountant.fits(0.0, math.fsum([r.flows, r.remittances] * (12 * years)), c.rho_lifetime)
    assert significant_digits(r.flows) <= 4 and significant_digits(r.remittances) <= 4
    # the tighter cap is filled up to the rounding to 4 significant digits
    assert r.flows >= share * r.total_per_month * (1 - 1e-3)
    assert r.remittances >= (1 - share) * r.total_per_month * (1 - 1e-3)
    assert r.total_per_month == pytest.approx(min(lifetime / (12 * years),
                                                  month_cap / (reads * share + (1 - share))))


def test_round_down_never_rounds_up():
    assert P.round_down(0.1) == 0.1 and P.round_down(1 / 6) == 0.1666 and P.round_down(123456.0) == 123400.0
    assert P.round_down(2.5e-7 * (1 + 1e-15)) == 2.5e-7
    for value in (1 / 3, 2 / 3, 0.0999999, 7.77777e-9, 9999.99):
        assert P.round_down(value) <= value
    with pytest.raises(ValueError):
        P.round_down(0.0)


def test_a_f_is_the_most_flows_releases_reading_one_data_month():
    """Brute force over a century of the schedule: the most flows releases that read one data month."""
    readers: Counter = Counter()
    first = blocks.month_index("2000-01")
    for index in range(first, first + 12 * 100):
        period = blocks.flows_period_for(blocks.month_at(index))
        readers.update(blocks.flow_data_months(period))
    inner = [readers[blocks.month_at(i)] for i in range(first + 48, first + 12 * 100 - 48)]
    assert max(inner) == P.max_flows_reads() == 30
    assert max(len(blocks.flow_data_months(blocks.month_at(i))) for i in range(first, first + 1200)) == 30


def test_rho_does_not_depend_on_the_start_month():
    demo = load_agreement(DEMO_AGREEMENT)
    seen = {(p.rates.flows, p.rates.remittances)
            for p in (P.plan(demo, start=f"{year}-{month:02d}") for year in (2024, 2026, 2031, 2100)
                      for month in (1, 2, 3, 7, 12))}
    assert seen == {(0.08333, 0.08333)}
    assert P.plan(demo).rates == P.plan(demo, start="1999-12").rates  # default start: this month


def test_the_plan_lays_the_schedule_over_n_years_and_fits():
    demo = load_agreement(DEMO_AGREEMENT)
    plan = P.plan(demo, 5, "2026-01")
    assert (plan.start, plan.end, plan.years) == ("2026-01", "2030-12", 5)
    assert len(plan.schedule) == 120 and plan.fits and plan.overruns == []
    flows = [s.period for s in plan.schedule if s.kind == P.FLOWS]
    assert flows[0] == "2024-08" and flows[-1] == "2029-07" and len(set(flows)) == 60
    # every data month the schedule reads, from the first flows release's lookback to the last payment month
    assert plan.months[0].month == blocks.shift_month("2024-08", -12) and plan.months[-1].month == "2030-11"
    assert max(m.flows_releases for m in plan.months) == 30 and max(m.remittance_releases for m in plan.months) == 1
    assert all(m.total <= m.cap and m.left == pytest.approx(m.cap - m.total) for m in plan.months)
    assert plan.worst.rho == pytest.approx(30 * 0.08333 + 0.08333)
    assert plan.lifetime_planned == pytest.approx(120 * 0.08333) and plan.lifetime_left == pytest.approx(0.0004)
    assert plan.further_months == 0  # a sixth year does not fit the lifetime cap
    # epsilon at the agreement's delta and at 1/n^2 for the stated population size
    flows_loss = plan.kinds[P.FLOWS]
    assert flows_loss.epsilon == pytest.approx(accountant.rho_to_epsilon(0.08333, 1e-7))
    assert flows_loss.epsilon_population == pytest.approx(accountant.rho_to_epsilon(0.08333, 1 / 2_000_000 ** 2))
    assert flows_loss.epsilon_population > flows_loss.epsilon
    assert plan.kinds[P.ANNUAL].rho == 0.0 and plan.kinds[P.ANNUAL].epsilon == 0.0
    text = plan.describe()
    for needle in ("rho=0.08333", "lifetime cap binds", "1/n^2", "2026-03", "every scheduled release fits"):
        assert needle in text, needle
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["releases"]["flows"]["rho"] == 0.08333 and data["fits"] is True
    assert len(data["data_months"]) == len(plan.months) and data["flows_lag_months"] == 17


def test_without_a_population_size_only_the_agreement_delta_is_given():
    plan = P.plan(caps(), 2, "2026-01")
    assert plan.agreement_id is None and plan.delta_population is None
    assert plan.kinds[P.FLOWS].epsilon_population is None and "1/n^2" not in plan.describe()


def test_more_years_mean_less_rho_and_the_month_cap_binds_for_short_plans():
    c = caps(rho_per_data_month=1.0, rho_lifetime=10.0)
    one, five, twenty = (P.rates(c, n) for n in (1, 5, 20))
    assert one.binding == "data month" and twenty.binding == "lifetime"
    assert one.flows >= five.flows >= twenty.flows


def test_bad_years_are_refused():
    for years in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="whole number of years"):
            P.rates(caps(), years)


def test_what_the_ledger_spent_is_counted_and_a_plan_that_no_longer_fits_says_which_caps(tmp_path):
    """Another agreement over the same population spent most of one data month and of the lifetime."""
    agreement = load_agreement(make_agreement(tmp_path, budget={**caps().model_dump(), "plan_years": 1}))
    other = Policy("other-agreement", agreement.budget, "b" * 64)
    request = ReleaseRequest(release_id="adhoc-2026-06", agreement_id="other-agreement", period="2026-06",
                             purpose="adhoc", requested_by="someone", query={"tables": ["t"]},
                             privacy_unit="subscription", rho=2.9, data_months=("2026-06",))
    publish(tmp_path / "lake", request, {"t": _table()}, other)
    entries = Ledger(tmp_path / "lake" / "ledger").read()[0]
    plan = P.plan(agreement, start="2026-01", ledger_entries=entries)
    assert plan.rates == P.rates(agreement.budget)  # what is spent never changes the rho
    assert plan.lifetime_spent == pytest.approx(2.9) and not plan.fits
    assert any(o.startswith("data month 2026-06") for o in plan.overruns)
    assert "DOES NOT FIT" in plan.describe()


# ---- the CLI and --rho plan -----------------------------------------------------------------------
def test_budget_plan_command(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["budget", "plan", "--agreement", str(DEMO_AGREEMENT), "--years", "5",
                               "--start", "2026-01"])
    assert out.exit_code == 0, out.output
    for needle in ("flows", "remittances", "annual", "rho=0.08333", "epsilon=", "at 1/n^2", "left",
                   "2026-03", "lifetime: spent 0 + planned 9.9996"):
        assert needle in out.output, needle
    data = json.loads(runner.invoke(main, ["budget", "plan", "--agreement", str(DEMO_AGREEMENT), "--json",
                                           "--start", "2026-01", "--years", "3"]).output)
    assert data["years"] == 3 and data["releases"]["flows"]["rho"] > 0.08333  # fewer years, more rho each
    other_years = runner.invoke(main, ["budget", "plan", "--agreement", str(DEMO_AGREEMENT), "--years", "3"])
    assert "--rho plan` uses the agreement's plan_years (5)" in other_years.output
    bad = runner.invoke(main, ["budget", "plan", "--agreement", str(DEMO_AGREEMENT), "--start", "2026-13"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output


def test_budget_plan_with_a_lake_exits_1_when_the_ledger_leaves_too_little(tmp_path):
    path = make_agreement(tmp_path, budget={**caps(rho_per_data_month=9.5).model_dump(), "plan_years": 1})
    agreement = load_agreement(path)
    request = ReleaseRequest(release_id="adhoc", agreement_id=agreement.agreement_id, period="2026-06",
                             purpose="migration-statistics", requested_by="someone", query={"tables": ["t"]},
                             privacy_unit="subscription", rho=9.0, data_months=("2026-06",))
    publish(tmp_path / "lake", request, {"t": _table()}, agreement)
    out = CliRunner().invoke(main, ["budget", "plan", "--agreement", str(path), "--start", "2026-01",
                                    "--lake", str(tmp_path / "lake")])
    assert out.exit_code == 1 and "DOES NOT FIT" in out.output and "lifetime: spent 9" in out.output


def test_budget_policy_command_records_caps_once_and_a_change(tmp_path):
    path = make_agreement(tmp_path, ledger_witness=str(tmp_path / "witness"))
    lake = tmp_path / "lake"
    runner = CliRunner()
    first = runner.invoke(main, ["budget", "policy", "--agreement", str(path), "--lake", str(lake),
                                 "--reason", "DSA-2026-01 signed"])
    assert first.exit_code == 0, first.output
    assert "recorded policy entry seq 1" in first.output and "rho_per_data_month=3.0" in first.output
    assert "witnessed in" in first.output
    again = runner.invoke(main, ["budget", "policy", "--agreement", str(path), "--lake", str(lake),
                                 "--reason", "again"])
    assert again.exit_code == 0 and "already recorded (seq 1)" in again.output
    changed = make_agreement(tmp_path, ledger_witness=str(tmp_path / "witness"),
                             budget={**load_agreement(path).budget.model_dump(), "rho_lifetime": 12.0})
    third = runner.invoke(main, ["budget", "policy", "--agreement", str(changed), "--lake", str(lake),
                                 "--reason", "board decision 2027-03"])
    assert third.exit_code == 0 and "seq 2" in third.output and "rho_lifetime=12.0" in third.output
    entries = Ledger(lake / "ledger").read()[0]
    assert [e.status for e in entries] == ["policy", "policy"]
    assert json.loads(entries[1].query) == {"reason": "board decision 2027-03"}
    blank = runner.invoke(main, ["budget", "policy", "--agreement", str(path), "--lake", str(lake),
                                 "--reason", " "])
    assert blank.exit_code != 0 and "reason" in blank.output


def test_release_commands_take_rho_plan(tmp_path):
    from mobility.cli import office, options

    rho = options.RHO
    assert rho.convert("plan", None, None) == "plan" and rho.convert("0.25", None, None) == 0.25
    with pytest.raises(click.BadParameter):
        rho.convert("lots", None, None)
    path = make_agreement(tmp_path)
    agreement, planned = office._planned(str(path), "plan", "flows")
    assert planned == P.planned_rho(agreement, "flows") and agreement.agreement_id == "test-phl"
    assert office._planned(str(path), 0.3, "remittances") == (str(path), 0.3)
    for command in ("flows", "remittances"):
        out = CliRunner().invoke(main, ["release", command, "--help"])
        assert "plan" in out.output


def test_release_ids_derive_from_the_resolved_rho(tmp_path):
    from mobility.release.flows import default_release_id

    agreement = load_agreement(make_agreement(tmp_path))
    rho = P.resolve_rho("plan", agreement, "flows")
    ids = {default_release_id(agreement.agreement_id, "2025-01", "migration-statistics", (), rho=P.resolve_rho(
        "plan", load_agreement(make_agreement(tmp_path)), "flows")) for _ in range(3)}
    assert len(ids) == 1 and ids == {default_release_id(agreement.agreement_id, "2025-01", "migration-statistics",
                                                        (), rho=rho)}
    assert P.resolve_rho(0.5, agreement, "flows") == 0.5 and P.resolve_rho(None, agreement, "flows") is None


def test_release_jobs_take_rho_plan(tmp_path):
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        spec = importlib.util.spec_from_file_location("pb_plan_release_job", REPO / "jobs" / "_release.py")
        job = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(job)
    finally:
        sys.path.remove(str(REPO / "jobs"))
    path = make_agreement(tmp_path)
    parser = job.release_parser("test")
    base = ["--agreement", str(path), "--lake", "L", "--period", "2025-01", "--purpose", "p", "--requested-by", "me"]
    args = parser.parse_args([*base, "--rho", "plan"])
    agreement, rho = job.planned_rho(args, "remittances")
    assert rho == P.planned_rho(agreement, "remittances") and isinstance(rho, float)
    numeric = parser.parse_args([*base, "--rho", "0.2"])
    assert job.planned_rho(numeric, "flows") == (str(path), 0.2)
    with pytest.raises(sys.modules["_entry"].UsageError, match="neither a number nor 'plan'"):
        parser.parse_args([*base, "--rho", "much"])


# ---- five years and more of the DAG's schedule against a real ledger -------------------------------
def _table() -> pd.DataFrame:
    frame = pd.DataFrame(list(itertools.product(["PHL", "SAU"], ["PHL", "SAU"])), columns=["origin", "destination"])
    frame["count"] = pd.Series([5, 1, 0, 3], dtype="int64")
    return frame


def replay(tmp_path, agreement_file: Path, extra_months: int) -> None:
    """Run the DAG's schedule for the agreement's plan_years and ``extra_months`` more against a real
    ledger, publishing tiny tables with the planned rho and the data months of blocks; check it all."""
    started = time.perf_counter()
    dag = dag_module()
    agreement = load_agreement(agreement_file)
    rho = {kind: P.planned_rho(agreement, kind) for kind in P.KINDS}
    lake = tmp_path / "lake"
    start, years = "2026-01", agreement.budget.plan_years
    published: dict[str, list[str]] = {P.FLOWS: [], P.REMITTANCES: []}
    refused: list[tuple[str, str, str]] = []
    for index in range(blocks.month_index(start), blocks.month_index(start) + 12 * years + extra_months):
        month = blocks.month_at(index)
        flows_period, remit_period = dag.flows_period(month), dag.remittances_period(month)
        for kind, period, months in ((P.FLOWS, flows_period, blocks.flow_data_months(flows_period)),
                                     (P.REMITTANCES, remit_period, blocks.payment_data_months(remit_period))):
            request = ReleaseRequest(
                release_id=f"{kind}-{agreement.agreement_id}-{period}", agreement_id=agreement.agreement_id,
                period=period, purpose="migration-statistics" if kind == P.FLOWS else "remittance-statistics",
                requested_by="nso-migration-unit", query={"kind": kind, "tables": ["t"]},
                privacy_unit="one subscription (SIM)", rho=rho[kind], data_months=tuple(months))
            try:
                result = publish(lake, request, {"t": _table()}, agreement)
            except BudgetExceededError as exc:
                refused.append((month, kind, str(exc)))
                continue
            assert not result.reused and result.charge.rho == rho[kind]
            published[kind].append(period)

    # the planned years: every month published, once, consecutive
    end = blocks.shift_month(start, 12 * years - 1)
    for kind, first in ((P.FLOWS, dag.flows_period(start)), (P.REMITTANCES, dag.remittances_period(start))):
        assert published[kind] == blocks.months_between(first, blocks.shift_month(first, 12 * years - 1)), kind
    # beyond them: the lifetime cap is spent, every release is refused and says so
    assert {month for month, _, _ in refused} == set(blocks.months_between(blocks.shift_month(end, 1),
                                                                          blocks.shift_month(end, extra_months)))
    assert all("lifetime" in message for _, _, message in refused)

    entries = Ledger(lake / "ledger").read()[0]
    charged = [e for e in entries if e.status == accounts.CHARGED]
    assert len(charged) == 24 * years and len({e.release_id for e in charged}) == 24 * years
    assert sum(e.status == accounts.PUBLISHED for e in entries) == 24 * years
    spent = accounts.spent(entries, agreement.budget.population)
    assert accountant.fits(0.0, spent.lifetime, agreement.budget.rho_lifetime)
    assert all(accountant.fits(0.0, rho_month, agreement.budget.rho_per_data_month)
               for rho_month in spent.by_month.values())
    # the plan predicted exactly what the ledger now holds, month by month
    plan = P.plan(agreement, start=start)
    assert {m.month: m.planned for m in plan.months} == pytest.approx(spent.by_month)
    assert plan.lifetime_planned == pytest.approx(spent.lifetime)
    # asked again with the ledger, the plan counts those releases once: all charged, nothing more to spend
    again = P.plan(agreement, start=start, ledger_entries=entries)
    assert again.already_charged == 24 * years and again.lifetime_planned == 0 and again.fits
    print(f"replayed {12 * years + extra_months} months, {len(entries)} ledger entries "
          f"in {time.perf_counter() - started:.1f} s")


@pytest.mark.slow
def test_six_years_of_the_monthly_schedule_against_a_real_ledger(tmp_path):
    """The demo's caps and plan_years (5): five years of the DAG's runs publish every crossing and payment
    month once, in order, within every cap; all through the sixth year the lifetime cap refuses."""
    path = make_agreement(tmp_path, ledger_witness=str(tmp_path / "witness"))
    assert load_agreement(path).budget.plan_years == 5
    replay(tmp_path, path, extra_months=12)


def test_a_one_year_plan_replayed_against_a_real_ledger(tmp_path):
    """The same replay, short enough for every run: a one-year plan that fills the lifetime cap exactly
    (rho 0.025 + 0.225 a month), then three refused months."""
    budget = {**load_agreement(DEMO_AGREEMENT).budget.model_dump(), "plan_years": 1, "rho_lifetime": 3.0,
              "rho_per_data_month": 3.0, "flows_share": 0.1}
    assert P.rates(BudgetCaps(**budget)).binding == "lifetime"
    replay(tmp_path, make_agreement(tmp_path, budget=budget), extra_months=3)
