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
from mobility.privacy_budget.stored import open_release
from mobility.privacy_budget.sums import sum_cells
from mobility.report import render_ledger_report, render_release_report, write_release_report
from mobility.report.page import fmt
from mobility.report.release_report import FORMAT1
from report_helpers import (
    AMOUNT_CAP_USD,
    FLOWS_ID,
    MAX_TRANSFERS,
    REMIT_ID,
    format1_lake,
    legacy_lake,
    table_cells,
)

HEX_OR_DIGITS = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{20,}(?![0-9A-Fa-f])|\+?\d{9,}")
# what the release report said before it stated only what holds (a claim larger than the guarantee)
OVER_CLAIMS = ("nobody can learn", "cannot learn", "whether a given person moved", "come out almost the same")


@pytest.fixture(scope="module")
def flows_html(report_lake, boundaries):
    return render_release_report(report_lake["lake"], FLOWS_ID, agreements=(str(report_lake["agreement"]),),
                                 boundaries=boundaries)


@pytest.fixture(scope="module")
def remit_html(report_lake, boundaries):
    return render_release_report(report_lake["lake"], REMIT_ID, agreements=(str(report_lake["agreement"]),),
                                 boundaries=boundaries)


@pytest.fixture(scope="module")
def old_lake(report_lake, tmp_path_factory):
    """The flows release as written before data-month accounting: old manifest, format-1 ledger."""
    return legacy_lake(report_lake["lake"], FLOWS_ID, tmp_path_factory.mktemp("legacy"))


@pytest.fixture(scope="module")
def format1(report_lake, tmp_path_factory):
    """Both releases as manifest format 1 would have stored them (clamped counts, no measurements)."""
    return {rid: format1_lake(report_lake["lake"], rid, tmp_path_factory.mktemp(f"format1-{rid}"))
            for rid in (FLOWS_ID, REMIT_ID)}


INTERVAL = re.compile(r"^\[([\d,.]+) to ([\d,.]+)\]$")


def _interval(text: str) -> tuple[float, float]:
    found = INTERVAL.match(text)
    assert found, f"not an interval: {text!r}"
    return float(found[1].replace(",", "")), float(found[2].replace(",", ""))


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _manifest(lake, release_id: str) -> dict:
    return json.loads((lake / "releases" / release_id / "manifest.json").read_text())


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


def _figure_rows(html: str, name: str) -> list[dict]:
    """The rows of the table listed under a figure, as {header: cell}."""
    header, *rows = table_cells(html)[name]
    return [dict(zip(header, row)) for row in rows]


def _check_sums(rows: list[dict], sums: pd.DataFrame, by: list[str], label, source: str) -> None:
    """Every row printed: a count, its interval, the cells it adds and the file, all as sum_cells gives them."""
    expected = {label(r): r for r in sums.to_dict("records")}
    assert rows
    for row in rows:
        want = expected[row[next(iter(row))]]
        assert _number(row["count"]) == want["count"]
        assert _interval(row["95% interval"]) == (want["low_95"], want["high_95"])
        assert int(row["cells summed"]) == want["cells"]
        assert row["from"] == source


def test_flow_chart_figures_have_intervals_from_sum_cells_and_name_their_table(flows_html, report_lake):
    """(a) Every pair printed under the flow chart: its consistent sum, the 95% interval sum_cells gives
    (from the noisy measurement), the cells summed and the file it comes from; the largest pairs first."""
    stored = open_release(report_lake["lake"], FLOWS_ID)
    sums = sum_cells(stored.manifest, stored.tables, "international", by=["from_country", "to_country"])
    rows = _figure_rows(flows_html, "flows-international")
    _check_sums(rows, sums, ["from_country", "to_country"], lambda r: f"{r['from_country']} → {r['to_country']}",
                "international.csv")
    assert len(rows) == min(len(sums), 15) and {r["cells summed"] for r in rows} == {"2"}  # F and M of each pair
    counts = [_number(r["count"]) for r in rows]
    assert counts == sorted(counts, reverse=True) and sum(counts) == sums["count"].sum()
    text = _text(flows_html)
    assert "pairs of international.csv, the consistent table" in text
    assert "computed from the same cells of the noisy measurement international_noisy.csv" in text


def test_national_totals_section_shows_each_total_with_its_interval_and_file(flows_html, report_lake):
    """(a) The totals section prints totals.csv: each total, its interval, what it is estimated from; the
    consistent tables add up to it."""
    stored = open_release(report_lake["lake"], FLOWS_ID)
    totals = stored.tables["totals"].set_index("total")
    rows = _figure_rows(flows_html, "totals-section")
    assert [r["total"] for r in rows] == ["emigration", "immigration"]
    for row in rows:
        want = totals.loc[row["total"]]
        assert _number(row["count"]) == want["count"] and row["from"] == "totals.csv"
        assert _interval(row["95% interval"]) == (want["low_95"], want["high_95"])
        assert row["total"] in row["measurements it is estimated from (weight)"] or "international" in \
            row["measurements it is estimated from (weight)"]
    intl, emig = stored.tables["international"], stored.tables["emigrants_by_origin"]
    assert intl.loc[intl["from_country"] == "PHL", "count"].sum() == totals.loc["emigration", "count"] \
        == emig["count"].sum()
    assert flows_html.index('id="totals"') < flows_html.index('id="maps"') < flows_html.index('id="flows"')


def test_maps_draw_the_consistent_tables_and_list_the_other_cells_with_intervals(flows_html, report_lake):
    stored = open_release(report_lake["lake"], FLOWS_ID)
    text = _text(flows_html)
    for name, key in (("emigrants_by_origin", "origin_h3_cell"), ("immigrants_by_destination", "destination_h3_cell")):
        assert f"From {name}.csv, the consistent table" in text
        assert "Each cell's 95% interval is in the columns low_95 and high_95" in text
        unknown = stored.tables[name].set_index(key).loc["UNKNOWN"]
        assert (f"Not on the map: UNKNOWN = {unknown['count']:,} [{unknown['low_95']:,} to {unknown['high_95']:,}]"
                in text)


def test_noisy_measurements_are_listed_not_charted(flows_html, remit_html):
    for html in (flows_html, remit_html):
        charts = re.findall(r'data-chart="([^"]+)"', html)
        assert charts and not any("_noisy" in c or c.endswith("-totals") for c in charts)
        for summary in re.findall(r"<summary>(\w+_noisy) \(\d+ cells; ([^<]*)</summary>", html):
            assert "noisy measurement" in summary[1] and "unbiased, may be negative" in summary[1]
        assert "TABLE_noisy</code> tables are the noisy measurements" in html


def test_format2_report_says_nothing_was_set_to_zero(flows_html, remit_html):
    """A statement about clamping must be true for the release: format 2 clamps nothing."""
    for html in (flows_html, remit_html):
        text = _text(html)
        assert "set to 0" not in text and "Bars cannot go below zero" not in text and FORMAT1 not in text
        assert "95% intervals: every figure on this page comes with its interval" in text


def test_other_manifests_render_generically(remit_html, report_lake):
    """Remittance-like tables: top cells and corridor sums with intervals, and a derived table with its
    own interval columns, each figure naming its file."""
    assert 'data-chart="top-transfers"' in remit_html and 'data-chart="top-volume_usd"' in remit_html
    assert 'data-chart="top-mean_amount_usd"' in remit_html  # a derived table without noise parameters
    assert "map-" not in remit_html and "pure differential privacy" in remit_html
    stored = open_release(report_lake["lake"], REMIT_ID)
    for name in ("transfers", "volume_usd"):
        sums = sum_cells(stored.manifest, stored.tables, name, by=["sender_country", "receiver_country"])
        _check_sums(_figure_rows(remit_html, f"sums-{name}"), sums, ["sender_country", "receiver_country"],
                    lambda r: f"{r['sender_country']} · {r['receiver_country']}", f"{name}.csv")
        cells = stored.tables[name].set_index(["sender_country", "receiver_country", "channel"])
        for row in _figure_rows(remit_html, f"top-{name}"):
            want = cells.loc[tuple(row["cell"].split(" · "))]
            assert _number(row["count"]) == want["count"] and row["from"] == f"{name}.csv"
            assert _interval(row["95% interval"]) == (want["low_95"], want["high_95"])
    ratios = stored.tables["mean_amount_usd"].set_index(["sender_country", "receiver_country", "channel"])
    rows = _figure_rows(remit_html, "top-mean_amount_usd")
    assert rows and all(r["from"] == "mean_amount_usd.csv" for r in rows)
    for row in rows:
        want = ratios.loc[tuple(row["cell"].split(" · "))]
        low, high = _interval(row["95% interval"])
        assert float(fmt(float(want["mean_usd_low"]))) == low and float(fmt(float(want["mean_usd_high"]))) == high
    assert "own columns mean_usd_low and mean_usd_high" in _text(remit_html)
    assert [r["total"] for r in _figure_rows(remit_html, "totals-section")] == ["transfers", "volume_usd"]


def test_no_pseudonym_or_phone_number_reaches_a_report(flows_html, remit_html, report_lake):
    lake = report_lake["lake"]
    ledger_html = render_ledger_report(lake, (str(report_lake["agreement"]),))
    public = set()  # the only long hex strings a report may show: ledger hashes and file digests
    for record in json.loads(export(lake, "json")):
        public |= {record["entry_hash"], record["prev_hash"], record["release_digest"], record["agreement_sha256"]}
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
    assert "1 later charge(s) to the same population" in flows_html  # the remittance release was charged after it
    # the chain head right after the charge, as the manifest records it
    assert f"Ledger head right after this release's charge: seq {charge['seq']}, entry hash" in flows_html


def test_ledger_report_lists_entries_and_cumulative_budget(report_lake):
    lake = report_lake["lake"]
    html = render_ledger_report(lake, (str(report_lake["agreement"]),))
    records = json.loads(export(lake, "json"))
    assert all(r["entry_hash"] in html for r in records)
    population = report_lake["population"]
    assert f'data-chart="budget-{population}"' in html and f'data-chart="months-{population}"' in html
    assert html.count("<svg") == 2
    total = sum(r["rho"] for r in records if r["status"] == "charged")
    assert re.search(rf"<td>lifetime</td><td class=\"num\">10</td><td class=\"num\">{total:.4g}</td>", html)
    # per data month: the remittance month is also inside the flows window, so it carries both charges
    flows_rho = next(r["rho"] for r in records if r["release_id"] == FLOWS_ID and r["status"] == "charged")
    assert re.search(rf"<td>data month 2025-01</td><td class=\"num\">3</td><td class=\"num\">{total:.4g}</td>", html)
    assert re.search(rf"<td>data months 2023-05 to 2024-12 \(20 months\), each</td><td class=\"num\">3</td>"
                     rf"<td class=\"num\">{flows_rho:.4g}</td>", html)
    assert "calendar year" not in html and "per-year" not in html


def test_ledger_report_lists_policy_entries_and_cap_changes(report_lake, tmp_path):
    import shutil

    from mobility.config import load_agreement
    from mobility.privacy_budget.ledger import Ledger, Policy

    lake = tmp_path / "lake"
    shutil.copytree(report_lake["lake"], lake)
    html = render_ledger_report(lake, (str(report_lake["agreement"]),))
    assert "first charge under agreement test-phl" in html and "have not been changed" in html
    agreement = load_agreement(report_lake["agreement"])
    raised = agreement.budget.model_copy(update={"rho_lifetime": 12.0})
    Ledger(lake / "ledger").record_policy(Policy(agreement.agreement_id, raised, agreement.sha256),
                                          "lifetime cap raised by the board (test)")
    html = render_ledger_report(lake)
    assert "lifetime cap raised by the board (test)" in html and "were changed" in html
    assert "Caps from the ledger policy entry seq 6" in html  # the latest policy entry, not the file
    assert re.search(r"<td>lifetime</td><td class=\"num\">12</td>", html)


def test_ledger_report_takes_caps_from_the_ledger_without_the_agreement_file(report_lake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no conf/agreements here
    monkeypatch.delenv("MOBILITY_CONF", raising=False)
    html = render_ledger_report(report_lake["lake"])
    assert "Caps from the ledger policy entry seq 1 (agreement test-phl)" in html
    assert "not found" not in html


def test_ledger_report_of_an_old_ledger_without_caps_says_how_to_get_them(old_lake, report_lake, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)  # no conf/agreements here
    monkeypatch.delenv("MOBILITY_CONF", raising=False)
    html = render_ledger_report(old_lake)
    assert "Charges without a population" in html
    assert "caps of agreement test-phl not found" in html and "pass --agreement" in html
    html = render_ledger_report(old_lake, (str(report_lake["agreement"]),))
    assert f"Population <code>{report_lake['population']}</code>" in html
    assert "Caps from the agreement file of test-phl (not yet recorded in the ledger)" in html
    assert "No <code>policy</code> entry records caps of this population yet" in html


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
    assert str(ledger_out.resolve()) in result.output
    assert f"budget-{report_lake['population']}" in ledger_out.read_text()


def test_write_reports_for_the_demo_takes_an_agreement_object(old_lake, report_lake, tmp_path, monkeypatch):
    from mobility.config import load_agreement
    from mobility.report import write_reports

    monkeypatch.chdir(tmp_path)  # no conf/agreements here: the caps can only come from the object
    monkeypatch.delenv("MOBILITY_CONF", raising=False)
    paths = write_reports(old_lake, FLOWS_ID, tmp_path / "reports", load_agreement(report_lake["agreement"]))
    assert paths["release"] == (tmp_path / "reports" / f"{FLOWS_ID}.html").resolve()
    assert paths["ledger"] == (tmp_path / "reports" / "ledger.html").resolve()
    for path in paths.values():  # the old ledger records no caps: they came from the object
        assert "Caps from the agreement file of test-phl" in path.read_text()
    assert "left now (rho)" in paths["release"].read_text()


def _text(html: str) -> str:
    """The page's words: tags dropped, entities and spacing undone (so sentences can be matched)."""
    import html as h

    return re.sub(r"\s+", " ", h.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<svg.*?</svg>", "", html, flags=re.S))))


def _states_what_holds(html: str, manifest: dict) -> str:
    """Checks every release report shares: unit, epsilon/delta, cumulative figures and caps; no over-claim."""
    text = _text(html)
    p = manifest["privacy"]
    assert f"Protected unit: one subscription (SIM) of population {p['population']}" in text
    assert "A person who holds k SIMs of this operator is k units" in text and "k² × rho" in text
    delta = f"delta = {fmt(p['delta'])}" if p["delta"] else "delta = 0"
    assert f"epsilon = {fmt(p['epsilon'])}, {delta}." in text and "What epsilon bounds:" in text
    month, life = p["cumulative_per_data_month"], p["cumulative_lifetime"]
    assert (f"the most charged month this release read is {month['most_charged_month']}, with cumulative rho = "
            f"{fmt(month['rho'])}, i.e. epsilon = {fmt(month['epsilon'])} at delta = {fmt(month['delta'])} "
            f"(cap rho {fmt(month['cap_rho'])}") in text
    assert (f"Lifetime: cumulative rho = {fmt(life['rho'])}, i.e. epsilon = {fmt(life['epsilon'])} at delta = "
            f"{fmt(life['delta'])} (cap rho {fmt(life['cap_rho'])}") in text
    assert f"through ledger entry seq {p['cumulative_through_seq']}" in text
    for claim in OVER_CLAIMS:
        assert claim not in text.lower(), claim
    assert "calendar year" not in text and "per-year" not in text
    return text


def test_flows_report_states_what_holds(flows_html, report_lake):
    manifest = _manifest(report_lake["lake"], FLOWS_ID)
    text = _states_what_holds(flows_html, manifest)
    # every table's bound with its unit (the flows tables share one)
    for name in ("international", "emigrants_by_origin", "immigrants_by_destination"):
        d_in = manifest["tables"][f"{name}_noisy"]["sensitivity"]["d_in"]
        assert re.search(rf"<td>{name}</td><td class=\"num\">\d+</td><td>long-term residence changes \(count\)</td>"
                         rf"<td>at most {d_in} ", flows_html), name
    assert "Every noisy table has the same bound: 1 (long-term residence changes (count))." in text
    # one row per measured table, naming its OpenDP measurement; the two cell tables share one
    rows = {r["table"]: r for r in _figure_rows(flows_html, "privacy-bounds")}
    assert sorted(rows) == ["emigrants_by_origin", "immigrants_by_destination", "international"]
    joint = "subnational (joint: emigrants_by_origin, immigrants_by_destination)"
    assert rows["emigrants_by_origin"]["OpenDP measurement"] == rows["immigrants_by_destination"][
        "OpenDP measurement"] == joint
    assert rows["international"]["OpenDP measurement"] == "international (alone)"
    for name, row in rows.items():
        noisy = manifest["tables"][f"{name}_noisy"]
        assert row["95% bound (one cell)"] == f"±{fmt(noisy['error_bound_95'])}"
        assert row["noise scale"] == fmt(noisy["noise_scale"]) and row["budget share"] == fmt(noisy["budget_share"])
    assert "OpenDP measurements (2):" in text and "measured jointly" in text
    # epsilon 4.3 alone is said to be weak, plainly
    assert manifest["privacy"]["epsilon"] > 3 and "is a weak bound on its own" in text
    assert "data months read: 2023-05 to 2025-09 (29 months)" in text


def test_remittance_report_states_each_tables_own_bound(remit_html, report_lake):
    lake = report_lake["lake"]
    manifest = _manifest(lake, REMIT_ID)
    text = _states_what_holds(remit_html, manifest)
    volume = MAX_TRANSFERS * AMOUNT_CAP_USD
    assert manifest["tables"]["transfers_noisy"]["sensitivity"]["d_in"] == MAX_TRANSFERS
    assert manifest["tables"]["volume_usd_noisy"]["sensitivity"]["d_in"] == volume
    assert (f"The bounds differ between tables: transfers: {MAX_TRANSFERS} (number of transfers); volume_usd: "
            f"{volume:,} (sum of amounts, whole USD).") in text
    assert re.search(rf"<td>transfers</td><td class=\"num\">6</td><td>number of transfers</td>"
                     rf"<td>at most {MAX_TRANSFERS} \(sum over the table&#x27;s cells, L1\)</td>", remit_html)
    assert re.search(rf"<td>volume_usd</td><td class=\"num\">6</td><td>sum of amounts, whole USD</td>"
                     rf"<td>at most {volume:,} \(sum over the table&#x27;s cells, L1\)</td>", remit_html)
    assert "<td>mean_amount_usd</td><td class=\"num\">6</td><td>—</td><td>none of its own" in remit_html
    # one payment month, inside the flows window: its cumulative loss carries both releases
    flows = _manifest(lake, FLOWS_ID)["privacy"]
    month = manifest["privacy"]["cumulative_per_data_month"]
    assert month["most_charged_month"] == "2025-01"
    assert month["rho"] == pytest.approx(flows["rho"] + manifest["privacy"]["rho"])
    assert "data months read: 2025-01." in text and "pure differential privacy: delta = 0" in text


def test_old_manifest_still_renders_and_says_what_is_not_recorded(old_lake, report_lake, boundaries, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)  # no conf/agreements here
    monkeypatch.delenv("MOBILITY_CONF", raising=False)
    manifest = _manifest(old_lake, FLOWS_ID)
    assert "protected_unit" not in manifest["privacy"] and "head" not in manifest["ledger"]
    html = render_release_report(old_lake, FLOWS_ID, boundaries=boundaries)
    text = _text(html)
    assert "release files match the ledger" in text  # a consistent old release, not a tampered one
    assert "Protected unit: not recorded in this release's manifest" in text
    assert "Ledger head after the charge: not recorded in this release's manifest" in text
    assert text.count("not recorded in this release's manifest") >= 5  # unit, 3 table bounds, cumulative, head
    assert "the ledger does not name the population of this charge" in text
    assert f"epsilon = {fmt(manifest['privacy']['epsilon'])}" in text
    for claim in OVER_CLAIMS:
        assert claim not in text.lower(), claim
    # with the agreement file the cumulative figures are computed from the ledger
    html = render_release_report(old_lake, FLOWS_ID, agreements=(str(report_lake["agreement"]),),
                                 boundaries=boundaries)
    text = _text(html)
    rho = manifest["privacy"]["rho"]
    assert ("Figures not recorded in this release's manifest; computed here from the ledger through entry seq 1"
            in text)
    assert f"Lifetime: cumulative rho = {fmt(rho)}" in text and "cap rho 10" in text
    assert "Caps from the agreement file of test-phl (not yet recorded in the ledger)" in text


def test_a_tampered_release_is_reported_with_its_problems(report_lake, boundaries, tmp_path):
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(report_lake["lake"], lake)
    (lake / "releases" / FLOWS_ID / "international.csv").write_text("from_country,to_country,sex,count\n")
    html = render_release_report(lake, FLOWS_ID, boundaries=boundaries)
    assert "Integrity problems" in html and "file international.csv of table international was altered" in html
    assert "release files match the ledger" not in html


def test_format1_release_still_renders_labelled_with_intervals(format1, boundaries):
    """(c) A release written before measurements were kept: clamped counts, said so next to every
    figure and in the privacy section; intervals from the per-cell bound; no totals section."""
    lake = format1[FLOWS_ID]
    stored = open_release(lake, FLOWS_ID)
    assert stored.manifest["format"] == "mobility-release-manifest/1" and "international_noisy" not in stored.tables
    html = render_release_report(lake, FLOWS_ID, boundaries=boundaries)
    text = _text(html)
    assert f"This release is of manifest {FORMAT1}." in text
    assert "Bars cannot go below zero because negative noisy counts were set to 0" in text
    assert f"From emigrants_by_origin.csv ({FORMAT1})" in text and f"pairs of international.csv ({FORMAT1})" in text
    assert f"Error bound ({FORMAT1})" in text and 'id="totals"' not in html
    intl = stored.tables["international"]
    bound = stored.manifest["tables"]["international"]["error_bound_95"]
    rows = _figure_rows(html, "flows-international")
    assert rows and all(r["from"] == "international.csv" and r["cells summed"] == "2" for r in rows)
    for row in rows:
        origin, destination = row["pair"].split(" → ")
        total = intl.loc[(intl["from_country"] == origin) & (intl["to_country"] == destination), "count"].sum()
        low, high = _interval(row["95% interval"])
        assert _number(row["count"]) == total and low <= total <= high and bound < high - total <= 2 * bound
    for name, frame in _published(lake, FLOWS_ID).items():
        assert table_cells(html)[name][1:] == frame.values.tolist()
    remit = _text(render_release_report(format1[REMIT_ID], REMIT_ID, boundaries=boundaries))
    assert f"largest cells of transfers.csv ({FORMAT1})" in remit


def test_format1_release_exports_its_clamped_counts(format1, tmp_path):
    """(c) The same format-1 release exports as before, its rows named CLAMPED, and reads back."""
    from mobility.publish import structure as S
    from mobility.publish.export import export_release, read_export
    from mobility.publish.validate import validate_sdmx_csv

    lake = format1[FLOWS_ID]
    export_release(lake, FLOWS_ID, "sdmx-csv", tmp_path)
    sdmx = tmp_path / f"{FLOWS_ID}.sdmx.csv"
    assert validate_sdmx_csv(sdmx) == []
    rows = pd.read_csv(sdmx, dtype=str, keep_default_na=False)
    assert set(rows["VALUE_KIND"]) == {S.CLAMPED} and (rows["ERROR_BOUND_95"] != "").all()
    for name, frame in read_export(tmp_path, FLOWS_ID).items():
        assert list(frame.columns)[-1] == "count"
        assert frame.astype(str).values.tolist() == _published(lake, FLOWS_ID)[name].values.tolist(), name


def test_a_derived_table_is_charted_with_its_own_interval_columns():
    """The remittance cost table's shape: its value is the column the *_low/*_high pair's stem names."""
    from mobility.report.release_report import _derived_columns

    keys = ["sender_country", "receiver_country", "channel", "amount_band"]
    frame = pd.DataFrame({**{k: ["x"] for k in keys}, "noisy_transfers": [3], "mean_cost_pct": [4.1],
                          "cost_pct_low": [2.0], "cost_pct_high": [6.5]})
    assert _derived_columns(frame, keys) == ("mean_cost_pct", "cost_pct_low", "cost_pct_high")
    assert _derived_columns(frame.drop(columns=["cost_pct_low", "cost_pct_high"]), keys) == \
        ("mean_cost_pct", None, None)
