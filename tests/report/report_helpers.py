"""A small published lake for the report tests: no Spark, releases straight through ``publish``.

Release 1 has the shape of a flows release (country pairs by sex, emigrants and immigrants on
H3 res-5 cells around Manila) and reads the 29 data months of its crossing month's window;
release 2 has another manifest (remittance-like corridors: a transfers table bounded by 4
transfers and a volume table bounded by USD 8,000, with a derived ratio table) and reads one
payment month inside the flows window. An office-zone file holds pseudonyms that must never reach
a report. ``legacy_lake`` rebuilds one release as a release and ledger written before data-month
accounting (no population, data months, caps or claims).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
from html.parser import HTMLParser
from pathlib import Path

import h3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from agreement_helpers import make_agreement
from mobility.config import load_agreement
from mobility.privacy_budget import ReleaseRequest, publish
from mobility.privacy_budget.blocks import flow_data_months
from mobility.privacy_budget.ledger import GENESIS_HASH, LEDGER_SCHEMA, LEGACY_COLUMNS, Ledger, Policy, hash_record

FLOWS_ID = "flows-test-2024-05"
REMIT_ID = "remit-test-2025-01"
COUNTRIES = ["PHL", "SAU", "ARE", "JPN"]
FLOWS_STATISTIC = "long-term residence changes (12/16-month rule) by crossing month"
MAX_TRANSFERS, AMOUNT_CAP_USD = 4, 2000  # per sender and month: the volume table moves by at most USD 8,000
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
    counts = noisy["transfers"]
    frame = counts[["corridor"]].copy()
    frame["share"] = (counts["count"] / max(int(counts["count"].sum()), 1)).round(4)
    return {"corridor_shares": (frame, {"from": "transfers", "formula": "count / total count"})}


def build_lake(root: Path, seed: int = 3) -> dict:
    """Publish both releases into ``root/lake``; returns paths, ids and the office pseudonyms."""
    rng = random.Random(seed)
    agreement_path = make_agreement(root / "conf")
    agreement = load_agreement(agreement_path)
    policy = Policy.of(agreement)
    lake = root / "lake"
    common = dict(agreement_id=agreement.agreement_id, purpose="migration-statistics", requested_by="tester")
    flows = _flows_tables(rng)
    sizes = {name: len(frame) for name, frame in flows.items()}
    publish(lake, ReleaseRequest(release_id=FLOWS_ID, period="2024-05", rho=0.3,
                                 query={"statistic": FLOWS_STATISTIC, "home_country": "PHL", "domain_sizes": sizes},
                                 privacy_unit="subscriber (pseudonym): at most one change per month",
                                 data_months=tuple(flow_data_months("2024-05")), **common),
            flows, policy)
    corridors = pd.DataFrame({"corridor": [f"{c}-PHL" for c in COUNTRIES if c != "PHL"]})
    transfers = corridors.assign(count=pd.Series([rng.randint(5, 80) for _ in range(len(corridors))], dtype="int64"))
    volume = corridors.assign(count=pd.Series([rng.randint(5_000, 90_000) for _ in range(len(corridors))],
                                              dtype="int64"))
    publish(lake, ReleaseRequest(release_id=REMIT_ID, period="2025-01", epsilon=0.8,
                                 query={"statistic": "test remittances",
                                        "measures": {"transfers": "number of transfers",
                                                     "volume_usd": "sum of amounts, whole USD"}},
                                 privacy_unit=f"sender (pseudonym) in one calendar month: at most {MAX_TRANSFERS} "
                                              f"corridor transfers, amounts clamped to USD 1-{AMOUNT_CAP_USD}",
                                 max_contributions=MAX_TRANSFERS, table_shares={"transfers": 0.5, "volume_usd": 0.5},
                                 table_sensitivities={"transfers": MAX_TRANSFERS,
                                                      "volume_usd": MAX_TRANSFERS * AMOUNT_CAP_USD},
                                 data_months=("2025-01",), **common),
            {"transfers": transfers, "volume_usd": volume}, agreement, derive=_ratio)
    # what the office zone holds and a report must never show
    pseudonyms = [hashlib.sha256(f"+6391700000{i:02d}".encode()).hexdigest() for i in range(20)]
    office = lake / "office" / "residence_changes"
    office.mkdir(parents=True)
    pq.write_table(pa.table({"pseudonym": pseudonyms, "h3_cell": [CELLS[i % len(CELLS)] for i in range(20)]}),
                   office / "part-0.parquet")
    return {"root": root, "lake": lake, "agreement": agreement_path, "agreement_id": agreement.agreement_id,
            "pseudonyms": pseudonyms, "flows_exact": flows, "population": agreement.budget.population}


# manifest fields that releases written before data-month accounting do not have
NEW_PRIVACY_FIELDS = ("protected_unit", "population", "data_months", "this_release", "cumulative_through_seq",
                      "cumulative_per_data_month", "cumulative_lifetime", "meaning")


def legacy_lake(source_lake: Path, release_id: str, dest: Path) -> Path:
    """A lake holding ``release_id`` as written before data-month accounting: its manifest without the
    privacy claims, ledger head and per-table sensitivities, and a format-1 ledger (no population, data
    months, caps or agreement hash; no policy entry) whose charge and publication entries match it."""
    lake = dest / "lake"
    (lake / "releases").mkdir(parents=True)
    folder = lake / "releases" / release_id
    shutil.copytree(source_lake / "releases" / release_id, folder)
    old = {e.status: e for e in Ledger(source_lake / "ledger").read()[0] if e.release_id == release_id}
    legacy = list(LEGACY_COLUMNS)

    def entry(status: str, seq: int, prev: str, digest: str) -> dict:
        record = {k: v for k, v in old[status].record().items() if k in legacy}
        record.update(seq=seq, prev_hash=prev, release_digest=digest)
        record["entry_hash"] = hash_record(record)
        return record

    charge = entry("charged", 1, GENESIS_HASH, "")
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in NEW_PRIVACY_FIELDS:
        manifest["privacy"].pop(key, None)
    manifest["ledger"] = {"seq": 1, "entry_hash": charge["entry_hash"], "table": "ledger"}
    for info in manifest["tables"].values():
        info.pop("sensitivity", None)
    raw = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(raw)
    published = entry("published", 2, charge["entry_hash"], hashlib.sha256(raw).hexdigest())
    schema = pa.schema([LEDGER_SCHEMA.field(c) for c in legacy])
    from deltalake import write_deltalake

    write_deltalake(str(lake / "ledger"), pa.Table.from_pylist([charge, published], schema=schema))
    return lake


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
