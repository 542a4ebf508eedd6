"""Incremental residence runs give exactly the tables of a rebuild from all the events.

Months are delivered in three anonymization runs: months 1-8 with the registers, months 9-14, then
month 10 again, corrected (a re-delivery). After each delivery the residence run recomputes only
the months delivered since the previous run; a rebuild on the same lake must give the same
presence, home cells and residence changes, row for row. Earlier versions of the changes table
stay readable: a release pinned to one is reproducible after later runs.
"""

from __future__ import annotations

import gzip
import secrets
import shutil

import pandas as pd
import pytest

from agreement_helpers import make_agreement
from mobility.lake import Lake
from mobility.schemas import CHANGES_TABLE, HOME_CELLS_TABLE, PRESENCE_TABLE

pytestmark = pytest.mark.slow

START, MONTHS = "2024-01", 14


def _months(first: int, last: int) -> list[str]:
    return [f"{2024 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}" for m in range(first, last + 1)]


def _delivery(source, target, months: list[str], registers: bool):
    """An operator delivery folder: the CDR files of ``months``, the cell list (every delivery has
    it) and, in the first, the subscriber register."""
    (target / "cdr").mkdir(parents=True, exist_ok=True)
    for month in months:
        shutil.copy(source / "cdr" / f"part-{month}.csv.gz", target / "cdr")
    for folder in ("cells", "subscribers") if registers else ("cells",):
        shutil.copytree(source / folder, target / folder)
    return target


def _table(lake: Lake, spark, spec, version=None) -> pd.DataFrame:
    frame = lake.read(spark, spec, version).toPandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory, spark):
    from mobility.anonymize.job import run as anonymize
    from mobility.config import load_agreement
    from mobility.residence.job import run as residence
    from mobility.synth import generate

    root = tmp_path_factory.mktemp("incremental")
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBILITY_KEY_TEST", secrets.token_hex(32))
    generate(root / "all", subscribers=120, months=MONTHS, start=START, home_country="PHL", seed=5,
             fault_rate=0.0, events_per_day=4.0)
    agreement = load_agreement(make_agreement(root, max_invalid_share=0.2))
    lake = Lake(root / "lake")
    runs = []
    first = _delivery(root / "all", root / "d1", _months(1, 8), registers=True)
    anonymize(agreement, first, lake.root, spark=spark)
    runs.append(residence(agreement, lake.root, spark=spark))
    second = _delivery(root / "all", root / "d2", _months(9, 14), registers=False)
    anonymize(agreement, second, lake.root, spark=spark)
    runs.append(residence(agreement, lake.root, spark=spark))
    # month 10 again, corrected: every fifth line dropped (a new file, so not skipped as a duplicate)
    third = _delivery(root / "all", root / "d3", [], registers=False) / "cdr"
    lines = gzip.decompress((root / "all" / "cdr" / "part-2024-10.csv.gz").read_bytes()).decode().splitlines()
    kept = [line for i, line in enumerate(lines) if i == 0 or i % 5]
    (third / "part-2024-10-corrected.csv.gz").write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))
    anonymize(agreement, root / "d3", lake.root, spark=spark)
    runs.append(residence(agreement, lake.root, spark=spark))
    incremental = {spec.name: _table(lake, spark, spec) for spec in (PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE)}
    rebuilt_run = residence(agreement, lake.root, spark=spark, rebuild=True)
    rebuilt = {spec.name: _table(lake, spark, spec) for spec in (PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE)}
    yield {"lake": lake, "spark": spark, "runs": runs, "rebuilt_run": rebuilt_run, "incremental": incremental,
           "rebuilt": rebuilt, "agreement": agreement}
    mp.undo()


def test_each_run_recomputes_only_the_months_delivered_since_the_last(deliveries):
    first, second, third = (r.manifest for r in deliveries["runs"])
    assert first["mode"] == "rebuild" and first["recomputed_months"] == ["2023-12", *_months(1, 8)]
    assert second["mode"] == "incremental" and second["recomputed_months"] == _months(8, 14)
    # the corrected month replaces its own partition and the day before it: nothing else
    assert third["mode"] == "incremental" and third["recomputed_months"] == ["2024-09", "2024-10"]
    assert (first["data_end"], second["data_end"], third["data_end"]) == ("2024-08-31", "2025-02-28", "2025-02-28")
    assert deliveries["rebuilt_run"].manifest["mode"] == "rebuild"
    assert set(third["processed"]) == set(second["processed"]) | {r for r in third["processed"]
                                                                  if r not in second["processed"]}


@pytest.mark.parametrize("table", [PRESENCE_TABLE.name, HOME_CELLS_TABLE.name, CHANGES_TABLE.name])
def test_incremental_runs_equal_a_rebuild_row_for_row(deliveries, table):
    incremental, rebuilt = deliveries["incremental"][table], deliveries["rebuilt"][table]
    assert len(rebuilt) > 0
    pd.testing.assert_frame_equal(incremental, rebuilt, check_dtype=False)


def test_the_corrected_month_changed_the_presence(deliveries):
    # the re-delivery added rows for month 10 (both deliveries are in the office zone): presence of
    # 2024-10 comes from both, exactly as a rebuild computes it
    presence = deliveries["rebuilt"][PRESENCE_TABLE.name]
    assert set(presence["month"]) >= set(_months(1, 14))


def test_a_changes_version_of_an_earlier_run_stays_readable(deliveries):
    lake, spark = deliveries["lake"], deliveries["spark"]
    first = deliveries["runs"][0].manifest
    version = first["office_versions"][CHANGES_TABLE.name]
    earlier = _table(lake, spark, CHANGES_TABLE, version)
    assert (earlier["crossing_date"].astype(str) <= first["data_end"]).all()
    assert not earlier.equals(deliveries["rebuilt"][CHANGES_TABLE.name])
