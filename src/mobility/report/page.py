"""HTML building blocks for self-contained report pages: inline CSS, escaped text, no scripts, no links out."""

from __future__ import annotations

import html
import math
from typing import Iterable, Sequence

import pandas as pd

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1d;margin:0;background:#fafafa}
main{max-width:1040px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#555;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#555;font-size:12px}
figure{margin:10px 0 18px}figure svg{max-width:100%;height:auto}figcaption{color:#444;font-size:13px;max-width:780px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.hash{min-width:12em}
.scroll{overflow-x:auto;max-width:100%}
code,.hash{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.warn{border-left:4px solid #b22222;background:#fff3f3;padding:6px 12px}
.ok{border-left:4px solid #2e7d32;background:#f1f8f1;padding:6px 12px}
.note{color:#555;font-size:13px}
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value, digits: int = 4) -> str:
    """Numbers for people: integers with separators, floats to a few significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 10 ** digits:  # 20000.0 as 20,000 rather than 2e+04
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n")


def cards(items: Iterable[tuple[str, str]]) -> str:
    return "<div class=\"cards\">" + "".join(f"<div class=\"card\"><b>{esc(v)}</b><span>{esc(k)}</span></div>"
                                           for k, v in items) + "</div>"


def interval(low, high) -> str:
    """A 95% interval as the report prints it: ``[12 to 40]`` (``to``, since numbers carry commas)."""
    return f"[{fmt(low)} to {fmt(high)}]"


def rows_table(header: Sequence[str], rows: Iterable[Sequence], numeric: Sequence[bool] | None = None,
               hashes: Sequence[bool] | None = None, raw: bool = False, name: str | None = None) -> str:
    """A table from rows; cells are escaped unless ``raw`` (already HTML). ``name`` becomes the table's
    ``data-table`` attribute (so a reader or a test can find the figures it lists)."""
    numeric = numeric or [False] * len(header)
    hashes = hashes or [False] * len(header)
    attribute = f" data-table=\"{esc(name)}\"" if name else ""
    out = [f"<div class=\"scroll\"><table{attribute}><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
           + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for value, is_num, is_hash in zip(row, numeric, hashes):
            text = value if raw and isinstance(value, str) else esc(fmt(value) if not isinstance(value, str)
                                                                    else value)
            cls = " class=\"num\"" if is_num else (" class=\"hash\"" if is_hash else "")
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array in a cell: not a missing value
        return False


def frame_table(frame: pd.DataFrame, table_name: str) -> str:
    """Every cell of a released table (values written exactly as in the CSV)."""
    header = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c].dtype) for c in frame.columns]
    body = ["<table data-table=\"" + esc(table_name) + "\"><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in frame.itertuples(index=False, name=None):
        row = tuple("" if _missing(v) else v for v in row)  # a missing value is an empty CSV field
        body.append("<tr>" + "".join(f"<td class=\"num\">{esc(v)}</td>" if n else f"<td>{esc(v)}</td>"
                                     for v, n in zip(row, numeric)) + "</tr>")
    body.append("</tbody></table>")
    return "".join(body)


def figure(svg: str, caption: str, name: str) -> str:
    return f"<figure data-chart=\"{esc(name)}\">{svg}<figcaption>{caption}</figcaption></figure>"
