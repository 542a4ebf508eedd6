"""The home operator's cell plan: ids, places, technologies and service periods."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa

from mobility.reference import plmns_of
from mobility.synth.clock import Calendar
from mobility.synth.geo import (
    MAX_CELLS,
    TECHNOLOGIES,
    TECHNOLOGY_SHARES,
    Cells,
    clustered_points,
    jitter_inside,
    nearest,
)

ALWAYS = 10**6  # a service period open on that side
COMMISSIONED_SHARE = 0.04  # cells switched on during the data period
DECOMMISSIONED_SHARE = 0.03
RELOCATED_SHARE = 0.02  # a cell_id reused at a nearby site: two rows in cells.csv


def cell_count(subscribers: int) -> int:
    return int(min(MAX_CELLS, max(60, subscribers // 10)))


def make_cells(rng: np.random.Generator, home: str, subscribers: int, cal: Calendar) -> tuple[Cells, pa.Table, str]:
    """Cells for the home operator; returns the model, the cells.csv table and the operator's PLMN."""
    n = cell_count(subscribers)
    plmn = str(rng.choice(plmns_of(home)))
    lonlat, cluster = clustered_points(rng, home, n)
    lac = 100 + cluster + 1
    ci = rng.permutation(90000)[:n] + 10000
    cell_id = np.array([f"{plmn[:3]}-{plmn[3:]}-{a:04d}-{b:05d}" for a, b in zip(lac, ci)], dtype=object)
    technology = np.array(TECHNOLOGIES, dtype=object)[rng.choice(len(TECHNOLOGIES), n, p=TECHNOLOGY_SHARES)]
    first_day = -rng.integers(200, 4000, n)
    last_day = np.full(n, ALWAYS)
    relocate_day = np.full(n, ALWAYS)
    if cal.n_days > 90:
        role = rng.random(n)
        inner = rng.integers(30, cal.n_days - 30, n)
        on = role < COMMISSIONED_SHARE
        off = (role >= COMMISSIONED_SHARE) & (role < COMMISSIONED_SHARE + DECOMMISSIONED_SHARE)
        moved = (role >= 1 - RELOCATED_SHARE)
        first_day = np.where(on, inner, first_day)
        last_day = np.where(off, inner, last_day)
        relocate_day = np.where(moved, inner, relocate_day)
    cells = Cells(cell_id, lonlat, cluster, first_day, last_day, nearest(lonlat, 8))
    return cells, _cells_table(rng, home, cells, technology, relocate_day, cal), plmn


def _cells_table(rng, home, cells: Cells, technology, relocate_day, cal: Calendar) -> pa.Table:
    moved = np.flatnonzero(relocate_day < ALWAYS)
    new_site = jitter_inside(rng, home, cells.lonlat[moved], 0.01)

    def day_label(days):
        return [None if abs(d) >= ALWAYS else (cal.start + timedelta(days=int(d))).isoformat() for d in days]

    ids = np.concatenate([cells.cell_id, cells.cell_id[moved]])
    lonlat = np.concatenate([cells.lonlat, new_site])
    valid_from = np.concatenate([cells.first_day, relocate_day[moved]])
    valid_to = np.concatenate([np.where(relocate_day < ALWAYS, relocate_day - 1, cells.last_day),
                               cells.last_day[moved]])
    order = np.lexsort((valid_from, ids))
    return pa.table({
        "cell_id": pa.array(ids[order], pa.string()),
        "latitude": pa.array(np.round(lonlat[order, 1], 6)),
        "longitude": pa.array(np.round(lonlat[order, 0], 6)),
        "valid_from": pa.array(day_label(valid_from[order]), pa.string()),
        "valid_to": pa.array(day_label(valid_to[order]), pa.string()),
        "technology": pa.array(np.concatenate([technology, technology[moved]])[order], pa.string()),
    })
