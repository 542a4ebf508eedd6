"""Integer noise on integer count vectors, from OpenDP only.

* ``discrete_laplace`` (epsilon-DP): ``opendp.measurements.make_laplace`` on a vector of i64
  counts with the L1 distance; on integers OpenDP samples the discrete Laplace distribution
  (Canonne, Kamath & Steinke 2020, section 5.2).
* ``discrete_gaussian`` (rho-zCDP): ``make_gaussian`` on the same domain with the L2 distance
  (Canonne, Kamath & Steinke 2020).

Sensitivity. The privacy unit is one subject (pseudonym), who may add at most
``max_contributions`` (c) to the cells of each table, each contribution moving one cell by 1.
Adding or removing that subject therefore changes a table's count vector by at most c in L1 and,
in the worst case where all contributions fall in the same cell, by c in L2 as well; we use
d_in = c for both (L2 = sqrt(c) would hold only if contributions were known to hit distinct cells).

Several tables from the same records. The budget is split across tables by declared shares
(equal by default): table t gets epsilon*share_t or rho*share_t and its own measurement with
d_in = c. The joint release costs the sum (basic composition for epsilon-DP, additive
composition for zCDP), which OpenDP's ``make_composition`` computes from the measurements.
An equal split is the same mechanism as noising the concatenated vector with joint
sensitivity L1 = k*c or L2 = sqrt(k)*c.

Tables measured jointly. When no subject can contribute to more than one table of a group (the
emigrants and immigrants tables of a flows release: a subject's one change is a departure or an
arrival), the concatenated vector of the group moves by at most c in L1 and L2, the same as one
table. ``groups`` names such a group: one OpenDP measurement over the concatenation, d_in = c, one
share of the budget for all its tables, instead of a share per table. What is charged is the sum
over measurements of OpenDP's own privacy map at each measurement's d_in.

Scales come from ``dp.binary_search_param`` and 95% error bounds from ``opendp.accuracy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import opendp.prelude as dp

from mobility.privacy_budget import accountant

# Only the "contrib" feature: never "floating-point" or "idealized-numerics" (project rule).
dp.enable_features("contrib")

DISCRETE_LAPLACE = "discrete_laplace"
DISCRETE_GAUSSIAN = "discrete_gaussian"
MECHANISMS = (DISCRETE_LAPLACE, DISCRETE_GAUSSIAN)

# 95% two-sided error bound per cell, the convention of official-statistics quality reports.
ALPHA = 0.05

# binary_search_param stops at a float decision point; losses within this of the target are "equal".
LOSS_RTOL = 1e-6


def count_domain() -> dp.Domain:
    return dp.vector_domain(dp.atom_domain(T=dp.i64))


def count_measurement(mechanism: str, scale: float) -> dp.Measurement:
    """OpenDP measurement adding integer noise of ``scale`` to every cell of an i64 count vector."""
    if mechanism == DISCRETE_LAPLACE:
        return dp.m.make_laplace(count_domain(), dp.l1_distance(T=dp.i64), float(scale))
    if mechanism == DISCRETE_GAUSSIAN:
        return dp.m.make_gaussian(count_domain(), dp.l2_distance(T=dp.i64), float(scale))
    raise ValueError(f"unknown mechanism {mechanism!r}; expected one of {MECHANISMS}")


def scale_for_budget(mechanism: str, loss: float, sensitivity: int) -> float:
    """Smallest noise scale whose OpenDP privacy map at ``sensitivity`` stays within ``loss``."""
    return float(dp.binary_search_param(lambda s: count_measurement(mechanism, s),
                                        d_in=int(sensitivity), d_out=float(loss)))


def error_bound_95(mechanism: str, scale: float) -> tuple[int, float]:
    """(bound, OpenDP accuracy): P(|noise| <= bound) >= 95% for one cell.

    OpenDP returns ``a`` with P(|noise| >= a) <= alpha; the noise is an integer, so
    |noise| <= ceil(a) - 1 holds with probability >= 1 - alpha.
    """
    if mechanism == DISCRETE_LAPLACE:
        accuracy = dp.discrete_laplacian_scale_to_accuracy(float(scale), ALPHA)
    elif mechanism == DISCRETE_GAUSSIAN:
        accuracy = dp.discrete_gaussian_scale_to_accuracy(float(scale), ALPHA)
    else:
        raise ValueError(f"unknown mechanism {mechanism!r}")
    return max(math.ceil(accuracy) - 1, 0), float(accuracy)


@dataclass(frozen=True)
class Budget:
    """Exactly one privacy budget: ``epsilon`` (pure DP, discrete Laplace) or ``rho`` (zCDP, discrete Gaussian).

    The one place a requested budget is checked; callers turn the ``ValueError`` into their own refusal.
    """

    epsilon: float | None = None
    rho: float | None = None

    def __post_init__(self):
        if (self.epsilon is None) == (self.rho is None):
            raise ValueError("give exactly one budget: epsilon (--epsilon, discrete Laplace) or "
                             "rho (--rho, discrete Gaussian)")
        value = self.epsilon if self.epsilon is not None else self.rho
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"the budget must be a positive number, got {value!r}")
        object.__setattr__(self, "epsilon" if self.epsilon is not None else "rho", float(value))

    @property
    def mechanism(self) -> str:
        return DISCRETE_LAPLACE if self.epsilon is not None else DISCRETE_GAUSSIAN

    @property
    def value(self) -> float:
        if self.epsilon is not None:
            return self.epsilon
        assert self.rho is not None  # __post_init__ accepts exactly one of the two
        return self.rho

    def as_dict(self) -> dict[str, float]:
        """``{"epsilon": e}`` or ``{"rho": r}``: how requests, release ids and the ledger name it."""
        return {"epsilon": self.value} if self.epsilon is not None else {"rho": self.value}


@dataclass(frozen=True)
class TableNoise:
    """Noise for one table: its share of the budget and the OpenDP measurement that spends it."""

    table: str
    mechanism: str
    share: float
    sensitivity: int
    scale: float
    epsilon: float | None  # the table's epsilon (discrete Laplace only)
    rho: float  # the table's rho (for Laplace: epsilon^2/2 via make_pureDP_to_zCDP)
    error_bound_95: int
    accuracy_95: float
    measurement: dp.Measurement = field(repr=False, compare=False)
    group: str | None = None  # the joint measurement this table is part of (None: measured alone)
    group_tables: tuple[str, ...] = ()  # the tables of that measurement, in the order concatenated

    def draw(self, counts: Sequence[int]) -> list[int]:
        """Noisy counts of a table measured alone: one OpenDP invocation over the whole vector."""
        if self.group is not None:
            raise RuntimeError(f"table {self.table!r} is measured jointly ({self.group}); use NoisePlan.draw")
        values = [int(c) for c in counts]
        return [int(v) for v in self.measurement(values)] if values else []

    @property
    def measurement_name(self) -> str:
        return self.group or self.table

    def describe(self) -> dict:
        metric = "L1" if self.mechanism == DISCRETE_LAPLACE else "L2"
        out = {"budget_share": self.share, "noise_scale": self.scale,
               "sensitivity": {"metric": metric, "d_in": self.sensitivity},
               "epsilon": self.epsilon, "rho": self.rho,
               "error_bound_95": self.error_bound_95, "opendp_accuracy_95": self.accuracy_95}
        if self.group is not None:
            out["joint_measurement"] = {"name": self.group, "tables": list(self.group_tables),
                                        "meaning": "one OpenDP measurement over these tables' cells concatenated; "
                                                   "budget_share, rho and epsilon are the measurement's, shared "
                                                   "by its tables, and charged once"}
        return out


@dataclass(frozen=True)
class NoisePlan:
    """All tables' measurements for one release and the totals to charge (no noise drawn yet)."""

    mechanism: str
    sensitivity: int
    tables: dict[str, TableNoise]
    epsilon: float  # the (epsilon, delta) equivalent of the whole release
    delta: float  # 0 for pure epsilon-DP
    rho: float  # charged to the ledger

    def measurements(self) -> dict[str, TableNoise]:
        """One entry per OpenDP measurement (a table measured alone, or the first table of a group)."""
        return _units(self.tables)

    def draw(self, counts: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        """Noisy counts of every table: one OpenDP invocation per measurement (a group's tables
        concatenated in its order, then split back)."""
        if sorted(counts) != sorted(self.tables):
            raise ValueError(f"counts name tables {sorted(counts)} but the plan has {sorted(self.tables)}")
        out: dict[str, list[int]] = {}
        for unit in self.measurements().values():
            members = unit.group_tables or (unit.table,)
            values = [int(c) for t in members for c in counts[t]]
            drawn = [int(v) for v in unit.measurement(values)] if values else []
            start = 0
            for t in members:
                out[t] = drawn[start:start + len(counts[t])]
                start += len(counts[t])
        return out

    def opendp_loss(self) -> float:
        """The release's loss by OpenDP's own maps: each measurement's map at its d_in, composed
        (rho for zCDP; for discrete Laplace the zCDP conversion of each pure-DP map), added."""
        losses = []
        for unit in self.measurements().values():
            m = unit.measurement
            if self.mechanism == DISCRETE_LAPLACE:
                m = dp.c.make_pureDP_to_zCDP(m)
            losses.append(float(m.map(unit.sensitivity)))
        return math.fsum(losses)


def _check_shares(shares: Mapping[str, float]) -> dict[str, float]:
    if not shares:
        raise ValueError("a release needs at least one table")
    out = {str(k): float(v) for k, v in shares.items()}
    if any(not math.isfinite(v) or v <= 0 for v in out.values()):
        raise ValueError(f"budget shares must be positive, got {out}")
    if abs(math.fsum(out.values()) - 1.0) > 1e-9:
        raise ValueError(f"budget shares must add up to 1, got {math.fsum(out.values())}")
    return out


def plan_noise(*, shares: Mapping[str, float], sensitivity: int, delta: float,
               epsilon: float | None = None, rho: float | None = None,
               sensitivities: Mapping[str, int] | None = None,
               groups: Mapping[str, Sequence[str]] | None = None) -> NoisePlan:
    """Build one measurement per table, or per group of tables, from exactly one budget
    (epsilon -> Laplace, rho -> Gaussian).

    ``shares`` and ``sensitivities`` are keyed by measurement: a table measured alone, or a name
    of ``groups`` (name -> the tables measured jointly, which must not share a contributor).
    ``sensitivities`` overrides d_in for named measurements (a sum of bounded amounts moves by more
    than a count); measurements not named use ``sensitivity``.

    The OpenDP privacy maps are checked against the requested budget: each table's loss equals
    its share (to ``LOSS_RTOL``) and never exceeds it, and the composed loss never exceeds the total.
    """
    requested = Budget(epsilon, rho)
    budget = requested.value
    if int(sensitivity) != sensitivity or sensitivity < 1:
        raise ValueError(f"max_contributions must be a positive integer, got {sensitivity!r}")
    sensitivity = int(sensitivity)
    shares = _check_shares(shares)
    mechanism = requested.mechanism
    d_ins = _table_sensitivities(shares, sensitivity, sensitivities)
    members = _group_members(shares, groups)

    tables: dict[str, TableNoise] = {}
    for name, share in shares.items():
        target = budget * share
        scale = scale_for_budget(mechanism, target, d_ins[name])
        meas = count_measurement(mechanism, scale)
        loss = float(meas.map(d_ins[name]))
        if loss > target * (1 + 1e-12) or loss < target * (1 - LOSS_RTOL):
            raise RuntimeError(f"OpenDP loss {loss} of table {name!r} does not match its budget {target}")
        bound, accuracy = error_bound_95(mechanism, scale)
        if mechanism == DISCRETE_LAPLACE:
            table_rho = accountant.epsilon_to_rho(target)
            table_eps: float | None = target
        else:
            table_rho, table_eps = target, None
        grouped = name in (groups or {})
        for table in members[name]:
            tables[table] = TableNoise(table, mechanism, share, d_ins[name], scale, table_eps, table_rho,
                                       bound, accuracy, meas, group=name if grouped else None,
                                       group_tables=members[name] if grouped else ())

    units = _units(tables)
    if len(set(d_ins.values())) > 1:
        return _plan_of_unequal(mechanism, sensitivity, tables, budget, delta)
    measurements = [t.measurement for t in units.values()]
    if mechanism == DISCRETE_LAPLACE:
        total_eps = math.fsum(budget * t.share for t in units.values())  # each measurement's epsilon
        composed_eps = float(dp.c.make_composition(measurements).map(sensitivity))
        composed_rho = float(dp.c.make_composition(
            [dp.c.make_pureDP_to_zCDP(m) for m in measurements]).map(sensitivity))
        charged_rho = accountant.compose(t.rho for t in units.values())
        if composed_eps > total_eps * (1 + 1e-12) or composed_rho > charged_rho * (1 + 1e-12):
            raise RuntimeError("OpenDP composition exceeds the charged budget")
        return NoisePlan(mechanism, sensitivity, tables, epsilon=budget, delta=0.0, rho=charged_rho)

    composed = dp.c.make_composition(measurements)
    composed_rho = float(composed.map(sensitivity))
    if composed_rho > budget * (1 + 1e-12) or composed_rho < budget * (1 - LOSS_RTOL):
        raise RuntimeError(f"OpenDP composed rho {composed_rho} does not match the budget {budget}")
    return NoisePlan(mechanism, sensitivity, tables, epsilon=accountant.rho_to_epsilon(budget, delta),
                     delta=float(delta), rho=budget)


def _table_sensitivities(shares: Mapping[str, float], sensitivity: int,
                         sensitivities: Mapping[str, int] | None) -> dict[str, int]:
    given = dict(sensitivities or {})
    stray = sorted(set(given) - set(shares))
    if stray:
        raise ValueError(f"sensitivities name tables {stray} that are not in the release")
    out = {name: given.get(name, sensitivity) for name in shares}
    for name, d_in in out.items():
        if isinstance(d_in, bool) or int(d_in) != d_in or d_in < 1:
            raise ValueError(f"the sensitivity of table {name!r} must be a positive integer, got {d_in!r}")
    return {name: int(d_in) for name, d_in in out.items()}


def _units(tables: Mapping[str, TableNoise]) -> dict[str, TableNoise]:
    out: dict[str, TableNoise] = {}
    for table in tables.values():
        out.setdefault(table.measurement_name, table)
    return out


def _group_members(shares: Mapping[str, float], groups: Mapping[str, Sequence[str]] | None
                   ) -> dict[str, tuple[str, ...]]:
    """Measurement name -> its tables; each table in exactly one measurement."""
    out: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    stray = sorted(set(groups or {}) - set(shares))
    if stray:
        raise ValueError(f"groups {stray} have no budget share")
    for name in shares:
        members = tuple(str(t) for t in (groups or {}).get(name, (name,)))
        if not members or len(set(members)) != len(members) or seen & set(members):
            raise ValueError(f"measurement {name!r}: its tables {list(members)} must be distinct and in no other "
                             "measurement")
        if name in (groups or {}) and (len(members) < 2 or set(members) & set(shares)):
            raise ValueError(f"group {name!r} must name at least two tables, none with its own share")
        seen.update(members)
        out[name] = members
    return out


def _plan_of_unequal(mechanism: str, sensitivity: int, tables: dict[str, TableNoise], budget: float,
                     delta: float) -> NoisePlan:
    """Totals when measurements have different d_in: OpenDP's composition takes one d_in, so each
    measurement's own privacy map is evaluated at its own d_in and the losses are added."""
    units = _units(tables)
    if mechanism == DISCRETE_LAPLACE:
        composed_eps = math.fsum(float(t.measurement.map(t.sensitivity)) for t in units.values())
        composed_rho = math.fsum(float(dp.c.make_pureDP_to_zCDP(t.measurement).map(t.sensitivity))
                                 for t in units.values())
        charged_rho = accountant.compose(t.rho for t in units.values())
        if composed_eps > budget * (1 + 1e-9) or composed_rho > charged_rho * (1 + 1e-9):
            raise RuntimeError("OpenDP losses of the tables exceed the charged budget")
        return NoisePlan(mechanism, sensitivity, tables, epsilon=budget, delta=0.0, rho=charged_rho)
    composed_rho = math.fsum(float(t.measurement.map(t.sensitivity)) for t in units.values())
    if composed_rho > budget * (1 + 1e-9) or composed_rho < budget * (1 - LOSS_RTOL):
        raise RuntimeError(f"OpenDP rho of the tables {composed_rho} does not match the budget {budget}")
    return NoisePlan(mechanism, sensitivity, tables, epsilon=accountant.rho_to_epsilon(budget, delta),
                     delta=float(delta), rho=budget)
