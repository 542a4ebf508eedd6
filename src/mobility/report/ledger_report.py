"""One self-contained HTML page about the ledger: budget spent per data population against its caps.

A population (one operator's subscribers, ``budget.population``) is charged by every agreement that
names it: each charge counts against every data month it read and against the population's lifetime
total. Caps come from the ledger's ``policy`` entries first, else from the agreement files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mobility.config import as_agreement
from mobility.errors import InputContractError
from mobility.lake import is_delta
from mobility.privacy_budget import accountant, accounts, verify
from mobility.privacy_budget.ledger import CHARGED, LedgerEntry
from mobility.report import figures
from mobility.report.data import (
    PopulationCaps,
    agreement_populations,
    budget_path,
    caps_for,
    charges_of,
    entry_time,
    epsilon_of,
    month_runs,
    month_span,
    months_label,
    open_lake,
    policy_entries,
    population_caps,
    population_of,
    read_ledger,
    spent_by,
)
from mobility.report.page import cards, esc, figure, fmt, page, rows_table


def _over(spent: float, cap: float | None) -> bool:
    return cap is not None and spent > cap * (1 + accountant.CAP_TOLERANCE)


def _reason(entry: LedgerEntry) -> str:
    try:
        query = json.loads(entry.query or "{}")
    except ValueError:
        return ""
    return str(query.get("reason", "")) if isinstance(query, dict) else ""


def _policy_table(entries: list[LedgerEntry], population: str) -> str:
    rows = []
    for e in policy_entries(entries, population):
        caps = accounts.recorded_caps(e)
        rows.append((e.seq, entry_time(e), e.agreement_id, caps.get("rho_per_data_month"),
                     caps.get("rho_lifetime"), caps.get("delta"), e.agreement_sha256 or "", _reason(e),
                     e.entry_hash))
    if not rows:
        return ("<h3>Caps recorded in the ledger</h3><p class=\"note\">No <code>policy</code> entry records caps of "
                "this population yet (the first charge under an agreement records them).</p>")
    changed = len({(r[3], r[4], r[5]) for r in rows}) > 1
    return ("<h3>Caps recorded in the ledger</h3><p>Each <code>policy</code> entry records the caps an agreement "
            "charges under and the SHA-256 of its file; a change of caps is a new entry, in the chain like any "
            "charge. " + ("The caps of this population were changed: every change is listed."
                          if changed else "The caps have not been changed since they were first recorded.")
            + "</p>" + rows_table(["seq", "time (UTC)", "agreement", "cap per data month (rho)",
                                   "lifetime cap (rho)", "delta", "agreement file SHA-256", "reason", "entry hash"],
                                  rows, numeric=[True, False, False, True, True, True, False, False, False],
                                  hashes=[False] * 6 + [True, False, True]))


def _population_section(population: str, entries: list[LedgerEntry], mapping: dict[str, str],
                        caps: PopulationCaps | None, notes: list[str]) -> str:
    path = budget_path(entries, population, mapping)
    spent = spent_by(entries, population, mapping)
    delta = caps.delta if caps else max((e.delta for e in charges_of(entries, population, mapping)),
                                        default=0.0) or None
    agreements = sorted(a for a, pop in mapping.items() if pop == population)
    out = [f"<h2 id=\"population-{esc(population)}\">Population <code>{esc(population)}</code></h2>",
           f"<p>Charged by agreement(s) {', '.join(f'<code>{esc(a)}</code>' for a in agreements) or '—'}; "
           "every agreement that names this population shares its caps. "
           + (f"Caps from the {esc(caps.source)}." if caps else
              "Caps unknown: pass --agreement with the agreement file to show them.")
           + (f" Stated population size: {fmt(caps.population_size)} subscriptions."
              if caps and caps.population_size else "") + "</p>"]
    worst = max(((rho, m) for m, rho in spent.by_month.items()), default=(0.0, None))
    items = [("charges", str(spent.charges)), ("rho spent, lifetime", fmt(spent.lifetime)),
             ("epsilon spent, lifetime", fmt(epsilon_of(spent.lifetime, delta)))]
    if caps:
        items += [("lifetime cap (rho)", fmt(caps.rho_lifetime)),
                  ("rho left, lifetime", fmt(max(caps.rho_lifetime - spent.lifetime, 0.0))),
                  ("cap per data month (rho)", fmt(caps.rho_per_data_month))]
    items += [("most charged data month", f"{worst[1] or '—'}: rho {fmt(worst[0])}"), ("delta", fmt(delta))]
    out.append(cards(items))
    if path:
        svg = figures.lifetime_chart([p.entry.seq for p in path], [p.lifetime_rho for p in path],
                                     caps.rho_lifetime if caps else None,
                                     f"Lifetime rho spent on {population}", f"budget-{population}")
        out.append(figure(svg, "After each charge (x: the entry's seq in the ledger), the rho spent over the "
                               "population's lifetime by every agreement that names it. "
                          + ("Dashed: the lifetime cap; the ledger refuses a charge that would cross it." if caps
                             else "Caps unknown: pass --agreement with the agreement file to draw them."),
                          f"budget-{population}"))
        months = list(spent.by_month)
        svg = figures.month_chart(months, [spent.by_month[m] for m in months],
                                  caps.rho_per_data_month if caps else None,
                                  f"rho spent per data month on {population}", f"months-{population}")
        out.append(figure(svg, "For each data month, the rho of every release that read it (a flows release reads "
                               "about 29 months, a remittance release one). "
                          + ("Dashed: the cap per data month; no bar may pass it." if caps else ""),
                          f"months-{population}"))
    rows = []
    runs = month_runs([(m, (rho,)) for m, rho in spent.by_month.items()])
    for label, cap_rho, value in ([("lifetime", caps.rho_lifetime if caps else None, spent.lifetime)]
                                  + [(months_label(ms), caps.rho_per_data_month if caps else None, rho)
                                     for ms, (rho,) in runs]):
        left = caps.left(cap_rho, value) if caps and cap_rho is not None else None
        rows.append((label, cap_rho, value, epsilon_of(value, delta), left.remaining_rho if left else None,
                     left.remaining_epsilon if left else None,
                     "—" if cap_rho is None else "OVER CAP" if _over(value, cap_rho) else "within cap"))
    over = [r[0] for r in rows if r[-1] == "OVER CAP"]
    if over:
        out.append(f"<div class=\"warn\"><b>Over a cap:</b> {esc(', '.join(over))}. Charges written before this "
                   "population's caps were recorded, or a ledger edited outside the pipeline, can do this; run "
                   "<code>mobility ledger verify</code>.</div>")
    out.append("<h3>Spent and left per cap</h3>" + rows_table(
        ["cap", "cap rho", "spent rho", f"spent epsilon (delta {fmt(delta)})", "left rho", "left epsilon",
         "check"],
        rows, numeric=[False] + [True] * 5 + [False]))
    out.append(_policy_table(entries, population))
    by_seq = {p.entry.seq: p for p in path}
    entry_rows: list[tuple] = []
    mine = [e for e in entries if (e.status == accounts.POLICY and e.population == population)
            or (e.status != accounts.POLICY and population_of(e, mapping) == population)]
    for e in mine:
        point = by_seq.get(e.seq)
        charged = e.status == CHARGED
        entry_rows.append((e.seq, entry_time(e), e.status, e.agreement_id, e.release_id, e.period,
                     month_span(e.months) if charged else "", e.rho if charged else None,
                     e.epsilon if charged else None, e.delta if charged else None,
                     point.lifetime_rho if point else None,
                     epsilon_of(point.lifetime_rho, delta) if point else None,
                     f"{point.worst_month}: {fmt(point.worst_month_rho)}" if point and point.worst_month else "",
                     e.entry_hash))
    out.append("<h3>Entries</h3>" + rows_table(
        ["seq", "time (UTC)", "status", "agreement", "release", "period", "data months read", "rho", "epsilon",
         "delta", "lifetime rho", "lifetime epsilon", "most charged month it read (rho)", "entry hash"], entry_rows,
        numeric=[True, False, False, False, False, False, False, True, True, True, True, True, False, False],
        hashes=[False] * 13 + [True]))
    out.extend(f"<p class=\"note\">{esc(n)}</p>" for n in notes)
    return "".join(out)


def _unassigned_section(entries: list[LedgerEntry], mapping: dict[str, str], notes: list[str]) -> str:
    loose = [e for e in entries if e.status == CHARGED and population_of(e, mapping) is None]
    if not loose:
        return ""
    rows = [(e.seq, e.agreement_id, e.release_id, e.period, month_span(e.months), e.rho, e.entry_hash)
            for e in loose]
    return ("<h2 id=\"unassigned\">Charges without a population</h2><p>These charges predate data-month accounting "
            "and no <code>policy</code> entry or agreement file names the population of their agreement, so they "
            "are counted against no cap on this page. Pass --agreement with the agreement file to assign them.</p>"
            + rows_table(["seq", "agreement", "release", "period", "data months read (inferred)", "rho",
                          "entry hash"], rows, numeric=[True, False, False, False, False, True, False],
                         hashes=[False] * 6 + [True])
            + "".join(f"<p class=\"note\">{esc(n)}</p>" for n in notes))


def render_ledger_report(lake_root: str | os.PathLike, agreements: tuple = ()) -> str:
    """HTML text: one section per data population (those of the agreements given, else every one in the ledger)."""
    lake = open_lake(lake_root)
    if not is_delta(lake.ledger):
        raise InputContractError("this lake has no ledger yet", where=str(lake.ledger),
                                 hint="the ledger is created by the first release (`mobility release ...`)")
    entries, version = read_ledger(lake)
    file_caps, notes = caps_for(sorted({e.agreement_id for e in entries if e.agreement_id}), agreements)
    mapping = agreement_populations(entries, file_caps)
    known = {p for p in mapping.values()} | {e.population for e in entries if e.population}
    chosen = sorted({mapping[a] for a in _ids_of(agreements) if a in mapping}) if agreements else sorted(known)
    # verify replays the caps the ledger records and compares the agreement files' caps with them
    report = verify(lake.root, caps=dict(file_caps) or None)
    status = (f"<p class=\"ok\">{esc(report.summary().splitlines()[0])}</p>" if report.ok else
              f"<div class=\"warn\"><b>Verification failed</b>: {esc(report.first)}</div>")
    body = [f"<h1>Privacy-budget ledger</h1><p class=\"sub\">{esc(lake.ledger)} · {len(entries)} entries · "
            f"Delta version {esc(version)}</p>", status]
    if not chosen:
        body.append("<p>No entries yet.</p>")
    for population in chosen:
        caps = population_caps(entries, population, file_caps)
        agreements_here = {a for a, pop in mapping.items() if pop == population}
        mine_notes = [] if caps else [n for n in notes if any(f"agreement {a} " in n for a in agreements_here)]
        body.append(_population_section(population, entries, mapping, caps, mine_notes))
    if not agreements:
        body.append(_unassigned_section(entries, mapping, [n for n in notes if not any(
            f"agreement {a} " in n for a in mapping)]))
    body.append("<h2>How to read this</h2><p>The protected unit is one subscription (SIM) of a population (one "
                "operator's subscribers); a person with several SIMs of the operator is several units and is "
                "protected only as a group (k SIMs: k² × rho under zCDP). Every release charges its rho "
                "(zero-concentrated differential privacy) before any noise is drawn, to each data month it read "
                "and to the population's lifetime total; rho values add up. The cap per data month bounds what "
                "one subscription's month of data can lose over every release that read it; the lifetime cap "
                "bounds what one subscription can lose over every release, including through older data that "
                "still shapes a person's residence state. A release that would pass a cap is refused and charges "
                "nothing. epsilon is the same total in the (epsilon, delta) form at the caps' delta: an epsilon "
                "of several units is a weak bound on its own. Each entry's hash covers the previous one, so "
                "changing any past entry breaks every later hash. See docs/methodology.md, "
                "&quot;Privacy budget by data month&quot;.</p>")
    return page("Privacy-budget ledger", "\n".join(body))


def _ids_of(refs: tuple) -> set[str]:
    return {as_agreement(r).agreement_id for r in refs}


def write_ledger_report(lake_root: str | os.PathLike, out: str | os.PathLike,
                        agreements: tuple = ()) -> Path:
    """Write the ledger report to ``out`` (one HTML file); returns its path."""
    text = render_ledger_report(lake_root, agreements)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out.resolve()
