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
from mobility.report.page import fmt
from report_helpers import AMOUNT_CAP_USD, FLOWS_ID, MAX_TRANSFERS, REMIT_ID, legacy_lake, table_cells

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
    assert 'data-chart="top-transfers"' in remit_html and 'data-chart="top-volume_usd"' in remit_html
    assert 'data-chart="top-corridor_shares"' in remit_html  # a derived table without noise parameters
    assert "map-" not in remit_html and "pure differential privacy" in remit_html


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
        d_in = manifest["tables"][name]["sensitivity"]["d_in"]
        assert re.search(rf"<td>{name}</td><td class=\"num\">\d+</td><td>long-term residence changes \(count\)</td>"
                         rf"<td>at most {d_in} ", flows_html), name
    assert "Every noisy table has the same bound: 1 (long-term residence changes (count))." in text
    # epsilon 4.3 alone is said to be weak, plainly
    assert manifest["privacy"]["epsilon"] > 3 and "is a weak bound on its own" in text
    assert "data months read: 2023-05 to 2025-09 (29 months)" in text


def test_remittance_report_states_each_tables_own_bound(remit_html, report_lake):
    lake = report_lake["lake"]
    manifest = _manifest(lake, REMIT_ID)
    text = _states_what_holds(remit_html, manifest)
    volume = MAX_TRANSFERS * AMOUNT_CAP_USD
    assert manifest["tables"]["transfers"]["sensitivity"]["d_in"] == MAX_TRANSFERS
    assert manifest["tables"]["volume_usd"]["sensitivity"]["d_in"] == volume
    assert (f"The bounds differ between tables: transfers: {MAX_TRANSFERS} (number of transfers); volume_usd: "
            f"{volume:,} (sum of amounts, whole USD).") in text
    assert re.search(rf"<td>transfers</td><td class=\"num\">3</td><td>number of transfers</td>"
                     rf"<td>at most {MAX_TRANSFERS} \(sum over the table&#x27;s cells, L1\)</td>", remit_html)
    assert re.search(rf"<td>volume_usd</td><td class=\"num\">3</td><td>sum of amounts, whole USD</td>"
                     rf"<td>at most {volume:,} \(sum over the table&#x27;s cells, L1\)</td>", remit_html)
    assert "<td>corridor_shares</td><td class=\"num\">3</td><td>—</td><td>none of its own" in remit_html
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
