"""Places: cell sites clustered inside the home country, points inside any country, the nearest neighbour."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely

from mobility.errors import ConfigError
from mobility.reference import load_boundaries, plmns_of

MAX_CELLS = 5000
TECHNOLOGIES = ("2G", "3G", "4G", "5G")
TECHNOLOGY_SHARES = (0.10, 0.20, 0.55, 0.15)


@lru_cache(maxsize=64)
def country_geometry(iso3: str):
    gdf = load_boundaries()
    rows = gdf[gdf["iso3"] == iso3]
    if rows.empty:
        raise ConfigError(f"no boundary polygon for {iso3}", where="mobility.reference.load_boundaries()",
                          hint="use a country present in the boundary file")
    geom = shapely.union_all(rows.geometry.values)
    shapely.prepare(geom)
    return geom


def nearest_foreign_country(home: str) -> str:
    """The country with a known mobile network whose border lies closest to the home country's."""
    gdf = load_boundaries()
    others = gdf[(gdf["iso3"] != home) & gdf["iso3"].map(lambda c: bool(plmns_of(c)))]
    distances = shapely.distance(others.geometry.values, country_geometry(home))
    order = np.lexsort((others["iso3"].to_numpy(), distances))  # ties broken by code, for determinism
    return str(others["iso3"].to_numpy()[order[0]])


def _inside(rng: np.random.Generator, geom, n: int, draw) -> np.ndarray:
    """n points from ``draw(size) -> (x, y)`` that fall inside ``geom``, by vectorised rejection."""
    kept: list[np.ndarray] = [np.empty((0, 2))]
    have = 0
    for _ in range(10_000):
        if have >= n:
            break
        x, y = draw(max(64, 2 * (n - have)))
        ok = shapely.contains_xy(geom, x, y)
        pts = np.column_stack([x[ok], y[ok]])[: n - have]
        kept.append(pts)
        have += len(pts)
    if have < n:
        raise ConfigError("could not place points inside the country polygon", hint="check the boundary file")
    return np.concatenate(kept)


def clustered_points(rng: np.random.Generator, iso3: str, n: int, centres: int = 8,
                     rural_share: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Points inside a country: most around a few population centres (Zipf-weighted), some anywhere.

    Returns (lon/lat array (n, 2), cluster number per point, -1 for the rural ones).
    """
    geom = country_geometry(iso3)
    x0, y0, x1, y1 = geom.bounds

    def uniform(size):
        return rng.uniform(x0, x1, size), rng.uniform(y0, y1, size)

    spread = np.sqrt(geom.area)
    hubs = _inside(rng, geom, centres, uniform)
    sizes = 0.02 * spread * rng.uniform(0.5, 2.0, centres)
    weights = 1.0 / np.arange(1, centres + 1)
    n_rural = int(round(n * rural_share))
    per_hub = rng.multinomial(n - n_rural, weights / weights.sum())
    points, cluster = [_inside(rng, geom, n_rural, uniform)], [np.full(n_rural, -1)]
    for k in range(centres):
        def around(size, k=k):
            return rng.normal(hubs[k, 0], sizes[k], size), rng.normal(hubs[k, 1], sizes[k], size)
        points.append(_inside(rng, geom, int(per_hub[k]), around))
        cluster.append(np.full(int(per_hub[k]), k))
    return np.concatenate(points), np.concatenate(cluster)


def jitter_inside(rng: np.random.Generator, iso3: str, points: np.ndarray, scale: float) -> np.ndarray:
    """Move points a little; a move that would leave the country keeps the original point."""
    moved = points + rng.normal(0.0, scale, points.shape)
    ok = shapely.contains_xy(country_geometry(iso3), moved[:, 0], moved[:, 1])
    return np.where(ok[:, None], moved, points)


@dataclass(frozen=True)
class Cells:
    cell_id: np.ndarray
    lonlat: np.ndarray  # where each cell_id is on day 0 (relocated cells move later)
    cluster: np.ndarray
    first_day: np.ndarray  # first day in service (day index), very negative when long established
    last_day: np.ndarray  # last day in service, very large when still active
    neighbours: np.ndarray  # (n, 8) nearest other cells: the places a person's day is spent


def nearest(lonlat: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest other points (brute force in blocks: cells are at most MAX_CELLS)."""
    lat_scale = np.cos(np.radians(lonlat[:, 1].mean()))
    xy = lonlat * np.array([lat_scale, 1.0])
    out = np.empty((len(xy), k), dtype=np.int64)
    for lo in range(0, len(xy), 512):
        block = xy[lo:lo + 512]
        d2 = ((block[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
        d2[np.arange(len(block)), np.arange(lo, lo + len(block))] = np.inf
        part = np.argpartition(d2, k, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1, kind="stable")
        out[lo:lo + 512] = np.take_along_axis(part, order, axis=1)
    return out
