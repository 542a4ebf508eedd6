"""Public reference data: roaming networks (MCC+MNC), country boundaries and their H3 cells, age bands.

The MCC/MNC table comes from the maintained ``mcc-mnc-p1`` package (ITU-T bulletins and
other public sources); alpha-2 codes become alpha-3 through pycountry. Nothing here reads the lake,
and nothing here imports a stage: configuration and every stage may use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import pycountry

from mobility.errors import ConfigError

PACKAGE_DATA = Path(__file__).parent / "data"
DEFAULT_BOUNDARIES = PACKAGE_DATA / "countries-50m.gpkg"

# 0-14, 15-24 and 65+ are the broad groups of the UN Provisional Guidelines on Standard
# International Age Classifications (ST/ESA/STAT/SER.M/74, 1982); 10-year groups in between.
AGE_BANDS = ((0, 14), (15, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, None))
UNKNOWN_AGE = "unknown"
# Project choice: a birth year implying more than this age at the crossing is a data error.
MAX_AGE = 120


def bands_from(lower_bounds: Sequence[int] | None) -> tuple[tuple[int, int | None], ...]:
    """Age bands from their lower bounds (agreement field ``age_bands``); None gives AGE_BANDS."""
    if lower_bounds is None:
        return AGE_BANDS
    lows = [int(b) for b in lower_bounds]
    if not lows or lows[0] < 0 or lows[-1] > MAX_AGE or any(b <= a for a, b in zip(lows, lows[1:])):
        raise ValueError(f"age band lower bounds must increase strictly within 0..{MAX_AGE}, got {lows}")
    return tuple((lo, nxt - 1) for lo, nxt in zip(lows, lows[1:])) + ((lows[-1], None),)


def age_band_values(bands: Sequence[tuple[int, int | None]] = AGE_BANDS) -> tuple[str, ...]:
    """Public labels of the bands, then ``unknown`` (missing, implausible, or below the first band)."""
    return tuple(f"{lo}-{hi}" if hi is not None else f"{lo}+" for lo, hi in bands) + (UNKNOWN_AGE,)


def _alpha3(cc2: str | None) -> str | None:
    if not cc2:
        return None
    country = pycountry.countries.get(alpha_2=cc2)
    return country.alpha_3 if country else None


def _entries(value) -> list[dict]:
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=1)
def mcc_countries() -> dict[str, str]:
    """MCC (3 digits) -> ISO alpha-3. An MCC shared by territories maps to the one with most networks."""
    from mcc_mnc_lut.p1_mcc import P1_MCC

    out = {}
    for mcc, value in P1_MCC.items():
        main = max(_entries(value), key=lambda e: len(e.get("mncs") or []))
        if code := _alpha3(main.get("cc2")):
            out[mcc] = code
    return out


@lru_cache(maxsize=1)
def plmn_countries() -> dict[str, str]:
    """Every known MCC+MNC (5 or 6 digits) -> ISO alpha-3 of the network's country.

    A network listed for several territories keeps its MCC's main country when that is one
    of them, else the first listed.
    """
    from mcc_mnc_lut.p1_mnc import P1_MNC

    by_mcc = mcc_countries()
    out: dict[str, str] = {}
    for plmn, value in P1_MNC.items():
        if not (plmn.isdigit() and len(plmn) in (5, 6)):
            continue
        codes = [c for e in _entries(value) for cc2 in (e.get("cc2s") or []) if (c := _alpha3(cc2))]
        main = by_mcc.get(plmn[:3])
        code = main if (main in codes or not codes) else codes[0]
        if code:
            out[plmn] = code
    return out


def plmns_of(country_iso3: str) -> list[str]:
    """Known networks of a country, sorted (used by the synthetic generator)."""
    return sorted(p for p, c in plmn_countries().items() if c == country_iso3)


@lru_cache(maxsize=4)
def load_boundaries(path: str | Path | None = None, iso3_column: str = "iso3"):
    """Country polygons as a GeoDataFrame with columns ``iso3`` and ``geometry`` (EPSG:4326)."""
    import geopandas as gpd

    path = Path(path or DEFAULT_BOUNDARIES)
    if not path.is_file():
        raise ConfigError("boundary file not found", where=str(path),
                          hint="set 'boundaries' in the pipeline config to an existing GeoPackage or shapefile")
    gdf = gpd.read_file(path)
    if iso3_column not in gdf.columns:
        raise ConfigError(f"boundary file has no column {iso3_column!r} (columns: {list(gdf.columns)})",
                          where=str(path), hint="set 'boundary_iso3_column' to the column holding ISO alpha-3 codes")
    gdf = gdf.rename(columns={iso3_column: "iso3"})
    gdf = gdf[gdf["iso3"].notna() & (gdf["iso3"].astype(str).str.len() == 3)]
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(4326)
    return gdf[["iso3", "geometry"]].reset_index(drop=True)


def h3_cells_of_country(iso3: str, resolution: int, boundaries=None) -> list[str]:
    """Every H3 cell at ``resolution`` whose centre lies in the country (public domain of releases)."""
    import h3

    boundaries = load_boundaries() if boundaries is None else boundaries
    shape = boundaries[boundaries["iso3"] == iso3].geometry.union_all()
    return sorted(h3.geo_to_cells(shape.__geo_interface__, resolution))
