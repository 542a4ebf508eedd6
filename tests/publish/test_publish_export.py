"""Exports: read back equal to the release in every format, SDMX-CSV valid against the shipped structure,
consistent values and noisy measurements both exported and named (VALUE_KIND), totals on their dimensions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mobility.cli import main
from mobility.errors import InputContractError, LedgerIntegrityError
from mobility.publish import codes as C
from mobility.publish import structure as S
from mobility.publish.annual import build_annual
from mobility.publish.export import FORMATS, export_release, read_export
from mobility.publish.sources import locate
from mobility.publish.validate import validate_sdmx_csv
from publish_helpers import agreement, publish_month

TABLES = ("international", "emigrants_by_origin", "immigrants_by_destination")
ALL_TABLES = {*TABLES, *(f"{t}_noisy" for t in TABLES), "totals"}


@pytest.fixture(scope="module")
def by_sex_and_age(tmp_path_factory):
    """One monthly release broken down by sex and age band (every code list in use), with the
    national emigration and immigration totals and the joint cell measurement of release.flows."""
    root = tmp_path_factory.mktemp("export")
    agr, _ = agreement(root)
    result = publish_month(root / "lake", agr, "2025-04", by=("sex", "age_band"), national_totals=True)
    return root / "lake", result.release_id


def as_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as the text the release's CSV holds (so types cannot hide a difference)."""
    return frame.astype(object).astype(str).reset_index(drop=True)


def released_csv(lake: Path, release_id: str, table: str) -> pd.DataFrame:
    return pd.read_csv(lake / "releases" / release_id / f"{table}.csv", dtype=str, keep_default_na=False)


def sdmx_rows(lake: Path, release_id: str, out: Path) -> pd.DataFrame:
    export_release(lake, release_id, "sdmx-csv", out)
    return pd.read_csv(out / f"{release_id}.sdmx.csv", dtype=str, keep_default_na=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_reads_back_equal_to_the_release(by_sex_and_age, tmp_path, fmt):
    """(b) Every table round-trips with its own columns: consistent tables, measurements and totals."""
    lake, release_id = by_sex_and_age
    result = export_release(lake, release_id, fmt, tmp_path / fmt)
    back = read_export(tmp_path / fmt, release_id)
    assert set(back) == ALL_TABLES
    for table, frame in back.items():
        assert as_values(frame).equals(as_values(released_csv(lake, release_id, table))), table
    assert list(back["international_noisy"].columns)[-3:] == ["noisy_count", "low_95", "high_95"]
    assert list(back["totals"].columns) == ["total", "count", "low_95", "high_95"]
    assert sum(result.rows.values()) == sum(len(f) for f in back.values())


def test_export_has_both_kinds_of_rows_named_with_their_intervals(by_sex_and_age, tmp_path):
    """(b) Each consistent cell and its noisy measurement are two rows with the same other dimensions,
    told apart by VALUE_KIND; every row has its interval, and ERROR_BOUND_95 only a measurement's."""
    lake, release_id = by_sex_and_age
    rows = sdmx_rows(lake, release_id, tmp_path)
    assert validate_sdmx_csv(tmp_path / f"{release_id}.sdmx.csv") == []
    kinds = rows["VALUE_KIND"]
    assert set(kinds) == {S.CONSISTENT, S.NOISY_MEASUREMENT}
    others = [d for d in S.DIMENSIONS if d != S.VALUE_KIND]
    consistent, noisy = rows[kinds == S.CONSISTENT], rows[kinds == S.NOISY_MEASUREMENT]
    is_total = ((consistent["ORIGIN"] == "_T") | (consistent["DESTINATION"] == "_T")) \
        & (consistent["ORIGIN_H3"] == "_T") & (consistent["DESTINATION_H3"] == "_T")
    assert int(is_total.sum()) == 2  # the two national totals have no measurement of their own
    keys = lambda f: sorted(map(tuple, f[others].values.tolist()))  # noqa: E731
    assert keys(consistent[~is_total]) == keys(noisy)
    value, low, high = (rows[c].astype(int) for c in ("OBS_VALUE", "LOWER_95", "UPPER_95"))
    assert ((low <= value) & (value <= high) & (value >= 0))[kinds == S.CONSISTENT].all()
    assert (rows.loc[kinds == S.CONSISTENT, "ERROR_BOUND_95"] == "").all()
    manifest = json.loads((lake / "releases" / release_id / "manifest.json").read_text())
    bound = manifest["tables"]["international_noisy"]["error_bound_95"]
    intl = noisy[(noisy["ORIGIN_H3"] == "_T") & (noisy["DESTINATION_H3"] == "_T")]
    assert set(intl["ERROR_BOUND_95"].astype(float)) == {bound}
    # the measurement -/+ its bound, both ends at least 0 (a draw far below 0 has an upper end of 0)
    upper = (intl["OBS_VALUE"].astype(int) + int(bound)).clip(lower=0)
    lower = (intl["OBS_VALUE"].astype(int) - int(bound)).clip(lower=0)
    assert (intl["UPPER_95"].astype(int) == upper).all() and (intl["LOWER_95"].astype(int) == lower).all()
    record = json.loads((tmp_path / f"{release_id}.export.json").read_text())
    assert {n: i["value_kind"] for n, i in record["tables"].items()} == {
        n: S.NOISY_MEASUREMENT if n.endswith("_noisy") else S.CONSISTENT for n in ALL_TABLES}
    assert record["tables"]["international_noisy"]["source_file"] == "international_noisy.csv"
    assert set(record["value_kinds"]) == {S.CONSISTENT, S.NOISY_MEASUREMENT}


def test_national_totals_land_on_origin_and_destination(by_sex_and_age, tmp_path):
    """Emigration is ORIGIN = home, DESTINATION = _T; immigration the other way round; _T elsewhere; and
    they equal what the consistent cells add up to."""
    lake, release_id = by_sex_and_age
    rows = sdmx_rows(lake, release_id, tmp_path)
    totals = released_csv(lake, release_id, "totals").set_index("total")
    consistent = rows[rows["VALUE_KIND"] == S.CONSISTENT]
    for total, (origin, destination) in {"emigration": ("PHL", "_T"), "immigration": ("_T", "PHL")}.items():
        row = consistent[(consistent["ORIGIN"] == origin) & (consistent["DESTINATION"] == destination)
                         & (consistent["ORIGIN_H3"] == "_T") & (consistent["DESTINATION_H3"] == "_T")]
        assert len(row) == 1 and set(row[["SEX", "AGE"]].values[0]) == {"_T"}
        assert row[["OBS_VALUE", "LOWER_95", "UPPER_95"]].values[0].tolist() == \
            totals.loc[total, ["count", "low_95", "high_95"]].tolist()
    cells = consistent[consistent["ORIGIN_H3"] != "_T"]
    emigration = int(totals.loc["emigration", "count"])
    assert cells["OBS_VALUE"].astype(int).sum() == emigration  # the origin cells add up to it exactly


def test_derived_annual_table_exports_and_reads_back(year_lake, tmp_path):
    lake, agr, _ = year_lake
    annual = build_annual(lake, 2025, agr)
    export_release(lake, annual.annual_id, "sdmx-csv", tmp_path)
    sdmx = tmp_path / f"{annual.annual_id}.sdmx.csv"
    assert validate_sdmx_csv(sdmx) == []
    rows = pd.read_csv(sdmx, dtype=str, keep_default_na=False)
    assert set(rows["FREQ"]) == {"A"} and set(rows["TIME_PERIOD"]) == {"2025"}
    assert set(rows["VALUE_KIND"]) == {S.CONSISTENT, S.NOISY_MEASUREMENT}
    assert set(rows["DP_METHOD"]) == {"MIXED_SUM"}  # September was noised with discrete Laplace
    for table, frame in read_export(tmp_path, annual.annual_id).items():
        assert as_values(frame).equals(as_values(annual.tables[table])), table


def test_sdmx_csv_uses_standard_codes_and_validates(by_sex_and_age, tmp_path):
    lake, release_id = by_sex_and_age
    export_release(lake, release_id, "sdmx-csv", tmp_path)
    path = tmp_path / f"{release_id}.sdmx.csv"
    assert validate_sdmx_csv(path, tmp_path / S.STRUCTURE_FILE) == []
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert rows.columns[:3].tolist() == ["STRUCTURE", "STRUCTURE_ID", "ACTION"]
    assert set(rows["STRUCTURE_ID"]) == {S.STRUCTURE_ID}
    intl = rows[(rows["ORIGIN_H3"] == "_T") & (rows["DESTINATION_H3"] == "_T") & (rows["ORIGIN"] != "_T")
                & (rows["DESTINATION"] != "_T")]
    assert set(intl["SEX"]) == {"F", "M", "_O", "_U"}
    assert {"Y15T24", "Y_GE65", "_U"} <= set(intl["AGE"])
    assert set(intl["ORIGIN"]) | set(intl["DESTINATION"]) == {"PHL", "SAU", "USA", "_O"}
    assert set(rows["TIME_PERIOD"]) == {"2025-04"} and set(rows["FREQ"]) == {"M"}
    assert set(rows["CONF_STATUS"]) == {"F"} and set(rows["DP_METHOD"]) == {"DGAUSS"}
    manifest = json.loads((lake / "releases" / release_id / "manifest.json").read_text())
    noisy = intl[intl["VALUE_KIND"] == S.NOISY_MEASUREMENT]
    assert float(noisy["ERROR_BOUND_95"].iloc[0]) == manifest["tables"]["international_noisy"]["error_bound_95"]
    cells = rows[rows["ORIGIN_H3"] != "_T"]
    assert set(cells["ORIGIN"]) == {"PHL"} and set(cells["DESTINATION"]) == {"_T"}


@pytest.mark.parametrize("column,bad,component", [
    ("SEX", "Q", "SEX"), ("ORIGIN_H3", "not-a-cell", "ORIGIN_H3"), ("OBS_VALUE", "-3", "OBS_VALUE"),
    ("TIME_PERIOD", "2025", "TIME_PERIOD"), ("ORIGIN", "XXA", "ORIGIN"), ("VALUE_KIND", "ESTIMATE", "VALUE_KIND"),
    ("LOWER_95", "-1", "LOWER_95"), ("UPPER_95", "0", "LOWER_95"), ("OBS_VALUE", "0", "OBS_VALUE"),
    ("ERROR_BOUND_95", "-2", "ERROR_BOUND_95")])
def test_validation_catches_a_broken_value(by_sex_and_age, tmp_path, column, bad, component):
    lake, release_id = by_sex_and_age
    export_release(lake, release_id, "sdmx-csv", tmp_path)
    path = tmp_path / f"{release_id}.sdmx.csv"
    rows = list(csv.reader(path.open()))
    header = rows[0]
    rows[1][header.index(column)] = bad
    broken = tmp_path / "broken.csv"
    with broken.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    problems = validate_sdmx_csv(broken)
    assert problems and any(p.startswith(component) for p in problems), problems


def test_validation_catches_a_repeated_series_key(by_sex_and_age, tmp_path):
    lake, release_id = by_sex_and_age
    export_release(lake, release_id, "sdmx-csv", tmp_path)
    path = tmp_path / f"{release_id}.sdmx.csv"
    lines = path.read_text().splitlines()
    broken = tmp_path / "repeated.csv"
    broken.write_text("\n".join(lines + [lines[1]]) + "\n")
    assert any("repeat a series key" in p for p in validate_sdmx_csv(broken))


def test_shipped_structure_is_the_one_the_code_builds():
    """Editing codes or components without regenerating the shipped SDMX-ML fails here."""
    assert S.shipped_structure_path().read_text(encoding="utf-8") == S.structure_xml()


def test_a_tampered_release_is_not_exported(by_sex_and_age, tmp_path):
    lake, release_id = by_sex_and_age
    copy = tmp_path / "lake"
    import shutil

    shutil.copytree(lake, copy)
    target = copy / "releases" / release_id / "international.parquet"
    target.write_bytes(target.read_bytes()[:-8])
    with pytest.raises(LedgerIntegrityError, match="altered"):
        export_release(copy, release_id, "csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_release_and_uncoded_values_are_refused(by_sex_and_age, tmp_path):
    lake, release_id = by_sex_and_age
    with pytest.raises(InputContractError, match="releases list"):
        export_release(lake, "no-such-release", "csv", tmp_path)
    source = locate(lake, release_id)
    from mobility.publish import export as E
    from mobility.publish.tidy import to_tidy

    frame = source.tables["international"].copy()
    frame.loc[0, "age_band"] = "13-19"  # a band an agreement could choose, with no code in CL_AGE
    with pytest.raises(InputContractError, match="Y13T19"):
        E._check_codes(release_id, {"international": to_tidy(source, "international", frame)})


@given(st.lists(st.integers(0, 110), min_size=1, max_size=8, unique=True))
def test_age_labels_and_codes_map_one_to_one(bounds):
    lows = sorted(bounds)
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(lows, lows[1:])] + [f"{lows[-1]}+", "unknown"]
    codes = [C.age_code(label) for label in labels]
    assert len(set(codes)) == len(codes)
    assert [C.age_value(code) for code in codes] == labels


def test_cli_export_names_its_files(by_sex_and_age, tmp_path):
    lake, release_id = by_sex_and_age
    result = CliRunner().invoke(main, ["export", "--lake", str(lake), "--release", release_id,
                                       "--format", "sdmx-csv", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{release_id}.sdmx.csv" in result.output and S.STRUCTURE_FILE in result.output
    assert f"valid against {S.STRUCTURE_ID}" in result.output
    first_row = next(line.strip().split(",") for line in result.output.splitlines()
                     if line.strip().startswith("dataflow,"))
    assert first_row[7:9] == ["_T", "_T"]  # the national totals and country flows come before the H3 cells
    # STRUCTURE, STRUCTURE_ID, ACTION, then the dimensions in order
    assert first_row[3 + S.DIMENSIONS.index(S.VALUE_KIND)] == S.CONSISTENT  # consistent values before measurements
    bad = CliRunner().invoke(main, ["export", "--lake", str(lake), "--release", "nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_tables_without_an_sdmx_structure_are_refused_naming_the_table(tmp_path):
    """A remittance-like table (corridor keys) has no dimensions here: refused before anything is written,
    naming the release, the table and what to use instead."""
    from mobility.privacy_budget.blocks import flow_data_months
    from mobility.privacy_budget.boundary import ReleaseRequest, publish

    agr, _ = agreement(tmp_path)
    cells = pd.DataFrame({"sender_country": ["SAU", "USA"], "receiver_country": ["PHL", "PHL"],
                          "count": pd.Series([12, 30], dtype="int64")})
    request = ReleaseRequest(release_id="remit-like", agreement_id=agr.agreement_id, period="2025-04",
                             purpose="migration-statistics", requested_by="tests", query={"home_country": "PHL"},
                             privacy_unit="sender", rho=0.01, data_months=tuple(flow_data_months("2025-04")))
    publish(tmp_path / "lake", request, {"transfers": cells}, agr)
    with pytest.raises(InputContractError) as info:
        export_release(tmp_path / "lake", "remit-like", "csv", tmp_path / "out")
    message = str(info.value)
    assert "'remit-like'" in message and "table 'transfers" in message and "sender_country" in message
    assert "What to do:" in message and "CSV or Parquet files" in message
    assert not (tmp_path / "out").exists()


def test_a_release_by_arrival_type_exports_returns_and_first_arrivals_on_their_own_dimension(tmp_path):
    agr, _ = agreement(tmp_path)
    result = publish_month(tmp_path / "lake", agr, "2025-05", by=("sex", "arrival_type"), national_totals=True)
    rows = sdmx_rows(tmp_path / "lake", result.release_id, tmp_path / "out")
    assert validate_sdmx_csv(tmp_path / "out" / f"{result.release_id}.sdmx.csv") == []
    international = rows[(rows["ORIGIN_H3"] == "_T") & (rows["DESTINATION_H3"] == "_T")
                         & (rows["ORIGIN"] != "_T") & (rows["DESTINATION"] != "_T")]
    arrivals, departures = international[international["DESTINATION"] == "PHL"], international[
        international["ORIGIN"] == "PHL"]
    assert set(arrivals["ARRIVAL_TYPE"]) == {"RET", "FIRST"} and set(departures["ARRIVAL_TYPE"]) == {"_Z"}
    assert set(rows.loc[~rows.index.isin(international.index), "ARRIVAL_TYPE"]) == {"_T"}  # cells and totals
    back = read_export(tmp_path / "out", result.release_id)
    for table, frame in back.items():
        assert as_values(frame).equals(as_values(released_csv(tmp_path / "lake", result.release_id, table))), table
