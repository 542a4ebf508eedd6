"""A small published lake for the report tests: no Spark, releases straight through ``publish``.

Release 1 has the shape of a flows release (country pairs by sex, emigrants and immigrants on
H3 res-5 cells around Manila); release 2 has another manifest (remittance-like corridors with a
derived ratio table) in another calendar year. An office-zone file holds pseudonyms that must
never reach a report.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from html.parser import HTMLParser
from pathlib import Path

import h3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from agreement_helpers import make_agreement
from mobility.config import load_agreement
from mobility.privacy_budget import ReleaseRequest, publish

FLOWS_ID = "flows-test-2024-05"
REMIT_ID = "remit-test-2025-01"
COUNTRIES = ["PHL", "SAU", "ARE", "JPN"]
CELLS = sorted(h3.grid_disk(h3.latlng_to_cell(14.6, 121.0, 5), 2))  # 19 cells over Manila


def _flows_tables(rng: random.Random) -> dict[str, pd.DataFrame]:
    pairs = [(a, b) for a, b in itertools.permutations(COUNTRIES, 2) if (a == "PHL") != (b == "PHL")]
    international = pd.DataFrame([(a, b, s) for (a, b) in pairs for s in ("F", "M")],
                                 columns=["from_country", "to_country", "sex"])
    international["count"] = pd.Series([rng.randint(0, 60) for _ in range(len(international))], dtype="int64")
    tables = {"international": international}
    for name, key in (("emigrants_by_origin", "origin_h3_cell"), ("immigrants_by_destination", "destination_h3_cell")):
        frame = pd.DataFrame({key: [*CELLS, "UNKNOWN"]})
        frame["count"] = pd.Series([rng.randint(0, 40) for _ in range(len(frame))], dtype="int64")
        tables[name] = frame
    return tables


def _ratio(noisy):
    counts = noisy["corridor_counts"]
    frame = counts[["corridor"]].copy()
    frame["share"] = (counts["count"] / max(int(counts["count"].sum()), 1)).round(4)
    return {"corridor_shares": (frame, {"from": "corridor_counts", "formula": "count / total count"})}


def build_lake(root: Path, seed: int = 3) -> dict:
    """Publish both releases into ``root/lake``; returns paths, ids and the office pseudonyms."""
    rng = random.Random(seed)
    agreement_path = make_agreement(root / "conf")
    agreement = load_agreement(agreement_path)
    lake = root / "lake"
    common = dict(agreement_id=agreement.agreement_id, purpose="migration-statistics", requested_by="tester",
                  privacy_unit="subscriber (pseudonym): at most one change per month")
    flows = _flows_tables(rng)
    sizes = {name: len(frame) for name, frame in flows.items()}
    publish(lake, ReleaseRequest(release_id=FLOWS_ID, period="2024-05", rho=0.3,
                                 query={"statistic": "test flows", "home_country": "PHL", "domain_sizes": sizes},
                                 **common),
            flows, agreement.budget)
    corridors = pd.DataFrame({"corridor": [f"{c}-PHL" for c in COUNTRIES if c != "PHL"]})
    corridors["count"] = pd.Series([rng.randint(5, 80) for _ in range(len(corridors))], dtype="int64")
    publish(lake, ReleaseRequest(release_id=REMIT_ID, period="2025-01", epsilon=0.8,
                                 query={"statistic": "test remittances"}, **common),
            {"corridor_counts": corridors}, agreement.budget, derive=_ratio)
    # what the office zone holds and a report must never show
    pseudonyms = [hashlib.sha256(f"+6391700000{i:02d}".encode()).hexdigest() for i in range(20)]
    office = lake / "office" / "residence_changes"
    office.mkdir(parents=True)
    pq.write_table(pa.table({"pseudonym": pseudonyms, "h3_cell": [CELLS[i % len(CELLS)] for i in range(20)]}),
                   office / "part-0.parquet")
    return {"root": root, "lake": lake, "agreement": agreement_path, "agreement_id": agreement.agreement_id,
            "pseudonyms": pseudonyms, "flows_exact": flows}


class TableCells(HTMLParser):
    """Rows of every ``<table data-table=NAME>`` in a page: {NAME: [[cell, ...], ...]} (header first)."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._name = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "data-table" in attrs:
            self._name = attrs["data-table"]
            self.tables[self._name] = []
        elif self._name and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._name = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._name].append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def table_cells(html: str) -> dict[str, list[list[str]]]:
    parser = TableCells()
    parser.feed(html)
    return parser.tables
