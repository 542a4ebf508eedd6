"""Consistent, non-negative integer tables from independent noisy measurements (post-processing only).

A release publishes integer tables whose cells each carry independent integer noise of known variance
``v_t`` (the same for every cell of table ``t``). Several tables measure the same quantity: the cells of
``emigrants_by_origin`` and the departure rows of ``international`` (``from_country == PHL``) both add up
to the month's emigration, for example. Users want published numbers that are non-negative integers and
add up. This module turns the measurements into such tables. It reads only the noisy measurements, their
public variances and the public table domains, and draws no randomness: it is post-processing, so it costs
no privacy budget, and the same input always gives the same output.

Vocabulary. A *total* (``Total``) is a quantity measured by several *parts* (``Part``): a part is the rows
of one table (all of them, or those whose key columns equal given values) whose cells add up to the total
in the exact data. Every row of every table belongs to exactly one part of one total. A part may also name
*levels*: groupings of its cells between the total and the cells, coarse to fine (the departures grouped
by ``to_country``, say), each level's columns containing the previous level's, so that groups nest.

Algorithm.

1. Validation. Every row belongs to exactly one part of exactly one total (otherwise ``ValueError`` naming
   the table and the row's key values); no part is empty; every column other than the value column is a
   key and keys are unique; ``where`` and level columns are key columns; every table has a positive finite
   variance; every measured value is an integer.

2. Weighted least squares (WLS) onto the constraints. Let part ``p`` have ``n_p`` cells with measurements
   ``y_i`` of variance ``v_p`` each and sum ``S_p`` (variance ``V_p = n_p v_p``). We look for cells ``x`` and a
   total ``T`` minimising ``sum_i (x_i - y_i)^2 / v_i`` subject to ``sum_{i in p} x_i = T`` for every part ``p``
   of the total. For a fixed ``T`` the parts separate, and within part ``p`` (equal variances) the
   minimiser moves every cell by the same amount, ``x_i = y_i + (T - S_p) / n_p``, at cost
   ``n_p ((T - S_p) / n_p)^2 / v_p = (T - S_p)^2 / V_p``. Minimising ``sum_p (T - S_p)^2 / V_p`` over ``T``
   gives the inverse-variance weighted mean ``T = sum_p w_p S_p`` with ``w_p = (1 / V_p) / sum_q (1 / V_q)``,
   the best linear unbiased estimate of the total, of variance ``1 / sum_p (1 / V_p)``. (The test suite also
   checks this against a direct solve of the constrained generalised least-squares problem.) Totals share
   no cells, so each total is solved on its own. The adjusted real cells are returned as ``adjusted``.

3. Consistent total: ``value = max(round(T), 0)``, rounding half away from zero (``T = 2.5`` gives 3).

4. Top-down non-negative integer allocation, part by part. At each level, coarse to fine, the last level
   being the individual cells, the groups under one parent (the total for the first level, then each group
   of the previous level, whose integer value is now fixed at ``P``) receive
   ``z_g = max(x_g - lambda * n_g, 0)``, where ``x_g`` is the sum of the WLS-adjusted cells of group ``g``,
   ``n_g`` its number of cells, and ``lambda`` is such that ``sum_g z_g = P``. This is the exact solution of
   ``min sum_g (z_g - x_g)^2 / n_g`` subject to ``z >= 0`` and ``sum_g z_g = P`` (weighted projection onto
   a scaled simplex, weights the inverse variances of the group sums; the KKT conditions give the form of
   ``z`` above). ``lambda`` is found exactly: sort the breakpoints ``x_g / n_g`` in decreasing order; with
   the first ``k`` groups positive, ``lambda_k = (sum_{j<=k} x_j - P) / sum_{j<=k} n_j``; take the largest
   ``k`` whose breakpoint exceeds ``lambda_k``. ``P = 0`` gives all zeros. The ``z_g`` are then rounded
   keeping their sum ``P``: every group gets ``floor(z_g)`` and the ``P - sum floor(z_g)`` remaining units go
   one each to the largest fractional parts, ties to the group that comes first in the table's row order.

5. Result. Every cell is a non-negative int64; each part's cells add up exactly to its total's ``value``;
   the cells of each level's group add up to that group's allocated integer. Tables come back with the
   measurements' key columns, index and row order and an int64 column ``count``.

What a statistician should know. Step 2 is unbiased and only ever reduces variance. Steps 3-4 are not
unbiased: forcing non-negativity with a fixed sum lowers the positive cells a little (by ``lambda`` per
cell before rounding) to pay for the zeros it keeps at zero. On sparse tables (many true zeros) this
still lowers the mean absolute error per cell compared with clamping each noisy value at zero, because
clamping biases every true zero upwards and that bias adds up across the zeros. Integer rounding moves a
group by less than one unit from its real allocation. The allocation is top-down (each level fixed before
the next), not a joint optimum over all levels.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["Consistent", "Part", "Total", "TotalEstimate", "make_consistent", "part_label",
           "project_onto_simplex", "round_keeping_sums"]


class _FrozenMapping(Mapping[str, str]):
    """A read-only, hashable, picklable copy of a str -> str mapping (keeps the caller's order)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return repr(self._items)

    def __reduce__(self):
        return (_FrozenMapping, (self._items,))


@dataclass(frozen=True)
class Part:
    """The rows of one measured table (all of them, or those whose key columns equal ``where``) whose
    cells add up to a total, with the groupings between the total and the cells, coarse to fine.

    ``levels`` is a tuple of column tuples, e.g. ``(("to_country",),)``; each level's columns must contain
    the previous level's (so that groups nest); the cells (all key columns) are the implicit finest level.
    ``where`` is stored as a read-only mapping, so a ``Part`` is hashable.
    """

    table: str
    where: Mapping[str, str] = field(default_factory=dict)
    levels: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for key, value in dict(self.where).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"part of table {self.table!r}: where must map column names to str values, "
                                f"got {key!r}: {value!r}")
        levels = []
        for level in self.levels:
            if isinstance(level, str) or not all(isinstance(c, str) for c in level) or not level:
                raise TypeError(f"part of table {self.table!r}: levels must be a tuple of non-empty tuples of "
                                f"column names, e.g. (('to_country',),); got {self.levels!r}")
            levels.append(tuple(level))
        object.__setattr__(self, "where", _FrozenMapping(self.where))
        object.__setattr__(self, "levels", tuple(levels))


@dataclass(frozen=True)
class Total:
    """A total that every part measures (in the exact data the parts' sums are equal)."""

    name: str
    parts: tuple[Part, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))


@dataclass(frozen=True)
class TotalEstimate:
    """The WLS estimate of one total and the measurements behind it (parts by ``part_label``)."""

    name: str
    weights: dict[str, float]   # part label -> weight of that part's sum in the WLS total (they sum to 1)
    noisy_sums: dict[str, int]  # part label -> sum of its measured cells
    cells: dict[str, int]       # part label -> number of cells in the part
    wls: float                  # the weighted least-squares estimate of the total
    value: int                  # the consistent total: max(round(wls), 0), rounding half away from zero


@dataclass(frozen=True, eq=False)
class Consistent:
    """Consistent tables (int64 ``count`` >= 0), the WLS-adjusted cells (float ``wls``) and the totals."""

    tables: dict[str, pd.DataFrame]
    adjusted: dict[str, pd.DataFrame]
    totals: list[TotalEstimate]


def part_label(part: Part) -> str:
    """``"international[from_country=PHL]"``, or the bare table name for a whole table."""
    if not part.where:
        return part.table
    return part.table + "[" + ",".join(f"{column}={value}" for column, value in part.where.items()) + "]"


# ---------------------------------------------------------------------------------------------- helpers


def _segments(sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of each run of equal ids in a sorted id array, and each position's rank within its run."""
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    lengths = np.diff(np.r_[starts, len(sorted_ids)])
    rank = np.arange(len(sorted_ids)) - np.repeat(starts, lengths)
    return starts, rank


def project_onto_simplex(x: np.ndarray, n: np.ndarray, parent: np.ndarray, parent_value: np.ndarray) -> np.ndarray:
    """For every parent ``p``, the exact minimiser of ``sum_g (z_g - x_g)^2 / n_g`` over its groups ``g``
    (``parent[g] == p``) subject to ``z >= 0`` and ``sum_g z_g == parent_value[p]``.

    The solution is ``z_g = max(x_g - lambda_p n_g, 0)``; ``lambda_p`` comes from the sorted breakpoints
    ``x_g / n_g`` (see the module docstring), all parents at once. ``n > 0``, ``parent_value >= 0``.
    """
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    parent = np.asarray(parent, dtype=np.int64)
    target = np.asarray(parent_value, dtype=float)
    if len(x) == 0:
        return np.zeros(0)
    if (n <= 0).any() or (target < 0).any():
        raise ValueError("group sizes must be positive and parent values non-negative")
    breakpoint_ = x / n
    order = np.lexsort((-breakpoint_, parent))  # by parent, then breakpoint decreasing
    ps, xs, ns, bs = parent[order], x[order], n[order], breakpoint_[order]
    starts, _ = _segments(ps)
    lengths = np.diff(np.r_[starts, len(ps)])
    cum_x = np.cumsum(xs)
    cum_n = np.cumsum(ns)
    cum_x -= np.repeat(cum_x[starts] - xs[starts], lengths)  # cumulative sums within each parent
    cum_n -= np.repeat(cum_n[starts] - ns[starts], lengths)
    lam_k = (cum_x - target[ps]) / cum_n
    positive = bs > lam_k  # true exactly for the first k* groups of each parent when its value is > 0
    last = np.maximum.reduceat(np.where(positive, np.arange(len(ps)), -1), starts)
    lam = np.zeros(len(target))
    has_positive = last >= 0  # false only for parents of value 0
    lam[ps[starts][has_positive]] = lam_k[last[has_positive]]
    z = np.maximum(x - lam[parent] * n, 0.0)
    z[target[parent] == 0] = 0.0
    return z


_TIE_DECIMALS = 9


def round_keeping_sums(z: np.ndarray, parent: np.ndarray, parent_value: np.ndarray) -> np.ndarray:
    """Integers ``floor(z_g)`` plus one unit each to the largest fractional parts of every parent, as many
    as ``parent_value[p] - sum floor(z_g)``; ties (to 1e-9) go to the lower index (earlier row). ``z >= 0`` with
    ``sum_g z_g == parent_value[p]`` up to floating-point error."""
    z = np.asarray(z, dtype=float)
    parent = np.asarray(parent, dtype=np.int64)
    value = np.asarray(parent_value, dtype=np.int64)
    floor = np.floor(z)
    out = floor.astype(np.int64)
    if len(z) == 0:
        return out
    short = value - np.rint(np.bincount(parent, weights=floor, minlength=len(value))).astype(np.int64)
    counts = np.bincount(parent, minlength=len(value))
    if (short < 0).any() or (short > counts).any():  # cannot happen when sum z == parent_value
        raise ValueError("the real allocation does not add up to its parent's value")
    # by parent, then fraction decreasing, then row; fractions equal to 1e-9 are ties (so that an exact tie
    # in the real arithmetic, 2.5 and 64.5 say, is not decided by floating-point noise)
    fraction = np.round(z - floor, _TIE_DECIMALS)
    order = np.lexsort((np.arange(len(z)), -fraction, parent))
    _, rank = _segments(parent[order])
    out[order[rank < short[parent[order]]]] += 1
    return out


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _describe_row(frame: pd.DataFrame, keys: list[str], position: int) -> str:
    row = frame.iloc[position]
    return "(" + ", ".join(f"{k}={_plain(row[k])!r}" for k in keys) + ")"


def _integer_values(name: str, frame: pd.DataFrame, value: str, keys: list[str]) -> np.ndarray:
    if value not in frame.columns:
        raise ValueError(f"table {name!r} has no column {value!r}")
    column = frame[value]
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        raise ValueError(f"table {name!r}: column {value!r} must hold integers, not {column.dtype}")
    numbers_ = column.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(numbers_) | (np.floor(numbers_) != numbers_)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise ValueError(f"table {name!r} row {_describe_row(frame, keys, position)}: {value}="
                         f"{_plain(column.iloc[position])!r} is not an integer")
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    return numbers_.astype(np.int64)


def _variance(name: str, variances: Mapping[str, float]) -> float:
    if name not in variances:
        raise ValueError(f"no noise variance given for table {name!r}")
    v = variances[name]
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"table {name!r}: the noise variance must be a positive finite number, got {v!r}")
    return float(v)


def _round_half_away(t: float) -> int:
    floor = math.floor(t)
    up = t - floor >= 0.5 if t >= 0 else t - floor > 0.5
    return int(floor) + int(up)


@dataclass
class _PartData:
    part: Part
    label: str
    rows: np.ndarray  # positions in the table, in row order
    variance: float


class _KeyCodes:
    """Integer codes of one table's key columns (``pandas.factorize``, NaN a value of its own), made once."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._codes: dict[str, tuple[np.ndarray, list[object]]] = {}

    def _code(self, column: str) -> tuple[np.ndarray, list[object]]:
        if column not in self._codes:
            codes, uniques = pd.factorize(self._frame[column], use_na_sentinel=False)
            self._codes[column] = (np.asarray(codes, dtype=np.int64), list(uniques))
        return self._codes[column]

    def equals(self, column: str, wanted: str) -> np.ndarray:
        """Rows whose value in ``column``, as a string, is ``wanted``."""
        codes, uniques = self._code(column)
        return np.isin(codes, [i for i, u in enumerate(uniques) if str(u) == wanted])

    def groups(self, columns: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """Group ids 0..G-1 of ``rows`` by ``columns``, numbered in order of first appearance (row order)."""
        combined = np.zeros(len(rows), dtype=np.int64)
        for column in columns:
            codes = self._code(column)[0][rows]
            width = int(codes.max()) + 1 if len(codes) else 1
            combined = np.asarray(pd.factorize(combined * width + codes)[0], dtype=np.int64)
        return combined


def _allocate(codes: _KeyCodes, rows: np.ndarray, adjusted: np.ndarray, levels: tuple[tuple[str, ...], ...],
              value: int) -> np.ndarray:
    """Top-down integer allocation of ``value`` to the ``rows`` of one part (WLS-adjusted cells ``adjusted``)."""
    m = len(rows)
    parent_of_row = np.zeros(m, dtype=np.int64)
    parent_value = np.array([value], dtype=np.int64)
    for columns in (*levels, None):
        if columns is None:
            gid = np.arange(m, dtype=np.int64)
        else:
            gid = codes.groups(columns, rows)
        groups = int(gid.max()) + 1
        x = np.bincount(gid, weights=adjusted, minlength=groups)
        n = np.bincount(gid, minlength=groups)
        first = np.unique(gid, return_index=True)[1]
        group_parent = parent_of_row[first]
        z = project_onto_simplex(x, n, group_parent, parent_value)
        parent_value = round_keeping_sums(z, group_parent, parent_value)
        parent_of_row = gid
    return parent_value


# ------------------------------------------------------------------------------------------------- main


def make_consistent(measurements: Mapping[str, pd.DataFrame], variances: Mapping[str, float],
                    totals: Sequence[Total], value: str = "noisy_count") -> Consistent:
    """Consistent non-negative integer tables from noisy measurements (algorithm in the module docstring).

    ``measurements`` maps table names to frames of key columns and an integer column ``value``;
    ``variances`` the noise variance per cell of each table; ``totals`` the totals and their parts, which
    must cover every row of every table exactly once. Deterministic; raises ``ValueError`` on bad input.
    """
    keys: dict[str, list[str]] = {}
    values: dict[str, np.ndarray] = {}
    table_variance: dict[str, float] = {}
    codes: dict[str, _KeyCodes] = {}
    for name, frame in measurements.items():
        keys[name] = [c for c in frame.columns if c != value]
        values[name] = _integer_values(name, frame, value, keys[name])
        table_variance[name] = _variance(name, variances)
        codes[name] = _KeyCodes(frame)
        cell = codes[name].groups(keys[name], np.arange(len(frame)))
        if len(frame) and cell.max() + 1 < len(frame):
            duplicate = int(np.flatnonzero(np.diff(np.r_[-1, np.maximum.accumulate(cell)]) == 0)[0])
            raise ValueError(f"table {name!r}: key {_describe_row(frame, keys[name], duplicate)} appears more "
                             "than once")

    names = [t.name for t in totals]
    if len(set(names)) != len(names):
        raise ValueError(f"total names must be unique, got {names}")
    claims = {name: np.zeros(len(frame), dtype=np.int64) for name, frame in measurements.items()}
    masks: dict[str, list[tuple[str, str, np.ndarray]]] = {name: [] for name in measurements}
    plan: list[tuple[Total, list[_PartData]]] = []
    for total in totals:
        if not total.parts:
            raise ValueError(f"total {total.name!r} has no parts")
        parts = []
        for part in total.parts:
            label = part_label(part)
            if part.table not in measurements:
                raise ValueError(f"total {total.name!r}: part {label} names an unmeasured table {part.table!r}")
            frame, table_keys = measurements[part.table], keys[part.table]
            for column in part.where:
                if column not in table_keys:
                    raise ValueError(f"part {label} of total {total.name!r}: {column!r} is not a key column of "
                                     f"table {part.table!r} (keys {table_keys})")
            previous: tuple[str, ...] = ()
            for level in part.levels:
                missing = [c for c in level if c not in table_keys]
                if missing:
                    raise ValueError(f"part {label} of total {total.name!r}: level {level} has columns {missing} "
                                     f"that are not key columns of table {part.table!r} (keys {table_keys})")
                if not set(previous) <= set(level):
                    raise ValueError(f"part {label} of total {total.name!r}: level {level} must contain the "
                                     f"columns of the level before it, {previous}, so that its groups nest")
                previous = level
            mask = np.ones(len(frame), dtype=bool)
            for column, wanted in part.where.items():
                mask &= codes[part.table].equals(column, wanted)
            if not mask.any():
                raise ValueError(f"part {label} of total {total.name!r} has no rows in table {part.table!r}")
            claims[part.table] += mask
            masks[part.table].append((label, total.name, mask))
            parts.append(_PartData(part, label, np.flatnonzero(mask), table_variance[part.table]))
        plan.append((total, parts))

    for name, frame in measurements.items():
        count = claims[name]
        if (count == 0).any():
            position = int(np.flatnonzero(count == 0)[0])
            raise ValueError(f"table {name!r} row {_describe_row(frame, keys[name], position)} is in no part "
                             "of any total")
        if (count > 1).any():
            position = int(np.flatnonzero(count > 1)[0])
            owners = ", ".join(f"{label} (total {total})" for label, total, mask in masks[name] if mask[position])
            raise ValueError(f"table {name!r} row {_describe_row(frame, keys[name], position)} is in more than "
                             f"one part: {owners}")

    adjusted = {name: values[name].astype(float) for name in measurements}
    counts = {name: np.zeros(len(frame), dtype=np.int64) for name, frame in measurements.items()}
    estimates = []
    for total, parts in plan:
        sums = [int(values[p.part.table][p.rows].sum()) for p in parts]
        cells = [len(p.rows) for p in parts]
        inverse = np.array([1.0 / (n * p.variance) for n, p in zip(cells, parts)])
        weights = inverse / inverse.sum()
        # T = sum_p w_p S_p, written around S_0 so that equal sums give T exactly (no rounding drift)
        wls = float(sums[0] + sum(w * (s - sums[0]) for w, s in zip(weights, sums)))
        total_value = max(_round_half_away(wls), 0)
        for p, s, n in zip(parts, sums, cells):
            adjusted[p.part.table][p.rows] += (wls - s) / n
        for p in parts:
            counts[p.part.table][p.rows] = _allocate(codes[p.part.table], p.rows, adjusted[p.part.table][p.rows],
                                                     p.part.levels, total_value)
        estimates.append(TotalEstimate(
            name=total.name, weights={p.label: float(w) for p, w in zip(parts, weights)},
            noisy_sums={p.label: s for p, s in zip(parts, sums)}, cells={p.label: n for p, n in zip(parts, cells)},
            wls=wls, value=total_value))

    tables, adjusted_frames = {}, {}
    for name, frame in measurements.items():
        out = frame[keys[name]].copy()
        out["count"] = counts[name]
        tables[name] = out
        adj = frame[keys[name]].copy()
        adj["wls"] = adjusted[name]
        adjusted_frames[name] = adj
    return Consistent(tables=tables, adjusted=adjusted_frames, totals=estimates)
