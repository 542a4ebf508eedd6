"""Everything drawn once before records are written: shared by the CDR and payment writers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobility.synth.clock import Calendar, TimeRenderer
from mobility.synth.faults import PersonFaults
from mobility.synth.geo import Cells
from mobility.synth.population import Population
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

    @property
    def home(self) -> str:
        return self.traj.countries[0]
