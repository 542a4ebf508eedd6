"""A release table <-> a tidy table with one column per SDMX component (one implementation, both ways).

Which release column fills which dimension is fixed by ``KEY_DIMENSIONS``; dimensions a table does
not break down by hold ``_T`` (total), except that a table by H3 cell of the home country holds the
home country on that side (the cells are inside it).

What a row is goes to ``VALUE_KIND`` (manifest format 2): ``CONSISTENT`` for a consistent table
(``count``) and the national ``totals``, ``NOISY_MEASUREMENT`` for a noisy measurement
(``TABLE_noisy``, ``noisy_count``, may be negative); a format-1 release's clamped ``count`` is
``CLAMPED``. A total has no key column of its own: it goes where its parts would be summed to
(``total_dimensions``), so national emigration is ``ORIGIN`` = home, ``DESTINATION`` = ``_T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mobility.aggregate import domains as D
from mobility.errors import InputContractError
from mobility.estimate.people import PEOPLE
from mobility.privacy_budget.ledger import MANIFEST
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
from mobility.privacy_budget.postprocess import CONSISTENT as CONSISTENT_ROLE
from mobility.privacy_budget.postprocess import DERIVED_ROLE, around
from mobility.privacy_budget.postprocess import MEASUREMENT as MEASUREMENT_ROLE
from mobility.publish import codes as C
from mobility.publish import structure as S
from mobility.publish.sources import DERIVED, Source

COUNT, NOISY, LOW, HIGH = "count", "noisy_count", "low_95", "high_95"
TOTAL_COLUMN = "total"  # the key column of the totals table
# release key column -> (dimension, release value -> code, code -> release value)
KEY_DIMENSIONS = {
    D.FROM: (S.ORIGIN, C.area_code, C.area_value),
    D.TO: (S.DESTINATION, C.area_code, C.area_value),
    D.ORIGIN_CELL: (S.ORIGIN_H3, C.cell_code, C.cell_value),
    D.DESTINATION_CELL: (S.DESTINATION_H3, C.cell_code, C.cell_value),
    "sex": (S.SEX, C.SEX_CODES.__getitem__, C.invert(C.SEX_CODES).__getitem__),
    "age_band": (S.AGE, C.age_code, C.age_value),
    D.ARRIVAL_TYPE: (S.ARRIVAL_TYPE, C.ARRIVAL_CODES.__getitem__, C.invert(C.ARRIVAL_CODES).__getitem__),
}
BREAKDOWNS = (S.ORIGIN, S.DESTINATION, S.ORIGIN_H3, S.DESTINATION_H3, S.SEX, S.AGE, S.ARRIVAL_TYPE)
MECHANISM_METHOD = {DISCRETE_GAUSSIAN: "DGAUSS", DISCRETE_LAPLACE: "DLAPLACE"}
_HINT = ("export flows releases and annual flows tables only; other tables (remittances, derived ratios) have no "
         "SDMX structure yet: use the release's own CSV or Parquet files, whose manifest describes every column")


@dataclass(frozen=True)
class Kind:
    """How a release table is exported: its VALUE_KIND, value column and interval columns (none: format 1),
    its MEASURE and UNIT_MEASURE (subscriptions, or people for a population estimate)."""

    value_kind: str
    value_column: str
    interval_columns: tuple[str, ...]
    measure: str = S.LONG_TERM_MIGRANTS
    unit: str = S.SUBSCRIPTIONS


def is_people(info: dict) -> bool:
    """A derived table of population estimates (``estimate.people``): people with intervals, by the keys
    of the table it was derived from."""
    derived = info.get("derived")
    return info.get("role") == DERIVED_ROLE and isinstance(derived, dict) and derived.get("value_column") == PEOPLE


def refuse(source: Source, name: str, msg: str, hint: str = _HINT) -> InputContractError:
    return InputContractError(f"{source.kind} {source.release_id!r}, table {name!r}: {msg}; nothing was exported",
                              where=str(source.path / MANIFEST), hint=hint)


def kind_of(source: Source, name: str) -> Kind:
    """What table ``name`` holds, from its manifest entry (format 1 entries have no role: clamped counts)."""
    info = source.manifest["tables"][name]
    role = info.get("role")
    if role == MEASUREMENT_ROLE:
        return Kind(S.NOISY_MEASUREMENT, info.get("value_column", NOISY), (LOW, HIGH))
    if role == CONSISTENT_ROLE:
        return Kind(S.CONSISTENT, info.get("count_column", COUNT), (LOW, HIGH))
    if is_people(info):
        return Kind(S.POPULATION_ESTIMATE, PEOPLE, (LOW, HIGH), S.LONG_TERM_MIGRANTS_POPULATION, S.PERSONS)
    if role == DERIVED_ROLE or "derived" in info:
        raise refuse(source, name, "is derived post-processing (its own columns, such as ratios with their "
                                   "intervals) and the SDMX structure has no component for it")
    if role is not None:
        raise refuse(source, name, f"has role {role!r}, which this version cannot export",
                     hint="upgrade mobility to a version that knows this manifest format")
    return Kind(S.CLAMPED, info.get("count_column", COUNT), ())


def fixed_dimensions(key_columns: list[str], home: str, freq: str, period: str) -> dict[str, str]:
    """The dimensions a table does not vary, with the one value they hold in every row (VALUE_KIND apart)."""
    unmapped = [k for k in key_columns if k not in KEY_DIMENSIONS]
    if unmapped:
        raise InputContractError(f"key column(s) {unmapped} have no SDMX dimension",
                                 hint=f"exportable key columns: {', '.join(KEY_DIMENSIONS)}; " + _HINT)
    varied = {KEY_DIMENSIONS[k][0] for k in key_columns}
    fixed = {S.FREQ: freq, S.REF_AREA: home, S.MEASURE: S.LONG_TERM_MIGRANTS, S.TIME_PERIOD: period}
    for dim in BREAKDOWNS:
        if dim not in varied:
            fixed[dim] = C.TOTAL
    # cells of the home country: that side of the flow is the home country itself
    if S.ORIGIN_H3 in varied and S.ORIGIN not in varied:
        fixed[S.ORIGIN] = home
    if S.DESTINATION_H3 in varied and S.DESTINATION not in varied:
        fixed[S.DESTINATION] = home
    return fixed


def varied_dimensions(key_columns: list[str]) -> list[str]:
    """The dimensions a table's key columns fill (never ``_T`` in its rows: that is how totals are told apart)."""
    return [KEY_DIMENSIONS[k][0] for k in key_columns if k in KEY_DIMENSIONS]


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


def is_totals(source: Source, name: str) -> bool:
    info = source.manifest["tables"][name]
    return info.get("role") in (CONSISTENT_ROLE, DERIVED_ROLE) and list(info.get("key_columns") or []) == [TOTAL_COLUMN]


def _encode(source: Source, name: str, column: str, value) -> str:
    try:
        return KEY_DIMENSIONS[column][1](value)
    except KeyError:
        raise InputContractError(f"table {name!r} of {source.release_id!r}: value {value!r} of {column!r} has no "
                                 "code", hint="extend mobility.publish.codes") from None


def _part_dimensions(source: Source, total: str, part: dict, home: str) -> dict[str, str]:
    """Where one part of a total lands: its table's fixed dimensions, its ``where`` values, _T elsewhere."""
    table = str(part.get("table"))
    info = (source.manifest.get("tables") or {}).get(table) or {}
    keys = list(info.get("key_columns") or [])
    if not keys or any(k not in KEY_DIMENSIONS for k in keys):
        raise refuse(source, "totals", f"total {total!r} adds up table {table!r}, whose key columns {keys} have no "
                                       "SDMX dimension")
    fixed = {d: v for d, v in fixed_dimensions(keys, home, "", "").items() if d in BREAKDOWNS}
    where = dict(part.get("where") or {})
    for key in keys:
        fixed[KEY_DIMENSIONS[key][0]] = _encode(source, table, key, where[key]) if key in where else C.TOTAL
    return fixed


def total_dimensions(source: Source, home: str) -> dict[str, dict[str, str]]:
    """Each total's breakdown dimensions: where every one of its parts would be summed to (they must agree)."""
    totals = (source.manifest.get("consistency") or {}).get("totals")
    if not totals:
        raise refuse(source, "totals", "the manifest does not say what the totals add up (consistency.totals)",
                     hint="export a release written by the release boundary of format 2")
    out: dict[str, dict[str, str]] = {}
    for total in totals:
        placed = [_part_dimensions(source, total["name"], part, home) for part in total["parts"]]
        if any(p != placed[0] for p in placed):
            raise refuse(source, "totals", f"the parts of total {total['name']!r} do not land on the same SDMX "
                                           f"dimensions ({placed}), so the total has no one series key")
        out[str(total["name"])] = placed[0]
    seen = [tuple(sorted(d.items())) for d in out.values()]
    if len(set(seen)) != len(seen):
        raise refuse(source, "totals", "two totals land on the same SDMX dimensions")
    return out


def _intervals(source: Source, name: str, kind: Kind, frame: pd.DataFrame, bound: float | None
               ) -> tuple[pd.Series, pd.Series]:
    if kind.interval_columns:
        low, high = kind.interval_columns
        return frame[low].astype("int64"), frame[high].astype("int64")
    if bound is None:
        raise refuse(source, name, "has no interval columns and no error_bound_95 in its manifest entry")
    return around(frame[kind.value_column].astype("int64"), int(bound))  # format 1: clamped counts


def _bound(source: Source, name: str, kind: Kind) -> float | None:
    """ERROR_BOUND_95 of a table's rows: the per-row noise half-width; none for consistent values."""
    if kind.value_kind == S.CONSISTENT:
        return None
    bound = source.manifest["tables"][name].get("error_bound_95")
    return float(bound) if isinstance(bound, (int, float)) else None


def to_tidy(source: Source, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """One release table as SDMX components, rows in the release's order."""
    kind = kind_of(source, name)
    home, freq, period = describe_source(source)
    tidy = pd.DataFrame(index=range(len(frame)))
    if is_totals(source, name):
        placed = total_dimensions(source, home)
        unknown = sorted(set(frame[TOTAL_COLUMN].astype(str)) - set(placed))
        if unknown:
            raise refuse(source, name, f"totals {unknown} are not described in consistency.totals")
        for dim in BREAKDOWNS:
            tidy[dim] = [placed[str(t)][dim] for t in frame[TOTAL_COLUMN]]
        fixed = {S.FREQ: freq, S.REF_AREA: home, S.MEASURE: kind.measure, S.TIME_PERIOD: period}
    else:
        keys = source.key_columns(name)
        unmapped = [k for k in keys if k not in KEY_DIMENSIONS]
        if unmapped:
            raise refuse(source, name, f"key column(s) {unmapped} have no SDMX dimension (exportable key columns: "
                                       f"{', '.join(KEY_DIMENSIONS)})")
        fixed = {**fixed_dimensions(keys, home, freq, period), S.MEASURE: kind.measure}
        for column in keys:
            tidy[KEY_DIMENSIONS[column][0]] = [_encode(source, name, column, v) for v in frame[column]]
    for dim, value in fixed.items():
        tidy[dim] = value
    tidy[S.VALUE_KIND] = kind.value_kind
    values = frame[kind.value_column]
    if not pd.api.types.is_integer_dtype(values.dtype):
        raise refuse(source, name, f"column {kind.value_column!r} is not integer ({values.dtype})")
    bound = _bound(source, name, kind)
    low, high = _intervals(source, name, kind, frame, bound)
    tidy[S.OBS_VALUE] = values.astype("int64").to_numpy()
    tidy[S.UNIT_MEASURE] = kind.unit
    tidy[S.LOWER_95] = low.to_numpy()
    tidy[S.UPPER_95] = high.to_numpy()
    tidy[S.ERROR_BOUND_95] = float("nan") if bound is None else bound
    tidy[S.CONF_STATUS] = S.FREE
    tidy[S.DP_METHOD] = dp_method(source)
    tidy[S.RELEASE_ID] = source.release_id
    return tidy[list(S.COLUMNS)]


def from_tidy(tidy: pd.DataFrame, key_columns: list[str], value_column: str = COUNT,
              interval_columns: tuple[str, ...] | list[str] = (),
              totals: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """The release table's columns back from a tidy table: key columns in release order, the value
    column, then the interval columns (if the table has them); ``totals``: where each total was put."""
    out = pd.DataFrame(index=range(len(tidy)))
    for column in key_columns:
        if column == TOTAL_COLUMN and totals is not None:
            where = {tuple(d[dim] for dim in BREAKDOWNS): name for name, d in totals.items()}
            rows = tidy[list(BREAKDOWNS)].astype(str).itertuples(index=False, name=None)
            out[column] = pd.Series([where[tuple(r)] for r in rows], dtype=object)
            continue
        dim, _, decode = KEY_DIMENSIONS[column]
        out[column] = pd.Series([decode(str(v)) for v in tidy[dim]], dtype=object)
    out[value_column] = pd.Series(tidy[S.OBS_VALUE].astype("int64").to_numpy(), dtype="int64")
    for column, component in zip(interval_columns, (S.LOWER_95, S.UPPER_95)):
        out[column] = pd.Series(tidy[component].astype("int64").to_numpy(), dtype="int64")
    return out


def select(tidy: pd.DataFrame, fixed: dict[str, str], varied: list[str] | None = None,
           one_of: list[dict[str, str]] | None = None) -> pd.Series:
    """Rows of a combined tidy table that belong to the table with these fixed dimensions, whose
    ``varied`` dimensions are never ``_T`` and (``one_of``, the totals) whose dimensions are one of these."""
    mask = pd.Series(True, index=tidy.index)
    for dim, value in fixed.items():
        mask &= tidy[dim].astype(str) == value
    for dim in varied or []:
        mask &= tidy[dim].astype(str) != C.TOTAL
    if one_of is not None:
        alternatives = pd.Series(False, index=tidy.index)
        for dims in one_of:
            match = pd.Series(True, index=tidy.index)
            for dim, value in dims.items():
                match &= tidy[dim].astype(str) == value
            alternatives |= match
        mask &= alternatives
    return mask
