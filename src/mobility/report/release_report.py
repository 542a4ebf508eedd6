"""One self-contained HTML page about one release: maps, largest flows, privacy in plain words, ledger position.

Tables are recognised by shape, not by name, so a release with another manifest (remittances,
say) still renders: a table whose one key holds H3 cells gets a map, a table keyed by
from_country/to_country gets the flow chart, and every other table gets a chart of its largest
cells. Every table is also listed in full.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from mobility.privacy_budget import accountant
from mobility.privacy_budget.intervals import sum_error_bound_95
from mobility.privacy_budget.ledger import MANIFEST, LedgerEntry, sha256_file
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
from mobility.privacy_budget.stored import StoredRelease, open_release
from mobility.report import figures
from mobility.report.data import budget_path, caps_for, ledger_position, open_lake, read_ledger
from mobility.report.page import cards, esc, figure, fmt, frame_table, page, rows_table

TOP = 15  # bars per chart: enough to see the largest flows, few enough to read the labels
COUNT = "count"
ORIGIN, DESTINATION = "from_country", "to_country"


def _is_cell_column(values: pd.Series) -> bool:
    import h3

    sample = [v for v in values.astype(str).unique() if v.upper() != "UNKNOWN"][:50]
    return bool(sample) and all(h3.is_valid_cell(v) for v in sample)


def _count_column(manifest: dict, name: str, frame: pd.DataFrame) -> str | None:
    info = manifest.get("tables", {}).get(name, {})
    column = info.get("count_column", COUNT)
    if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column].dtype):
        return column
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c].dtype)]
    return numeric[-1] if numeric else None


def _keys(manifest: dict, name: str, frame: pd.DataFrame, value: str) -> list[str]:
    keys = manifest.get("tables", {}).get(name, {}).get("key_columns")
    return [k for k in keys if k in frame.columns] if isinstance(keys, list) else \
        [c for c in frame.columns if c != value]


def _noise(manifest: dict, name: str) -> tuple[str | None, float | None, float | None]:
    """(mechanism, scale, per-cell 95% bound) of a table, None where the manifest does not say."""
    info = manifest.get("tables", {}).get(name, {})
    mechanism = manifest.get("mechanism")
    scale = info.get("noise_scale")
    bound = info.get("error_bound_95")
    ok = mechanism in (DISCRETE_GAUSSIAN, DISCRETE_LAPLACE) and isinstance(scale, (int, float)) and scale > 0
    return (mechanism if ok else None, float(scale) if ok else None,
            float(bound) if isinstance(bound, (int, float)) else None)


def _map_section(name: str, frame: pd.DataFrame, key: str, value: str, manifest: dict, boundaries) -> str:
    is_cell = frame[key].astype(str).str.upper() != "UNKNOWN"
    cells, other = frame[is_cell], frame[~is_cell]
    _, _, bound = _noise(manifest, name)
    svg = figures.cell_map(cells[key].astype(str).tolist(), [int(v) for v in cells[value]], boundaries,
                           f"{name}: noisy counts on H3 cells", f"map-{name}")
    res = ""
    try:
        import h3

        res = f" H3 resolution {h3.get_resolution(str(cells[key].iloc[0]))}."
    except Exception:  # an empty table: no resolution to state
        pass
    caption = (f"Each hexagon is one cell of <code>{esc(key)}</code>, coloured by its published (noisy) count; "
               f"{len(cells):,} cells drawn over the country boundaries.{esc(res)} "
               + (f"Each cell is within ±{fmt(bound)} of its count before noise with 95% probability, so "
                  f"cells at or below {fmt(bound)} are indistinguishable from zero. " if bound is not None else "")
               + (f"Not on the map: {esc(', '.join(f'{r[key]} = {int(r[value]):,}' for _, r in other.iterrows()))} "
                  "(changes without a usable cell)." if len(other) else ""))
    return figure(svg, caption, f"map-{name}")


def _flows_section(name: str, frame: pd.DataFrame, value: str, manifest: dict) -> str:
    pairs = frame.groupby([ORIGIN, DESTINATION], sort=True)[value].agg(["sum", "size"]).reset_index()
    pairs = pairs.sort_values(["sum", ORIGIN, DESTINATION], ascending=[False, True, True], kind="stable").head(TOP)
    mechanism, scale, bound = _noise(manifest, name)
    errors = None
    if mechanism and scale is not None:
        errors = [float(sum_error_bound_95([(mechanism, scale, int(k))])) for k in pairs["size"]]
    labels = [f"{a} → {b}" for a, b in zip(pairs[ORIGIN], pairs[DESTINATION])]
    svg = figures.bar_chart(labels, [float(v) for v in pairs["sum"]], errors,
                            f"Largest country-to-country flows ({name})", "published count (sum of noisy cells)",
                            f"flows-{name}")
    cells = sorted(set(int(k) for k in pairs["size"]))
    caption = (f"The {len(pairs)} largest origin → destination pairs. "
               + (f"Each pair adds {', '.join(map(str, cells))} published cell(s) (its breakdowns); the error bar is "
                  "the 95% bound of that sum, computed exactly from the noise law and scale in the manifest "
                  f"(±{fmt(bound)} for a single cell). " if errors is not None else "")
               + "Bars cannot go below zero because negative noisy counts were set to 0.")
    rows = [(lab, int(v), int(k), f"±{int(e)}" if errors is not None else "—")
            for lab, v, k, e in zip(labels, pairs["sum"], pairs["size"], errors or [0] * len(pairs))]
    return figure(svg, caption, f"flows-{name}") + rows_table(
        ["pair", "published count", "cells summed", "95% bound"], rows, numeric=[False, True, True, True])


def _generic_section(name: str, frame: pd.DataFrame, keys: list[str], value: str, manifest: dict) -> str:
    top = frame.sort_values([value, *keys], ascending=[False, *[True] * len(keys)], kind="stable").head(TOP)
    _, _, bound = _noise(manifest, name)
    labels = [" · ".join(str(v) for v in row) for row in top[keys].itertuples(index=False, name=None)] \
        if keys else [name]
    errors = [bound] * len(top) if bound is not None else None
    svg = figures.bar_chart(labels, [float(v) for v in top[value]], errors, f"Largest cells of {name}",
                            f"published {value}", f"top-{name}")
    caption = (f"The {len(top)} largest published cells of <code>{esc(name)}</code>"
               + (f", each with its 95% error bound ±{fmt(bound)} from the manifest." if bound is not None else "."))
    return figure(svg, caption, f"top-{name}")


def _privacy_section(manifest: dict) -> str:
    p = manifest.get("privacy", {}) or {}
    rho, eps, delta = p.get("rho"), p.get("epsilon"), p.get("delta")
    mech = manifest.get("mechanism", "")
    unit = manifest.get("privacy_unit", "not stated")
    c = manifest.get("max_contributions")
    items = [f"<li><b>Who is protected (the privacy unit):</b> {esc(unit)}. Whether or not any one such unit's "
             "records are in the data, the published tables come out almost the same, so nobody can learn from "
             "them whether a given person moved.</li>"]
    if c is not None:
        items.append(f"<li><b>Contribution bound:</b> each unit adds at most {esc(c)} to each table, so one "
                     "person can move any table by at most that much before noise.</li>")
    if isinstance(rho, (int, float)):
        items.append(f"<li><b>rho = {fmt(rho)}</b> (zero-concentrated differential privacy, zCDP) is this release's "
                     "privacy loss. Smaller is more private. rho values add up across releases, which is how the "
                     "ledger charges each release against the agreement's yearly and lifetime caps.</li>")
    if isinstance(eps, (int, float)):
        odds = math.exp(eps) if eps < 700 else math.inf
        extra = (f", except with a probability of at most delta = {fmt(delta)}" if delta else
                 " (pure differential privacy: delta = 0, no exception)")
        items.append(f"<li><b>epsilon = {fmt(eps)}</b> states the same guarantee in the (epsilon, delta) form: "
                     f"adding or removing one unit changes the probability of any published outcome by at most a "
                     f"factor of e<sup>epsilon</sup> ≈ {fmt(odds, 3)}{esc(extra)}.</li>")
    if mech:
        items.append(f"<li><b>Noise:</b> {esc(mech.replace('_', ' '))} noise on every cell, from "
                     f"{esc(manifest.get('noise_source', 'OpenDP'))}; the budget is split across the tables as "
                     "listed below.</li>")
    items.append("<li><b>Error bound:</b> each cell's published value is within ± the table's 95% bound of the "
                 "count the pipeline computed with probability at least 95% (before negative values were set to 0). "
                 "It covers only the privacy noise, not errors of measurement or of the residence rule. "
                 "Sums of several cells have wider bounds; the flow chart shows them.</li>")
    rows = []
    for name, info in sorted((manifest.get("tables") or {}).items()):
        rows.append((name, info.get("rows"), info.get("budget_share"), info.get("rho"), info.get("epsilon"),
                     info.get("noise_scale"), f"±{fmt(info.get('error_bound_95'))}"))
    table = rows_table(["table", "cells", "budget share", "rho", "epsilon", "noise scale", "95% bound"], rows,
                       numeric=[False, True, True, True, True, True, True]) if rows else ""
    post = manifest.get("post_processing")
    return ("<h2 id=\"privacy\">Privacy parameters in plain words</h2><ul>" + "".join(items) + "</ul>" + table
            + (f"<p class=\"note\">Post-processing: {esc(post)}</p>" if post else ""))


def _ledger_section(stored: StoredRelease, entries: list[LedgerEntry], agreements: tuple) -> str:
    position = ledger_position(stored, entries)
    charge, pub = position.charge, position.publication
    out = ["<h2 id=\"ledger\">Position in the privacy-budget ledger</h2>"]
    if charge is None:
        out.append("<p class=\"warn\">This release has no charge entry in the ledger of this lake. "
                   "Do not use it before an auditor has run <code>mobility ledger verify</code>.</p>")
        return "".join(out)
    digest = sha256_file(stored.path / MANIFEST)
    rows = [("charge", charge.seq, charge.entry_time, charge.entry_hash, charge.prev_hash,
             f"rho {fmt(charge.rho)}, epsilon {fmt(charge.epsilon)}, delta {fmt(charge.delta)}")]
    if pub is not None:
        rows.append(("published", pub.seq, pub.entry_time, pub.entry_hash, pub.prev_hash,
                     f"manifest SHA-256 {pub.release_digest}"))
    out.append(f"<p>Entries {', '.join(str(r[1]) for r in rows)} of the {position.entries} in the ledger "
               f"(agreement <code>{esc(charge.agreement_id)}</code>; {position.later_charges} later charge(s) "
               "to the same agreement).</p>")
    out.append(rows_table(["entry", "seq", "time (UTC)", "entry hash", "previous hash", "what it records"], rows,
                          numeric=[False, True, False, False, False, False], hashes=[False, False, False, True, True,
                                                                                     False]))
    if position.problems:
        out.append("<div class=\"warn\"><b>Integrity problems:</b><ul>"
                   + "".join(f"<li>{esc(p)}</li>" for p in position.problems) + "</ul></div>")
    else:
        out.append(f"<p class=\"ok\">The hash chain is intact and the release files match the ledger "
                   f"(manifest SHA-256 <span class=\"hash\">{esc(digest)}</span>).</p>")

    caps, notes = caps_for([charge.agreement_id], agreements)
    cap = caps.get(charge.agreement_id)
    path = budget_path(entries, charge.agreement_id)
    at = next(p for p in path if p.entry.seq == charge.seq)
    now_year = next((p.year_total_rho for p in reversed(path) if p.year == charge.year), 0.0)
    now_life = path[-1].lifetime_total_rho if path else 0.0
    budget_rows = []
    for label, cap_rho, through, now in ((f"calendar year {charge.year}", cap.rho_per_year if cap else None,
                                          at.year_total_rho, now_year),
                                         ("lifetime", cap.rho_lifetime if cap else None, at.lifetime_total_rho,
                                          now_life)):
        left = accountant.remaining(cap_rho, now, cap.delta) if cap and cap_rho is not None else None
        budget_rows.append((label, cap_rho, through - charge.rho, charge.rho, through, now,
                            left.remaining_rho if left else None, left.remaining_epsilon if left else None))
    out.append("<h3>Budget of the agreement</h3>")
    out.append(rows_table(["cap", "cap rho", "spent before", "this release", "spent through it", "spent now",
                           "left now (rho)", f"left now (epsilon at delta {fmt(cap.delta) if cap else '—'})"],
                          budget_rows, numeric=[False] + [True] * 7))
    out.extend(f"<p class=\"note\">{esc(n)}</p>" for n in notes)
    return "".join(out)


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
    body = [f"<h1>Release {esc(stored.release_id)}</h1>",
            f"<p class=\"sub\">{esc(query.get('statistic', 'differentially private tables'))} · agreement "
            f"<code>{esc(m.get('agreement_id'))}</code> · period {esc(m.get('period'))} · purpose "
            f"{esc(m.get('purpose'))} · requested by {esc(m.get('requested_by'))} · published "
            f"{esc(m.get('created'))}</p>",
            cards([("mechanism", str(m.get("mechanism", "—")).replace("_", " ")), ("rho (zCDP)", fmt(p.get("rho"))),
                   ("epsilon", fmt(p.get("epsilon"))), ("delta", fmt(p.get("delta"))),
                   ("tables", str(len(stored.tables))),
                   ("cells", f"{sum(len(t) for t in stored.tables.values()):,}")])]
    maps, charts, generic = [], [], []
    for name, frame in stored.tables.items():
        value = _count_column(m, name, frame)
        if value is None or frame.empty:
            continue
        keys = _keys(m, name, frame, value)
        if len(keys) == 1 and _is_cell_column(frame[keys[0]]):
            maps.append(_map_section(name, frame, keys[0], value, m, boundaries))
        elif ORIGIN in keys and DESTINATION in keys:
            charts.append(_flows_section(name, frame, value, m))
        else:
            generic.append(_generic_section(name, frame, keys, value, m))
    if maps:
        body.append("<h2 id=\"maps\">Subnational tables on the map</h2>" + "".join(maps))
    if charts:
        body.append("<h2 id=\"flows\">Largest country-to-country flows</h2>" + "".join(charts))
    if generic:
        body.append("<h2 id=\"largest\">Largest cells of the other tables</h2>" + "".join(generic))
    body.append(_privacy_section(m))
    body.append(_ledger_section(stored, entries, agreements))
    body.append("<h2 id=\"tables\">Every published cell</h2><p class=\"note\">The same values as the CSV and "
                "Parquet files in the release directory.</p>")
    for name, frame in stored.tables.items():
        body.append(f"<details><summary>{esc(name)} ({len(frame):,} cells)</summary>{frame_table(frame, name)}"
                    "</details>")
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
