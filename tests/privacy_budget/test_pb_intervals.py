"""95% bounds of summed noisy cells: OpenDP's per-cell accuracy, direct convolution, the normal limit, draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.privacy_budget.intervals import sum_error_bound_95
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
