"""Reports rendered by headless Chromium: the map and charts are laid out, styled and paint pixels.

Two passes over the same page at the same window size: ``--dump-dom`` after a measuring script
(added to a copy of the report, never to the report itself) has written where each figure sits
and what the browser computed for its shapes; then ``--screenshot``, whose pixels inside those
boxes must be neither blank nor a single colour.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mobility.report import render_ledger_report, render_release_report
from report_helpers import FLOWS_ID

WIDTH = 1200
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    given = os.environ.get("MOBILITY_CHROMIUM")
    if given:
        return shutil.which(given) or (given if Path(given).is_file() else None)
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


CHROMIUM = _chromium()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (install it: `apt-get install -y chromium` on Debian, "
                             "or set MOBILITY_CHROMIUM to the browser binary)")]

# Runs in the page after load: for every inline figure, its box and the styles the browser computed.
MEASURE = """<script>
window.addEventListener('load', () => {
  const out = {height: document.documentElement.scrollHeight, figures: {}};
  for (const svg of document.querySelectorAll('svg[data-figure]')) {
    const box = svg.getBoundingClientRect();
    const shapes = [...svg.querySelectorAll('path, rect, use')].filter(e => {
      const b = e.getBoundingClientRect(); return b.width > 0 || b.height > 0; });
    const fills = new Set(shapes.map(e => getComputedStyle(e).fill).filter(f => f && f !== 'none'));
    out.figures[svg.dataset.figure] = {x: box.x + scrollX, y: box.y + scrollY, w: box.width, h: box.height,
                                       shapes: shapes.length, fills: fills.size};
  }
  const pre = document.createElement('pre'); pre.id = 'measured'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _render(html: str, tmp_path: Path, name: str):
    """(measurements from the DOM, screenshot as a PIL image) of ``html`` as Chromium draws it."""
    from PIL import Image

    page = tmp_path / f"{name}.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = _run(["--window-size=%d,1000" % WIDTH, "--dump-dom", page.as_uri()], tmp_path / "profile")
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"Chromium produced no measurements (exit {dom.returncode}): {dom.stderr[-800:]}"
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    height = min(int(measured["height"]) + 20, 16000)
    shot = tmp_path / f"{name}.png"
    run = _run([f"--window-size={WIDTH},{height}", f"--screenshot={shot}", page.as_uri()], tmp_path / "profile")
    assert shot.is_file(), f"Chromium wrote no screenshot (exit {run.returncode}): {run.stderr[-800:]}"
    return measured, Image.open(shot).convert("RGB")


def _painted(image, box: dict) -> tuple[float, int]:
    """(share of non-white pixels, number of distinct colours) inside a figure's box."""
    crop = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]), int(box["y"] + box["h"])))
    pixels = list(crop.getdata())
    inked = sum(1 for p in pixels if min(p) < 235)
    return inked / max(len(pixels), 1), len(set(pixels))


def test_release_report_map_and_chart_are_drawn(report_lake, boundaries, tmp_path):
    html = render_release_report(report_lake["lake"], FLOWS_ID, boundaries=boundaries)
    measured, image = _render(html, tmp_path, "release")
    figures = measured["figures"]
    assert set(figures) == {"map-emigrants_by_origin", "map-immigrants_by_destination", "flows-international"}
    for name, box in figures.items():
        assert box["w"] > 300 and box["h"] > 150, f"{name} is not laid out: {box}"
        assert box["y"] + box["h"] <= image.height, f"{name} lies outside the screenshot"
        inked, colours = _painted(image, box)
        assert 0.1 < inked < 0.98, f"{name}: {inked:.1%} of its pixels are painted"  # axes alone: ~4%
        assert colours > 8, f"{name} is drawn in {colours} colours only"
    for name in ("map-emigrants_by_origin", "map-immigrants_by_destination"):
        # 19 cells plus the coastlines; a choropleth of random counts needs several fill colours
        assert figures[name]["shapes"] >= 19 and figures[name]["fills"] >= 4, figures[name]
    assert figures["flows-international"]["shapes"] >= 6  # one bar per country pair at least


def test_ledger_report_budget_charts_are_drawn(report_lake, tmp_path):
    html = render_ledger_report(report_lake["lake"], (str(report_lake["agreement"]),))
    measured, image = _render(html, tmp_path, "ledger")
    population = report_lake["population"]
    assert set(measured["figures"]) == {f"budget-{population}", f"months-{population}"}
    for name, box in measured["figures"].items():  # the lifetime path, and one bar per data month charged
        assert box["w"] > 300 and box["h"] > 150 and box["shapes"] > 5, f"{name} is not laid out: {box}"
        inked, colours = _painted(image, box)
        assert 0.01 < inked < 0.9 and colours > 8, f"{name}: {inked:.1%} painted in {colours} colours"
    assert measured["figures"][f"months-{population}"]["shapes"] >= 29  # the flows window alone is 29 months
