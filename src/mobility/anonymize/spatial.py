"""Bin the cell table once: H3 cell, country (and optional admin area) per cell.

Cells are few (a national operator has around 10^5), so this runs on the driver with
geopandas and the result is broadcast-joined to events: no per-event geometry work.
"""

from __future__ import annotations

import warnings

import geopandas as gpd
import h3
import pandas as pd

from mobility.reference import load_boundaries, mcc_countries, plmn_countries

# Coastal cells can fall just outside a 1:50m coastline; accept the nearest country within this distance.
COAST_TOLERANCE_DEG = 0.1


def bin_cells(cells: pd.DataFrame, h3_resolution: int, boundaries=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (binned cells, rejected cells with reasons).

    ``cells`` holds the raw string columns of the cells contract.
    """
    boundaries = load_boundaries() if boundaries is None else boundaries
    df = cells.copy()
    lat = pd.to_numeric(df["latitude"], errors="coerce")
    lon = pd.to_numeric(df["longitude"], errors="coerce")
    valid_from, bad_from = _dates(df, "valid_from")
    valid_to, bad_to = _dates(df, "valid_to")

    reason = pd.Series(pd.NA, index=df.index, dtype="object")
    empty_id = df["cell_id"].isna() | (df["cell_id"].astype(str).str.strip() == "")
    reason[empty_id] = "missing_cell_id"
    bad = reason.isna() & (lat.isna() | lon.isna() | ~lat.between(-90, 90) | ~lon.between(-180, 180))
    reason[bad] = "invalid_coordinates"
    reason[reason.isna() & (bad_from | bad_to)] = "invalid_validity_date"

    ok = reason.isna()
    points = gpd.GeoDataFrame(
        {"idx": df.index[ok]},
        geometry=gpd.points_from_xy(lon[ok], lat[ok]),
        crs="EPSG:4326",
    )
    joined = gpd.sjoin(points, boundaries, how="left", predicate="within").drop_duplicates("idx")
    country = pd.Series(joined["iso3"].values, index=joined["idx"].values, dtype="object")
    missing = country[country.isna()].index
    if len(missing):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # distance in degrees is a deliberate, documented tolerance
            near = gpd.sjoin_nearest(points[points["idx"].isin(missing)], boundaries, how="left",
                                     max_distance=COAST_TOLERANCE_DEG).drop_duplicates("idx")
        country.loc[near["idx"].values] = near["iso3"].values
    outside = ok & pd.Series(df.index.isin(country[country.isna()].index), index=df.index)
    reason[outside] = "cell_outside_boundaries"

    ok = reason.isna()
    cell_ids = df["cell_id"].astype(str).str.strip()
    binned = pd.DataFrame({
        "cell_id": cell_ids[ok].values,
        "h3_cell": [h3.latlng_to_cell(a, b, h3_resolution) for a, b in zip(lat[ok], lon[ok])],
        "country": country.reindex(df.index[ok]).values,
        "admin_area": None,
        "valid_from": valid_from[ok].values,
        "valid_to": valid_to[ok].values,
    })
    # The same cell id twice with overlapping validity is ambiguous: reject all its rows.
    overlap = _overlapping_ids(binned)
    if overlap:
        dup_mask = ok & cell_ids.isin(overlap)
        reason[dup_mask] = "ambiguous_cell_id"
        binned = binned[~binned["cell_id"].isin(overlap)]
    rejected = df[reason.notna()].assign(reason=reason[reason.notna()])
    return binned.reset_index(drop=True), rejected.reset_index(drop=True)


def _dates(df: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """Optional date column as Python dates (None when empty) and a mask of unparseable values."""
    text = df[column].fillna("").astype(str).str.strip() if column in df else pd.Series("", index=df.index)
    parsed = pd.to_datetime(text.where(text != ""), errors="coerce", format="mixed")
    dates = pd.Series([d.date() if pd.notna(d) else None for d in parsed], index=df.index, dtype="object")
    return dates, (text != "") & parsed.isna()


def _overlapping_ids(binned: pd.DataFrame) -> set[str]:
    counts = binned["cell_id"].value_counts()
    out = set()
    lo_min, hi_max = pd.Timestamp.min.date(), pd.Timestamp.max.date()
    for cid in counts[counts > 1].index:
        rows = binned[binned["cell_id"] == cid]
        spans = sorted((r.valid_from or lo_min, r.valid_to or hi_max) for r in rows.itertuples())
        if any(spans[i + 1][0] <= spans[i][1] for i in range(len(spans) - 1)):
            out.add(cid)
    return out


def plmn_table() -> pd.DataFrame:
    """Public roaming reference: MCC+MNC (and bare MCC) -> ISO alpha-3, for a broadcast join."""
    rows = [(p, c) for p, c in plmn_countries().items()]
    rows += [(m, c) for m, c in mcc_countries().items()]
    return pd.DataFrame(rows, columns=["plmn", "plmn_country"]).drop_duplicates("plmn")


__all__ = ["bin_cells", "plmn_table", "locate_points"]


def locate_points(lat: pd.Series, lon: pd.Series, h3_resolution: int, boundaries=None) -> pd.DataFrame:
    """H3 cell and country of each (lat, lon); unique points are located once per batch."""
    boundaries = load_boundaries() if boundaries is None else boundaries
    pts = pd.DataFrame({"lat": pd.to_numeric(lat, errors="coerce"), "lon": pd.to_numeric(lon, errors="coerce")})
    uniq = pts.dropna().drop_duplicates().reset_index(drop=True)
    if uniq.empty:
        return pd.DataFrame({"h3_cell": [None] * len(pts), "location_country": [None] * len(pts)})
    geo = gpd.GeoDataFrame(uniq, geometry=gpd.points_from_xy(uniq["lon"], uniq["lat"]), crs="EPSG:4326")
    hit = gpd.sjoin(geo, boundaries, how="left", predicate="within")
    uniq["location_country"] = hit[~hit.index.duplicated()]["iso3"].reindex(uniq.index).values
    uniq["h3_cell"] = [h3.latlng_to_cell(a, b, h3_resolution) for a, b in zip(uniq["lat"], uniq["lon"])]
    out = pts.merge(uniq, on=["lat", "lon"], how="left")
    return out[["h3_cell", "location_country"]].astype(object).where(out[["h3_cell", "location_country"]].notna(), None)
