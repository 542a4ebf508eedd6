"""Figures as inline SVG text (matplotlib, no pyplot state, no network): maps, bar charts, budget charts.

Every figure gets a fixed hash salt and no date, so the same release renders byte-identical
SVG, and its element ids get a per-figure prefix, so several SVGs can share one HTML page.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display: figures are only ever written to SVG text

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # new in matplotlib 3.11; the runtime floor is 3.8

_RC: dict[RcKeyType, Any] = {"svg.hashsalt": "mobility-report", "svg.fonttype": "none", "font.size": 9,
                             "axes.spines.top": False, "axes.spines.right": False}
MAP_COLORS = "YlOrRd"
BAR_COLOR = "#3b6ea5"
_ID = re.compile(r'\bid="([^"]+)"')


def svg_text(fig: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element ready to inline (no XML prolog, ids prefixed)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    ids = set(_ID.findall(text))
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})" if m.group(1) in ids else m.group(0),
                  text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"' if m.group(1) in ids
                  else m.group(0), text)
    return text.replace("<svg ", f'<svg data-figure="{prefix}" ', 1)


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), dpi=100)


def cell_polygons(cells: list[str]):
    """Shapely polygons (lng, lat) of H3 cells; cells across the antimeridian are kept in one piece."""
    import h3
    from shapely.geometry import Polygon

    polygons = []
    for cell in cells:
        ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]
        lngs = [p[0] for p in ring]
        if max(lngs) - min(lngs) > 180:
            ring = [(lng + 360 if lng < 0 else lng, lat) for lng, lat in ring]
        polygons.append(Polygon(ring))
    return polygons


def cell_map(cells: list[str], counts: list[int], boundaries, title: str, prefix: str,
             label: str = "noisy count per cell") -> str:
    """Choropleth of counts on H3 cells over the country boundaries around them (``label``: the legend's)."""
    import geopandas as gpd

    with matplotlib.rc_context(_RC):
        frame = gpd.GeoDataFrame({"count": counts}, geometry=cell_polygons(cells), crs=4326)
        minx, miny, maxx, maxy = frame.total_bounds
        pad_x, pad_y = max((maxx - minx) * 0.05, 0.2), max((maxy - miny) * 0.05, 0.2)
        fig = _figure(7.5, 7.5)
        ax = fig.add_subplot()
        if boundaries is not None and len(boundaries):
            near = boundaries.cx[minx - pad_x:maxx + pad_x, miny - pad_y:maxy + pad_y]
            near.plot(ax=ax, color="#eeeeee", edgecolor="#777777", linewidth=0.5)
        frame.plot(ax=ax, column="count", cmap=MAP_COLORS, linewidth=0, vmin=0,
                   vmax=max(max(counts, default=0), 1), legend=True,
                   legend_kwds={"label": label, "shrink": 0.6})
        if boundaries is not None and len(boundaries):  # outlines above the cells, so coasts stay visible
            near.boundary.plot(ax=ax, color="#555555", linewidth=0.4)
        ax.set_xlim(minx - pad_x, maxx + pad_x)
        ax.set_ylim(miny - pad_y, maxy + pad_y)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.set_title(title)
        ax.set_aspect("equal")
        return svg_text(fig, prefix)


def bar_chart(labels: list[str], values: list[float], errors: list[float] | None, title: str, xlabel: str,
              prefix: str, *, lows: list[float] | None = None, highs: list[float] | None = None) -> str:
    """Horizontal bars, largest on top, with optional error bars: each bar's interval [``lows``, ``highs``]
    (asymmetric, as published), or symmetric ``errors`` cut at 0 (counts cannot be negative)."""
    if lows is None and errors is not None:
        lows = [max(v - e, 0.0) for v, e in zip(values, errors)]
        highs = [v + e for v, e in zip(values, errors)]
    if (lows is None) != (highs is None):
        raise ValueError("bar_chart needs both lows and highs, or neither")
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, max(2.2, 0.32 * len(labels) + 1.2))
        ax = fig.add_subplot()
        positions = list(range(len(labels)))[::-1]
        if lows is not None and highs is not None:
            below = [max(v - lo, 0.0) for v, lo in zip(values, lows)]  # an interval always holds its value
            above = [max(hi - v, 0.0) for v, hi in zip(values, highs)]
            ax.barh(positions, values, color=BAR_COLOR, xerr=[below, above], capsize=3,
                    error_kw={"ecolor": "#222222", "elinewidth": 1})
        else:
            ax.barh(positions, values, color=BAR_COLOR)
        ax.set_yticks(positions, labels)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.set_xlim(left=min([0.0, *(lows or [])]))
        return svg_text(fig, prefix)


def lifetime_chart(seqs: list[int], lifetime: list[float], cap_lifetime: float | None, title: str,
                   prefix: str) -> str:
    """A population's lifetime rho after each charge (a step line), with the lifetime cap dashed."""
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, 3.6)
        ax = fig.add_subplot()
        end = max(seqs) + 1  # carry the total to the right so the last charge shows as a step
        ax.step([0, *seqs, end], [0.0, *lifetime, lifetime[-1]], where="post", color="#222222", linewidth=2,
                label="lifetime total")
        ax.plot(seqs, lifetime, "o", color="#222222")
        if cap_lifetime is not None:
            ax.axhline(cap_lifetime, color="#b22222", linestyle="--", label=f"lifetime cap {cap_lifetime:g}")
        ax.set_xlim(0, end)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("ledger entry (seq)")
        ax.set_ylabel("rho spent (zCDP)")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        return svg_text(fig, prefix)


def month_chart(months: list[str], spent: list[float], cap_month: float | None, title: str, prefix: str) -> str:
    """rho spent per data month (one bar per month, oldest left), with the per-data-month cap dashed."""
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, 3.6)
        ax = fig.add_subplot()
        positions = list(range(len(months)))
        colors = ["#b22222" if cap_month is not None and v > cap_month * (1 + 1e-9) else BAR_COLOR
                  for v in spent]  # a month over its cap (the ledger refuses that) stands out in red
        ax.bar(positions, spent, color=colors, width=0.8)
        if cap_month is not None:
            ax.axhline(cap_month, color="#b22222", linestyle="--", label=f"cap per data month {cap_month:g}")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        step = max(1, len(months) // 12)  # about a dozen month labels, whatever the span
        ax.set_xticks(positions[::step], months[::step], rotation=60, ha="right")
        ax.set_xlim(-0.6, len(months) - 0.4)
        ax.set_xlabel("data month")
        ax.set_ylabel("rho spent (zCDP)")
        ax.set_ylim(bottom=0, top=max([*spent, cap_month or 0.0]) * 1.1 or 1.0)
        ax.set_title(title)
        return svg_text(fig, prefix)
