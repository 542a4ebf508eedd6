"""OpenDP mechanisms: losses match the budget, outputs are integers, the 95% bound covers ~95%."""

from __future__ import annotations

import pytest

from mobility.privacy_budget import accountant
from mobility.privacy_budget.mechanisms import (
    DISCRETE_GAUSSIAN,
    DISCRETE_LAPLACE,
    count_measurement,
    error_bound_95,
    plan_noise,
)


@pytest.mark.parametrize("budget", [{"rho": 0.02}, {"rho": 0.5}, {"epsilon": 0.3}, {"epsilon": 2.0}])
def test_opendp_privacy_map_equals_charged_budget(budget):
    plan = plan_noise(shares={"flows": 0.75, "stocks": 0.25}, sensitivity=1, delta=1e-7, **budget)
    for table in plan.tables.values():
        # rebuild the measurement independently and ask OpenDP for its loss
        loss = count_measurement(plan.mechanism, table.scale).map(1)
        expected = table.epsilon if plan.mechanism == DISCRETE_LAPLACE else table.rho
        assert loss == pytest.approx(expected, rel=1e-6) and loss <= expected * (1 + 1e-12)
    if "rho" in budget:
        assert plan.mechanism == DISCRETE_GAUSSIAN and plan.rho == budget["rho"]
        assert plan.epsilon == pytest.approx(accountant.rho_to_epsilon(budget["rho"], 1e-7))
    else:
        assert plan.mechanism == DISCRETE_LAPLACE and plan.delta == 0 and plan.epsilon == budget["epsilon"]
        # per-table zCDP adds up: (0.75 eps)^2/2 + (0.25 eps)^2/2
        eps = budget["epsilon"]
        assert plan.rho == pytest.approx(((0.75 * eps) ** 2 + (0.25 * eps) ** 2) / 2, rel=1e-9)


def test_equal_split_matches_joint_vector_sensitivity():
    # two tables at eps/2 each == one concatenated vector with L1 sensitivity 2 at eps
    split = plan_noise(shares={"a": 0.5, "b": 0.5}, sensitivity=1, delta=1e-7, epsilon=1.0)
    joint = plan_noise(shares={"ab": 1.0}, sensitivity=2, delta=1e-7, epsilon=1.0)
    assert split.tables["a"].scale == pytest.approx(joint.tables["ab"].scale, rel=1e-6)


def test_more_contributions_or_less_budget_means_more_noise():
    base = plan_noise(shares={"t": 1.0}, sensitivity=1, delta=1e-7, rho=0.1).tables["t"]
    assert plan_noise(shares={"t": 1.0}, sensitivity=3, delta=1e-7, rho=0.1).tables["t"].scale > base.scale
    assert plan_noise(shares={"t": 1.0}, sensitivity=1, delta=1e-7, rho=0.01).tables["t"].scale > base.scale
    assert base.error_bound_95 >= 1


def test_noise_is_integer_and_varies():
    table = plan_noise(shares={"t": 1.0}, sensitivity=1, delta=1e-7, rho=0.01).tables["t"]
    draws = [table.draw([10] * 20) for _ in range(3)]
    assert all(isinstance(v, int) for d in draws for v in d)
    assert draws[0] != draws[1] or draws[1] != draws[2]


@pytest.mark.parametrize("budget", [{"rho": 0.0}, {"rho": -0.1}, {"epsilon": 0.0}, {"epsilon": float("nan")},
                                    {"rho": 0.1, "epsilon": 0.1}, {}])
def test_invalid_budgets_are_refused(budget):
    with pytest.raises(ValueError):
        plan_noise(shares={"t": 1.0}, sensitivity=1, delta=1e-7, **budget)


def test_shares_must_be_positive_and_sum_to_one():
    with pytest.raises(ValueError):
        plan_noise(shares={"a": 0.5, "b": 0.4}, sensitivity=1, delta=1e-7, rho=0.1)
    with pytest.raises(ValueError):
        plan_noise(shares={"a": 1.0, "b": 0.0}, sensitivity=1, delta=1e-7, rho=0.1)


@pytest.mark.parametrize("budget", [{"rho": 1 / 800}, {"epsilon": 0.1}])
def test_error_bound_covers_about_95_percent(budget):
    # sigma = 20 (Gaussian) and b = 10 (Laplace): fine enough for the discrete steps to sit near 95%
    table = plan_noise(shares={"t": 1.0}, sensitivity=1, delta=1e-7, **budget).tables["t"]
    exact = [0, 3, 50, 1000, 7]
    inside = total = 0
    for _ in range(2000):
        for noisy, true in zip(table.draw(exact), exact):
            inside += abs(noisy - true) <= table.error_bound_95
            total += 1
    assert 0.93 <= inside / total <= 0.97


def test_error_bound_is_one_below_opendp_accuracy():
    bound, accuracy = error_bound_95(DISCRETE_GAUSSIAN, 3.0)
    assert bound < accuracy <= bound + 1


@pytest.mark.parametrize("budget", [{"rho": 0.5}, {"rho": 0.02}, {"epsilon": 1.0}])
def test_joint_measurement_privacy_map_equals_the_charge(budget):
    """The flows plan: international alone, the two subnational tables as ONE OpenDP measurement over
    their concatenation at d_in 1. OpenDP's own map of each measurement, added, is what is charged."""
    from mobility.aggregate.flows import GROUPS, SHARES

    plan = plan_noise(shares=SHARES, sensitivity=1, delta=1e-7, groups=GROUPS, **budget)
    units = plan.measurements()
    assert sorted(units) == ["international", "subnational"]
    joint = units["subnational"]
    assert joint.group_tables == ("emigrants_by_origin", "immigrants_by_destination")
    # both subnational tables share one measurement, scale and share: charged once, not twice
    assert plan.tables["emigrants_by_origin"].measurement is plan.tables["immigrants_by_destination"].measurement
    # rebuilt independently: the measurement over the concatenated vector, asked at d_in = 1
    losses = []
    for unit in units.values():
        m = count_measurement(plan.mechanism, unit.scale)
        if plan.mechanism == DISCRETE_LAPLACE:
            import opendp.prelude as dp

            m = dp.c.make_pureDP_to_zCDP(m)
        losses.append(m.map(1))
    assert sum(losses) == pytest.approx(plan.rho, rel=1e-6) and sum(losses) <= plan.rho * (1 + 1e-9)
    assert plan.opendp_loss() == pytest.approx(plan.rho, rel=1e-6)
    # the same charge split three ways (the former plan) gives every subnational cell more noise
    three = plan_noise(shares={t: 1 / 3 for t in plan.tables}, sensitivity=1, delta=1e-7, **budget)
    assert joint.scale < three.tables["emigrants_by_origin"].scale / 1.2
    if "rho" in budget:
        assert three.rho == pytest.approx(plan.rho, rel=1e-9)
    else:  # pure DP: the same epsilon (the zCDP equivalent of a split depends on the split)
        assert three.epsilon == plan.epsilon


def test_joint_draw_is_one_invocation_split_back_in_order():
    plan = plan_noise(shares={"a": 0.5, "g": 0.5}, sensitivity=1, delta=1e-7, rho=200.0,
                      groups={"g": ("b", "c")})  # a large rho: noise is almost always 0
    drawn = plan.draw({"a": [5, 6], "b": [1, 2, 3], "c": [40]})
    assert [len(drawn[t]) for t in "abc"] == [2, 3, 1]
    assert abs(drawn["c"][0] - 40) <= 2 and abs(drawn["b"][2] - 3) <= 2
    with pytest.raises(RuntimeError, match="jointly"):
        plan.tables["b"].draw([1])
    with pytest.raises(ValueError):
        plan.draw({"a": [1]})


@pytest.mark.parametrize("groups,shares", [({"g": ("b",)}, {"g": 1.0}),  # a group of one table
                                           ({"g": ("a", "b")}, {"g": 0.5, "a": 0.5}),  # a table twice
                                           ({"h": ("a", "b")}, {"g": 1.0})])  # a group without a share
def test_malformed_groups_are_refused(groups, shares):
    with pytest.raises(ValueError):
        plan_noise(shares=shares, sensitivity=1, delta=1e-7, rho=0.1, groups=groups)
