"""95% bounds of summed cells against OpenDP's own per-cell accuracy and the normal limit."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE, error_bound_95
from mobility.report.noise import sum_bound_95

scales = st.floats(min_value=0.3, max_value=60.0, allow_nan=False)
mechanisms = st.sampled_from([DISCRETE_GAUSSIAN, DISCRETE_LAPLACE])


@settings(max_examples=40, deadline=None)
@given(mechanism=mechanisms, scale=scales)
def test_one_cell_matches_the_opendp_bound_in_the_manifest(mechanism, scale):
    assert sum_bound_95(mechanism, scale, 1) == error_bound_95(mechanism, scale)[0]


@settings(max_examples=30, deadline=None)
@given(mechanism=mechanisms, scale=scales, cells=st.integers(1, 40))
def test_more_cells_never_narrow_the_bound_and_never_add_up_linearly(mechanism, scale, cells):
    one, k, more = (sum_bound_95(mechanism, scale, n) for n in (1, cells, cells + 1))
    assert k <= more
    assert k <= cells * one + cells  # independent noise partly cancels: at most the sum of per-cell bounds


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(min_value=2.0, max_value=30.0), cells=st.integers(16, 64))
def test_many_gaussian_cells_approach_the_normal_quantile(scale, cells):
    """For scale >= 2 the discrete Gaussian's variance is sigma^2 to within 1e-8, so the sum is ~N(0, k sigma^2)."""
    normal = 1.959964 * scale * math.sqrt(cells)
    assert abs(sum_bound_95(DISCRETE_GAUSSIAN, scale, cells) - normal) <= 1.0 + 0.01 * normal
