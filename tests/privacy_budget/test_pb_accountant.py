"""zCDP accounting: OpenDP conversions agree with the published theorems and caps tolerate float sums."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.privacy_budget import accountant


@settings(max_examples=40, deadline=None)
@given(rho=st.floats(1e-6, 5.0), delta=st.sampled_from([1e-5, 1e-7, 1e-9]))
def test_opendp_conversion_never_exceeds_bun_steinke_bound(rho, delta):
    eps = accountant.rho_to_epsilon(rho, delta)
    assert rho <= eps <= accountant.bun_steinke_epsilon(rho, delta) * (1 + 1e-12)


def test_conversion_grows_with_rho_and_shrinks_with_delta():
    assert accountant.rho_to_epsilon(0.1, 1e-7) < accountant.rho_to_epsilon(0.2, 1e-7)
    assert accountant.rho_to_epsilon(0.1, 1e-5) < accountant.rho_to_epsilon(0.1, 1e-9)
    assert accountant.rho_to_epsilon(0.0, 1e-7) == 0.0


def test_bun_steinke_closed_form_at_a_hand_computed_point():
    # rho = 0.5, delta = e^-8: 0.5 + 2*sqrt(0.5*8) = 4.5
    assert accountant.bun_steinke_epsilon(0.5, math.exp(-8)) == pytest.approx(4.5)


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 2.3])
def test_pure_dp_to_zcdp_is_half_epsilon_squared(epsilon):
    # Bun & Steinke 2016, Prop. 1.4, obtained through OpenDP's make_pureDP_to_zCDP
    assert accountant.epsilon_to_rho(epsilon) == pytest.approx(epsilon ** 2 / 2, rel=1e-12)
    assert accountant.epsilon_to_rho(epsilon) >= epsilon ** 2 / 2  # never understated


def test_composition_adds_and_rejects_negative_loss():
    assert accountant.compose([0.1, 0.2, 0.3]) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        accountant.compose([0.1, -0.01])


def test_caps_allow_exact_fill_despite_float_rounding():
    assert 0.1 + 0.1 + 0.1 > 0.3  # the float trap the tolerance exists for
    assert accountant.fits(0.1 + 0.1, 0.1, 0.3)
    assert not accountant.fits(0.2, 0.1 + 1e-6, 0.3)


def test_year_of_period():
    assert accountant.year_of("2023-12") == 2023
    for bad in ("2023-13", "2023", "23-01", "2023-1"):
        with pytest.raises(ValueError):
            accountant.year_of(bad)
