"""SIM cards: each person's numbers (primary, after churn, second SIM), devices and counterparts."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mobility.synth.cells import ALWAYS
from mobility.synth.faults import PersonFaults
from mobility.synth.numbers import imeis, mobile_numbers
from mobility.synth.params import MSISDN_FORMAT_SHARES
from mobility.synth.trajectories import Trajectories

DUAL_SHARE = 0.35  # share of a dual-SIM person's events on the second SIM
MAX_COUNTERPARTS = 20000


@dataclass(frozen=True)
class Sims:
    person: np.ndarray  # owner of each SIM
    e164: np.ndarray
    spellings: pa.Array  # 3 per SIM (E.164, national, spaced national); foreign SIMs always E.164
    foreign: np.ndarray
    imei: pa.Array
    primary: np.ndarray  # per person
    new_sim: np.ndarray  # per person: SIM after churn, -1 when none
    switch_day: np.ndarray  # per person: first day on new_sim
    second_sim: np.ndarray  # per person: dual SIM, -1 when none
    counterparts: pa.Array  # numbers people talk to, as written in the records

    def active(self, person: np.ndarray, day: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """The SIM carrying each event: churn switches on a day, dual SIMs split by ``draw`` in [0, 1)."""
        sim = np.where(day >= self.switch_day[person], self.new_sim[person], self.primary[person])
        second = self.second_sim[person]
        return np.where((second >= 0) & (draw < DUAL_SHARE), second, sim)


def foreign_numbers(rng: np.random.Generator, traj: Trajectories) -> np.ndarray:
    """E.164 of each inbound roamer's own foreign SIM (None for everyone else): drawn once for the population
    when several operators serve it, so that a roamer keeps one number on every network they roam on."""
    out = np.full(len(traj.foreign_sim), None, dtype=object)
    foreign_people = np.flatnonzero(traj.foreign_sim)
    for code in np.unique(traj.origin[foreign_people]):
        people = foreign_people[traj.origin[foreign_people] == code]
        out[people] = mobile_numbers(rng, traj.countries[code], len(people)).e164
    return out


def make_sims(rng: np.random.Generator, traj: Trajectories, faults: PersonFaults,
              exclude: Collection[int] = (), foreign: np.ndarray | None = None) -> Sims:
    """Every SIM of the people of ``traj``. ``exclude``: national numbers already taken (by another operator);
    ``foreign``: the roamers' foreign numbers (``foreign_numbers``), drawn here when None."""
    n = len(traj.foreign_sim)
    home_people = np.flatnonzero(~traj.foreign_sim)
    n_extra = int(min(MAX_COUNTERPARTS, max(500, 2 * n)))
    home_numbers = mobile_numbers(rng, traj.countries[0], len(home_people) + len(faults.churn_person)
                                  + len(faults.dual_person) + n_extra, exclude)
    formats = home_numbers.formats()
    # SIM rows: primaries of nationals/immigrants, then churn SIMs, then second SIMs, then foreign SIMs.
    owners = [home_people, faults.churn_person, faults.dual_person]
    n_home_sims = sum(len(o) for o in owners)
    spell = [formats[:n_home_sims]]
    e164 = [home_numbers.e164[:n_home_sims]]
    foreign_people = np.flatnonzero(traj.foreign_sim)
    for code in np.unique(traj.origin[foreign_people]):
        people = foreign_people[traj.origin[foreign_people] == code]
        numbers = (mobile_numbers(rng, traj.countries[code], len(people)).e164 if foreign is None
                   else np.asarray(foreign[people], dtype=object))
        owners.append(people)
        spell.append(np.repeat(numbers[:, None], 3, axis=1))
        e164.append(numbers)
    person = np.concatenate(owners)
    spellings = np.concatenate(spell)
    sim_of = np.arange(len(person))
    primary = np.full(n, -1)
    primary[np.concatenate([home_people, *owners[3:]])] = np.concatenate(
        [sim_of[:len(home_people)], sim_of[n_home_sims:]])
    new_sim = np.full(n, -1)
    switch_day = np.full(n, ALWAYS)
    base = len(home_people)
    new_sim[faults.churn_person] = sim_of[base:base + len(faults.churn_person)]
    switch_day[faults.churn_person] = faults.churn_day
    base += len(faults.churn_person)
    second_sim = np.full(n, -1)
    second_sim[faults.dual_person] = sim_of[base:base + len(faults.dual_person)]
    extra = formats[n_home_sims:]
    chosen = rng.choice(3, len(extra), p=MSISDN_FORMAT_SHARES)
    counterparts = np.concatenate([extra[np.arange(len(extra)), chosen], home_numbers.e164[:n_home_sims]])
    return Sims(person, np.concatenate(e164), pa.array(spellings.ravel(), pa.string()),
                traj.foreign_sim[person], pa.array(imeis(rng, len(person)), pa.string()),
                primary, new_sim, switch_day, second_sim, pa.array(counterparts, pa.string()))
