"""Opening a stored release: its files and ledger entries, refused or reported when they disagree."""

from __future__ import annotations

import pandas as pd
import pytest

from mobility.errors import InputContractError, LedgerIntegrityError
from mobility.privacy_budget import Ledger, open_release, publish
from mobility.privacy_budget.ledger import CHARGED, PUBLISHED, entries_by_release, release_entries
from pb_helpers import POLICY, flows, request


def test_open_release_gives_the_published_tables_and_both_ledger_entries(published_lake):
    entries, _ = Ledger.of_lake(published_lake).read()
    stored = open_release(published_lake, "flows-2024-04")
    assert (stored.charge.status, stored.publication.status) == (CHARGED, PUBLISHED)
    assert (stored.charge.seq, stored.publication.seq) == (4, 5) and stored.problems == []
    assert stored.manifest["ledger"]["entry_hash"] == stored.charge.entry_hash
    csv = pd.read_csv(stored.path / "flows.csv", keep_default_na=False)
    assert stored.tables["flows"].equals(csv)
    assert open_release(published_lake, "flows-2024-04", entries=entries).tables["flows"].equals(csv)


def test_a_tampered_release_is_refused_or_reported(published_lake):
    path = open_release(published_lake, "flows-2024-03").path
    (path / "flows.csv").write_text("origin,destination,count\nPHL,SAU,999\n")
    with pytest.raises(LedgerIntegrityError, match=r"flows-2024-03.*flows\.csv of table flows was altered"):
        open_release(published_lake, "flows-2024-03")
    shown = open_release(published_lake, "flows-2024-03", verify=False)
    assert shown.problems == ["file flows.csv of table flows was altered (SHA-256 differs)"]
    (path / "flows.parquet").write_bytes(b"not parquet")
    unreadable = open_release(published_lake, "flows-2024-03", verify=False)  # tables are read on first use
    with pytest.raises(InputContractError, match="no readable Parquet file"):
        _ = unreadable.tables


def test_a_directory_without_ledger_entries_is_refused(tmp_path):
    publish(tmp_path, request(), {"flows": flows()}, POLICY)
    (tmp_path / "ledger").rename(tmp_path / "elsewhere")
    with pytest.raises(LedgerIntegrityError, match="no charge entry"):
        open_release(tmp_path, "flows-2024-05")


@pytest.mark.parametrize("release_id", ["flows-2099-01", "../ledger", ".tmp-x"])
def test_an_unknown_id_names_the_releases_that_exist(published_lake, release_id):
    with pytest.raises(InputContractError) as refused:
        open_release(published_lake, release_id)
    assert f"no release {release_id!r}" in str(refused.value)
    assert "flows-2024-03, flows-2024-04, flows-2024-05" in str(refused.value)


def test_a_release_has_its_first_charge_and_first_publication(published_lake):
    entries, _ = Ledger.of_lake(published_lake).read()
    by_release = entries_by_release(entries)
    assert list(by_release) == ["flows-2024-03", "flows-2024-04", "flows-2024-05"]
    assert [(c.seq, p.seq) for c, p in by_release.values()] == [(2, 3), (4, 5), (6, 7)]
    assert release_entries(entries, "flows-2024-05") == by_release["flows-2024-05"]
    assert release_entries(entries, "never") == (None, None)
    charge = entries[1]  # entries[0] is the policy entry
    assert release_entries([charge, *entries], charge.release_id)[0] is charge  # a repeated charge: the first
