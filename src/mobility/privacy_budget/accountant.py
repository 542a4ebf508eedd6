"""Zero-concentrated DP accounting: composition, conversions, remaining budget.

Budgets are kept in rho (zCDP) because zCDP composes by plain addition (Bun & Steinke 2016,
"Concentrated Differential Privacy: Simplifications, Extensions, and Lower Bounds", Lemma 1.7).
Every conversion below is computed by OpenDP's own combinators applied to a reference
measurement whose privacy loss is exactly the number being converted:

* pure epsilon-DP -> rho-zCDP: ``make_pureDP_to_zCDP`` (rho = epsilon^2 / 2, Bun & Steinke 2016, Prop. 1.4);
* rho-zCDP -> (epsilon, delta)-DP: ``make_zCDP_to_approxDP`` + ``make_fix_delta``. OpenDP uses the
  tight conversion of Canonne, Kamath & Steinke 2020 ("The Discrete Gaussian for Differential
  Privacy", Cor. 13), which never exceeds the closed form of Bun & Steinke 2016, Prop. 1.3,
  epsilon = rho + 2 sqrt(rho ln(1/delta)); that closed form is kept here as ``bun_steinke_epsilon``
  so auditors can check ledger values by hand.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Iterable

import opendp.prelude as dp

# Only the "contrib" feature: never "floating-point" or "idealized-numerics" (project rule).
dp.enable_features("contrib")

# Sums of float budgets (0.1 + 0.1 + 0.1) must not refuse a request that exactly fills a cap.
CAP_TOLERANCE = 1e-9

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def year_of(period: str) -> int:
    """Calendar year a release period (``YYYY-MM``) is charged to."""
    match = _PERIOD.match(str(period))
    if not match:
        raise ValueError(f"period {period!r} is not a month in the form YYYY-MM")
    return int(match.group(1))


def _check_loss(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return value


def compose(rhos: Iterable[float]) -> float:
    """Total rho of sequentially composed zCDP releases (additive; exact float summation)."""
    return math.fsum(_check_loss("rho", r) for r in rhos)


def epsilon_to_rho(epsilon: float) -> float:
    """rho of an epsilon-DP mechanism, computed by OpenDP's ``make_pureDP_to_zCDP``."""
    epsilon = _check_loss("epsilon", epsilon)
    if epsilon == 0:
        return 0.0
    # reference discrete Laplace with sensitivity 1 and scale 1/epsilon has privacy loss epsilon
    scale = 1.0 / epsilon
    probe = dp.m.make_laplace(dp.atom_domain(T=dp.i64), dp.absolute_distance(T=dp.i64), scale)
    while probe.map(1) < epsilon:  # never understate the loss by a float ulp
        scale = math.nextafter(scale, 0.0)
        probe = dp.m.make_laplace(dp.atom_domain(T=dp.i64), dp.absolute_distance(T=dp.i64), scale)
    return float(dp.c.make_pureDP_to_zCDP(probe).map(1))


def _gaussian_probe(rho: float) -> dp.Measurement:
    """Reference discrete Gaussian whose zCDP loss at sensitivity 1 is at least ``rho`` (by <= 1 ulp)."""
    scale = 1.0 / math.sqrt(2.0 * rho)
    while True:
        probe = dp.m.make_gaussian(dp.atom_domain(T=dp.i64), dp.absolute_distance(T=float), scale)
        if probe.map(1.0) >= rho:
            return probe
        scale = math.nextafter(scale, 0.0)


def rho_to_epsilon(rho: float, delta: float) -> float:
    """epsilon such that rho-zCDP implies (epsilon, delta)-DP, by OpenDP's zCDP -> approxDP conversion."""
    rho = _check_loss("rho", rho)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if rho == 0:
        return 0.0
    approx = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(_gaussian_probe(rho)), delta)
    epsilon, _ = approx.map(1.0)
    return float(epsilon)


def bun_steinke_epsilon(rho: float, delta: float) -> float:
    """Closed-form upper bound epsilon = rho + 2 sqrt(rho ln(1/delta)) (Bun & Steinke 2016, Prop. 1.3).

    Hand-checkable; ``rho_to_epsilon`` (OpenDP) is tighter and never larger.
    """
    rho = _check_loss("rho", rho)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def loss_defect(mechanism: str, epsilon: float, delta: float, rho: float) -> str | None:
    """Why (epsilon, delta, rho) cannot describe one release of ``mechanism`` (None when they can).

    A discrete Gaussian's epsilon must not exceed the Bun-Steinke bound of its rho at its delta; a
    pure epsilon-DP release's rho must not exceed epsilon^2 / 2. The ledger refuses such a charge and
    ``mobility ledger verify`` reports one.
    """
    if not (math.isfinite(rho) and rho > 0 and math.isfinite(epsilon) and epsilon > 0):
        return "a charge must have positive finite rho and epsilon"
    if mechanism == "discrete_gaussian":
        if not (0 < delta < 1 and epsilon <= bun_steinke_epsilon(rho, delta) * (1 + 1e-9)):
            return "epsilon exceeds the Bun-Steinke bound rho + 2 sqrt(rho ln(1/delta)) for its rho"
    elif mechanism == "discrete_laplace":
        if rho > epsilon ** 2 / 2 * (1 + 1e-9):
            return "rho exceeds epsilon^2/2 for a pure epsilon-DP release"
    else:
        return f"unknown mechanism {mechanism!r}"
    return None


def fits(spent: float, requested: float, cap: float) -> bool:
    """Whether ``spent + requested`` stays within ``cap`` (up to float rounding of the sum)."""
    return math.fsum([spent, requested]) <= cap * (1.0 + CAP_TOLERANCE)


@dataclass(frozen=True)
class Remaining:
    """Budget left under one cap, in rho and as epsilon at the agreement's delta."""

    cap_rho: float
    spent_rho: float
    remaining_rho: float
    remaining_epsilon: float
    spent_epsilon: float
    delta: float

    def as_dict(self) -> dict:
        return asdict(self)


def remaining(cap_rho: float, spent_rho: float, delta: float) -> Remaining:
    left = max(cap_rho - spent_rho, 0.0)
    return Remaining(cap_rho=cap_rho, spent_rho=spent_rho, remaining_rho=left,
                     remaining_epsilon=rho_to_epsilon(left, delta),
                     spent_epsilon=rho_to_epsilon(spent_rho, delta), delta=delta)
