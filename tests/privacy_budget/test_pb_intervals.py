"""95% bounds of summed and weighted noisy cells: OpenDP's per-cell accuracy, brute-force enumeration, the normal
limit, intervals' coverage of OpenDP draws, exact variances."""

from __future__ import annotations

import math
import time

import numpy as np
import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.privacy_budget import intervals
from mobility.privacy_budget.intervals import Term, half_width_95, interval_95, noise_variance, sum_error_bound_95
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE, count_measurement, error_bound_95

scales = st.floats(min_value=0.3, max_value=60.0, allow_nan=False)
mechanisms = st.sampled_from([DISCRETE_GAUSSIAN, DISCRETE_LAPLACE])


@settings(max_examples=40, deadline=None)
@given(mechanism=mechanisms, scale=scales)
def test_one_cell_matches_the_opendp_bound_in_the_manifest(mechanism, scale):
    assert sum_error_bound_95([(mechanism, scale, 1)]) == error_bound_95(mechanism, scale)[0]


@settings(max_examples=30, deadline=None)
@given(mechanism=mechanisms, scale=scales, cells=st.integers(1, 40))
def test_more_cells_never_narrow_the_bound_and_never_add_up_linearly(mechanism, scale, cells):
    one, k, more = (sum_error_bound_95([(mechanism, scale, n)]) for n in (1, cells, cells + 1))
    assert k <= more
    assert k <= cells * one + cells  # independent noise partly cancels: at most the sum of per-cell bounds


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(min_value=2.0, max_value=30.0), cells=st.integers(16, 64))
def test_many_gaussian_cells_approach_the_normal_quantile(scale, cells):
    """For scale >= 2 the discrete Gaussian's variance is sigma^2 to within 1e-8, so the sum is ~N(0, k sigma^2)."""
    normal = 1.959964 * scale * math.sqrt(cells)
    assert abs(sum_error_bound_95([(DISCRETE_GAUSSIAN, scale, cells)]) - normal) <= 1.0 + 0.01 * normal


def _direct_bound(terms) -> int:
    """The same bound by plain term-by-term convolution on a wide support (no FFT, no cut tails)."""
    total = np.array([1.0])
    for mechanism, scale, cells in terms:
        x = np.arange(-int(60 * scale) - 1, int(60 * scale) + 2)
        mass = np.exp(-x ** 2 / (2 * scale ** 2)) if mechanism == DISCRETE_GAUSSIAN else np.exp(-np.abs(x) / scale)
        for _ in range(cells):
            total = np.convolve(total, mass / mass.sum())
    centre = len(total) // 2
    return next(a for a in range(centre) if total[centre - a: centre + a + 1].sum() >= 0.95)


@settings(max_examples=25, deadline=None)
@given(terms=st.lists(st.tuples(mechanisms, st.floats(min_value=0.5, max_value=8.0), st.integers(1, 4)),
                      min_size=1, max_size=4))
def test_mixed_terms_match_a_direct_convolution(terms):
    """Months of one annual cell with their own mechanism, scale and number of cells."""
    assert sum_error_bound_95(terms) == _direct_bound(terms)


def test_the_bound_covers_95_percent_of_opendp_noise_sums():
    terms = [(DISCRETE_GAUSSIAN, 3.0, 3), (DISCRETE_LAPLACE, 2.0, 1), (DISCRETE_GAUSSIAN, 1.5, 2)]
    draws = 40_000
    total = sum(np.asarray(count_measurement(m, s)([0] * (draws * n))).reshape(draws, n).sum(axis=1)
                for m, s, n in terms)
    bound = sum_error_bound_95(terms)
    # 40,000 sums estimate a coverage to +-0.0011 (one standard error); allow 4.5 of them
    assert np.mean(np.abs(total) <= bound) >= 0.95 - 0.005
    assert np.mean(np.abs(total) <= bound - 1) < 0.95 + 0.005


def test_bad_terms_are_refused():
    with pytest.raises(ValueError, match="scale"):
        sum_error_bound_95([(DISCRETE_GAUSSIAN, 0.0, 1)])
    with pytest.raises(ValueError, match="cells"):
        sum_error_bound_95([(DISCRETE_GAUSSIAN, 1.0, 0)])
    with pytest.raises(ValueError, match="mechanism"):
        sum_error_bound_95([("gaussian", 1.0, 1)])


# --- linear combinations: Term, half_width_95, interval_95, noise_variance ---------------------------------------

def _law(mechanism, scale, cells) -> np.ndarray:
    """PMF of a sum of ``cells`` draws on a wide support by plain convolution (no FFT, no cut tails)."""
    x = np.arange(-int(60 * scale) - 1, int(60 * scale) + 2)
    mass = np.exp(-x ** 2 / (2 * scale ** 2)) if mechanism == DISCRETE_GAUSSIAN else np.exp(-np.abs(x) / scale)
    total = np.array([1.0])
    for _ in range(cells):
        total = np.convolve(total, mass / mass.sum())
    return total


def _enumerate(terms) -> tuple[np.ndarray, np.ndarray]:
    """Every value |sum of weight * draw| (one per combination of the terms' sums) and its mass, sorted."""
    values, masses = np.array([0.0]), np.array([1.0])
    for weight, mechanism, scale, cells in terms:
        pmf = _law(mechanism, scale, cells)
        radius = (len(pmf) - 1) // 2
        keep = pmf > 1e-18
        x = weight * np.arange(-radius, radius + 1)[keep]
        values = (values[:, None] + x[None, :]).ravel()
        masses = (masses[:, None] * pmf[keep][None, :]).ravel()
    order = np.argsort(np.abs(values), kind="stable")
    return np.abs(values)[order], masses[order]


def _brute_half_width(terms, confidence=0.95) -> float:
    values, masses = _enumerate(terms)
    return float(values[np.nonzero(np.cumsum(masses) >= confidence - 1e-12)[0][0]])


def _mass_within(terms, a: float) -> float:
    values, masses = _enumerate(terms)
    return float(masses[values <= a].sum())


def test_integer_weights_match_brute_force_enumeration():
    for terms in ([Term(2, DISCRETE_GAUSSIAN, 0.7, 1), Term(-1, DISCRETE_LAPLACE, 1.3, 1)],
                  [Term(2, DISCRETE_LAPLACE, 0.7, 2), Term(-1, DISCRETE_GAUSSIAN, 1.3, 3)],
                  [Term(2, DISCRETE_GAUSSIAN, 0.7, 2), Term(-1, DISCRETE_LAPLACE, 1.3, 1),
                   Term(3, DISCRETE_GAUSSIAN, 1.1, 1)]):
        a = half_width_95(terms)
        assert a == int(a) == _brute_half_width(terms)
        assert _mass_within(terms, a) >= 0.95 > _mass_within(terms, a - 1)


@settings(max_examples=25, deadline=None)
@given(terms=st.lists(st.builds(Term, st.sampled_from([-3, -2, -1, 1, 2, 3, 4]), mechanisms,
                                st.floats(min_value=0.3, max_value=2.0), st.integers(1, 3)), min_size=1, max_size=3))
def test_random_integer_weights_match_brute_force_enumeration(terms):
    a = half_width_95(terms)
    assert a == int(a) == _brute_half_width(terms)


@settings(max_examples=30, deadline=None)
@given(terms=st.lists(st.builds(Term, st.sampled_from([-1, 1]), mechanisms, scales, st.integers(1, 40)),
                      min_size=1, max_size=4))
def test_weight_one_is_sum_error_bound_95(terms):
    assert half_width_95(terms) == sum_error_bound_95([(t.mechanism, t.scale, t.cells) for t in terms])


def test_terms_are_grouped_by_law_and_absolute_weight():
    one = half_width_95([Term(0.7, DISCRETE_GAUSSIAN, 2.0, 5), Term(0.2, DISCRETE_LAPLACE, 1.0, 3)])
    split = half_width_95([Term(-0.7, DISCRETE_GAUSSIAN, 2.0, 2), Term(0.7, DISCRETE_GAUSSIAN, 2.0, 3),
                           Term(0.2, DISCRETE_LAPLACE, 1.0, 3)])
    assert one == split
    # a weight that is an exact multiple of another shares its lattice: w * X + 2w * Y on multiples of w
    assert half_width_95([Term(0.5, DISCRETE_GAUSSIAN, 1.0, 2), Term(1, DISCRETE_LAPLACE, 1.0, 1)]) == \
        0.5 * half_width_95([Term(1, DISCRETE_GAUSSIAN, 1.0, 2), Term(2, DISCRETE_LAPLACE, 1.0, 1)])


@pytest.mark.parametrize("terms", [
    [Term(0.9, DISCRETE_GAUSSIAN, 1.5, 2), Term(0.37, DISCRETE_LAPLACE, 0.8, 3)],
    [Term(0.9, DISCRETE_GAUSSIAN, 1.5, 2), Term(-0.37, DISCRETE_LAPLACE, 0.8, 3), Term(0.9, DISCRETE_LAPLACE, 1.0, 1)],
    [Term(0.3, DISCRETE_GAUSSIAN, 1.5, 2), Term(2, DISCRETE_LAPLACE, 0.8, 2), Term(3, DISCRETE_GAUSSIAN, 1.0, 1)],
    [Term(0.9, DISCRETE_GAUSSIAN, 0.6, 3), Term(0.1, DISCRETE_GAUSSIAN, 0.6, 2)],
])
def test_two_real_weight_classes_are_exact(terms):
    """The probability mass within a reaches 95%; just below a (the previous jump) it does not."""
    a = half_width_95(terms)
    assert a == pytest.approx(_brute_half_width(terms), rel=1e-12)
    assert _mass_within(terms, a * (1 + 1e-12)) >= 0.95 - 1e-12
    assert _mass_within(terms, a * (1 - 1e-9)) < 0.95


@settings(max_examples=25, deadline=None)
@given(w1=st.floats(min_value=0.05, max_value=3.0), w2=st.floats(min_value=0.05, max_value=3.0),
       m1=mechanisms, m2=mechanisms, s1=st.floats(min_value=0.3, max_value=2.0),
       s2=st.floats(min_value=0.3, max_value=2.0), n1=st.integers(1, 3), n2=st.integers(1, 3))
def test_random_two_class_combinations_match_brute_force(w1, w2, m1, m2, s1, s2, n1, n2):
    terms = [Term(w1, m1, s1, n1), Term(-w2, m2, s2, n2)]
    assert half_width_95(terms) == pytest.approx(_brute_half_width(terms), rel=1e-12)


def test_three_real_classes_are_numerical_within_the_stated_error():
    terms = [Term(0.9, DISCRETE_GAUSSIAN, 1.5, 2), Term(0.37, DISCRETE_LAPLACE, 0.8, 2),
             Term(0.11, DISCRETE_GAUSSIAN, 1.2, 2)]
    exact, step = _brute_half_width(terms), 0.8 * 0.11 / 200  # h = smallest scale * smallest |weight| / 200
    assert exact <= half_width_95(terms) <= exact + 3 * step


def test_other_confidences():
    terms = [Term(1, DISCRETE_GAUSSIAN, 3.0, 4), Term(0.5, DISCRETE_LAPLACE, 2.0, 3)]
    for confidence in (0.5, 0.9, 0.99):
        assert half_width_95(terms, confidence) == _brute_half_width(terms, confidence)
    assert half_width_95(terms, 0.5) < half_width_95(terms) < half_width_95(terms, 0.99)


def test_large_sums_are_fast():
    intervals._half_width.cache_clear()
    start = time.perf_counter()
    one = half_width_95([Term(1, DISCRETE_GAUSSIAN, 40.0, 20_000)])
    two = half_width_95([Term(0.9, DISCRETE_GAUSSIAN, 40.0, 20), Term(0.1, DISCRETE_LAPLACE, 40.0, 2_000)])
    assert time.perf_counter() - start < 1.0  # about 0.05 s on one core
    assert abs(one - 1.959964 * 40 * math.sqrt(20_000)) <= 2
    assert 0 < two < 0.9 * 20 * 40 * 3 + 0.1 * 2_000 * 40 * 3


def test_interval_95_arithmetic():
    cell = [Term(1, DISCRETE_GAUSSIAN, 3.0, 1)]
    a = int(half_width_95(cell))
    assert interval_95(100, cell) == (100 - a, 100 + a)
    assert interval_95(3, cell) == (0, 3 + a)  # exact counts are never negative
    assert interval_95(3, cell, nonnegative=False) == (3 - a, 3 + a)
    assert interval_95(-a - 5, cell) == (0, 0)  # high is at least low
    half = [Term(1, DISCRETE_GAUSSIAN, 3.0, 1), Term(0.5, DISCRETE_GAUSSIAN, 3.0, 1)]
    b = half_width_95(half)
    assert interval_95(10.25, half) == (math.ceil(10.25 - b), math.floor(10.25 + b))
    # the noise takes the value +-a with positive probability: an estimate exactly a from the truth keeps it
    two = [Term(0.9, DISCRETE_GAUSSIAN, 2.0, 3), Term(0.1, DISCRETE_LAPLACE, 2.0, 40)]
    c = half_width_95(two)
    assert interval_95(500 + c, two)[0] <= 500 <= interval_95(500 - c, two)[1]


def _opendp_noise(mechanism: str, scale: float, draws: int) -> np.ndarray:
    """``draws`` noise draws by OpenDP itself: its measurement applied to a vector of zeros."""
    domain = dp.vector_domain(dp.atom_domain(T=dp.i64))
    if mechanism == DISCRETE_GAUSSIAN:
        measurement = dp.m.make_gaussian(domain, dp.l2_distance(T=dp.i64), float(scale))
    else:
        measurement = dp.m.make_laplace(domain, dp.l1_distance(T=dp.i64), float(scale))
    return np.asarray(measurement([0] * draws), dtype=np.int64)


REPLICATES = 2_000


@pytest.mark.parametrize("terms", [
    pytest.param([Term(1, DISCRETE_GAUSSIAN, 20.0, 1)], id="one-cell"),
    pytest.param([Term(1, DISCRETE_LAPLACE, 6.0, 12)], id="12-cells"),
    pytest.param([Term(0.9, DISCRETE_LAPLACE, 3.0, 11), Term(0.4, DISCRETE_GAUSSIAN, 3.0, 50)], id="two-classes-small"),
    pytest.param([Term(1, DISCRETE_LAPLACE, 2.5, 96)], id="96-cells"),
    pytest.param([Term(0.9, DISCRETE_GAUSSIAN, 4.0, 11), Term(0.1, DISCRETE_LAPLACE, 4.0, 200)],
                 id="two-classes-200"),
])
def test_interval_95_covers_the_truth_under_opendp_noise(terms):
    """Coverage of 2,000 intervals, a tenth of them around a true 0 (clipped at 0).

    Exact a gives P(|noise| <= a) in [0.95, 0.952] for these laws (0.975 around a true 0), so the
    coverage is about 0.955: 5 binomial standard errors (0.0049) below 0.95 or above 0.99 does not happen.
    """
    rng = np.random.default_rng(7)  # the truths only: OpenDP's noise takes no seed
    truth = np.where(rng.random(REPLICATES) < 0.1, 0, rng.integers(0, 10_000, REPLICATES))
    noise = sum(t.weight * _opendp_noise(t.mechanism, t.scale, REPLICATES * t.cells).reshape(REPLICATES, t.cells)
                .sum(axis=1) for t in terms)
    estimate = truth + noise
    covered = [low <= x <= high for x, (low, high) in zip(truth, (interval_95(float(e), terms) for e in estimate))]
    se = math.sqrt(0.95 * 0.05 / REPLICATES)
    assert 0.95 - 5 * se <= np.mean(covered) <= 0.99


@pytest.mark.parametrize("mechanism, scale", [(DISCRETE_GAUSSIAN, 0.6), (DISCRETE_GAUSSIAN, 4.0),
                                              (DISCRETE_LAPLACE, 0.7), (DISCRETE_LAPLACE, 3.0)])
def test_noise_variance_matches_opendp_samples(mechanism, scale):
    draws = 20_000
    pmf = _law(mechanism, scale, 1)
    x = np.arange(len(pmf)) - (len(pmf) - 1) // 2
    variance, fourth = float(np.dot(x ** 2, pmf)), float(np.dot(x ** 4, pmf))
    assert noise_variance(mechanism, scale) == pytest.approx(variance, rel=1e-12)
    # the sample variance of n draws has relative standard error sqrt((m4 / var^2 - 1) / n); allow 6
    tolerance = 6 * math.sqrt((fourth / variance ** 2 - 1) / draws)
    assert _opendp_noise(mechanism, scale, draws).var() == pytest.approx(variance, rel=tolerance)


def test_noise_variance_of_the_laws():
    for scale in (0.3, 0.5, 0.8, 1.0):
        assert noise_variance(DISCRETE_GAUSSIAN, scale) < scale ** 2  # far below it for small scales
    assert noise_variance(DISCRETE_GAUSSIAN, 0.3) < 0.01
    for scale in (2.0, 7.5, 30.0):
        assert noise_variance(DISCRETE_GAUSSIAN, scale) == pytest.approx(scale ** 2, rel=1e-8)
    for scale in (0.4, 1.0, 5.0, 40.0):  # discrete Laplace: 2q / (1 - q)^2 with q = exp(-1 / scale)
        q = math.exp(-1 / scale)
        assert noise_variance(DISCRETE_LAPLACE, scale) == pytest.approx(2 * q / (1 - q) ** 2, rel=1e-12)


def test_bad_combinations_are_refused():
    good = Term(1, DISCRETE_GAUSSIAN, 1.0, 1)
    for bad, match in ((Term(0, DISCRETE_GAUSSIAN, 1.0, 1), "weight"),
                       (Term(math.nan, DISCRETE_GAUSSIAN, 1.0, 1), "weight"),
                       (Term(1, DISCRETE_GAUSSIAN, 0.0, 1), "scale"), (Term(1, DISCRETE_LAPLACE, -2.0, 1), "scale"),
                       (Term(1, DISCRETE_GAUSSIAN, 1.0, 0), "cells"), (Term(1, DISCRETE_GAUSSIAN, 1.0, 1.5), "cells"),
                       (Term(1, "laplace", 1.0, 1), "mechanism")):
        with pytest.raises(ValueError, match=match):
            half_width_95([good, bad])
        with pytest.raises(ValueError, match=match):
            interval_95(10, [bad])
    with pytest.raises(ValueError, match="at least one term"):
        half_width_95([])
    with pytest.raises(ValueError, match="confidence"):
        half_width_95([good], 1.0)
    with pytest.raises(ValueError, match="estimate"):
        interval_95(math.nan, [good])
    with pytest.raises(ValueError, match="mechanism"):
        noise_variance("gaussian", 1.0)
    with pytest.raises(ValueError, match="scale"):
        noise_variance(DISCRETE_GAUSSIAN, 0.0)


def test_sum_pmf_is_the_law_of_the_sum():
    from mobility.privacy_budget.intervals import sum_pmf

    support, pmf = sum_pmf(DISCRETE_GAUSSIAN, 1.5, 12)
    assert pmf.sum() == pytest.approx(1.0) and support[len(support) // 2] == 0
    a = sum_error_bound_95([(DISCRETE_GAUSSIAN, 1.5, 12)])
    assert pmf[np.abs(support) <= a].sum() >= 0.95 > pmf[np.abs(support) <= a - 1].sum()
    assert float(np.dot(support ** 2, pmf)) == pytest.approx(12 * noise_variance(DISCRETE_GAUSSIAN, 1.5), rel=1e-9)
