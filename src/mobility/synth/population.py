"""Who the people are: behaviour, sex, birth year, activity rate, home and usual cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobility.errors import ConfigError
from mobility.synth.cells import ALWAYS
from mobility.synth.geo import Cells
from mobility.synth.params import ACTIVITY_SIGMA, BEHAVIOURS, DEFAULT_BEHAVIOUR_SHARES

MIGRANT_BEHAVIOURS = ("emigrant_long_term", "temporary_worker", "returning_migrant")
# Adult age bands (lower bound, upper bound exclusive, weight): a young-skewed adult population (assumption).
AGE_BANDS = ((18, 25, 0.15), (25, 30, 0.12), (30, 35, 0.12), (35, 40, 0.11), (40, 45, 0.10), (45, 50, 0.09),
             (50, 55, 0.08), (55, 60, 0.07), (60, 65, 0.06), (65, 70, 0.05), (70, 80, 0.05))
MIGRANT_AGE_MEAN, MIGRANT_AGE_SD = 34.0, 8.0  # labour migrants are mostly of working age (assumption)
MIGRANT_FEMALE_SHARE = 0.55  # assumption; set per corridor when calibrating to a survey
SEX_X_SHARE = 0.005


@dataclass(frozen=True)
class Population:
    behaviour: np.ndarray  # index into BEHAVIOURS
    sex: np.ndarray  # "F", "M" or "X": the true value
    birth_year: np.ndarray
    rate: np.ndarray  # mean events per day at home
    anchors: np.ndarray  # (n, 4) cell indices: home cell first, then usual day-time cells

    def __len__(self) -> int:
        return len(self.behaviour)

    def of(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.behaviour == BEHAVIOURS.index(name))

    def names(self) -> np.ndarray:
        return np.array(BEHAVIOURS, dtype=object)[self.behaviour]


def behaviour_counts(n: int, shares: dict[str, float] | None) -> dict[str, int]:
    """Largest-remainder split of n people; each behaviour with a positive share gets at least one when n allows."""
    shares = dict(DEFAULT_BEHAVIOUR_SHARES if shares is None else shares)
    unknown = sorted(set(shares) - set(BEHAVIOURS))
    if unknown:
        raise ConfigError(f"unknown behaviours {unknown}", hint=f"use some of {list(BEHAVIOURS)}")
    if any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise ConfigError(f"behaviour shares must be non-negative with a positive sum (got {shares})")
    total = sum(shares.values())
    wanted = np.array([shares.get(b, 0.0) / total * n for b in BEHAVIOURS])
    counts = np.floor(wanted).astype(int)
    positive = np.array([shares.get(b, 0.0) > 0 for b in BEHAVIOURS])
    if n >= positive.sum():
        counts = np.where(positive & (counts == 0), 1, counts)
    while counts.sum() > n:  # the minimum of one may overshoot: take back from the largest
        counts[np.argmax(counts)] -= 1
    remainder = wanted - np.floor(wanted)
    for i in np.argsort(-remainder, kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return {b: int(c) for b, c in zip(BEHAVIOURS, counts)}


def make_population(rng: np.random.Generator, n: int, shares: dict[str, float] | None, events_per_day: float,
                    cells: Cells, start_year: int) -> Population:
    counts = behaviour_counts(n, shares)
    behaviour = rng.permutation(np.repeat(np.arange(len(BEHAVIOURS)), [counts[b] for b in BEHAVIOURS]))
    migrant = np.isin(behaviour, [BEHAVIOURS.index(b) for b in MIGRANT_BEHAVIOURS])
    female = rng.random(n) < np.where(migrant, MIGRANT_FEMALE_SHARE, 0.5)
    sex = np.where(rng.random(n) < SEX_X_SHARE, "X", np.where(female, "F", "M")).astype(object)
    lows, highs, weights = (np.array(v) for v in zip(*AGE_BANDS))
    band = rng.choice(len(AGE_BANDS), n, p=weights / weights.sum())
    age = rng.integers(lows[band], highs[band])
    migrant_age = np.clip(np.round(rng.normal(MIGRANT_AGE_MEAN, MIGRANT_AGE_SD, n)), 20, 60).astype(int)
    age = np.where(migrant, migrant_age, age)
    # Lognormal with mean one: a heavy tail of very active subscribers around the chosen mean.
    rate = events_per_day * rng.lognormal(-ACTIVITY_SIGMA**2 / 2, ACTIVITY_SIGMA, n)
    # Home cells are in service all period, so a person's night-time place never disappears.
    stable = np.flatnonzero((cells.first_day < 0) & (cells.last_day >= ALWAYS))
    home_cell = rng.choice(stable, n)
    around = np.argsort(rng.random((n, cells.neighbours.shape[1])), axis=1)[:, :3]
    anchors = np.column_stack([home_cell, np.take_along_axis(cells.neighbours[home_cell], around, axis=1)])
    return Population(behaviour, sex, start_year - age, rate, anchors)
