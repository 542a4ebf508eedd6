"""95% error bounds for a sum of released cells, from the noise law stated in the manifest.

The manifest gives each table's noise scale and a per-cell 95% bound. A chart that adds cells
(for example a country pair summed over sex and age band) needs the bound of a sum of k
independent noise draws. We compute it exactly: the probability mass function of one draw
(discrete Gaussian, P(x) ~ exp(-x^2 / 2 sigma^2), or discrete Laplace, P(x) ~ exp(-|x| / b);
Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for Differential Privacy") convolved k
times. This is arithmetic on public parameters only; no noise is drawn here.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

DISCRETE_LAPLACE = "discrete_laplace"
DISCRETE_GAUSSIAN = "discrete_gaussian"

# Mass beyond this many scales is below 1e-40 for both laws: dropping it cannot move a 95% bound.
_TAIL_SCALES = 40


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
    size = len(a) + len(b) - 1
    n = 1 << (size - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(a, n) * np.fft.rfft(b, n), n)[:size]
    out = np.clip(out, 0.0, None)  # FFT round-off can leave tiny negative masses
    return out / out.sum()


@lru_cache(maxsize=256)
def sum_bound_95(mechanism: str, scale: float, cells: int, confidence: float = 0.95) -> int:
    """Smallest integer a with P(|sum of ``cells`` noise draws| <= a) >= ``confidence``."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"noise scale must be positive, got {scale!r}")
    one = _pmf(mechanism, float(scale))
    total, power, k = np.array([1.0]), one, int(cells)
    while k:  # exponentiation by squaring: log2(cells) convolutions
        if k & 1:
            total = _convolve(total, power)
        k >>= 1
        if k:
            power = _convolve(power, power)
    centre = (len(total) - 1) // 2
    # mass within +-a, for a = 0, 1, 2, ...
    within = np.cumsum(np.concatenate([[total[centre]], total[centre + 1:] + total[centre - 1::-1]]))
    hits = np.nonzero(within >= confidence - 1e-12)[0]
    return int(hits[0]) if len(hits) else centre
