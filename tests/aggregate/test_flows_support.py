"""Helpers of the flow-release tests: a tiny office zone (changes, subscribers, residence manifest).

Holds no tests; the test modules import from it (a unique module name, like pb_helpers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from agreement_helpers import make_agreement
from mobility.config import load_agreement

HOME = "PHL"
MANILA, CEBU, DAVAO = "85694ec3fffffff", "85684413fffffff", "85685c2bfffffff"  # res-5 cells in PHL
TOKYO = "852f5a37fffffff"  # a res-5 cell outside PHL
PERIOD = "2024-03"
FINAL_DATA_END = dt.date(2025, 7, 31)  # the residence job's data_end is a month end

CHANGES_DDL = ("pseudonym STRING, from_country STRING, to_country STRING, crossing_date DATE, resolved_date DATE, "
               "kind STRING, direction STRING, days_counted INT, stay_days INT, gap_days INT, "
               "in_initial_period BOOLEAN, h3_cell STRING")
SUBSCRIBERS_DDL = "pseudonym STRING, key_id STRING, sex STRING, birth_year INT, agreement_id STRING, run_id STRING"


def pseudonym(name: str) -> str:
    """Shaped like the real ones: a 64-hex keyed digest."""
    return hashlib.sha256(f"subject-{name}".encode()).hexdigest()


def change(name, from_country, to_country, crossing, kind="long_term", cell=None):
    day = dt.date.fromisoformat(crossing)
    direction = "departure" if from_country == HOME else "arrival"
    resolved = day + dt.timedelta(days=400) if kind != "unresolved" else None
    return (pseudonym(name), from_country, to_country, day, resolved, kind, direction, 365, None, 0, False, cell)


# Subjects a..n, crossing month 2024-03 (see test_flows_aggregate for what each one checks).
CHANGES = [
    change("a", "PHL", "SAU", "2024-03-05", cell=MANILA),
    change("a", "SAU", "PHL", "2024-03-20", cell=CEBU),  # second change of a in the month: not counted
    change("b", "PHL", "DEU", "2024-03-10"),  # DEU is not in the agreement's list; no cell
    change("c", "JPN", "PHL", "2024-03-31", cell=DAVAO),  # last day of the month
    change("d", "PHL", "ARE", "2024-03-12", kind="temporary", cell=MANILA),
    change("e", "PHL", "QAT", "2024-03-15", kind="unresolved", cell=MANILA),
    change("f", "PHL", "SAU", "2024-02-29", cell=MANILA),  # previous month
    change("f", "SAU", "PHL", "2024-03-01", cell=TOKYO),  # a cell outside the home country
    change("g", "PHL", "SAU", "2024-03-05", cell=MANILA),
    change("h", "ARE", "PHL", "2024-03-25", cell=MANILA),
    change("i", "PHL", "USA", "2024-04-02", cell=CEBU),  # next month
    change("m", "SAU", "PHL", "2024-03-28", cell=CEBU),  # m's rows out of order: the 03-02 one is first
    change("m", "PHL", "KWT", "2024-03-02", cell=DAVAO),
    change("m", "PHL", "QAT", "2024-03-15", cell=MANILA),
    change("n", "PHL", "USA", "2024-03-09", cell=CEBU),  # no subscriber record
]
SUBSCRIBERS = [
    (pseudonym("a"), "k1", "F", 1990, "test-phl", "r1"),
    (pseudonym("b"), "k1", "M", None, "test-phl", "r1"),
    (pseudonym("c"), "k1", None, 2015, "test-phl", "r1"),
    (pseudonym("f"), "k1", "X", 1950, "test-phl", "r1"),
    (pseudonym("g"), "k1", "F", 2000, "test-phl", "r1"),
    (pseudonym("g"), "k1", "M", 1960, "other-agreement", "r9"),  # another agreement's record: ignored
    (pseudonym("h"), "k1", "F", 1980, "test-phl", "r1"),
    (pseudonym("h"), "k2", "M", 1980, "test-phl", "r2"),  # conflicting sex: unknown
    (pseudonym("m"), "k1", "M", 1985, "test-phl", "r1"),
    (pseudonym("z"), "k1", "F", 1970, "test-phl", "r1"),  # no change
]


def write_residence_manifest(spark, lake: Path, data_end: dt.date, agreement_id: str = "test-phl",
                             version: int | None = None) -> Path:
    from delta.tables import DeltaTable

    if version is None:
        version = DeltaTable.forPath(spark, str(lake / "office/residence_changes")).history(1).collect()[0]["version"]
    run_id = f"residence-{agreement_id}-{data_end:%Y-%m}"
    path = lake / "office" / "residence_manifests" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "stage": "residence", "agreement_id": agreement_id,
                                "data_end": data_end.isoformat(), "params": {"window_days": 487,
                                                                           "home_cell_resolution": 5},
                                "office_versions": {"residence_changes": version}}))
    return path


CHANGES_ARROW = pa.schema([
    ("pseudonym", pa.string()), ("from_country", pa.string()), ("to_country", pa.string()),
    ("crossing_date", pa.date32()), ("resolved_date", pa.date32()), ("kind", pa.string()),
    ("direction", pa.string()), ("days_counted", pa.int32()), ("stay_days", pa.int32()), ("gap_days", pa.int32()),
    ("in_initial_period", pa.bool_()), ("h3_cell", pa.string())])
SUBSCRIBERS_ARROW = pa.schema([("pseudonym", pa.string()), ("key_id", pa.string()), ("sex", pa.string()),
                               ("birth_year", pa.int32()), ("agreement_id", pa.string()), ("run_id", pa.string())])


def write_office(spark, lake: Path, changes=CHANGES, subscribers=SUBSCRIBERS, data_end=FINAL_DATA_END) -> Path:
    """Delta tables written with delta-rs (much quicker than a first Spark write); Spark reads them."""
    from deltalake import write_deltalake

    def table(rows, schema):
        return pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema)

    write_deltalake(str(lake / "office/residence_changes"), table(changes, CHANGES_ARROW))
    if subscribers is not None:
        write_deltalake(str(lake / "office/subscribers"), table(subscribers, SUBSCRIBERS_ARROW))
    write_residence_manifest(spark, lake, data_end)
    return lake


@pytest.fixture(scope="module")
def office_template(spark, tmp_path_factory):
    """The office zone written once per module; tests copy it so each has its own ledger."""
    # Delta's default of 50 partitions for replaying a one-commit log dominates tiny tests
    previous = spark.conf.get("spark.databricks.delta.snapshotPartitions", None)
    spark.conf.set("spark.databricks.delta.snapshotPartitions", "1")
    yield write_office(spark, tmp_path_factory.mktemp("office-template"))
    if previous is None:
        spark.conf.unset("spark.databricks.delta.snapshotPartitions")
    else:
        spark.conf.set("spark.databricks.delta.snapshotPartitions", previous)


@pytest.fixture
def lake(office_template, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(office_template / "office", root / "office")
    return root


@pytest.fixture
def agreement_file(tmp_path):
    return make_agreement(tmp_path)


@pytest.fixture
def agreement(agreement_file):
    return load_agreement(agreement_file)
