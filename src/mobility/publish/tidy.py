"""A release table <-> a tidy table with one column per SDMX component (one implementation, both ways).

Which release column fills which dimension is fixed by ``KEY_DIMENSIONS``; dimensions a table does
not break down by hold ``_T`` (total), except that a table by H3 cell of the home country holds the
home country on that side (the cells are inside it).
"""

from __future__ import annotations

import pandas as pd

from mobility.aggregate import domains as D
from mobility.errors import InputContractError
from mobility.privacy_budget.ledger import MANIFEST
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
from mobility.publish import codes as C
from mobility.publish import structure as S
from mobility.publish.sources import DERIVED, Source

COUNT = "count"
# release key column -> (dimension, release value -> code, code -> release value)
KEY_DIMENSIONS = {
    D.FROM: (S.ORIGIN, C.area_code, C.area_value),
    D.TO: (S.DESTINATION, C.area_code, C.area_value),
    D.ORIGIN_CELL: (S.ORIGIN_H3, C.cell_code, C.cell_value),
    D.DESTINATION_CELL: (S.DESTINATION_H3, C.cell_code, C.cell_value),
    "sex": (S.SEX, C.SEX_CODES.__getitem__, C.invert(C.SEX_CODES).__getitem__),
    "age_band": (S.AGE, C.age_code, C.age_value),
}
MECHANISM_METHOD = {DISCRETE_GAUSSIAN: "DGAUSS", DISCRETE_LAPLACE: "DLAPLACE"}


def fixed_dimensions(key_columns: list[str], home: str, freq: str, period: str) -> dict[str, str]:
    """The dimensions a table does not vary, with the one value they hold in every row."""
    unmapped = [k for k in key_columns if k not in KEY_DIMENSIONS]
    if unmapped:
        raise InputContractError(f"key column(s) {unmapped} have no SDMX dimension",
                                 hint=f"exportable key columns: {', '.join(KEY_DIMENSIONS)}")
    varied = {KEY_DIMENSIONS[k][0] for k in key_columns}
    fixed = {S.FREQ: freq, S.REF_AREA: home, S.MEASURE: S.LONG_TERM_MIGRANTS, S.TIME_PERIOD: period}
    for dim in (S.ORIGIN, S.DESTINATION, S.ORIGIN_H3, S.DESTINATION_H3, S.SEX, S.AGE):
        if dim not in varied:
            fixed[dim] = C.TOTAL
    # cells of the home country: that side of the flow is the home country itself
    if S.ORIGIN_H3 in varied and S.ORIGIN not in varied:
        fixed[S.ORIGIN] = home
    if S.DESTINATION_H3 in varied and S.DESTINATION not in varied:
        fixed[S.DESTINATION] = home
    return fixed


def describe_source(source: Source) -> tuple[str, str, str]:
    """(home country, FREQ code, TIME_PERIOD) of a release (monthly) or derived annual table."""
    m = source.manifest
    home = (m.get("query") or {}).get("home_country") or m.get("home_country")
    if not home:
        raise InputContractError(f"manifest of {source.release_id!r} names no home_country",
                                 where=str(source.path / MANIFEST))
    period = str(m["period"])
    freq = S.MONTHLY if len(period) == 7 else S.ANNUAL
    return home, freq, period


def dp_method(source: Source) -> str:
    m = source.manifest
    return m["dp_method"] if source.kind == DERIVED else MECHANISM_METHOD[m["mechanism"]]


def to_tidy(source: Source, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """One release table as SDMX components, rows in the release's order."""
    keys = source.key_columns(name)
    home, freq, period = describe_source(source)
    fixed = fixed_dimensions(keys, home, freq, period)
    tidy = pd.DataFrame(index=range(len(frame)))
    for column in keys:
        dim, encode, _ = KEY_DIMENSIONS[column]
        try:
            tidy[dim] = [encode(v) for v in frame[column]]
        except KeyError as exc:
            raise InputContractError(f"table {name!r} of {source.release_id!r}: value {exc} of {column!r} "
                                     "has no code", hint="extend mobility.publish.codes") from None
    for dim, value in fixed.items():
        tidy[dim] = value
    tidy[S.OBS_VALUE] = frame[COUNT].astype("int64").to_numpy()
    tidy[S.UNIT_MEASURE] = S.PERSONS
    tidy[S.ERROR_BOUND_95] = float(source.manifest["tables"][name]["error_bound_95"])
    tidy[S.CONF_STATUS] = S.FREE
    tidy[S.DP_METHOD] = dp_method(source)
    tidy[S.RELEASE_ID] = source.release_id
    return tidy[list(S.COLUMNS)]


def from_tidy(tidy: pd.DataFrame, key_columns: list[str]) -> pd.DataFrame:
    """The release table's columns back from a tidy table (key columns in release order, then count)."""
    out = pd.DataFrame(index=range(len(tidy)))
    for column in key_columns:
        dim, _, decode = KEY_DIMENSIONS[column]
        out[column] = pd.Series([decode(str(v)) for v in tidy[dim]], dtype=object)
    out[COUNT] = pd.Series(tidy[S.OBS_VALUE].astype("int64").to_numpy(), dtype="int64")
    return out


def select(tidy: pd.DataFrame, fixed: dict[str, str]) -> pd.Series:
    """Rows of a combined tidy table that belong to the table with these fixed dimensions."""
    mask = pd.Series(True, index=tidy.index)
    for dim, value in fixed.items():
        mask &= tidy[dim].astype(str) == value
    return mask
