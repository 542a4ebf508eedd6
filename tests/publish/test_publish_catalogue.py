"""The catalogue and the ledger describe the same releases, one row per release, nothing extra."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mobility.cli import main
from mobility.lake import Lake
from mobility.privacy_budget.ledger import CHARGED, PUBLISHED, ChargeRequest, Ledger, Policy
from mobility.publish.annual import build_annual
from mobility.publish.catalogue import STATUS_PUBLISHED, STATUS_UNPUBLISHED, catalogue


def test_every_published_ledger_entry_has_one_catalogue_row_and_back(year_lake):
    lake, agr, _ = year_lake
    entries, _ = Ledger(Lake(lake).ledger).read()
    rows = [r for r in catalogue(lake) if r["kind"] == "release"]
    published = {e.release_id: e for e in entries if e.status == PUBLISHED}
    charges = {e.release_id: e for e in entries if e.status == CHARGED}
    listed = [r for r in rows if r["status"] == STATUS_PUBLISHED]
    assert sorted(r["release_id"] for r in listed) == sorted(published)
    assert len({r["release_id"] for r in rows}) == len(rows)
    for row in listed:
        charge, publication = charges[row["release_id"]], published[row["release_id"]]
        assert row["ledger"] == {"charge_seq": charge.seq, "charge_hash": charge.entry_hash,
                                 "published_seq": publication.seq, "published_hash": publication.entry_hash,
                                 "manifest_sha256": publication.release_digest}
        assert (row["agreement_id"], row["period"], row["purpose"]) == \
            (charge.agreement_id, charge.period, charge.purpose)
        assert row["budget"]["rho"] == charge.rho and row["files_match_ledger"]
        assert row["tables"] == ["emigrants_by_origin", "emigrants_by_origin_noisy", "immigrants_by_destination",
                                 "immigrants_by_destination_noisy", "international", "international_noisy", "totals"]
        assert row["format"] == "mobility-release-manifest/2" and row["keeps_measurements"]
        assert row["measurements"] == ["emigrants_by_origin_noisy", "immigrants_by_destination_noisy",
                                       "international_noisy"]
    spent = sum(r["budget"]["rho"] for r in rows)
    assert spent == Ledger(Lake(lake).ledger).spent(agr.agreement_id)


def test_a_charge_without_publication_is_listed_as_such(year_lake):
    lake, agr, _ = year_lake
    request = ChargeRequest(release_id="crashed-2025-12", agreement_id=agr.agreement_id, period="2025-12",
                            purpose="migration-statistics", requested_by="tests", query={"tables": {"t": {}}},
                            privacy_unit="subscriber", mechanism="discrete_gaussian", epsilon=0.5, delta=1e-7,
                            rho=0.01, input_versions={}, data_months=("2025-12",))
    Ledger(Lake(lake).ledger).charge(request, Policy.of(agr))
    row = next(r for r in catalogue(lake) if r["release_id"] == "crashed-2025-12")
    assert row["status"] == STATUS_UNPUBLISHED and row["ledger"]["published_seq"] is None
    assert row["format"] is None and row["keeps_measurements"] is None  # nothing was written to say
    assert row["budget"]["rho"] == 0.01  # its budget stays spent, so an auditor must see it


def test_derived_tables_are_listed_apart_with_their_sources_and_no_budget(year_lake):
    lake, agr, _ = year_lake
    annual = build_annual(lake, 2025, agr)
    rows = catalogue(lake)
    derived = [r for r in rows if r["kind"] == "derived"]
    assert [r["release_id"] for r in derived] == [annual.annual_id]
    row = derived[0]
    assert row["ledger"] is None and row["budget"]["rho"] == 0.0 and row["files_match_manifest"]
    assert row["format"] == "mobility-derived-manifest/1" and row["keeps_measurements"]
    by_id = {r["release_id"]: r for r in rows if r["kind"] == "release"}
    assert len(row["derived_from"]) == 12
    for source in row["derived_from"]:
        assert by_id[source["release_id"]]["ledger"]["manifest_sha256"] == source["manifest_sha256"]


def test_cli_lists_releases_as_text_and_json(year_lake):
    lake, _, _ = year_lake
    as_json = CliRunner().invoke(main, ["releases", "list", "--lake", str(lake), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == json.loads(json.dumps(catalogue(lake)))
    text = CliRunner().invoke(main, ["releases", "list", "--lake", str(lake)])
    assert text.exit_code == 0 and text.output.count("flows-test-phl-2025-") == 12
    assert text.output.count("mobility-release-manifest/2: noisy measurements kept (3 tables)") == 12
