"""One self-contained HTML page about one release: national totals, maps, largest flows, what its privacy
guarantee says, ledger position.

Tables are recognised by shape and manifest role, not by name, so a release with another manifest
(remittances, say) still renders: a consistent table whose one key holds H3 cells gets a map, one
keyed by from_country/to_country gets the flow chart, and every other table gets a chart of its
largest cells (and of its sums by the manifest's first grouping level). Every figure shown carries
its 95% interval and names the file it comes from; sums of cells and their intervals come from
``privacy_budget.sums`` (computed from the noisy measurements). The noisy measurements
(``TABLE_noisy``) are listed with every other table but never charted as headline figures.

A release of manifest format 1 (no measurements, no roles) still renders: its figures are the
clamped counts, labelled as such, with intervals from the per-cell bound that ignore the clamping.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mobility.privacy_budget import accounts
from mobility.privacy_budget.intervals import Term
from mobility.privacy_budget.ledger import MANIFEST, LedgerEntry, sha256_file
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
from mobility.privacy_budget.postprocess import CONSISTENT, MEASUREMENT, around
from mobility.privacy_budget.postprocess import DERIVED_ROLE as DERIVED
from mobility.privacy_budget.stored import StoredRelease, open_release
from mobility.privacy_budget.sums import has_measurements, sum_cells, sum_half_widths
from mobility.report import figures
from mobility.report.data import (
    NOT_RECORDED,
    PopulationCaps,
    agreement_populations,
    caps_for,
    entry_time,
    epsilon_of,
    ledger_position,
    month_runs,
    month_span,
    months_label,
    open_lake,
    population_caps,
    population_of,
    read_ledger,
    spent_by,
)
from mobility.report.page import cards, esc, figure, fmt, frame_table, interval, page, rows_table

TOP = 15  # bars per chart: enough to see the largest flows, few enough to read the labels
COUNT, LOW, HIGH = "count", "low_95", "high_95"
ORIGIN, DESTINATION = "from_country", "to_country"
TOTALS = "totals"
FORMAT1 = "format 1: counts were set to 0 where noise made them negative; intervals ignore that"
SUMS = ("computed from the same cells of the noisy measurement {noisy} (privacy_budget.sums: the sum of the "
        "measurements -/+ the exact 95% half-width of the sum of their noise, lower end at least 0, widened to "
        "include the consistent sum)")


def _is_cell_column(values: pd.Series) -> bool:
    import h3

    sample = [v for v in values.astype(str).unique() if v.upper() != "UNKNOWN"][:50]
    return bool(sample) and all(h3.is_valid_cell(v) for v in sample)


def _info(manifest: dict, name: str) -> dict:
    return (manifest.get("tables") or {}).get(name) or {}


def _role(manifest: dict, name: str) -> str | None:
    """A table's role (format 2), "derived" for a format-1 derived table, None for a format-1 noisy table."""
    info = _info(manifest, name)
    return info.get("role") or (DERIVED if "derived" in info else None)


def is_format1(manifest: dict) -> bool:
    """True for a release written before noisy measurements were kept (its tables have no role)."""
    return not any((info or {}).get("role") for info in (manifest.get("tables") or {}).values())


def _file(name: str) -> str:
    return f"<code>{esc(name)}.csv</code>"


def _count_column(manifest: dict, name: str, frame: pd.DataFrame) -> str | None:
    column = _info(manifest, name).get("count_column", COUNT)
    if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column].dtype):
        return column
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c].dtype)]
    return numeric[-1] if numeric else None


def _keys(manifest: dict, name: str, frame: pd.DataFrame, value: str) -> list[str]:
    keys = _info(manifest, name).get("key_columns")
    if isinstance(keys, list):
        return [k for k in keys if k in frame.columns]
    if _role(manifest, name) == DERIVED:  # no key columns in the manifest: the text columns are the keys
        return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    return [c for c in frame.columns if c != value]


def _noise(manifest: dict, name: str) -> tuple[str | None, float | None, float | None]:
    """(mechanism, scale, per-cell 95% bound) of a format-1 table, None where the manifest does not say."""
    info = _info(manifest, name)
    mechanism = manifest.get("mechanism")
    scale = info.get("noise_scale")
    bound = info.get("error_bound_95")
    known = float(bound) if isinstance(bound, (int, float)) else None
    if mechanism in (DISCRETE_GAUSSIAN, DISCRETE_LAPLACE) and isinstance(scale, (int, float)) and scale > 0:
        return mechanism, float(scale), known
    return None, None, known


def _cell_bound(manifest: dict, name: str) -> int | None:
    """The exact 95% half-width of one cell's noise: the measurement's (format 2) or the table's (format 1)."""
    info = _info(manifest, name)
    bound = (info.get("measurement") or {}).get("error_bound_95", info.get("error_bound_95"))
    return int(bound) if isinstance(bound, (int, float)) else None


def _labels(frame: pd.DataFrame, keys: list[str], name: str) -> list[str]:
    return [" · ".join(str(v) for v in row) for row in frame[keys].itertuples(index=False, name=None)] \
        if keys else [name]


def _figure_rows(labels: list[str], frame: pd.DataFrame, value: str, source: str, cells: bool = False) -> list:
    """Rows of the table under a chart: label, value, 95% interval, (cells summed,) the file it comes from."""
    out = []
    for i, label in enumerate(labels):
        row = frame.iloc[i]
        number = int(row[value]) if pd.api.types.is_integer_dtype(frame[value].dtype) else float(row[value])
        low, high = (row[LOW], row[HIGH])
        low, high = (int(low), int(high)) if pd.api.types.is_integer_dtype(frame[LOW].dtype) else \
            (float(low), float(high))
        out.append((label, number, interval(low, high), *([int(row["cells"])] if cells else []), source))
    return out


def _figure_table(name: str, header: list[str], rows: list) -> str:
    return rows_table(header, rows, numeric=[False] + [True] * (len(header) - 2) + [False], name=name)


def _listed(row: pd.Series, key: str, value: str) -> str:
    """A cell not on the map, in words: its key, its count and its 95% interval."""
    return f"{row[key]} = {int(row[value]):,} {interval(int(row[LOW]), int(row[HIGH]))}"


def _map_section(name: str, frame: pd.DataFrame, key: str, value: str, manifest: dict, boundaries) -> str:
    old = is_format1(manifest)
    bound = _cell_bound(manifest, name)
    frame = frame.copy()
    if old or LOW not in frame.columns:
        frame[LOW], frame[HIGH] = around(frame[value].astype("int64"), bound or 0)
    is_cell = frame[key].astype(str).str.upper() != "UNKNOWN"
    cells, other = frame[is_cell], frame[~is_cell]
    svg = figures.cell_map(cells[key].astype(str).tolist(), [int(v) for v in cells[value]], boundaries,
                           f"{name}: {'published counts (format 1)' if old else 'consistent counts'} on H3 cells",
                           f"map-{name}", label="count per cell" + (" (clamped at 0)" if old else " (consistent)"))
    res = ""
    try:
        import h3

        res = f" H3 resolution {h3.get_resolution(str(cells[key].iloc[0]))}."
    except Exception:  # an empty table: no resolution to state
        pass
    zero = int((cells[LOW] == 0).sum())
    source = (f"From {_file(name)} ({esc(FORMAT1)}): each hexagon is one cell of <code>{esc(key)}</code>, coloured "
              "by its published count. " if old else
              f"From {_file(name)}, the consistent table (non-negative counts that add up to the national totals; "
              f"the noisy measurement is {_file(name + '_noisy')}): each hexagon is one cell of "
              f"<code>{esc(key)}</code>, coloured by its <code>{esc(value)}</code>. ")
    caption = (source + f"{len(cells):,} cells drawn over the country boundaries.{esc(res)} "
               + (f"Each cell's 95% interval is its count -/+ {fmt(bound)}, lower end at least 0; " if old else
                  f"Each cell's 95% interval is in the columns <code>{LOW}</code> and <code>{HIGH}</code> (its "
                  f"measurement -/+ {fmt(bound)}, widened to include the count); ")
               + f"{zero:,} of the cells drawn have an interval that includes 0. "
               + (f"Not on the map: {esc(', '.join(_listed(r, key, value) for _, r in other.iterrows()))} "
                  "(changes without a usable cell)." if len(other) else ""))
    return figure(svg, caption, f"map-{name}")


def _format1_pairs(name: str, frame: pd.DataFrame, value: str, manifest: dict) -> pd.DataFrame:
    """Format 1: pair sums of clamped counts, -/+ the exact bound of a sum of that many cells' noise."""
    pairs = frame.groupby([ORIGIN, DESTINATION], sort=True)[value].agg(["sum", "size"]).reset_index()
    pairs = pairs.rename(columns={"sum": COUNT, "size": "cells"})
    mechanism, scale, _ = _noise(manifest, name)  # format 1: the per-cell bound ignores the clamping
    half = pairs["cells"].map(sum_half_widths([Term(1, mechanism, scale, 1)], pairs["cells"])) \
        if mechanism and scale else 0
    pairs[LOW], pairs[HIGH] = around(pairs[COUNT], half)
    return pairs


def _flows_section(name: str, tables: dict[str, pd.DataFrame], value: str, manifest: dict) -> str:
    old = not has_measurements(manifest, name)
    pairs = _format1_pairs(name, tables[name], value, manifest) if old else \
        sum_cells(manifest, tables, name, by=[ORIGIN, DESTINATION])
    pairs = pairs.sort_values([COUNT, ORIGIN, DESTINATION], ascending=[False, True, True], kind="stable").head(TOP)
    labels = [f"{a} → {b}" for a, b in zip(pairs[ORIGIN], pairs[DESTINATION])]
    svg = figures.bar_chart(labels, [float(v) for v in pairs[COUNT]], None,
                            f"Largest country-to-country flows ({name}.csv)",
                            "count (sum of the pair's cells), with its 95% interval", f"flows-{name}",
                            lows=[float(v) for v in pairs[LOW]], highs=[float(v) for v in pairs[HIGH]])
    cells = sorted(set(int(k) for k in pairs["cells"]))
    bound = _cell_bound(manifest, name)
    caption = (f"The {len(pairs)} largest origin → destination pairs of {_file(name)}"
               + (f" ({esc(FORMAT1)}). " if old else ", the consistent table. ")
               + f"Each pair adds {', '.join(map(str, cells))} cell(s) (its breakdowns); the error bar is the 95% "
               + ("interval of that sum: the sum -/+ the exact 95% half-width of the sum of that many cells' noise "
                  f"(±{fmt(bound)} for a single cell), lower end at least 0. Bars cannot go below zero because "
                  "negative noisy counts were set to 0, which biases sums upwards; the interval does not account "
                  "for that." if old else
                  "interval of that sum, " + esc(SUMS.format(noisy=f"{name}_noisy.csv")) + "."))
    rows = _figure_rows(labels, pairs, COUNT, f"{name}.csv", cells=True)
    return figure(svg, caption, f"flows-{name}") + _figure_table(
        f"flows-{name}", ["pair", "count", "95% interval", "cells summed", "from"], rows)


def _grouping(manifest: dict, name: str, keys: list[str]) -> list[str] | None:
    """The manifest's first grouping level of a table that leaves out some key columns (corridors of
    cells by channel, say): the sums worth charting besides the cells themselves."""
    for level in _info(manifest, name).get("levels") or []:
        if level and set(level) < set(keys):
            return list(level)
    return None


def _sums_section(name: str, tables: dict[str, pd.DataFrame], level: list[str], keys: list[str],
                  manifest: dict) -> str:
    sums = sum_cells(manifest, tables, name, by=level)
    sums = sums.sort_values([COUNT, *level], ascending=[False, *[True] * len(level)], kind="stable").head(TOP)
    labels = _labels(sums, level, name)
    summed = ", ".join(k for k in keys if k not in level)
    svg = figures.bar_chart(labels, [float(v) for v in sums[COUNT]], None,
                            f"Largest sums of {name}.csv by {', '.join(level)}", "count (sum of cells), with its "
                            "95% interval", f"sums-{name}", lows=[float(v) for v in sums[LOW]],
                            highs=[float(v) for v in sums[HIGH]])
    caption = (f"The {len(sums)} largest sums of {_file(name)}, the consistent table, over <code>{esc(summed)}</code> "
               f"by <code>{esc(', '.join(level))}</code>; the error bar is the 95% interval of each sum, "
               + esc(SUMS.format(noisy=f"{name}_noisy.csv")) + ".")
    rows = _figure_rows(labels, sums, COUNT, f"{name}.csv", cells=True)
    return figure(svg, caption, f"sums-{name}") + _figure_table(
        f"sums-{name}", [" · ".join(level), "count", "95% interval", "cells summed", "from"], rows)


def _derived_columns(frame: pd.DataFrame, keys: list[str]) -> tuple[str | None, str | None, str | None]:
    """(value, low, high) of a derived table: a numeric column and the ``*_low``/``*_high`` pair whose stem
    it contains (``mean_cost_pct`` with ``cost_pct_low``, ``cost_pct_high``); (value, None, None) without one."""
    numeric = [c for c in frame.columns if c not in keys and pd.api.types.is_numeric_dtype(frame[c].dtype)]
    for low in numeric:
        stem = low[:-len("_low")] if low.endswith("_low") else None
        if stem and f"{stem}_high" in numeric:
            value = next((c for c in numeric if stem in c and c not in (low, f"{stem}_high")), None)
            if value is not None:
                return value, low, f"{stem}_high"
    if LOW in numeric and HIGH in numeric:
        value = next((c for c in numeric if c not in (LOW, HIGH)), None)
        return value, LOW, HIGH
    return (numeric[-1] if numeric else None), None, None


def _derived_section(name: str, frame: pd.DataFrame, keys: list[str], manifest: dict) -> str:
    value, low, high = _derived_columns(frame, keys)
    if value is None:
        return ""
    shown = frame[frame[value].notna()]
    top = shown.sort_values([value, *keys], ascending=[False, *[True] * len(keys)], kind="stable").head(TOP)
    labels = _labels(top, keys, name)
    svg = figures.bar_chart(labels, [float(v) for v in top[value]], None, f"Largest values of {name}.csv",
                            f"{value}" + (", with its 95% interval" if low else ""), f"top-{name}",
                            lows=[float(v) for v in top[low]] if low else None,
                            highs=[float(v) for v in top[high]] if high else None)
    derived = _dict(_info(manifest, name).get("derived"))
    caption = (f"The {len(top)} largest values of <code>{esc(value)}</code> in {_file(name)}, a derived table: "
               "post-processing of the noisy measurements (no privacy cost)"
               + (f" ({esc(derived['formula'])})" if derived.get("formula") else "") + ". "
               + (f"Each value's interval is in its own columns <code>{esc(low)}</code> and <code>{esc(high)}</code>"
                  + (f": {esc(derived['interval'])}" if derived.get("interval") else "") + "."
                  if low else "The table has no interval columns, so no interval is drawn.")
               + (f" {len(frame) - len(shown):,} rows without a value are not drawn." if len(shown) < len(frame)
                  else ""))
    if not low:
        return figure(svg, caption, f"top-{name}")
    rows = _figure_rows(labels, top.rename(columns={low: LOW, high: HIGH}), value, f"{name}.csv")
    return figure(svg, caption, f"top-{name}") + _figure_table(
        f"top-{name}", ["cell", value, "95% interval", "from"], rows)


def _generic_section(name: str, tables: dict[str, pd.DataFrame], keys: list[str], value: str,
                     manifest: dict) -> str:
    frame = tables[name]
    if _role(manifest, name) == DERIVED:
        return _derived_section(name, frame, keys, manifest)
    old = _role(manifest, name) is None
    bound = _cell_bound(manifest, name)
    if old or LOW not in frame.columns:
        frame = frame.copy()
        frame[LOW], frame[HIGH] = around(frame[value].astype("int64"), bound or 0)
    top = frame.sort_values([value, *keys], ascending=[False, *[True] * len(keys)], kind="stable").head(TOP)
    labels = _labels(top, keys, name)
    svg = figures.bar_chart(labels, [float(v) for v in top[value]], None, f"Largest cells of {name}.csv",
                            f"{value}, with its 95% interval", f"top-{name}", lows=[float(v) for v in top[LOW]],
                            highs=[float(v) for v in top[HIGH]])
    caption = (f"The {len(top)} largest cells of {_file(name)}"
               + (f" ({esc(FORMAT1)}), each with its count -/+ the 95% bound ±{fmt(bound)} from the manifest, lower "
                  "end at least 0." if old else
                  f", the consistent table, each with its 95% interval (columns <code>{LOW}</code>, "
                  f"<code>{HIGH}</code>: the cell's measurement in {_file(name + '_noisy')} -/+ {fmt(bound)}, "
                  "widened to include the count)."))
    out = figure(svg, caption, f"top-{name}") + _figure_table(
        f"top-{name}", ["cell", value, "95% interval", "from"], _figure_rows(labels, top, value, f"{name}.csv"))
    level = _grouping(manifest, name, keys)
    if level and has_measurements(manifest, name):
        out += _sums_section(name, tables, level, keys, manifest)
    return out


def _totals_section(manifest: dict, frame: pd.DataFrame) -> str:
    """The national totals (consistent, with their intervals) and which measurements each adds up."""
    described = {str(t.get("name")): t for t in _dict(manifest.get("consistency")).get("totals") or []}
    rows = []
    for _, r in frame.iterrows():
        weights = _dict(described.get(str(r["total"]), {}).get("weights"))
        parts = "; ".join(f"{label} ({fmt(int(w.get('cells', 0)))} cells, weight {fmt(float(w.get('weight', 0)), 3)})"
                          for label, w in weights.items()) or "—"
        rows.append((str(r["total"]), int(r[COUNT]), interval(int(r[LOW]), int(r[HIGH])), parts, f"{TOTALS}.csv"))
    how = _info(manifest, TOTALS).get("interval")
    return ("<h2 id=\"totals\">National totals</h2>"
            f"<p>From {_file(TOTALS)}: each total is a consistent value, estimated from every noisy measurement that "
            "adds up to it (weighted least squares, each part's sum weighted by the inverse of its noise variance); "
            "the consistent tables add up to these totals exactly. "
            + (f"95% interval: {esc(how)}." if how else "") + "</p>"
            + rows_table(["total", "count", "95% interval", "measurements it is estimated from (weight)", "from"],
                         rows, numeric=[False, True, True, False, False], name="totals-section"))


def _dict(value: Any) -> dict:
    """``value`` when it is a mapping, else {} (manifests of older releases lack fields)."""
    return value if isinstance(value, dict) else {}


def _table_unit(manifest: dict, name: str) -> str:
    """What one unit of a table's counted value is, in words (for its contribution bound)."""
    query = _dict(manifest.get("query"))
    measures = _dict(query.get("measures"))
    if name in measures:
        return str(measures[name])
    if str(query.get("statistic", "")).startswith("long-term residence changes"):
        return "long-term residence changes (count)"
    column = (manifest.get("tables", {}).get(name) or {}).get("count_column", COUNT)
    return f"the value in column {column}"


def _bound(info: dict) -> tuple[str, float | None]:
    """(a table's contribution bound in words, its d_in) from the manifest."""
    if "derived" in info:
        return "none of its own: computed from noisy tables (post-processing, no further loss)", None
    sensitivity = info.get("sensitivity")
    if not isinstance(sensitivity, dict) or not isinstance(sensitivity.get("d_in"), (int, float)):
        return NOT_RECORDED, None
    d_in = sensitivity["d_in"]
    metric = str(sensitivity.get("metric"))
    over = {"L1": " (sum over the table's cells, L1)", "L2": " (L2 norm over the table's cells)"}.get(metric, "")
    return f"at most {fmt(d_in)}{over}", float(d_in)


def _strength_short(eps: float | None) -> str:
    if eps is None:
        return ""
    if eps <= 1:
        return "a strong bound"
    if eps <= 3:
        return "a moderate bound"
    return "a weak bound on its own"


def _strength(eps: float) -> str:
    """How strong an epsilon is on its own, said plainly."""
    odds = math.exp(eps) if eps < 700 else math.inf
    if eps <= 1:
        return (f"An epsilon of at most 1 is a strong bound: the release moves the odds of any conclusion about "
                f"one subscription by a factor of at most {fmt(odds, 3)}.")
    if eps <= 3:
        return (f"An epsilon between 1 and 3 is a moderate bound: a factor of up to {fmt(odds, 3)} on the odds of "
                "any conclusion about one subscription.")
    return (f"An epsilon of several units is a weak bound on its own: a factor of {fmt(odds, 3)} on the odds does "
            "not rule out that someone who already knows a lot about a person learns from these tables whether "
            "that person's SIM was counted (for example, whether they moved). The guarantee limits what can be "
            "learned; it does not promise that nothing can be.")


def _unit_items(manifest: dict) -> list[str]:
    p = manifest.get("privacy") or {}
    unit = p.get("protected_unit")
    items = []
    if unit:
        items.append(f"<li><b>Protected unit:</b> {esc(unit)}.</li>")
    else:
        items.append(f"<li><b>Protected unit:</b> {NOT_RECORDED}. Its pseudonyms are keyed subscriber numbers, "
                     "so the unit is one subscription (SIM) of the operator's subscribers.</li>")
    items.append("<li><b>One SIM, not one person:</b> every figure on this page is for one subscription (SIM). "
                 "A person who holds k SIMs of this operator is k units and is protected only as a group of k, "
                 "which is weaker: k × epsilon for pure epsilon-DP, and k² × rho under zCDP (a person with 2 SIMs "
                 "can lose up to 4 times the rho figures here).</li>")
    rule = manifest.get("privacy_unit")
    if rule:
        items.append(f"<li><b>How each unit's data are bounded:</b> {esc(rule)}.</li>")
    return items


def _measured(manifest: dict) -> list[tuple[str, dict]]:
    """(table, manifest entry with its noise) of every noisy table: the noisy measurement entries of a
    format-2 release (under the name of the table they measure), every table of a format-1 release;
    derived tables last."""
    tables = sorted((manifest.get("tables") or {}).items())
    if is_format1(manifest):
        return tables
    measured = [(str(info.get("measures", name)), info) for name, info in tables if info.get("role") == MEASUREMENT]
    return sorted(measured) + [(name, info) for name, info in tables if info.get("role") == DERIVED]


def _measurement_words(info: dict, name: str) -> str:
    """Which OpenDP measurement drew a table's noise: its own, or a joint one over several tables."""
    if "derived" in info:
        return "—"
    if info.get("role") is None:  # format 1: one measurement per table
        return name
    joint = _dict(info.get("joint_measurement"))
    if joint.get("name"):
        return f"{joint['name']} (joint: {', '.join(joint.get('tables') or [])})"
    return f"{name} (alone)"


def _measurements_item(manifest: dict) -> list[str]:
    measurements = _dict(_dict(manifest.get("privacy")).get("measurements"))
    if not measurements:
        return []
    words = []
    for name, m in sorted(measurements.items()):
        tables = list(_dict(m).get("tables") or [])
        words.append(f"{esc(name)}: " + (f"tables {esc(', '.join(tables))} measured jointly (no subscription "
                                         "contributes to more than one of them, so one measurement over their "
                                         "cells concatenated, charged once)" if len(tables) > 1 else
                                         f"table {esc(', '.join(tables))}")
                     + f", budget share {fmt(m.get('budget_share'))}")
    return [f"<li><b>OpenDP measurements ({len(words)}):</b> " + "; ".join(words) + ". The noisy measurements "
            "are published as drawn (<code>TABLE_noisy.csv</code>); the consistent tables and the national totals "
            "are computed from them and the public domains only (post-processing: no further privacy loss).</li>"]


def _bounds_items(manifest: dict) -> tuple[list[str], str]:
    """The contribution bound of every noisy table: sentences and a table (table, unit, bound, measurement,
    budget, noise); for format 2 from the noisy measurement entries (the consistent tables add no noise)."""
    rows, stated = [], []
    for name, info in _measured(manifest):
        words, d_in = _bound(info)
        unit = _table_unit(manifest, name) if "derived" not in info else "—"
        rows.append((name, info.get("rows"), unit, words, _measurement_words(info, name), info.get("budget_share"),
                     info.get("rho"), info.get("epsilon"), info.get("noise_scale"),
                     f"±{fmt(info.get('error_bound_95'))}" if "error_bound_95" in info else "—"))
        if d_in is not None:
            stated.append((name, d_in, unit))
    items = ["<li><b>Contribution bound, per table:</b> one subscription can change each table by at most the "
             "bound listed below, before noise, in that table's own unit; the noise of each measurement is scaled "
             "to its bound and its share of the budget.</li>", *_measurements_item(manifest)]
    if len({d for _, d, _ in stated}) > 1:
        items.append("<li><b>The bounds differ between tables:</b> "
                     + "; ".join(f"{esc(n)}: {esc(fmt(int(d) if float(d).is_integer() else d))} ({esc(u)})"
                                 for n, d, u in stated) + ".</li>")
    elif stated:
        items.append(f"<li>Every noisy table has the same bound: {esc(fmt(int(stated[0][1])))} "
                     f"({esc(stated[0][2])}).</li>")
    else:
        items.append(f"<li>Per-table bounds are {NOT_RECORDED}"
                     + (f"; the release states at most {esc(manifest.get('max_contributions'))} contribution(s) "
                        "per unit" if manifest.get("max_contributions") is not None else "") + ".</li>")
    table = rows_table(["table", "cells", "unit of the bound", "contribution bound (one SIM)", "OpenDP measurement",
                        "budget share", "rho", "epsilon", "noise scale", "95% bound (one cell)"], rows,
                       numeric=[False, True, False, False, False, True, True, True, True, True],
                       name="privacy-bounds") if rows else ""
    return items, table


def _error_item(manifest: dict) -> str:
    """What the 95% intervals mean, true for the release's format."""
    if is_format1(manifest):
        return ("<li><b>Error bound (" + esc(FORMAT1) + "):</b> each cell's noisy value was within ± the table's "
                "95% bound of the count the pipeline computed with probability at least 95%, before negative values "
                "were set to 0; the intervals shown are the published value -/+ that bound, lower end at least 0. "
                "Setting negative values to 0 biases sums of cells upwards, and the intervals of sums shown here do "
                "not account for that. The bound covers only the privacy noise, not errors of measurement or of "
                "the residence rule.</li>")
    return ("<li><b>95% intervals:</b> every figure on this page comes with its interval, which holds the exact "
            "value with probability at least 95%. A noisy measurement's interval is its value -/+ the exact 95% "
            "half-width of its noise (lower end at least 0; nothing was clamped, so sums of measurements are "
            "unbiased); a consistent cell's is its measurement's interval widened to include the consistent value; "
            "a sum of consistent cells (a flow chart bar, a corridor) uses the same cells of the measurement "
            "(privacy_budget.sums); a national total's is the exact interval of its weighted least-squares "
            "estimate. The intervals cover only the privacy noise, not errors of measurement or of the residence "
            "rule.</li>")


def _loss_items(manifest: dict) -> list[str]:
    p = manifest.get("privacy") or {}
    this = _dict(p.get("this_release"))
    rho = this.get("rho", p.get("rho"))
    eps = this.get("epsilon", p.get("epsilon"))
    delta = this.get("delta", p.get("delta"))
    items = []
    if isinstance(rho, (int, float)):
        items.append(f"<li><b>This release: rho = {fmt(rho)}</b> (zero-concentrated differential privacy, zCDP). "
                     "rho adds up over releases: the ledger charges it to every data month the release read and "
                     "to the population's lifetime total.</li>")
    if isinstance(eps, (int, float)):
        odds = math.exp(eps) if eps < 700 else math.inf
        exception = (f", except with a probability of at most delta = {fmt(delta)}" if delta else
                     " (pure differential privacy: delta = 0, no exception)")
        items.append(f"<li><b>epsilon = {fmt(eps)}, delta = {fmt(delta) if delta else 0}.</b> What epsilon bounds: "
                     "for any outcome of the published tables, its probability with one subscription's data in "
                     f"the input is at most e<sup>epsilon</sup> ≈ {fmt(odds, 3)} times its probability without "
                     f"that data{esc(exception)}. {esc(_strength(float(eps)))}</li>")
    items.append("<li><b>Releases add up:</b> what one subscription loses is the cumulative figure below, which "
                 "includes every release so far that read the same data months, not this release alone.</li>")
    return items


def _cumulative(manifest: dict, charge: LedgerEntry | None, entries: list[LedgerEntry], mapping: dict[str, str],
                caps: PopulationCaps | None) -> str:
    """The cumulative loss per subscription through this release's charge: per data month and lifetime."""
    p = manifest.get("privacy") or {}
    month = p.get("cumulative_per_data_month")
    life = p.get("cumulative_lifetime")
    out = ["<h3 id=\"cumulative\">Cumulative loss per subscription</h3>"]
    if isinstance(month, dict) and isinstance(life, dict):
        through = p.get("cumulative_through_seq")
        population = p.get("population")
        months = p.get("data_months") or []
        worst, m_rho, m_eps, m_delta, m_cap = (month.get("most_charged_month"), month.get("rho"),
                                               month.get("epsilon"), month.get("delta"), month.get("cap_rho"))
        l_rho, l_eps, l_delta, l_cap = life.get("rho"), life.get("epsilon"), life.get("delta"), life.get("cap_rho")
        source = f"from this release's manifest, through ledger entry seq {esc(through)} (its charge included)"
    elif charge is not None:
        population = population_of(charge, mapping)
        months = accounts.data_months_of(charge)
        if population is None:
            out.append(f"<p>The cumulative loss is {NOT_RECORDED}, and the ledger does not name the population of "
                       "this charge (it predates data-month accounting and no policy entry assigns its agreement). "
                       "Pass <code>--agreement</code> with the agreement file to compute it.</p>")
            return "".join(out)
        spent = spent_by(entries, population, mapping, through_seq=charge.seq)
        worst, m_rho = spent.worst(months)
        l_rho = spent.lifetime
        delta = caps.delta if caps else None
        m_eps, l_eps = epsilon_of(m_rho, delta), epsilon_of(l_rho, delta)
        m_delta = l_delta = delta
        m_cap = caps.rho_per_data_month if caps else None
        l_cap = caps.rho_lifetime if caps else None
        source = (f"{NOT_RECORDED}; computed here from the ledger through entry seq {charge.seq} (its charge "
                  "included)")
    else:
        out.append(f"<p>The cumulative loss is {NOT_RECORDED}, and this release has no charge in the ledger.</p>")
        return "".join(out)

    def cap_words(cap: float | None, delta: float | None) -> str:
        if not isinstance(cap, (int, float)):
            return "cap unknown"
        eps = epsilon_of(float(cap), delta) if isinstance(delta, (int, float)) else None
        return f"cap rho {fmt(cap)}" + (f" (epsilon {fmt(eps)})" if eps is not None else "")

    out.append(f"<p class=\"note\">Figures {source}; population <code>{esc(population)}</code>; data months "
               f"read: {esc(month_span(list(months)))}.</p><ul>")
    out.append(f"<li><b>Per data month:</b> the most charged month this release read is {esc(worst or '—')}, with "
               f"cumulative rho = {fmt(m_rho)}, i.e. <b>epsilon = {fmt(m_eps)}</b> at delta = {fmt(m_delta)} "
               f"({esc(cap_words(m_cap, m_delta))} per data month). That bounds what one subscription's month of "
               "data has lost over every release that read it so far"
               + (f"; at this epsilon it is {_strength_short(m_eps)}" if isinstance(m_eps, (int, float)) else "")
               + ".</li>")
    out.append(f"<li><b>Lifetime:</b> cumulative rho = {fmt(l_rho)}, i.e. <b>epsilon = {fmt(l_eps)}</b> at "
               f"delta = {fmt(l_delta)} ({esc(cap_words(l_cap, l_delta))}). That bounds what one subscription has "
               "lost over every release of the population so far, including what older data can still say "
               "through the residence rules (a person's residence state carries over from earlier months)"
               + (f"; at this epsilon it is {_strength_short(l_eps)}" if isinstance(l_eps, (int, float)) else "")
               + ".</li>")
    out.append("</ul><p class=\"note\">Later releases add to these totals; the ledger report shows them now. "
               "The cumulative epsilon is the zCDP total converted at the caps' delta, so it is not the sum of the "
               "releases' epsilons (for pure-DP releases it can be larger than their sum).</p>")
    return "".join(out)


def _privacy_section(manifest: dict, charge: LedgerEntry | None, entries: list[LedgerEntry],
                     mapping: dict[str, str], caps: PopulationCaps | None) -> str:
    items = _unit_items(manifest)
    bound_items, table = _bounds_items(manifest)
    items += bound_items + _loss_items(manifest)
    mech = manifest.get("mechanism", "")
    if mech:
        items.append(f"<li><b>Noise:</b> {esc(mech.replace('_', ' '))} noise on every cell, from "
                     f"{esc(manifest.get('noise_source', 'OpenDP'))}; the budget is split across the "
                     + ("tables" if is_format1(manifest) else "OpenDP measurements") + " as listed below.</li>")
    items.append(_error_item(manifest))
    post = manifest.get("post_processing")
    return ("<h2 id=\"privacy\">What this release protects, and how strongly</h2><ul>" + "".join(items) + "</ul>"
            + table + _cumulative(manifest, charge, entries, mapping, caps)
            + (f"<p class=\"note\">Post-processing: {esc(post)}</p>" if post else ""))


def _budget_rows(charge: LedgerEntry, entries: list[LedgerEntry], population: str, mapping: dict[str, str],
                 caps: PopulationCaps | None) -> list[tuple]:
    """Lifetime and every data month the charge read: cap, spent before, by, through and now, left now."""
    through = spent_by(entries, population, mapping, through_seq=charge.seq)
    now = spent_by(entries, population, mapping)
    months = accounts.data_months_of(charge)
    delta = caps.delta if caps else None
    runs = month_runs([(m, (through.month(m), now.month(m))) for m in months])
    rows = []
    for label, cap_rho, at, current in (
            [("lifetime", caps.rho_lifetime if caps else None, through.lifetime, now.lifetime)]
            + [(months_label(ms), caps.rho_per_data_month if caps else None, *value) for ms, value in runs]):
        left = caps.left(cap_rho, current) if caps and cap_rho is not None else None
        rows.append((label, cap_rho, at - charge.rho, charge.rho, at, epsilon_of(at, delta), current,
                     left.remaining_rho if left else None, left.remaining_epsilon if left else None))
    return rows


def _ledger_section(stored: StoredRelease, entries: list[LedgerEntry], mapping: dict[str, str],
                    caps: PopulationCaps | None, notes: list[str]) -> str:
    position = ledger_position(stored, entries, mapping)
    charge, pub = position.charge, position.publication
    out = ["<h2 id=\"ledger\">Position in the privacy-budget ledger</h2>"]
    if charge is None:
        out.append("<p class=\"warn\">This release has no charge entry in the ledger of this lake. "
                   "Do not use it before an auditor has run <code>mobility ledger verify</code>.</p>")
        return "".join(out)
    digest = sha256_file(stored.path / MANIFEST)
    rows = [("charge", charge.seq, entry_time(charge), charge.entry_hash, charge.prev_hash,
             f"rho {fmt(charge.rho)}, epsilon {fmt(charge.epsilon)}, delta {fmt(charge.delta)}")]
    if pub is not None:
        rows.append(("published", pub.seq, entry_time(pub), pub.entry_hash, pub.prev_hash,
                     f"manifest SHA-256 {pub.release_digest}"))
    population = population_of(charge, mapping)
    scope = f"population <code>{esc(population)}</code>" if population else \
        f"agreement <code>{esc(charge.agreement_id)}</code>"
    out.append(f"<p>Entries {', '.join(str(r[1]) for r in rows)} of the {position.entries} in the ledger "
               f"(agreement <code>{esc(charge.agreement_id)}</code>; {position.later_charges} later charge(s) "
               f"to the same {scope}).</p>")
    out.append(rows_table(["entry", "seq", "time (UTC)", "entry hash", "previous hash", "what it records"], rows,
                          numeric=[False, True, False, False, False, False], hashes=[False, False, False, True, True,
                                                                                     False]))
    ledger_ref = _dict(stored.manifest.get("ledger"))
    head = _dict(ledger_ref.get("head"))
    if head:
        witnessed = ledger_ref.get("witnessed")
        out.append(f"<p>Ledger head right after this release's charge: seq {esc(head.get('seq'))}, entry hash "
                   f"<span class=\"hash\">{esc(head.get('entry_hash'))}</span>. A published release anchors the "
                   "chain: a ledger that no longer holds this entry was rolled back or rewritten. "
                   + ("The charge was also appended to the agreement's witness outside the lake."
                      if witnessed else "No witness outside the lake was named when it was charged.") + "</p>")
    else:
        out.append(f"<p class=\"note\">Ledger head after the charge: {NOT_RECORDED}.</p>")
    if position.problems:
        out.append("<div class=\"warn\"><b>Integrity problems:</b><ul>"
                   + "".join(f"<li>{esc(p)}</li>" for p in position.problems) + "</ul></div>")
    else:
        out.append(f"<p class=\"ok\">The hash chain is intact and the release files match the ledger "
                   f"(manifest SHA-256 <span class=\"hash\">{esc(digest)}</span>).</p>")

    if population is None:
        out.append("<h3>Budget</h3><p class=\"note\">The ledger does not name the population of this charge (it "
                   "predates data-month accounting and no policy entry assigns its agreement), and no agreement "
                   "file was found for it: pass <code>--agreement</code> with its file to show what was spent "
                   "per data month and over the lifetime.</p>")
        out.extend(f"<p class=\"note\">{esc(n)}</p>" for n in notes)
        return "".join(out)
    delta = caps.delta if caps else None
    out.append(f"<h3>Budget of population <code>{esc(population)}</code></h3>")
    out.append("<p>Every release is charged to each data month it read and to the population's lifetime total, "
               "shared by every agreement that names the population. "
               + (f"Caps from the {esc(caps.source)}: rho {fmt(caps.rho_per_data_month)} per data month, rho "
                  f"{fmt(caps.rho_lifetime)} over the lifetime, delta {fmt(caps.delta)}." if caps else
                  "Caps unknown: pass <code>--agreement</code> with the agreement file to show them.") + "</p>")
    out.append(rows_table(["cap", "cap rho", "spent before", "this release", "spent through it",
                           f"epsilon through it (delta {fmt(delta)})", "spent now", "left now (rho)",
                           f"left now (epsilon at delta {fmt(delta)})"],
                          _budget_rows(charge, entries, population, mapping, caps), numeric=[False] + [True] * 8))
    out.extend(f"<p class=\"note\">{esc(n)}</p>" for n in notes)
    return "".join(out)


def _kind_words(manifest: dict, name: str) -> str:
    """What a table holds, in a few words (the summary line of its listing)."""
    info = _info(manifest, name)
    role = _role(manifest, name)
    if role == MEASUREMENT:
        measured = info.get("measures", name)
        return f"the noisy measurement of {measured} as drawn: unbiased, may be negative; add up {measured} instead"
    if role == CONSISTENT and name == TOTALS:
        return "consistent national totals with their 95% intervals"
    if role == CONSISTENT:
        return "consistent table: non-negative counts that add up, with 95% intervals"
    if role == DERIVED:
        return "derived from the noisy tables (post-processing), with its own columns"
    return FORMAT1


def render_release_report(lake_root: str | os.PathLike, release_id: str, *, agreements: tuple = (),
                          boundaries=None) -> str:
    """The HTML text of the report on ``release_id`` (nothing written)."""
    lake = open_lake(lake_root)
    entries, _ = read_ledger(lake)
    # integrity problems are shown on the page rather than refused: the report is where a reader sees them
    stored = open_release(lake, release_id, verify=False, entries=entries)
    m = stored.manifest
    if boundaries is None:
        from mobility.reference import load_boundaries

        boundaries = load_boundaries()
    query = m.get("query")
    if not isinstance(query, dict):
        query = {}
    p = m.get("privacy") or {}
    charge = stored.charge
    agreement_ids = sorted({e.agreement_id for e in entries if e.agreement_id} | {str(m.get("agreement_id") or "")}
                           - {""})
    file_caps, notes = caps_for(agreement_ids, agreements)
    mapping = agreement_populations(entries, file_caps)
    population = (p.get("population") or (population_of(charge, mapping) if charge else None)
                  or mapping.get(str(m.get("agreement_id"))))
    caps = population_caps(entries, population, file_caps) if population else None
    if caps is not None:  # caps found: notes on other agreements' files do not concern this release
        notes = []
    else:
        notes = [n for n in notes if f"agreement {charge.agreement_id if charge else m.get('agreement_id')} " in n]
    life = _dict(p.get("cumulative_lifetime"))
    month = _dict(p.get("cumulative_per_data_month"))
    body = [f"<h1>Release {esc(stored.release_id)}</h1>",
            f"<p class=\"sub\">{esc(query.get('statistic', 'differentially private tables'))} · agreement "
            f"<code>{esc(m.get('agreement_id'))}</code> · period {esc(m.get('period'))} · purpose "
            f"{esc(m.get('purpose'))} · requested by {esc(m.get('requested_by'))} · published "
            f"{esc(m.get('created'))}</p>",
            cards([("mechanism", str(m.get("mechanism", "—")).replace("_", " ")), ("rho (zCDP)", fmt(p.get("rho"))),
                   ("epsilon", fmt(p.get("epsilon"))), ("delta", fmt(p.get("delta"))),
                   ("protected unit", "one SIM" if p.get("protected_unit") else "one SIM (not in manifest)"),
                   ("cumulative epsilon, most charged data month", fmt(month.get("epsilon")) if month else "—"),
                   ("cumulative epsilon, lifetime", fmt(life.get("epsilon")) if life else "—"),
                   ("tables", str(len(stored.tables))),
                   ("cells", f"{sum(len(t) for t in stored.tables.values()):,}")])]
    if is_format1(m):
        body.append(f"<p class=\"warn\">This release is of manifest {esc(FORMAT1)}. Its noisy measurements were "
                    "not kept, so sums of its cells are biased upwards where cells were set to 0.</p>")
    maps: list[str] = []
    charts: list[str] = []
    generic: list[str] = []
    derived: list[str] = []
    tables = stored.tables
    for name, frame in tables.items():
        role = _role(m, name)
        if role == MEASUREMENT or (role == CONSISTENT and name == TOTALS):
            continue  # measurements are listed below, not charted; the totals get their own section
        value = _count_column(m, name, frame)
        if value is None or frame.empty:
            continue
        keys = _keys(m, name, frame, value)
        if role != DERIVED and len(keys) == 1 and _is_cell_column(frame[keys[0]]):
            maps.append(_map_section(name, frame, keys[0], value, m, boundaries))
        elif role != DERIVED and ORIGIN in keys and DESTINATION in keys:
            charts.append(_flows_section(name, tables, value, m))
        else:
            (derived if role == DERIVED else generic).append(_generic_section(name, tables, keys, value, m))
    if _role(m, TOTALS) == CONSISTENT and TOTALS in tables:
        body.append(_totals_section(m, tables[TOTALS]))
    if maps:
        body.append("<h2 id=\"maps\">Subnational tables on the map</h2>" + "".join(maps))
    if charts:
        body.append("<h2 id=\"flows\">Largest country-to-country flows</h2>" + "".join(charts))
    if generic or derived:
        body.append("<h2 id=\"largest\">Largest cells of the other tables</h2>" + "".join(generic + derived))
    body.append(_privacy_section(m, charge, entries, mapping, caps))
    body.append(_ledger_section(stored, entries, mapping, caps, notes))
    body.append("<h2 id=\"tables\">Every published cell</h2><p class=\"note\">The same values as the CSV and "
                "Parquet files in the release directory. "
                + (f"This release is of {esc(FORMAT1)}." if is_format1(m) else
                   "<code>TABLE_noisy</code> tables are the noisy measurements as OpenDP drew them: unbiased, and "
                   "may be negative (nothing was clamped); add up the consistent tables (<code>TABLE</code>, "
                   "non-negative integers whose breakdowns add up to their margins and to the totals) instead, "
                   "with intervals of sums from the measurements (privacy_budget.sums).") + "</p>")
    for name, frame in tables.items():
        body.append(f"<details><summary>{esc(name)} ({len(frame):,} cells; {esc(_kind_words(m, name))})</summary>"
                    f"{frame_table(frame, name)}</details>")
    files = [(f, info.get("bytes"), info.get("sha256")) for t in (m.get("tables") or {}).values()
             for f, info in sorted((t.get("files") or {}).items())]
    body.append("<h2 id=\"provenance\">Provenance</h2>"
                + rows_table(["file", "bytes", "SHA-256"], files, numeric=[False, True, False],
                             hashes=[False, False, True])
                + rows_table(["input table", "Delta version"], sorted((m.get("input_versions") or {}).items()),
                             numeric=[False, True])
                + "<details><summary>query (as charged in the ledger)</summary>"
                + rows_table(["field", "value"], [(k, str(v)) for k, v in sorted(query.items())]) + "</details>")
    return page(f"Release {stored.release_id}", "\n".join(body))


def write_release_report(lake_root: str | os.PathLike, release_id: str, out: str | os.PathLike, *,
                         agreements: tuple = (), boundaries=None) -> Path:
    """Write the report on ``release_id`` to ``out`` (one HTML file); returns its path."""
    text = render_release_report(lake_root, release_id, agreements=agreements, boundaries=boundaries)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out.resolve()
