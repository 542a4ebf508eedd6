"""Sums of published cells with their 95% intervals: the one way a report, an export or a user's
figure adds cells of a release or an annual table (format 2).

A sum over cells of a consistent table ``TABLE`` is the sum of its consistent cells (non-negative
integers that add up, so a margin and the sum of its breakdowns agree). Its interval is computed
from the noisy measurements, never from consistent or clamped values: the same cells of
``TABLE_noisy`` summed, -/+ the exact 95% half-width of the sum of their noise
(``intervals.half_width_95``: the noise law and scale of each cell from the manifest), the lower
end at least 0, then widened to include the consistent sum. It holds the exact sum whenever the
measurement's interval does, so with probability >= 95%.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from mobility.privacy_budget.intervals import Term, half_width_95
from mobility.privacy_budget.postprocess import (
    CONSISTENT,
    COUNT,
    HIGH,
    LOW,
    NOISY,
    around,
    measurement_table,
    widened,
)

CELLS = "cells"


def has_measurements(manifest: dict, table: str) -> bool:
    """True when ``table`` is a consistent table whose noisy measurement the release keeps (format 2)."""
    tables = manifest.get("tables") or {}
    return (tables.get(table) or {}).get("role") == CONSISTENT and measurement_table(table) in tables


def cell_noise(manifest: dict, table: str) -> list[Term]:
    """The noise of one cell of ``table``'s measurement: its terms (annual tables) or one draw."""
    info = manifest["tables"][measurement_table(table)]
    if info.get("noise_terms"):
        return [Term(1, t["mechanism"], float(t["noise_scale"]), int(t["cells"])) for t in info["noise_terms"]]
    return [Term(1, manifest["mechanism"], float(info["noise_scale"]), 1)]


def sum_half_widths(one: list[Term], cells: Iterable[int]) -> dict[int, int]:
    """Exact 95% half-width of a sum of k cells whose noise is ``one`` each, for every k in ``cells``."""
    return {int(k): int(half_width_95([t._replace(cells=t.cells * int(k)) for t in one])) if k > 0 else 0
            for k in set(cells)}


def sum_cells(manifest: dict, tables: Mapping[str, pd.DataFrame], table: str, by: Sequence[str] = (),
              where: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``table``'s cells (those matching ``where``) summed by the key columns ``by``: columns ``by``,
    ``count`` (consistent sum), ``noisy_count`` (sum of the measurements), ``low_95``, ``high_95`` and
    ``cells`` (how many cells each sum adds)."""
    if not has_measurements(manifest, table):
        raise ValueError(f"table {table!r} has no noisy measurement in this release (format 2 keeps them)")
    keys = list(manifest["tables"][table]["key_columns"])
    consistent, noisy = tables[table], tables[measurement_table(table)]
    merged = consistent[[*keys, COUNT]].merge(noisy[[*keys, NOISY]], on=keys, how="inner", validate="one_to_one")
    if len(merged) != len(consistent):
        raise ValueError(f"table {table!r} and its measurement do not have the same cells")
    for column, value in (where or {}).items():
        merged = merged[merged[column].astype(str) == str(value)]
    by = list(by)
    if by:
        out = merged.groupby(by, as_index=False, sort=True, dropna=False).agg(
            count=(COUNT, "sum"), noisy_count=(NOISY, "sum"), cells=(COUNT, "size"))
    else:
        out = pd.DataFrame({COUNT: [int(merged[COUNT].sum())], NOISY: [int(merged[NOISY].sum())],
                            CELLS: [len(merged)]})
    widths = sum_half_widths(cell_noise(manifest, table), out[CELLS])
    out[LOW], out[HIGH] = widened(*around(out[NOISY], out[CELLS].map(widths)), out[COUNT])
    for column in (COUNT, NOISY, CELLS):
        out[column] = out[column].astype("int64")
    return out[[*by, COUNT, NOISY, LOW, HIGH, CELLS]]
