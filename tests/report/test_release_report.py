"""Release and ledger reports without a browser: content, privacy of what is shown, determinism, errors."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from mobility.cli import main
from mobility.errors import InputContractError
from mobility.privacy_budget import export
from mobility.report import render_ledger_report, render_release_report, write_release_report
from report_helpers import FLOWS_ID, REMIT_ID, table_cells

HEX_OR_DIGITS = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{20,}(?![0-9A-Fa-f])|\+?\d{9,}")


@pytest.fixture(scope="module")
def flows_html(report_lake, boundaries):
    return render_release_report(report_lake["lake"], FLOWS_ID, agreements=(str(report_lake["agreement"]),),
                                 boundaries=boundaries)


@pytest.fixture(scope="module")
def remit_html(report_lake, boundaries):
    return render_release_report(report_lake["lake"], REMIT_ID, agreements=(str(report_lake["agreement"]),),
                                 boundaries=boundaries)


def _published(lake, release_id: str) -> dict[str, pd.DataFrame]:
    folder = lake / "releases" / release_id
    manifest = json.loads((folder / "manifest.json").read_text())
    return {name: pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
            for name in manifest["tables"]}


@pytest.mark.parametrize("release_id", [FLOWS_ID, REMIT_ID])
def test_report_lists_every_published_cell(report_lake, boundaries, release_id):
    html = render_release_report(report_lake["lake"], release_id, boundaries=boundaries)
    shown = table_cells(html)
    for name, frame in _published(report_lake["lake"], release_id).items():
        assert shown[name][0] == list(frame.columns)
        assert shown[name][1:] == frame.values.tolist(), f"table {name} differs from its CSV"


def test_flows_report_has_a_map_per_cell_table_and_a_flow_chart(flows_html):
    assert 'data-chart="map-emigrants_by_origin"' in flows_html
    assert 'data-chart="map-immigrants_by_destination"' in flows_html
    assert 'data-chart="flows-international"' in flows_html
    assert flows_html.count("<svg") == 3
    # self-contained: nothing is fetched when the page is opened
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", flows_html)
    assert "<script" not in flows_html and "<link" not in flows_html


def test_flow_error_bars_are_the_bounds_of_summed_cells(flows_html, report_lake):
    """Each pair sums its two sex cells: its bound lies between one cell's bound and twice it."""
    lake = report_lake["lake"]
    manifest = json.loads((lake / "releases" / FLOWS_ID / "manifest.json").read_text())
    one = manifest["tables"]["international"]["error_bound_95"]
    rows = re.findall(r"<tr><td>[A-Z]{3} → [A-Z]{3}</td><td class=\"num\">\d+</td><td class=\"num\">(\d+)</td>"
                      r"<td class=\"num\">±(\d+)</td></tr>", flows_html)
    assert rows and {int(k) for k, _ in rows} == {2}
    bounds = {int(b) for _, b in rows}
    assert bounds and all(one < b <= 2 * one for b in bounds)


def test_other_manifests_render_generically(remit_html):
    assert 'data-chart="top-corridor_counts"' in remit_html
    assert 'data-chart="top-corridor_shares"' in remit_html  # a derived table without noise parameters
    assert "map-" not in remit_html and "pure differential privacy" in remit_html


def test_no_pseudonym_or_phone_number_reaches_a_report(flows_html, remit_html, report_lake):
    lake = report_lake["lake"]
    ledger_html = render_ledger_report(lake, (str(report_lake["agreement"]),))
    public = set()  # the only long hex strings a report may show: ledger hashes and file digests
    for record in json.loads(export(lake, "json")):
        public |= {record["entry_hash"], record["prev_hash"], record["release_digest"]}
    for release_id in (FLOWS_ID, REMIT_ID):
        manifest = json.loads((lake / "releases" / release_id / "manifest.json").read_text())
        public |= {f["sha256"] for t in manifest["tables"].values() for f in t["files"].values()}
        public.add(__import__("hashlib").sha256((lake / "releases" / release_id / "manifest.json")
                                                .read_bytes()).hexdigest())
    for html in (flows_html, remit_html, ledger_html):
        assert not any(p in html for p in report_lake["pseudonyms"])
        assert "pseudonym\"" not in html and "<th>pseudonym</th>" not in html
        stray = set(HEX_OR_DIGITS.findall(html)) - public
        assert not stray, f"identifier-like strings in a report: {sorted(stray)[:3]}"


def test_same_release_renders_byte_identical(report_lake, boundaries, tmp_path):
    paths = [write_release_report(report_lake["lake"], FLOWS_ID, tmp_path / f"r{i}.html", boundaries=boundaries)
             for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_ledger_position_and_budget(flows_html, report_lake):
    lake = report_lake["lake"]
    records = json.loads(export(lake, "json"))
    charge = next(r for r in records if r["release_id"] == FLOWS_ID and r["status"] == "charged")
    publication = next(r for r in records if r["release_id"] == FLOWS_ID and r["status"] == "published")
    assert charge["entry_hash"] in flows_html and publication["entry_hash"] in flows_html
    assert "release files match the ledger" in flows_html
    assert "1 later charge(s)" in flows_html  # the remittance release was charged after it


def test_ledger_report_lists_entries_and_cumulative_budget(report_lake):
    lake = report_lake["lake"]
    html = render_ledger_report(lake, (str(report_lake["agreement"]),))
    records = json.loads(export(lake, "json"))
    assert all(r["entry_hash"] in html for r in records)
    assert 'data-chart="budget-test-phl"' in html and html.count("<svg") == 1
    total = sum(r["rho"] for r in records if r["status"] == "charged")
    assert re.search(rf"<td>lifetime</td><td class=\"num\">10</td><td class=\"num\">{total:.4g}</td>", html)


def test_ledger_report_without_caps_says_how_to_get_them(report_lake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no conf/agreements here
    monkeypatch.delenv("MOBILITY_CONF", raising=False)
    html = render_ledger_report(report_lake["lake"])
    assert "caps of agreement test-phl not found" in html and "pass --agreement" in html


def test_unknown_release_names_the_ones_that_exist(report_lake, boundaries):
    with pytest.raises(InputContractError) as info:
        render_release_report(report_lake["lake"], "flows-nope", boundaries=boundaries)
    assert "flows-nope" in str(info.value) and FLOWS_ID in str(info.value) and REMIT_ID in str(info.value)


@pytest.mark.parametrize("args", [
    ["report", "--lake", "{lake}", "--release", "no-such-release", "--out", "{out}"],
    ["report", "--lake", "{missing}", "--release", FLOWS_ID, "--out", "{out}"],
    ["ledger", "report", "--lake", "{missing}", "--out", "{out}"],
    ["report", "--lake", "{lake}", "--release", "../ledger", "--out", "{out}"],
])
def test_cli_errors_are_one_clear_message(report_lake, tmp_path, args):
    values = {"lake": str(report_lake["lake"]), "missing": str(tmp_path / "nowhere"), "out": str(tmp_path / "r.html")}
    result = CliRunner().invoke(main, [a.format(**values) for a in args])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_cli_writes_both_reports_and_prints_their_paths(report_lake, tmp_path):
    lake, agreement = str(report_lake["lake"]), str(report_lake["agreement"])
    out = tmp_path / "deep" / "release.html"
    result = CliRunner().invoke(main, ["report", "--lake", lake, "--release", FLOWS_ID, "--out", str(out),
                                       "--agreement", agreement])
    assert result.exit_code == 0, result.output
    assert str(out.resolve()) in result.output and out.read_text().startswith("<!DOCTYPE html>")
    ledger_out = tmp_path / "ledger.html"
    result = CliRunner().invoke(main, ["ledger", "report", "--lake", lake, "--out", str(ledger_out),
                                       "--agreement", agreement])
    assert result.exit_code == 0, result.output
    assert str(ledger_out.resolve()) in result.output and "budget-test-phl" in ledger_out.read_text()


def test_write_reports_for_the_demo_takes_an_agreement_object(report_lake, tmp_path):
    from mobility.config import load_agreement
    from mobility.report import write_reports

    paths = write_reports(report_lake["lake"], FLOWS_ID, tmp_path / "reports", load_agreement(report_lake["agreement"]))
    assert paths["release"] == (tmp_path / "reports" / f"{FLOWS_ID}.html").resolve()
    assert paths["ledger"] == (tmp_path / "reports" / "ledger.html").resolve()
    assert "per-year cap (rho)" in paths["ledger"].read_text()  # the caps came from the object
    assert "left now (rho)" in paths["release"].read_text()


def test_a_tampered_release_is_reported_with_its_problems(report_lake, boundaries, tmp_path):
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(report_lake["lake"], lake)
    (lake / "releases" / FLOWS_ID / "international.csv").write_text("from_country,to_country,sex,count\n")
    html = render_release_report(lake, FLOWS_ID, boundaries=boundaries)
    assert "Integrity problems" in html and "file international.csv of table international was altered" in html
    assert "release files match the ledger" not in html
