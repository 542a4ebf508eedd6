"""95% error bound of a sum of noisy cells, computed exactly from the noise laws in the manifests.

A manifest gives each table's mechanism, noise scale and a per-cell 95% bound. A chart that adds
cells (a country pair summed over sex and age band) or an annual table that adds twelve months
needs the bound of a sum of independent noise draws, each term with its own mechanism and scale.
We compute it exactly: the probability mass function of one draw (discrete Gaussian,
P(x) ~ exp(-x^2 / 2 sigma^2), or discrete Laplace, P(x) ~ exp(-|x| / b); Canonne, Kamath & Steinke
2020, "The Discrete Gaussian for Differential Privacy") convolved over every cell summed. This is
arithmetic on public parameters only; no noise is drawn here.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, NamedTuple

import numpy as np

from mobility.privacy_budget.mechanisms import ALPHA, DISCRETE_GAUSSIAN, DISCRETE_LAPLACE

# Mass beyond this many scales is below 1e-40 for both laws: dropping it cannot move a 95% bound.
_TAIL_SCALES = 40
# Partial sums lose tails lighter than this (FFT round-off is ~1e-16 a point): support grows like sqrt(cells).
_TAIL_MASS = 1e-14


class NoiseTerm(NamedTuple):
    """``cells`` independent draws of one mechanism at one noise scale (a month of an annual cell, say)."""

    mechanism: str
    scale: float
    cells: int


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


@lru_cache(maxsize=256)
def _bound(terms: tuple[NoiseTerm, ...], confidence: float) -> int:
    total = np.array([1.0])
    for mechanism, scale, cells in terms:
        total = _convolve(total, _power(_pmf(mechanism, scale), cells))
    centre = (len(total) - 1) // 2
    # mass within +-a, for a = 0, 1, 2, ...
    within = np.cumsum(np.concatenate([[total[centre]], total[centre + 1:] + total[centre - 1::-1]]))
    hits = np.nonzero(within >= confidence - 1e-12)[0]
    return int(hits[0]) if len(hits) else centre


def sum_error_bound_95(terms: Iterable[tuple[str, float, int]]) -> int:
    """Smallest integer a with P(|sum of every term's noise draws| <= a) >= 95%.

    ``terms``: (mechanism, noise scale, number of cells summed) each, as ``NoiseTerm``; one term
    with one cell gives the per-cell bound OpenDP states in the manifest.
    """
    cells: dict[tuple[str, float], int] = {}
    for mechanism, scale, count in terms:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"noise scale must be positive, got {scale!r}")
        if int(count) != count or count < 1:
            raise ValueError(f"cells must be a positive integer, got {count!r}")
        cells[(mechanism, float(scale))] = cells.get((mechanism, float(scale)), 0) + int(count)
    if not cells:
        raise ValueError("a sum needs at least one term")
    merged = tuple(sorted(NoiseTerm(m, s, n) for (m, s), n in cells.items()))
    return _bound(merged, 1 - ALPHA)
