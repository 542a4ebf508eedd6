"""Exact 95% intervals of a linear combination of noisy measurements, from the noise laws in the manifests.

A manifest gives each table's mechanism, noise scale and a per-cell 95% bound. A chart that adds
cells (a country pair summed over sex and age band), an annual table that adds twelve months, a
difference of two cells or a weighted least-squares total T = w_E * S_E + w_D * S_D all carry a
linear combination of independent noise draws, each with its own mechanism, scale and weight. One
draw is integer-valued with a symmetric law: discrete Gaussian, P(x) ~ exp(-x^2 / 2 sigma^2), or
discrete Laplace, P(x) ~ exp(-|x| / b) (Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for
Differential Privacy"). This is arithmetic on public parameters only; no noise is drawn here.

How the half-width a (smallest a >= 0 with P(|noise| <= a) >= confidence) is found:

* Draws are grouped into weight classes. A sign does not matter (the laws are symmetric). A class
  has a base weight, the exact rational gcd of its weights (floats are dyadic rationals), and every
  weight is an integer multiple of it; a weight joins the first class whose lattice stays within
  ``_MAX_POINTS`` points with it, so integer weights share one class (base = their gcd; unless that
  lattice is too long, as for weights 1 and 10^6 at scale 40), 0.5 and 1.5 share base 0.5, while
  0.9 and 0.1 (as floats, gcd ~ 2^-55) stay apart. Inside a class the
  noise is base * (an integer-valued sum): k draws of one law by k-fold convolution of its PMF (by
  squaring), a multiplier m by dilating the PMF onto multiples of m, then convolving the members.
* One class (every sum, annual sum, difference with -1): exact. a = base * (smallest integer a').
* Two classes, w1 * X + w2 * Y: exact. P(|w1 X + w2 Y| <= a) = sum_x p_X(x) * P(-a - w1 x <= w2 Y
  <= a - w1 x) is a step function of a; bisection on a brackets its crossing of the confidence to
  less than w2 / 2, then the jump points |w1 x + w2 y| in the bracket are added in order and the
  first that reaches the confidence is returned (exact up to the float rounding of w1 x + w2 y).
* Three or more classes: numerical. Each class's noise is rounded to a grid of step
  h = (smallest scale * smallest |weight|) / 200 (coarser only if the grid would pass
  ``_MAX_POINTS``), the grid PMFs are convolved, and a = a_grid + K h / 2 for K classes: the rounding
  moves the noise by at most K h / 2, so exact a <= returned a <= exact a + K h.

Masses are float sums of FFT products: tails lighter than 1e-14 are cut and a total within 1e-12
of the confidence counts as reaching it, in every case.
"""

from __future__ import annotations

import math
import numbers
import sys
from fractions import Fraction
from functools import lru_cache
from typing import Iterable, NamedTuple

import numpy as np

from mobility.privacy_budget.mechanisms import ALPHA, DISCRETE_GAUSSIAN, DISCRETE_LAPLACE

# Mass beyond this many scales is e^-40 ~ 4e-18 (Laplace) or e^-800 (Gaussian): it cannot move a 95% bound.
_TAIL_SCALES = 40
# Partial sums lose tails lighter than this (FFT round-off is ~1e-16 a point): support grows like sqrt(cells).
_TAIL_MASS = 1e-14
# A mass within this of the confidence reaches it (float sums of ~1e5 FFT products).
_MASS_TOL = 1e-12
# Largest lattice or grid one class or the numerical method may span (16 MB of float64).
_MAX_POINTS = 1 << 21
# Grid step of the numerical method, in units of the smallest scale times the smallest |weight|.
_GRID_STEPS_PER_SCALE = 200


class Term(NamedTuple):
    """``cells`` independent draws of one mechanism at one noise scale, each multiplied by ``weight``."""

    weight: float
    mechanism: str  # mechanisms.DISCRETE_GAUSSIAN or DISCRETE_LAPLACE
    scale: float
    cells: int


class NoiseTerm(NamedTuple):
    """``cells`` independent draws of one mechanism at one noise scale (a month of an annual cell, say)."""

    mechanism: str
    scale: float
    cells: int


# (|weight|, mechanism, scale, cells), sorted, one entry per (|weight|, mechanism, scale): the cache key.
_Key = tuple[tuple[float, str, float, int], ...]


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_law(mechanism: str, scale: float) -> None:
    if mechanism not in (DISCRETE_GAUSSIAN, DISCRETE_LAPLACE):
        raise ValueError(f"unknown mechanism {mechanism!r}")
    if not (_real(scale) and scale > 0):
        raise ValueError(f"noise scale must be positive, got {scale!r}")


def _normalise(terms: Iterable[tuple[float, str, float, int]]) -> _Key:
    cells: dict[tuple[float, str, float], int] = {}
    for weight, mechanism, scale, count in terms:
        if not (_real(weight) and weight != 0):
            raise ValueError(f"weight must be a finite non-zero number, got {weight!r}")
        _check_law(mechanism, scale)
        if not (_real(count) and int(count) == count and count >= 1):
            raise ValueError(f"cells must be a positive integer, got {count!r}")
        key = (abs(float(weight)), mechanism, float(scale))
        cells[key] = cells.get(key, 0) + int(count)
    if not cells:
        raise ValueError("a combination needs at least one term")
    return tuple(sorted((w, m, s, n) for (w, m, s), n in cells.items()))


def _pmf(mechanism: str, scale: float) -> np.ndarray:
    """PMF of one noise draw on -n..n, normalised."""
    width = max(int(math.ceil(_TAIL_SCALES * scale)), 1)
    x = np.arange(-width, width + 1, dtype=float)
    if mechanism == DISCRETE_GAUSSIAN:
        log_mass = -(x ** 2) / (2.0 * scale ** 2)
    elif mechanism == DISCRETE_LAPLACE:
        log_mass = -np.abs(x) / scale
    else:
        raise ValueError(f"unknown mechanism {mechanism!r}")
    mass = np.exp(log_mass - log_mass.max())
    return mass / mass.sum()


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PMF of the sum of two independent symmetric draws, its negligible tails cut symmetrically."""
    size = len(a) + len(b) - 1
    n = 1 << (size - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(a, n) * np.fft.rfft(b, n), n)[:size]
    out = np.clip(out, 0.0, None)  # FFT round-off can leave tiny negative masses
    tail = np.cumsum(out[: size // 2])
    cut = int(np.searchsorted(tail, _TAIL_MASS, side="right"))
    out = out[cut: size - cut]
    return out / out.sum()


def _power(one: np.ndarray, cells: int) -> np.ndarray:
    """PMF of the sum of ``cells`` draws of ``one``, by squaring: log2(cells) convolutions."""
    total, power, k = np.array([1.0]), one, cells
    while k:
        if k & 1:
            total = _convolve(total, power)
        k >>= 1
        if k:
            power = _convolve(power, power)
    return total


def sum_pmf(mechanism: str, scale: float, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(support, PMF) of the sum of ``cells`` independent draws of one law: what the benchmarks use to
    state the coverage and mean absolute error the law itself gives."""
    _check_law(mechanism, scale)
    total = _power(_pmf(mechanism, float(scale)), int(cells))
    return np.arange(len(total), dtype=np.float64) - (len(total) - 1) // 2, total


def _dilate(pmf: np.ndarray, multiplier: int) -> np.ndarray:
    """PMF of ``multiplier`` * X on the integer lattice (mass on every multiplier-th point)."""
    if multiplier == 1:
        return pmf
    out = np.zeros((len(pmf) - 1) * multiplier + 1)
    out[::multiplier] = pmf
    return out


def _radius(pmf: np.ndarray) -> int:
    return (len(pmf) - 1) // 2


def _gcd(a: Fraction, b: Fraction) -> Fraction:
    """Largest rational g with a / g and b / g integers (floats are dyadic rationals, so it exists)."""
    return Fraction(math.gcd(a.numerator * b.denominator, b.numerator * a.denominator),
                    a.denominator * b.denominator)


def _classes(key: _Key) -> list[tuple[Fraction, np.ndarray]]:
    """(base weight, PMF of the integer-valued class sum on -r..r) per weight class."""
    groups: dict[float, np.ndarray] = {}
    for weight, mechanism, scale, cells in key:  # sorted by weight, then mechanism and scale
        total = groups.get(weight, np.array([1.0]))
        groups[weight] = _convolve(total, _power(_pmf(mechanism, scale), cells))
    classes: list[tuple[Fraction, list[tuple[Fraction, np.ndarray]]]] = []
    for weight, pmf in groups.items():
        w = Fraction(weight)
        for i, (base, members) in enumerate(classes):
            merged = _gcd(base, w)
            span = sum((mw / merged) * _radius(mp) for mw, mp in members) + (w / merged) * _radius(pmf)
            if 2 * span + 1 <= _MAX_POINTS:
                classes[i] = (merged, [*members, (w, pmf)])
                break
        else:
            classes.append((w, [(w, pmf)]))
    out = []
    for base, members in classes:
        summed: np.ndarray | None = None
        for w, pmf in members:
            part = _dilate(pmf, int(w / base))
            summed = part if summed is None else _convolve(summed, part)
        assert summed is not None
        out.append((base, summed))
    return out


def _within(pmf: np.ndarray) -> np.ndarray:
    """P(|X| <= a) for a = 0, 1, 2, ... of a PMF centred on its middle point."""
    centre = _radius(pmf)
    return np.cumsum(np.concatenate([[pmf[centre]], pmf[centre + 1:] + pmf[centre - 1::-1]]))


def _one_class(pmf: np.ndarray, confidence: float) -> int:
    hits = np.nonzero(_within(pmf) >= confidence - _MASS_TOL)[0]
    return int(hits[0]) if len(hits) else _radius(pmf)


def _two_classes(u: float, px: np.ndarray, v: float, py: np.ndarray, confidence: float) -> float:
    """Exact smallest a with P(|u X + v Y| <= a) >= confidence, X and Y integer-valued and independent."""
    if len(px) > len(py):  # loop over the shorter support, look the longer one up in its CDF
        u, px, v, py = v, py, u, px
    rx, ry = _radius(px), _radius(py)
    ux = u * np.arange(-rx, rx + 1, dtype=float)
    cdf = np.concatenate([[0.0], np.cumsum(py)])  # cdf[j + ry + 1] = P(Y <= j), j = -ry-1..ry
    target = confidence - _MASS_TOL

    def index(y: np.ndarray) -> np.ndarray:
        return np.clip(y, -ry - 1, ry).astype(np.int64) + ry + 1

    def mass_within(a: float) -> float:
        top, bottom = np.floor((a - ux) / v), np.ceil((-a - ux) / v) - 1
        return float(np.dot(px, cdf[index(top)] - cdf[index(bottom)]))

    if mass_within(0.0) >= target:
        return 0.0
    lo, hi = 0.0, u * rx + v * ry
    while hi - lo > v / 2:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        if mass_within(mid) >= target:
            hi = mid
        else:
            lo = mid
    # Every (x, y) with lo < |u x + v y| <= hi: at most one y per x and sign, as hi - lo <= v / 2
    # (the neighbours are tried too, against float rounding of the floor and ceil).
    values, masses = [], []
    for sign, y0 in ((1.0, np.floor((hi - ux) / v)), (-1.0, np.ceil((-hi - ux) / v))):
        for shift in (-1.0, 0.0, 1.0):
            y = y0 + shift
            value = sign * (ux + v * y)
            keep = (value > lo) & (value <= hi) & (np.abs(y) <= ry)
            values.append(value[keep])
            masses.append(px[keep] * py[y[keep].astype(np.int64) + ry])
    value, mass = np.concatenate(values), np.concatenate(masses)
    order = np.argsort(value, kind="stable")
    reached = mass_within(lo) + np.cumsum(mass[order])
    hits = np.nonzero(reached >= target)[0]
    if len(hits):
        return float(value[order][hits[0]])
    return float(value.max()) if len(value) else hi  # float round-off between the two sums of the bracket


def _grid(classes: list[tuple[Fraction, np.ndarray]], step: float, confidence: float) -> float:
    """Upper bound within K * h of the exact a, K classes rounded onto a grid of step h >= ``step``."""
    span = sum(float(base) * _radius(pmf) for base, pmf in classes)
    h = max(step, 2 * span / (_MAX_POINTS - 2 * len(classes) - 1))
    total: np.ndarray | None = None
    for base, pmf in classes:
        r = _radius(pmf)
        j = np.rint(float(base) * np.arange(-r, r + 1, dtype=float) / h).astype(np.int64)  # symmetric rounding
        top = int(j[-1])
        part = np.bincount(j + top, weights=pmf, minlength=2 * top + 1)
        total = part if total is None else _convolve(total, part)
    assert total is not None
    return _one_class(total, confidence) * h + len(classes) * h / 2


@lru_cache(maxsize=256)
def _half_width(key: _Key, confidence: float) -> float:
    classes = _classes(key)
    if len(classes) == 1:
        base, pmf = classes[0]
        return float(base * _one_class(pmf, confidence))
    if len(classes) == 2:
        (b1, p1), (b2, p2) = classes
        return _two_classes(float(b1), p1, float(b2), p2, confidence)
    step = min(s for _, _, s, _ in key) * min(w for w, _, _, _ in key) / _GRID_STEPS_PER_SCALE
    return _grid(classes, step, confidence)


def half_width_95(terms: Iterable[Term], confidence: float = 0.95) -> float:
    """Smallest a >= 0 with P(|sum of weight * draw over every term| <= a) >= confidence.

    Exact for one or two weight classes (integer weights are one class), numerical above two with
    exact a <= result <= exact a + K h (module docstring). Integer weights give an integer.
    """
    if not (_real(confidence) and 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return _half_width(_normalise(terms), float(confidence))


def noise_variance(mechanism: str, scale: float) -> float:
    """Exact variance of one draw, from the PMF (the discrete Gaussian's is slightly below s^2).

    The mass cut beyond 40 scales changes it by less than 1e-14 relative.
    """
    _check_law(mechanism, scale)
    pmf = _pmf(mechanism, float(scale))
    x = np.arange(len(pmf), dtype=float) - _radius(pmf)
    return float(np.dot(x * x, pmf))


def interval_95(estimate: float, terms: Iterable[Term], *, nonnegative: bool = True) -> tuple[int, int]:
    """Integer interval [low, high] that contains the exact value with probability >= 95% when
    ``estimate`` = exact value + the linear combination of noise in ``terms`` and the exact value
    is an integer: low = ceil(estimate - a), high = floor(estimate + a), a = half_width_95(terms);
    with nonnegative=True low is at least 0 (exact counts and sums are never negative), and high
    is at least low.

    A float ``estimate`` (non-integer weights) carries rounding, and the noise takes the value +-a
    with positive probability: a slack of 16 ulps of max(1, |estimate|, a) keeps that boundary in.
    With integer weights and |estimate| < 2^48 the slack never changes the result.
    """
    if not _real(estimate):
        raise ValueError(f"estimate must be a finite number, got {estimate!r}")
    a = half_width_95(terms)
    slack = 16 * sys.float_info.epsilon * max(1.0, abs(float(estimate)), a)
    low = math.ceil(estimate - a - slack)
    high = math.floor(estimate + a + slack)
    if nonnegative:
        low = max(low, 0)
    return low, max(high, low)


def sum_error_bound_95(terms: Iterable[tuple[str, float, int]]) -> int:
    """Smallest integer a with P(|sum of every term's noise draws| <= a) >= 95%.

    ``terms``: (mechanism, noise scale, number of cells summed) each, as ``NoiseTerm``; one term
    with one cell gives the per-cell bound OpenDP states in the manifest. The weight-1 case of
    ``half_width_95``.
    """
    return int(half_width_95([Term(1.0, m, s, n) for m, s, n in terms], 1 - ALPHA))
