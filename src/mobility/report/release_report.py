"""One self-contained HTML page about one release: maps, largest flows, what its privacy guarantee says,
ledger position.

Tables are recognised by shape, not by name, so a release with another manifest (remittances,
say) still renders: a table whose one key holds H3 cells gets a map, a table keyed by
from_country/to_country gets the flow chart, and every other table gets a chart of its largest
cells. Every table is also listed in full.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mobility.privacy_budget import accounts
from mobility.privacy_budget.intervals import sum_error_bound_95
from mobility.privacy_budget.ledger import MANIFEST, LedgerEntry, sha256_file
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE
from mobility.privacy_budget.stored import StoredRelease, open_release
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


def _bounds_items(manifest: dict) -> tuple[list[str], str]:
    """The contribution bound of every table: a sentence and a table (table, unit, bound, budget, noise)."""
    tables = sorted((manifest.get("tables") or {}).items())
    rows, stated = [], []
    for name, info in tables:
        words, d_in = _bound(info)
        unit = _table_unit(manifest, name) if "derived" not in info else "—"
        rows.append((name, info.get("rows"), unit, words, info.get("budget_share"), info.get("rho"),
                     info.get("epsilon"), info.get("noise_scale"),
                     f"±{fmt(info.get('error_bound_95'))}" if "error_bound_95" in info else "—"))
        if d_in is not None:
            stated.append((name, d_in, unit))
    items = ["<li><b>Contribution bound, per table:</b> one subscription can change each table by at most the "
             "bound listed below, before noise, in that table's own unit; the noise of each table is scaled to "
             "its bound and its share of the budget.</li>"]
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
    table = rows_table(["table", "cells", "unit of the bound", "contribution bound (one SIM)", "budget share",
                        "rho", "epsilon", "noise scale", "95% bound"], rows,
                       numeric=[False, True, False, False, True, True, True, True, True]) if rows else ""
    return items, table


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
                     f"{esc(manifest.get('noise_source', 'OpenDP'))}; the budget is split across the tables as "
                     "listed below.</li>")
    items.append("<li><b>Error bound:</b> each cell's published value is within ± the table's 95% bound of the "
                 "count the pipeline computed with probability at least 95% (before negative values were set to 0). "
                 "It covers only the privacy noise, not errors of measurement or of the residence rule. "
                 "Sums of several cells have wider bounds; the flow chart shows them.</li>")
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
    body.append(_privacy_section(m, charge, entries, mapping, caps))
    body.append(_ledger_section(stored, entries, mapping, caps, notes))
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
