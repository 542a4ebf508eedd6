"""Everything drawn once before records are written: shared by the CDR and payment writers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mobility.synth.clock import Calendar, TimeRenderer
from mobility.synth.faults import PersonFaults
from mobility.synth.geo import Cells
from mobility.synth.population import Population
from mobility.synth.rng import stream as _stream
from mobility.synth.sims import Sims
from mobility.synth.trajectories import Trajectories


@dataclass(frozen=True)
class World:
    seed: int
    cal: Calendar
    fault_rate: float
    pop: Population
    traj: Trajectories
    cells: Cells
    sims: Sims
    faults: PersonFaults
    neighbour: int  # country code of the nearest foreign network (border spillover)
    zone_offsets: np.ndarray  # (countries, columns) UTC offset in seconds at local noon
    renderer: TimeRenderer  # instants as written in the home zone
    plmns: tuple[np.ndarray, ...]  # networks per country code (index 0, home, is unused)
    invalid_msisdn: np.ndarray  # malformed numbers used by the invalid_msisdn fault
    unknown_cells: np.ndarray  # cell ids absent from cells.csv
    corridors: tuple[str, ...]  # destinations of nationals abroad (they pay there)
    person_id: np.ndarray  # per person of this world: the population-wide id (P000123)
    operator: str | None  # None: the single operator of a default run; else the id keying this operator's draws
    drop_person: np.ndarray  # emigrants who stop using this operator's SIMs abroad (indices of this world)
    drop_day: np.ndarray  # their first day without any event
    drop_share: float  # the sim_drop_abroad parameter (0: no such fault is planned nor counted)

    @property
    def home(self) -> str:
        return self.traj.countries[0]

    def stream(self, name: str, *key: int) -> np.random.Generator:
        """The named stream of this operator: the default run's streams keep their names, so its bytes do not
        change; another operator's draws are keyed by its id, independently of the other operators."""
        return _stream(self.seed, keyed(name, self.operator), *key)


def keyed(name: str, operator: str | None) -> str:
    return name if operator is None else f"{name}@{operator}"


@dataclass(frozen=True)
class People:
    """What every operator shares: the cell sites, the people, their journeys and who drops the SIM abroad."""

    seed: int
    cal: Calendar
    pop: Population
    traj: Trajectories
    cells: Cells
    cells_table: pa.Table
    plmn: str  # network code of the cell plan (the default run's operator)
    neighbour: int
    zone_offsets: np.ndarray
    renderer: TimeRenderer
    plmns: tuple[np.ndarray, ...]
    corridors: tuple[str, ...]
    drop_person: np.ndarray
    drop_day: np.ndarray
