"""Where each person sleeps every night, and the residence changes that this implies.

The matrix ``country[p, col]`` holds the country of the night that starts on day ``col - PAD``
(a presence day runs 07:00 to 07:00 local, so a crossing on day d means the first night abroad is d).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobility.synth.clock import PAD, Calendar
from mobility.synth.population import Population

TRIP_MEDIAN_DAYS, TRIP_MAX_DAYS = 7, 30
TEMPORARY_DAYS = (92, 335)  # 3 to 11 months abroad
HOME_VISIT_SHARE = 0.4  # long-term emigrants with short home visits
HOME_VISIT_DAYS = (7, 29)
EARLY_EMIGRANT_SHARE = 0.6  # so that short test periods still hold decidable departures


@dataclass(frozen=True)
class Trajectories:
    countries: tuple[str, ...]  # index 0 is the home country
    country: np.ndarray  # (persons, calendar columns) int16 index into countries
    observed: np.ndarray  # (persons, columns) bool: the operator carries this person's SIM that night
    foreign_sim: np.ndarray  # (persons,) bool: the person's SIM is from their origin country
    origin: np.ndarray  # (persons,) int: the person's own country (home for nationals)
    destination: np.ndarray  # (persons,) int: the other country of their story, -1 if none
    changes: dict[str, np.ndarray]  # person, from_c, to_c, crossing (day), kind, direction, observable

    def code(self, iso3: str) -> int:
        return self.countries.index(iso3)


def _fill(matrix: np.ndarray, rows: np.ndarray, first: np.ndarray, stop: np.ndarray, value: np.ndarray) -> None:
    """matrix[rows[i], first[i]:stop[i]] = value[i] for all i at once (columns already clipped)."""
    first = np.clip(first, 0, matrix.shape[1])
    stop = np.clip(stop, first, matrix.shape[1])
    lengths = stop - first
    if lengths.sum() == 0:
        return
    starts = np.repeat(first - np.cumsum(lengths) + lengths, lengths)
    cols = starts + np.arange(lengths.sum())
    matrix[np.repeat(rows, lengths), cols] = np.repeat(value, lengths)


def make_trajectories(rng: np.random.Generator, pop: Population, cal: Calendar, home: str,
                      corridors: dict[str, float], origins: dict[str, float], extra: tuple[str, ...]) -> Trajectories:
    countries = (home, *sorted(set(corridors) | set(origins) | set(extra) - {home}))
    n, cols, days = len(pop), cal.n_cols, cal.n_days
    country = np.zeros((n, cols), dtype=np.int16)
    dest_codes = np.array([countries.index(c) for c in corridors])
    dest_p = np.array(list(corridors.values()))
    orig_codes = np.array([countries.index(c) for c in origins])
    orig_p = np.array(list(origins.values()))
    origin = np.zeros(n, dtype=np.int64)
    destination = np.full(n, -1, dtype=np.int64)
    changes: list[tuple] = []

    def day(lo, hi, size):  # uniform day index in [lo, hi), robust to short periods
        hi = max(hi, lo + 1)
        return rng.integers(lo, hi, size)

    # Short trips: 1-4 trips, each inside its own slice of the period so trips never merge.
    p = pop.of("short_trip")
    k = 1 + np.minimum(rng.poisson(0.8, len(p)), 3)
    rows = np.repeat(p, k)
    slot = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    width = days // np.repeat(k, k)
    length = np.clip(np.round(rng.lognormal(np.log(TRIP_MEDIAN_DAYS), 0.6, len(rows))), 2, TRIP_MAX_DAYS)
    length = np.minimum(length, np.maximum(width - 2, 1)).astype(int)
    first = slot * width + (rng.random(len(rows)) * np.maximum(width - length, 1)).astype(int)
    trip_dest = rng.choice(dest_codes, len(rows), p=dest_p)
    _fill(country, rows, first + PAD, first + length + PAD, trip_dest)
    destination[p] = trip_dest[np.cumsum(k) - k]

    # Long-term emigrants: leave during the period, stay to its end, some come home for short visits.
    p = pop.of("emigrant_long_term")
    dest = rng.choice(dest_codes, len(p), p=dest_p)
    # Most leave early enough for the 12/16-month rule to decide within the data; the rest any time.
    early = rng.random(len(p)) < EARLY_EMIGRANT_SHARE
    cross = np.where(early, day(1, days - 380, len(p)), day(1, days - 14, len(p)))
    _fill(country, p, cross + PAD, np.full(len(p), cols), dest)
    for j in range(2):
        visit = (rng.random(len(p)) < HOME_VISIT_SHARE / (j + 1))
        v_first = cross + 60 + 200 * j + rng.integers(0, 120, len(p))
        v_len = rng.integers(*HOME_VISIT_DAYS, len(p))
        _fill(country, p[visit], (v_first + PAD)[visit], (v_first + v_len + PAD)[visit], np.zeros(visit.sum()))
    destination[p] = dest
    changes += [(p, 0, dest, cross, "long_term", "departure", True)]

    # Temporary workers: 3 to 11 months abroad, then back.
    p = pop.of("temporary_worker")
    dest = rng.choice(dest_codes, len(p), p=dest_p)
    cross = day(1, days - 30, len(p))
    stay = rng.integers(TEMPORARY_DAYS[0], TEMPORARY_DAYS[1] + 1, len(p))
    _fill(country, p, cross + PAD, cross + stay + PAD, dest)
    destination[p] = dest
    changes += [(p, 0, dest, cross, "temporary", "departure", True)]

    # Returning migrants: abroad (roaming) when the data starts, home for good from their return.
    p = pop.of("returning_migrant")
    dest = rng.choice(dest_codes, len(p), p=dest_p)
    back = day(14, days - 30, len(p))
    _fill(country, p, np.zeros(len(p), dtype=int), back + PAD, dest)
    destination[p] = dest
    changes += [(p, dest, 0, back, "long_term", "arrival", True)]

    observed = np.ones((n, cols), dtype=bool)
    # Immigrants: arrive from their origin and take a local SIM; their life before is invisible to us.
    p = pop.of("immigrant")
    orig = rng.choice(orig_codes, len(p), p=orig_p)
    arrive = day(1, days - 30, len(p))
    _fill(country, p, np.zeros(len(p), dtype=int), arrive + PAD, orig)
    activation = arrive + rng.integers(0, 3, len(p))
    _fill(observed, p, np.zeros(len(p), dtype=int), activation + PAD, np.zeros(len(p), dtype=bool))
    origin[p] = orig
    destination[p] = 0
    changes += [(p, orig, 0, arrive, "long_term", "arrival", False)]

    # Inbound roamers: live in their origin, visit the home country once or twice on their own SIM.
    p = pop.of("inbound_roamer")
    orig = rng.choice(orig_codes, len(p), p=orig_p)
    country[p] = orig[:, None]
    k = 1 + (rng.random(len(p)) < 0.3)
    rows = np.repeat(p, k)
    slot = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    width = days // np.repeat(k, k)
    length = np.minimum(rng.integers(2, 31, len(rows)), np.maximum(width - 2, 1))
    first = slot * width + (rng.random(len(rows)) * np.maximum(width - length, 1)).astype(int)
    _fill(country, rows, first + PAD, first + length + PAD, np.zeros(len(rows), dtype=np.int16))
    observed[p] = country[p] == 0
    origin[p] = orig
    destination[p] = 0
    foreign_sim = np.zeros(n, dtype=bool)
    foreign_sim[p] = True

    return Trajectories(countries, country, observed, foreign_sim, origin, destination, _stack(changes))


def _stack(changes: list[tuple]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("person", "from_c", "to_c", "crossing", "kind",
                                                          "direction", "observable")}
    for person, from_c, to_c, crossing, kind, direction, observable in changes:
        size = len(person)
        for key, value in zip(parts, (person, from_c, to_c, crossing, kind, direction, observable)):
            parts[key].append(np.broadcast_to(np.asarray(value, dtype=object if isinstance(value, str) else None),
                                              (size,)).copy())
    out = {k: np.concatenate(v) if v else np.array([]) for k, v in parts.items()}
    order = np.lexsort((out["person"], out["crossing"]))
    return {k: v[order] for k, v in out.items()}
