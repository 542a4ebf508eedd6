"""One self-contained HTML page about the ledger: budget spent per agreement over time against its caps."""

from __future__ import annotations

import os
from pathlib import Path

from mobility.config import as_agreement
from mobility.errors import InputContractError
from mobility.lake import is_delta
from mobility.privacy_budget import accountant, verify
from mobility.privacy_budget.ledger import CHARGED
from mobility.report import figures
from mobility.report.data import budget_path, caps_for, open_lake, read_ledger
from mobility.report.page import cards, esc, figure, fmt, page, rows_table


def _epsilon(rho: float, delta: float | None) -> float | None:
    """(epsilon, delta) equivalent of a rho total; None when no delta is known."""
    if not delta or rho <= 0:
        return 0.0 if rho <= 0 else None
    return accountant.rho_to_epsilon(rho, delta)


def _agreement_section(agreement_id: str, entries, cap, notes: list[str]) -> str:
    path = budget_path(entries, agreement_id)
    mine = [e for e in entries if e.agreement_id == agreement_id]
    delta = cap.delta if cap else max((e.delta for e in mine if e.status == CHARGED), default=0.0) or None
    out = [f"<h2 id=\"agreement-{esc(agreement_id)}\">Agreement <code>{esc(agreement_id)}</code></h2>"]
    life = path[-1].lifetime_total_rho if path else 0.0
    items = [("charges", str(len(path))), ("rho spent, lifetime", fmt(life))]
    if cap:
        items += [("lifetime cap (rho)", fmt(cap.rho_lifetime)), ("per-year cap (rho)", fmt(cap.rho_per_year)),
                  ("rho left, lifetime", fmt(max(cap.rho_lifetime - life, 0.0))), ("delta", fmt(cap.delta))]
    out.append(cards(items))
    if path:
        years: dict[int, tuple[list[int], list[float]]] = {}
        for p in path:
            seqs, totals = years.setdefault(p.year, ([], []))
            seqs.append(p.entry.seq)
            totals.append(p.year_total_rho)
        svg = figures.budget_chart([p.entry.seq for p in path], [p.lifetime_total_rho for p in path], years,
                                   cap.rho_lifetime if cap else None, cap.rho_per_year if cap else None,
                                   f"Cumulative rho spent by {agreement_id}", f"budget-{agreement_id}")
        caption = ("After each charge (x: the entry's seq in the ledger), the rho spent over the agreement's lifetime "
                   "(black) and within each calendar year charged (the year of the release period, coloured). "
                   + ("Dashed: the caps from the agreement; no line may cross its cap." if cap else
                      "Caps unknown: pass --agreement with the agreement file to draw them."))
        out.append(figure(svg, caption, f"budget-{agreement_id}"))
    year_rows = []
    for year in sorted({p.year for p in path}):
        spent = [p for p in path if p.year == year][-1].year_total_rho
        left = accountant.remaining(cap.rho_per_year, spent, cap.delta) if cap else None
        year_rows.append((str(year), cap.rho_per_year if cap else None, spent, _epsilon(spent, delta),
                          left.remaining_rho if left else None, left.remaining_epsilon if left else None))
    if cap:
        left = accountant.remaining(cap.rho_lifetime, life, cap.delta)
        year_rows.append(("lifetime", cap.rho_lifetime, life, _epsilon(life, delta), left.remaining_rho,
                          left.remaining_epsilon))
    else:
        year_rows.append(("lifetime", None, life, _epsilon(life, delta), None, None))
    out.append("<h3>Spent and left per cap</h3>" + rows_table(
        ["cap", "cap rho", "spent rho", f"spent epsilon (delta {fmt(delta)})", "left rho", "left epsilon"],
        year_rows, numeric=[False] + [True] * 5))
    by_seq = {p.entry.seq: p for p in path}
    rows = []
    for e in mine:
        point = by_seq.get(e.seq)
        rows.append((e.seq, e.entry_time[:19].replace("T", " "), e.status, e.release_id, e.period, e.purpose,
                     e.mechanism if e.status == CHARGED else "", e.rho if e.status == CHARGED else None,
                     e.epsilon if e.status == CHARGED else None, e.delta if e.status == CHARGED else None,
                     point.year_total_rho if point else None, point.lifetime_total_rho if point else None,
                     _epsilon(point.lifetime_total_rho, delta) if point else None, e.entry_hash))
    out.append("<h3>Entries</h3>" + rows_table(
        ["seq", "time (UTC)", "status", "release", "period", "purpose", "mechanism", "rho", "epsilon", "delta",
         "year total rho", "lifetime rho", "lifetime epsilon", "entry hash"], rows,
        numeric=[True, False, False, False, False, False, False, True, True, True, True, True, True, False],
        hashes=[False] * 13 + [True]))
    out.extend(f"<p class=\"note\">{esc(n)}</p>" for n in notes)
    return "".join(out)


def render_ledger_report(lake_root: str | os.PathLike, agreements: tuple = ()) -> str:
    """HTML text: one section per agreement (those given, else every agreement in the ledger)."""
    lake = open_lake(lake_root)
    if not is_delta(lake.ledger):
        raise InputContractError("this lake has no ledger yet", where=str(lake.ledger),
                                 hint="the ledger is created by the first release (`mobility release ...`)")
    entries, version = read_ledger(lake)
    caps, notes = caps_for(sorted({e.agreement_id for e in entries}), agreements)
    chosen = sorted(_ids_of(agreements)) if agreements else sorted({e.agreement_id for e in entries})
    report = verify(lake.root, caps={a: caps[a] for a in caps})
    status = (f"<p class=\"ok\">{esc(report.summary().splitlines()[0])}</p>" if report.ok else
              f"<div class=\"warn\"><b>Verification failed</b>: {esc(report.first)}</div>")
    body = [f"<h1>Privacy-budget ledger</h1><p class=\"sub\">{esc(lake.ledger)} · {len(entries)} entries · "
            f"Delta version {esc(version)}</p>", status]
    if not chosen:
        body.append("<p>No entries yet.</p>")
    for agreement_id in chosen:
        mine_notes = [n for n in notes if f"agreement {agreement_id} " in n]
        body.append(_agreement_section(agreement_id, entries, caps.get(agreement_id), mine_notes))
    body.append("<h2>How to read this</h2><p>Every release charges its rho (zero-concentrated differential "
                "privacy) to the agreement before any noise is drawn; rho values add up. An agreement caps the rho "
                "charged to each calendar year (the year of the release period) and over its lifetime; a release "
                "that would cross a cap is refused and charges nothing. epsilon is the same total in the "
                "(epsilon, delta) form at the agreement's delta. Each entry's hash covers the previous one, so "
                "changing any past entry breaks every later hash.</p>")
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
