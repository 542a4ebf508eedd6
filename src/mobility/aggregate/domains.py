"""Public release domains of the flow tables, built from the agreement and reference data only.

Every cell of a domain is published, zeros included, so the presence of a row says nothing about
the data. Nothing in this module reads the office zone.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import h3
import pandas as pd

from mobility.reference import (  # noqa: F401  (AGE_BANDS, bands_from and age_band_values are part of this module's face)
    AGE_BANDS,
    MAX_AGE,
    UNKNOWN_AGE,
    age_band_values,
    bands_from,
    h3_cells_of_country,
    load_boundaries,
)

OTHER = "OTHER"  # a country outside the agreement's public country list
UNKNOWN = "UNKNOWN"  # a change without a usable home-country cell
UNKNOWN_SEX = "U"
SEXES = ("F", "M", "X")
SEX_VALUES = SEXES + (UNKNOWN_SEX,)
AGE_BAND_VALUES = age_band_values(AGE_BANDS)

BY_COLUMNS = ("sex", "age_band")  # the demographic breakdowns (flows and remittances), in key order
# Arrivals to the home country split into returning residents (a long-term departure from home of the same
# pseudonym came before) and first arrivals; a departure's value is NOT_ARRIVAL.
ARRIVAL_TYPE = "arrival_type"
RETURNING, FIRST_ARRIVAL, NOT_ARRIVAL = "returning_resident", "first_arrival", "not_applicable"
ARRIVAL_TYPES = (RETURNING, FIRST_ARRIVAL)
FLOW_BY_COLUMNS = (*BY_COLUMNS, ARRIVAL_TYPE)  # the optional breakdowns of the international table, in key order
FROM, TO = "from_country", "to_country"
ORIGIN_CELL, DESTINATION_CELL = "origin_h3_cell", "destination_h3_cell"
COUNT = "count"


def age_band(age: int | None, bands: Sequence[tuple[int, int | None]] = AGE_BANDS) -> str:
    """Band of an age in whole years (``unknown`` when missing, negative, above MAX_AGE or in no band)."""
    if age is None or pd.isna(age) or age < 0 or age > MAX_AGE:
        return UNKNOWN_AGE
    for (lo, hi), label in zip(bands, age_band_values(bands)):
        if age >= lo and (hi is None or age <= hi):
            return label
    return UNKNOWN_AGE  # below the first band's lower bound


def sex_value(sex: str | None) -> str:
    return sex if sex in SEXES else UNKNOWN_SEX


def breakdown_values(frame: pd.DataFrame, by: Sequence[str],
                     age_bands: Sequence[tuple[int, int | None]] = AGE_BANDS) -> pd.DataFrame:
    """Map the ``sex`` / ``age_band`` breakdowns of ``frame`` (in place) onto their public values."""
    if "sex" in by:
        frame["sex"] = [sex_value(s) for s in frame["sex"]]
    if "age_band" in by:
        values = age_band_values(age_bands)
        frame["age_band"] = [b if b in values else UNKNOWN_AGE for b in frame["age_band"]]
    return frame


def foreign_values(countries: Sequence[str], home: str) -> list[str]:
    """The other side of a flow: every listed country but home, then OTHER."""
    return [c for c in countries if c != home] + [OTHER]


def country_value(country: str | None, countries: Sequence[str]) -> str:
    return country if country in set(countries) else OTHER


def international_domain(countries: Sequence[str], home: str, by: Sequence[str] = (),
                         age_bands: Sequence[tuple[int, int | None]] = AGE_BANDS) -> pd.DataFrame:
    """Ordered (from_country, to_country) pairs with home on exactly one side, times the breakdowns.

    This operator observes its own subscribers only, so a change is either a departure from home or
    an arrival to home: pairs between two foreign countries (and home -> home) can never be
    counted, and publishing them as structural zeros would only add noise.
    """
    foreign = foreign_values(countries, home)
    pairs = [(home, c) for c in foreign] + [(c, home) for c in foreign]
    rows = [pair + combo for pair in pairs
            for combo in itertools.product(*by_levels(by, age_bands, arrival=pair[1] == home))]
    return pd.DataFrame(rows, columns=[FROM, TO, *by], dtype=object)


def by_levels(by: Sequence[str], age_bands: Sequence[tuple[int, int | None]] = AGE_BANDS,
              arrival: bool = False) -> list[tuple[str, ...]]:
    """Public values of each breakdown in ``by``, in that order (``arrival``: of an arrival's row, the only
    rows ``arrival_type`` splits)."""
    levels = {"sex": SEX_VALUES, "age_band": age_band_values(age_bands),
              ARRIVAL_TYPE: ARRIVAL_TYPES if arrival else (NOT_ARRIVAL,)}
    return [levels[b] for b in by]


@functools.lru_cache(maxsize=8)
def _cached_cells(home: str, resolution: int) -> tuple[str, ...]:
    return tuple(country_cells(home, resolution, boundaries=None))


def country_cells(home: str, resolution: int, boundaries=None) -> list[str]:
    """Every H3 cell at ``resolution`` that overlaps the home country, sorted.

    ``h3_cells_of_country`` keeps cells whose centre is on land; coastal cells of an archipelago
    often have their centre at sea yet hold towns, so the cells overlapping the boundary are added.
    """
    boundaries = load_boundaries() if boundaries is None else boundaries
    centred = h3_cells_of_country(home, resolution, boundaries)
    shape = boundaries[boundaries["iso3"] == home].geometry.union_all()
    if shape.is_empty:
        raise ValueError(f"no boundary for country {home!r} in the reference boundaries")
    overlapping = h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(shape.__geo_interface__), resolution,
                                                   contain="overlap")
    return sorted(set(centred) | set(overlapping))


def cell_domain(home: str, resolution: int, boundaries=None) -> list[str]:
    """The H3 cells of the home country plus UNKNOWN (no cell, or a cell outside these)."""
    cells = _cached_cells(home, resolution) if boundaries is None else country_cells(home, resolution, boundaries)
    return [*cells, UNKNOWN]


def cells_frame(cells: Sequence[str], column: str) -> pd.DataFrame:
    return pd.DataFrame({column: list(cells)}, dtype=object)


def on_domain(domain: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Exact counts merged onto every domain cell (zeros where absent), in domain order.

    ``counts`` must already use domain values; a key outside the domain is a bug upstream.
    """
    keys = list(domain.columns)
    summed = counts.groupby(keys, as_index=False, dropna=False)[COUNT].sum() if len(counts) else \
        pd.DataFrame({**{k: pd.Series(dtype=object) for k in keys}, COUNT: pd.Series(dtype="int64")})
    merged = domain.merge(summed, on=keys, how="left", indicator=True)
    stray = summed.merge(domain, on=keys, how="left", indicator=True)
    if (stray["_merge"] == "left_only").any():
        raise ValueError(f"counts with keys outside the public domain of columns {keys}; map them first")
    merged[COUNT] = merged[COUNT].fillna(0).astype("int64")
    return merged.drop(columns="_merge").reset_index(drop=True)
