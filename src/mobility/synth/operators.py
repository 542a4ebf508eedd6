"""One population, several operators: who holds whose SIMs, and each operator's share of the people.

Every person holds a SIM of each operator independently, with that operator's market share as the
probability (``migrant_share_ratio`` makes labour migrants more or less likely to hold one), so some
people hold none and some hold SIMs of two operators. An operator's world is the population restricted
to its holders: the same people, journeys and person ids, its own numbers, cells and faults.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pyarrow as pa

from mobility.errors import ConfigError
from mobility.synth.clock import PAD, Calendar
from mobility.synth.faults import PersonFaults
from mobility.synth.geo import Cells
from mobility.synth.params import BEHAVIOURS
from mobility.synth.population import MIGRANT_BEHAVIOURS, Population
from mobility.synth.trajectories import Trajectories, _fill

OPERATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_IDS = ("truth", "population")  # folders of a multi-operator run beside the operators' own
SIM_DROP_DAYS = (1, 31)  # an emigrant who drops the home SIM does so 1 to 30 days after crossing (assumption)


def check_operators(operators: dict[str, float], plmns: list[str], home: str) -> dict[str, float]:
    """Operator ids and market shares, checked; in the order of their ids (the order of every draw)."""
    if not isinstance(operators, dict) or not operators:
        raise ConfigError("operators needs at least one operator id and its market share",
                          hint="for example operators={'globe': 0.6, 'smart': 0.5}; --operator ID=SHARE")
    for op, share in operators.items():
        if not isinstance(op, str) or not OPERATOR_ID.fullmatch(op):
            raise ConfigError(f"operator id {op!r} is not a plain name",
                              hint="letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64")
        if op.lower() in RESERVED_IDS:
            raise ConfigError(f"operator id {op!r} is reserved", hint=f"{' and '.join(RESERVED_IDS)} name the "
                              "shared folders of a multi-operator run; choose another id")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ConfigError(f"market share of operator {op!r} must be above 0 and at most 1 (got {share!r})")
    folded = [op.lower() for op in operators]
    if len(set(folded)) != len(folded):
        raise ConfigError(f"operator ids must be distinct, ignoring case (got {sorted(operators)})",
                          hint="each operator gets a folder of its own, and some file systems ignore case")
    if len(operators) > len(plmns):
        raise ConfigError(f"{len(operators)} operators but only {len(plmns)} mobile networks are known for {home}",
                          where="mobility.reference.plmns_of", hint="each operator needs a network code of its own")
    return {op: float(operators[op]) for op in sorted(operators)}


def check_share(name: str, value: float | None, upper: float = 1.0) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 <= value <= upper):
        raise ConfigError(f"{name} must be between 0 and {upper:g} (got {value!r})")


def check_ratio(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"migrant_share_ratio must be a positive number (got {value!r})",
                          hint="1 holds migrants and everyone else alike; 0.5 halves the migrants' odds")


def check_resolution(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 15:
        raise ConfigError(f"region_resolution must be an H3 resolution from 0 to 15 (got {value!r})",
                          hint="5 gives cells of about 250 km2; smaller numbers give fewer, larger regions")


def operator_plmns(base: str, plmns: list[str], count: int) -> list[str]:
    """A network code per operator (in id order): the cell plan's own first, then the others in order."""
    return ([base] + sorted(set(plmns) - {base}))[:count]


def holding_probability(behaviour: np.ndarray, foreign_sim: np.ndarray, share: float, ratio: float) -> np.ndarray:
    """Per person, the probability to hold a SIM of an operator of market ``share``.

    Labour migrants (``population.MIGRANT_BEHAVIOURS``) are ``ratio`` times as likely as everyone else
    (capped at 1), and both probabilities are set so that the expected share of the people who can hold a
    home SIM (all but inbound roamers) stays ``share``. An inbound roamer, on a foreign SIM, roams on the
    operator's network with probability ``share``."""
    p = np.full(len(behaviour), float(share))
    eligible = ~np.asarray(foreign_sim, dtype=bool)
    migrant = np.isin(behaviour, [BEHAVIOURS.index(b) for b in MIGRANT_BEHAVIOURS]) & eligible
    other = eligible & ~migrant
    n_all, n_mig, n_other = int(eligible.sum()), int(migrant.sum()), int(other.sum())
    if ratio == 1 or not n_mig or not n_other:
        return p
    target = share * n_all  # expected holders among the eligible
    p_other = target / (n_other + ratio * n_mig)
    p_mig = ratio * p_other
    if p_mig > 1:
        p_mig, p_other = 1.0, (target - n_mig) / n_other
    elif p_other > 1:
        p_other, p_mig = 1.0, (target - n_other) / n_mig
    p[other], p[migrant] = min(max(p_other, 0.0), 1.0), min(max(p_mig, 0.0), 1.0)
    return p


def draw_holders(rng: np.random.Generator, probability: np.ndarray) -> np.ndarray:
    """Indices of the people who hold the operator's SIM (one uniform draw per person)."""
    return np.flatnonzero(rng.random(len(probability)) < probability)


def plan_sim_drops(rng: np.random.Generator, traj: Trajectories, cal: Calendar,
                   share: float) -> tuple[np.ndarray, np.ndarray]:
    """Long-term emigrants who stop using their home SIMs abroad: (person, first day without events), by person.

    Each emigrant drops with probability ``share``, ``SIM_DROP_DAYS`` after crossing; a drop after the
    data's end changes nothing and is not listed."""
    ch = traj.changes
    empty = np.zeros(0, dtype=np.int64)
    if share <= 0 or not len(ch["person"]):
        return empty, empty.copy()
    leaving = (ch["kind"] == "long_term") & (ch["direction"] == "departure")
    person = ch["person"][leaving].astype(np.int64)
    crossing = ch["crossing"][leaving].astype(np.int64)
    chosen = rng.random(len(person)) < share
    day = crossing + rng.integers(*SIM_DROP_DAYS, len(person))
    keep = chosen & (day < cal.n_days)
    order = np.argsort(person[keep], kind="stable")
    return person[keep][order], day[keep][order]


def without_dropped_sims(traj: Trajectories, person: np.ndarray, day: np.ndarray) -> Trajectories:
    """The operators carry no event of a dropper from the drop day on (home visits included)."""
    if not len(person):
        return traj
    observed = traj.observed.copy()
    _fill(observed, person, day + PAD, np.full(len(person), observed.shape[1]), np.zeros(len(person), dtype=bool))
    return replace(traj, observed=observed)


def subset_population(pop: Population, keep: np.ndarray) -> Population:
    return Population(pop.behaviour[keep], pop.sex[keep], pop.birth_year[keep], pop.rate[keep], pop.anchors[keep])


def subset_trajectories(traj: Trajectories, keep: np.ndarray) -> Trajectories:
    """The journeys of the people ``keep`` (sorted indices), renumbered 0..len(keep)-1 in the same order."""
    renumber = np.full(len(traj.foreign_sim), -1, dtype=np.int64)
    renumber[keep] = np.arange(len(keep))
    ch = traj.changes
    if len(ch["person"]):
        mine = renumber[ch["person"].astype(np.int64)] >= 0
        changes = {k: v[mine] for k, v in ch.items()}
        changes["person"] = renumber[changes["person"].astype(np.int64)]
    else:
        changes = dict(ch)
    return Trajectories(traj.countries, traj.country[keep], traj.observed[keep], traj.foreign_sim[keep],
                        traj.origin[keep], traj.destination[keep], changes)


def subset_drops(person: np.ndarray, day: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mine = np.isin(person, keep)
    return np.searchsorted(keep, person[mine]), day[mine]


def with_multi_sim(rng: np.random.Generator, faults: PersonFaults, traj: Trajectories, share: float) -> PersonFaults:
    """Second SIMs of the operator for a ``share`` of its holders on a home SIM (any behaviour), instead of
    the ``fault_rate`` of stayers of a default run."""
    dual = np.flatnonzero(~traj.foreign_sim & (rng.random(len(traj.foreign_sim)) < share))
    return replace(faults, dual_person=dual)


def relabel_cells(cells: Cells, table: pa.Table, plmn: str) -> tuple[Cells, pa.Table]:
    """The same sites under another operator's network code: ``515-02-0101-12345`` -> ``515-03-0101-12345``.

    Operators share the towers of the synthetic cell plan (a simplification): a person's usual places
    are the same on every network, the cell ids are each operator's own."""
    prefix = f"{plmn[:3]}-{plmn[3:]}-"

    def renamed(ids) -> list[str]:
        return [prefix + str(c).split("-", 2)[2] for c in ids]

    column = pa.array(renamed(table["cell_id"].to_pylist()), pa.string())
    return (replace(cells, cell_id=np.array(renamed(cells.cell_id), dtype=object)),
            table.set_column(table.schema.get_field_index("cell_id"), "cell_id", column))
