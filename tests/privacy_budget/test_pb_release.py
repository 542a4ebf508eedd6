"""The release boundary: OpenDP noise on every cell, charge before noise, nothing leaks, reruns reuse."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from mobility.config import BudgetCaps
from mobility.errors import BudgetExceededError, LedgerIntegrityError, ReleaseRefusedError
from mobility.lake import Lake
from mobility.privacy_budget import Ledger, boundary, publish, verify
from mobility.privacy_budget.mechanisms import TableNoise
from pb_helpers import CAPS, POLICY, flows, policy, request


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _big_flows(n=60):
    frame = pd.DataFrame({"cell": [f"c{i:03d}" for i in range(n)]})
    frame["count"] = pd.Series([i % 7 for i in range(n)], dtype="int64")
    return frame


def test_release_has_every_cell_integer_counts_and_a_complete_manifest(tmp_path):
    result = publish(tmp_path, request(), {"flows": flows()}, POLICY)
    folder = Lake(tmp_path).releases / "flows-2024-05"
    assert result.path == folder and not result.reused
    csv = pd.read_csv(folder / "flows.csv")
    parquet = pd.read_parquet(folder / "flows.parquet")
    for frame in (csv, parquet, result.tables["flows"]):
        assert len(frame) == 9 and not frame.duplicated(["origin", "destination"]).any()
        assert pd.api.types.is_integer_dtype(frame["count"]) and (frame["count"] >= 0).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "mobility-release-manifest/2"
    assert manifest["mechanism"] == "discrete_gaussian" and "OpenDP" in manifest["noise_source"]
    assert manifest["privacy"]["rho"] == 0.05 and manifest["privacy"]["delta"] == CAPS.delta
    assert manifest["privacy"]["opendp_rho"] == pytest.approx(0.05, rel=1e-6)
    table = manifest["tables"]["flows_noisy"]
    assert table["role"] == "noisy_measurement" and table["measures"] == "flows"
    assert table["rows"] == 9 and table["error_bound_95"] >= 1 and table["noise_scale"] > 0
    assert set(table["files"]) == {"flows_noisy.csv", "flows_noisy.parquet"}
    assert manifest["tables"]["flows"]["role"] == "consistent"
    assert set(manifest["tables"]) == {"flows", "flows_noisy", "totals"}
    head = {"seq": result.charge.seq, "entry_hash": result.charge.entry_hash}
    assert manifest["ledger"] == {**head, "table": "ledger", "head": head, "witnessed": False}
    assert result.charge.seq == 2  # the first charge under the agreement follows its policy entry
    claims = manifest["privacy"]
    assert "one subscription (SIM)" in claims["protected_unit"] and claims["population"] == CAPS.population
    assert claims["data_months"] == ["2024-05"] and claims["this_release"]["rho"] == 0.05
    assert claims["cumulative_lifetime"]["rho"] == 0.05 and claims["cumulative_lifetime"]["cap_rho"] == 2.0
    assert claims["cumulative_per_data_month"]["most_charged_month"] == "2024-05"
    assert "nothing clamped" in manifest["post_processing"]
    assert manifest["input_versions"] == {"office/moves": 4}
    assert result.publication.release_digest == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert verify(tmp_path, caps={"PHL-DEMO": CAPS}).ok


def test_laplace_release_charges_epsilon_squared_over_two(tmp_path):
    result = publish(tmp_path, request(rho=None, epsilon=0.5), {"flows": flows()}, POLICY)
    assert result.manifest["mechanism"] == "discrete_laplace"
    assert result.charge.epsilon == 0.5 and result.charge.delta == 0.0
    assert result.charge.rho == pytest.approx(0.125)


def test_noise_differs_between_release_ids_and_rerun_reuses_files(tmp_path):
    first = publish(tmp_path, request("a"), {"cells": _big_flows()}, POLICY)
    second = publish(tmp_path, request("b"), {"cells": _big_flows()}, POLICY)
    # 60 cells with sigma ~3: identical outputs would mean the noise is not being drawn
    assert not first.tables["cells"]["count"].equals(second.tables["cells"]["count"])
    before = _digests(first.path)
    entries = len(Ledger.of_lake(tmp_path).entries())
    again = publish(tmp_path, request("a"), {"cells": _big_flows()}, POLICY)
    assert again.reused and again.charge == first.charge and again.publication == first.publication
    assert again.tables["cells"].equals(first.tables["cells"])
    assert _digests(first.path) == before
    assert len(Ledger.of_lake(tmp_path).entries()) == entries


def test_rerun_with_a_different_budget_is_refused(tmp_path):
    publish(tmp_path, request(), {"flows": flows()}, POLICY)
    with pytest.raises(ReleaseRefusedError, match="different request"):
        publish(tmp_path, request(rho=0.06), {"flows": flows()}, POLICY)


def test_over_cap_release_writes_nothing(tmp_path):
    tight = policy(BudgetCaps(population="tight", rho_per_data_month=0.08, rho_lifetime=0.08, delta=1e-7))
    publish(tmp_path, request("first"), {"flows": flows()}, tight)
    with pytest.raises(BudgetExceededError, match=r"lifetime cap of population 'tight'.*left rho=0\.03"):
        publish(tmp_path, request("second"), {"flows": flows()}, tight)
    releases = Lake(tmp_path).releases
    assert sorted(p.name for p in releases.iterdir() if p.is_dir()) == ["first"]
    assert list(Ledger.of_lake(tmp_path).entries()["release_id"]) == ["", "first", "first"]


@pytest.mark.parametrize("budget", [{"rho": 0.0}, {"rho": -0.5}, {"epsilon": 0.0}, {"epsilon": -1.0},
                                    {"rho": float("nan")}, {"rho": 0.1, "epsilon": 0.1}, {"rho": None}])
def test_non_positive_or_ambiguous_budget_refused_before_any_charge(tmp_path, budget):
    with pytest.raises(ReleaseRefusedError):
        publish(tmp_path, request(**budget), {"flows": flows()}, POLICY)
    assert Ledger.of_lake(tmp_path).entries().empty
    assert not (Lake(tmp_path).releases / "flows-2024-05").exists()


@pytest.mark.parametrize("column", ["pseudonym", "msisdn", "subject_id", "subscriber", "imei"])
def test_identifier_columns_are_refused(tmp_path, column):
    frame = flows()
    frame[column] = [f"p{i}" for i in range(len(frame))]
    with pytest.raises(ReleaseRefusedError, match="identifier"):
        publish(tmp_path, request(), {"flows": frame}, POLICY)
    assert Ledger.of_lake(tmp_path).entries().empty


@pytest.mark.parametrize("value", ["639171234567", "+966501234567", "a3f1c9e07b2d4f6a8c0e1d3b"])
def test_identifier_values_in_key_columns_are_refused(tmp_path, value):
    frame = pd.DataFrame({"origin": ["PHL", value], "count": pd.Series([3, 1], dtype="int64")})
    with pytest.raises(ReleaseRefusedError, match="identifier"):
        publish(tmp_path, request(), {"flows": frame}, POLICY)
    assert Ledger.of_lake(tmp_path).entries().empty


def test_released_files_hold_only_public_keys_and_counts(tmp_path):
    result = publish(tmp_path, request(), {"flows": flows()}, POLICY)
    csv = pd.read_csv(result.path / "flows.csv")
    assert list(csv.columns) == ["origin", "destination", "count", "low_95", "high_95"]
    assert set(csv["origin"]) | set(csv["destination"]) == {"ARE", "PHL", "SAU"}
    noisy = pd.read_csv(result.path / "flows_noisy.csv")
    assert list(noisy.columns) == ["origin", "destination", "noisy_count", "low_95", "high_95"]
    assert list(pd.read_csv(result.path / "totals.csv").columns) == ["total", "count", "low_95", "high_95"]


@pytest.mark.parametrize("damage", ["missing_cell", "duplicate", "negative", "float", "no_count"])
def test_incomplete_or_malformed_tables_refused(tmp_path, damage):
    frame = flows()
    if damage == "missing_cell":
        frame = frame[frame["count"] > 0]  # dropping zeros would reveal which cells are empty
    elif damage == "duplicate":
        frame = pd.concat([frame, frame.iloc[[0]]])
    elif damage == "negative":
        frame.loc[0, "count"] = -1
    elif damage == "float":
        frame["count"] = frame["count"].astype(float)
    else:
        frame = frame.rename(columns={"count": "n"})
    with pytest.raises(ReleaseRefusedError):
        publish(tmp_path, request(), {"flows": frame}, POLICY)
    assert Ledger.of_lake(tmp_path).entries().empty


def test_declared_domain_size_allows_non_product_domains(tmp_path):
    frame = flows()
    frame = frame[frame["origin"] != frame["destination"]].reset_index(drop=True)  # no self-flows
    with pytest.raises(ReleaseRefusedError, match="domain has 9"):
        publish(tmp_path, request(), {"flows": frame}, POLICY)
    result = publish(tmp_path, request(query={"domain_sizes": {"flows": 6}}), {"flows": frame}, POLICY)
    assert len(result.tables["flows"]) == 6


def test_failure_after_the_stage_is_completed_from_it_without_new_noise_or_charge(tmp_path, monkeypatch):
    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(boundary, "_write_release", broken_write)
    with pytest.raises(OSError, match="disk full"):
        publish(tmp_path, request(), {"flows": _big_flows()}, POLICY)
    ledger = Ledger.of_lake(tmp_path)
    assert list(ledger.entries()["status"]) == ["policy", "charged"]
    assert ledger.spent("PHL-DEMO") == pytest.approx(0.05)
    lake = Lake(tmp_path)
    assert [p.name for p in lake.releases.iterdir() if p.is_dir()] == [".stage-flows-2024-05"]  # temp dir removed
    staged = pd.read_parquet(lake.release_stage("flows-2024-05") / "flows.parquet")
    report = verify(tmp_path)
    assert report.ok and any("staged" in n for n in report.notes)
    monkeypatch.undo()
    result = publish(tmp_path, request(), {"flows": _big_flows()}, POLICY)
    # the noise drawn before the failure, not a new draw; one charge, one publication
    assert result.tables["flows_noisy"]["noisy_count"].tolist() == staged["noisy_count"].tolist()
    assert "no noise was drawn again" in result.manifest["resumed"]
    assert list(Ledger.of_lake(tmp_path).entries()["status"]) == ["policy", "charged", "published"]
    assert not lake.release_stage("flows-2024-05").exists() and verify(tmp_path).ok


def test_an_interrupted_stage_is_refused_and_keeps_the_charge(tmp_path, monkeypatch):
    """Noise being written when the process died: part of it may be on disk, so it is never drawn again."""
    def die_while_staging(lake, charge, measured):
        (lake.releases / f".stage-{charge.release_id}@tmp-x").mkdir()
        raise KeyboardInterrupt  # stands for the kill: nothing after this point runs

    monkeypatch.setattr(boundary, "_write_stage", die_while_staging)
    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path, request(), {"flows": flows()}, POLICY)
    monkeypatch.undo()
    with pytest.raises(ReleaseRefusedError, match="being staged when it was interrupted"):
        publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert list(Ledger.of_lake(tmp_path).entries()["status"]) == ["policy", "charged"]


def test_interrupted_publication_record_is_completed_on_rerun(tmp_path, monkeypatch):
    real = Ledger.record_publication
    monkeypatch.setattr(Ledger, "record_publication", lambda *a, **k: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert not verify(tmp_path).ok  # a directory without its published entry
    monkeypatch.setattr(Ledger, "record_publication", real)
    result = publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert result.reused and verify(tmp_path).ok


def test_tampered_stored_release_is_not_returned(tmp_path):
    result = publish(tmp_path, request(), {"flows": flows()}, POLICY)
    (result.path / "flows.csv").write_text("origin,destination,count\nPHL,SAU,999\n")
    with pytest.raises(LedgerIntegrityError, match="altered"):
        publish(tmp_path, request(), {"flows": flows()}, POLICY)


def test_unequal_table_shares(tmp_path):
    stocks = flows().groupby("origin", as_index=False)["count"].sum()
    result = publish(tmp_path, request(table_shares={"flows": 0.8, "stocks": 0.2}),
                     {"flows": flows(), "stocks": stocks}, POLICY)
    tables = result.manifest["tables"]
    assert tables["flows_noisy"]["rho"] == pytest.approx(0.04) and tables["stocks_noisy"]["rho"] == pytest.approx(0.01)
    assert tables["stocks_noisy"]["noise_scale"] > tables["flows_noisy"]["noise_scale"]
    with pytest.raises(ReleaseRefusedError, match="table_shares"):
        publish(tmp_path, request("other", table_shares={"flows": 1.0}), {"flows": flows(), "stocks": stocks}, POLICY)


def test_on_a_shared_lake_a_release_charged_meanwhile_by_another_host_is_not_noised_again(tmp_path, monkeypatch):
    # no host lock on a shared lake: another host may charge the same release id between this
    # process's look-up and its charge; the charge is then refused and no noise is drawn here
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")

    def still_writing(*args, **kwargs):  # the other host has charged and is writing its files
        raise OSError("the other host is still writing")

    with monkeypatch.context() as other_host:
        other_host.setattr(boundary, "_write_release", still_writing)
        with pytest.raises(OSError):
            publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert not Lake(tmp_path).releases_lock.exists() and not Ledger.of_lake(tmp_path).lock_path.exists()

    def no_noise(*args, **kwargs):
        raise AssertionError("noise drawn for a charge this process did not make")

    with monkeypatch.context() as this_host:
        this_host.setattr(Ledger, "find", lambda self, release_id: None)  # looked up before the other's charge
        this_host.setattr(TableNoise, "draw", no_noise)
        with pytest.raises(ReleaseRefusedError, match="by another process.*no noise was drawn"):
            publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert list(Ledger.of_lake(tmp_path).entries()["status"]) == ["policy", "charged"]  # charged once, by the other
    # the other host staged its noise before it stopped: any host completes the release from that stage
    staged = pd.read_parquet(Lake(tmp_path).release_stage("flows-2024-05") / "flows.parquet")
    with monkeypatch.context() as this_host:
        this_host.setattr(TableNoise, "draw", no_noise)
        result = publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert result.tables["flows_noisy"]["noisy_count"].tolist() == staged["noisy_count"].tolist()


def test_on_a_shared_lake_a_charge_without_a_stage_is_left_to_the_host_that_made_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILITY_SHARED_LAKE", "1")

    def still_drawing(*args, **kwargs):  # the other host has charged and not yet staged its noise
        raise OSError("the other host is still drawing")

    with monkeypatch.context() as other_host:
        other_host.setattr(boundary, "_measured", still_drawing)
        with pytest.raises(OSError):
            publish(tmp_path, request(), {"flows": flows()}, POLICY)
    with pytest.raises(ReleaseRefusedError, match="another host may be publishing it now"):
        publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert list(Ledger.of_lake(tmp_path).entries()["status"]) == ["policy", "charged"]


def test_a_charge_whose_noise_was_never_persisted_is_completed_under_that_charge(tmp_path, monkeypatch):
    """On one host (lock held), a charge with no stage means the noise never reached disk: it is drawn
    by the rerun, under the same charge."""
    def died_before_staging(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as crashed:
        crashed.setattr(boundary, "_measured", died_before_staging)
        with pytest.raises(KeyboardInterrupt):
            publish(tmp_path, request(), {"flows": flows()}, POLICY)
    result = publish(tmp_path, request(), {"flows": flows()}, POLICY)
    assert not result.reused and "resumed" not in result.manifest
    assert list(Ledger.of_lake(tmp_path).entries()["status"]) == ["policy", "charged", "published"]


def _zeros(n=400):
    frame = pd.DataFrame({"cell": [f"c{i:03d}" for i in range(n)]})
    frame["count"] = pd.Series([0] * n, dtype="int64")
    return frame


def test_measurements_are_kept_as_drawn_and_the_consistent_table_adds_up(tmp_path):
    """400 true zeros at sigma ~4.5: the measurement keeps negative draws (its sum is unbiased); the
    consistent table is non-negative, integer and adds up to its total exactly."""
    result = publish(tmp_path, request(), {"cells": _zeros()}, POLICY)
    noisy = pd.read_parquet(result.path / "cells_noisy.parquet")
    assert (noisy["noisy_count"] < 0).sum() > 100  # about half the draws are negative: nothing clamped
    consistent = pd.read_parquet(result.path / "cells.parquet")
    totals = pd.read_parquet(result.path / "totals.parquet").set_index("total")
    assert (consistent["count"] >= 0).all() and pd.api.types.is_integer_dtype(consistent["count"])
    assert consistent["count"].sum() == totals.loc["cells", "count"]
    assert totals.loc["cells", "count"] == max(round(noisy["noisy_count"].sum()), 0)
    # every figure carries its interval, and the interval holds the figure
    for frame in (noisy, consistent):
        assert (frame["low_95"] <= frame["high_95"]).all() and (frame["low_95"] >= 0).all()
    assert ((consistent["low_95"] <= consistent["count"]) & (consistent["count"] <= consistent["high_95"])).all()
    bound = result.manifest["tables"]["cells_noisy"]["error_bound_95"]
    assert (noisy["high_95"] == (noisy["noisy_count"] + bound).clip(lower=0)).all()
    # the total's interval: the sum of the 400 measurements -/+ the exact half-width of the sum of 400
    # draws, lower end at least 0, widened to include the consistent total
    from mobility.privacy_budget.intervals import Term, half_width_95

    info = result.manifest["tables"]["cells_noisy"]
    a = int(half_width_95([Term(1, result.manifest["mechanism"], info["noise_scale"], 400)]))
    s, count = int(noisy["noisy_count"].sum()), int(totals.loc["cells", "count"])
    assert totals.loc["cells", "low_95"] == min(max(s - a, 0), count)
    assert totals.loc["cells", "high_95"] == max(max(s + a, 0), count)


def test_cells_that_share_a_total_are_reconciled_across_tables(tmp_path):
    """Two tables measuring the same people (a breakdown and its margin): the published tables add up."""
    from mobility.privacy_budget.consistency import Part, Total

    flows_ = flows()
    by_origin = flows_.groupby("origin", as_index=False)["count"].sum()
    totals = (Total("all", (Part("flows", {}, (("origin",),)), Part("stocks"))),)
    result = publish(tmp_path, request(totals=totals), {"flows": flows_, "stocks": by_origin}, POLICY)
    consistent, margin = result.tables["flows"], result.tables["stocks"]
    assert consistent["count"].sum() == margin["count"].sum() == int(result.tables["totals"]["count"].iloc[0])
    weights = result.manifest["consistency"]["totals"][0]["weights"]
    assert set(weights) == {"flows", "stocks"}
    assert sum(w["weight"] for w in weights.values()) == pytest.approx(1.0)
