"""A small published lake for the report tests: no Spark, releases straight through ``publish``.

Release 1 has the shape of a flows release (country pairs by sex, emigrants and immigrants on
H3 res-5 cells around Manila, the two cell tables measured jointly, national emigration and
immigration totals as ``release.flows`` declares them) and reads the 29 data months of its
crossing month's window; release 2 has another manifest (remittance-like cells by sender country,
receiver country and channel: a transfers table bounded by 4 transfers and a volume table bounded
by USD 8,000, each adding up to its corridors and its total, with a derived mean-amount table and
its own interval columns) and reads one payment month inside the flows window. An office-zone file
holds pseudonyms that must never reach a report. ``legacy_lake`` rebuilds one release as a
release and ledger written before data-month accounting (no population, data months, caps or
claims); ``format1_lake`` rebuilds one as a release of manifest format 1 (clamped counts only).
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
from mobility.aggregate.remittances import ratio_interval
from mobility.config import load_agreement
from mobility.privacy_budget import ReleaseRequest, publish
from mobility.privacy_budget.blocks import flow_data_months
from mobility.privacy_budget.consistency import Part, Total
from mobility.privacy_budget.ledger import (
    GENESIS_HASH,
    LEDGER_SCHEMA,
    LEGACY_COLUMNS,
    Ledger,
    Policy,
    hash_record,
    sha256_file,
)

FLOWS_ID = "flows-test-2024-05"
REMIT_ID = "remit-test-2025-01"
COUNTRIES = ["PHL", "SAU", "ARE", "JPN"]
FLOWS_STATISTIC = "long-term residence changes (12/16-month rule) by crossing month"
MAX_TRANSFERS, AMOUNT_CAP_USD = 4, 2000  # per sender and month: the volume table moves by at most USD 8,000
CELLS = sorted(h3.grid_disk(h3.latlng_to_cell(14.6, 121.0, 5), 2))  # 19 cells over Manila
SENDERS, CHANNELS = ["ARE", "JPN", "SAU"], ["bank", "mto"]
CORRIDOR = ["sender_country", "receiver_country"]
# what the flows tables add up to (release.flows with a sex breakdown): departures and origin cells
# to the emigration, arrivals and destination cells to the immigration
FLOW_TOTALS = (Total("emigration", (Part("international", {"from_country": "PHL"}, (("to_country",),)),
                                    Part("emigrants_by_origin"))),
               Total("immigration", (Part("international", {"to_country": "PHL"}, (("from_country",),)),
                                     Part("immigrants_by_destination"))))
REMIT_TOTALS = tuple(Total(m, (Part(m, {}, (tuple(CORRIDOR),)),)) for m in ("transfers", "volume_usd"))


def _flows_tables(rng: random.Random) -> dict[str, pd.DataFrame]:
    pairs = [(a, b) for a, b in itertools.permutations(COUNTRIES, 2) if (a == "PHL") != (b == "PHL")]
    international = pd.DataFrame([(a, b, s) for (a, b) in pairs for s in ("F", "M")],
                                 columns=["from_country", "to_country", "sex"])
    international["count"] = pd.Series([rng.randint(0, 60) for _ in range(len(international))], dtype="int64")
    tables = {"international": international}
    # exact counts add up as in a real month: every departure has one origin cell, every arrival one destination
    for name, key, side in (("emigrants_by_origin", "origin_h3_cell", "from_country"),
                            ("immigrants_by_destination", "destination_h3_cell", "to_country")):
        frame = pd.DataFrame({key: [*CELLS, "UNKNOWN"]})
        people = int(international.loc[international[side] == "PHL", "count"].sum())
        where = [rng.randrange(len(frame)) for _ in range(people)]
        frame["count"] = pd.Series([where.count(i) for i in range(len(frame))], dtype="int64")
        tables[name] = frame
    return tables


def _mean_amount(noisy, _consistent, _terms):
    """Mean amount per transfer from the two measurements, with its interval (like remittances' cost_pct)."""
    keys = [*CORRIDOR, "channel"]
    volume, transfers = (noisy[n].set_index(keys) for n in ("volume_usd", "transfers"))
    bounds = {n: int(noisy[n]["noisy_count"].sub(noisy[n]["low_95"]).max()) for n in ("volume_usd", "transfers")}
    rows = []
    for key in volume.index:
        estimate, low, high = ratio_interval(volume.loc[key, "noisy_count"], transfers.loc[key, "noisy_count"],
                                             bounds["volume_usd"], bounds["transfers"], AMOUNT_CAP_USD)
        rows.append((*key, None if estimate is None else round(estimate, 2), round(low, 2), round(high, 2)))
    frame = pd.DataFrame(rows, columns=[*keys, "mean_usd", "mean_usd_low", "mean_usd_high"])
    return {"mean_amount_usd": (frame, {"from": ["volume_usd", "transfers"], "formula": "volume / transfers",
                                        "interval": "mean_usd_low..mean_usd_high"})}


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
                                 data_months=tuple(flow_data_months("2024-05")),
                                 table_groups={"subnational": ("emigrants_by_origin", "immigrants_by_destination")},
                                 table_shares={"international": 0.5, "subnational": 0.5}, totals=FLOW_TOTALS,
                                 **common),
            flows, policy)
    cells = pd.DataFrame([(s, "PHL", c) for s in SENDERS for c in CHANNELS], columns=[*CORRIDOR, "channel"])
    transfers = cells.assign(count=pd.Series([rng.randint(5, 80) for _ in range(len(cells))], dtype="int64"))
    volume = cells.assign(count=pd.Series([rng.randint(5_000, 90_000) for _ in range(len(cells))], dtype="int64"))
    publish(lake, ReleaseRequest(release_id=REMIT_ID, period="2025-01", epsilon=0.8,
                                 query={"statistic": "test remittances",
                                        "measures": {"transfers": "number of transfers",
                                                     "volume_usd": "sum of amounts, whole USD"}},
                                 privacy_unit=f"sender (pseudonym) in one calendar month: at most {MAX_TRANSFERS} "
                                              f"corridor transfers, amounts clamped to USD 1-{AMOUNT_CAP_USD}",
                                 max_contributions=MAX_TRANSFERS, table_shares={"transfers": 0.5, "volume_usd": 0.5},
                                 table_sensitivities={"transfers": MAX_TRANSFERS,
                                                      "volume_usd": MAX_TRANSFERS * AMOUNT_CAP_USD},
                                 data_months=("2025-01",), totals=REMIT_TOTALS, **common),
            {"transfers": transfers, "volume_usd": volume}, agreement, derive=_mean_amount)
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
    _write_ledger(lake / "ledger", [charge, published], legacy)
    return lake


def _write_ledger(path: Path, records: list[dict], columns: list[str]) -> None:
    from deltalake import write_deltalake

    schema = pa.schema([LEDGER_SCHEMA.field(c) for c in columns])
    write_deltalake(str(path), pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in records],
                                                    schema=schema))


def _format1_tables(folder: Path, manifest: dict) -> dict:
    """Rewrite a format-2 release directory as format 1: each measured table once, its noisy counts
    set to 0 where negative, under the table's own name; derived tables kept; files re-hashed."""
    tables = {}
    for name, info in manifest["tables"].items():
        if info.get("role") == "noisy_measurement":
            table = info["measures"]
            frame = pd.read_parquet(folder / f"{name}.parquet")
            frame = frame[info["key_columns"]].assign(count=frame["noisy_count"].clip(lower=0).astype("int64"))
            kept = {k: v for k, v in info.items() if k in ("key_columns", "budget_share", "noise_scale", "sensitivity",
                                                          "epsilon", "rho", "error_bound_95", "opendp_accuracy_95")}
            tables[table] = (frame, {**kept, "count_column": "count"})
        elif info.get("role") == "derived":
            tables[name] = (pd.read_parquet(folder / f"{name}.parquet"), {"derived": info["derived"]})
    for path in folder.iterdir():
        if path.name != "manifest.json":
            path.unlink()
    out = {}
    for name, (frame, info) in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"{name}.parquet")
        out[name] = {**info, "rows": len(frame), "files": {
            f"{name}.{ext}": {"sha256": sha256_file(folder / f"{name}.{ext}"),
                              "bytes": (folder / f"{name}.{ext}").stat().st_size} for ext in ("csv", "parquet")}}
    return out


def format1_lake(source_lake: Path, release_id: str, dest: Path) -> Path:
    """A lake holding ``release_id`` as a release of manifest format 1 would have stored it: its noisy
    counts set to 0 where negative under the table names, no measurements, consistent tables or totals;
    the ledger copied up to its publication, whose manifest digest is updated (entry hashes recomputed)."""
    lake = dest / "lake"
    (lake / "releases").mkdir(parents=True)
    folder = lake / "releases" / release_id
    shutil.copytree(source_lake / "releases" / release_id, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tables"] = _format1_tables(folder, manifest)
    manifest["format"] = "mobility-release-manifest/1"
    manifest["post_processing"] = ("negative noisy counts are set to 0; nothing else is changed (no rounding, "
                                   "suppression or rescaling)")
    for key in ("consistency",):
        manifest.pop(key, None)
    for key in ("measurements", "opendp_rho", "opendp_rho_meaning"):
        manifest["privacy"].pop(key, None)
    raw = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(raw)
    entries = Ledger(source_lake / "ledger").read()[0]
    last = next(e.seq for e in entries if e.release_id == release_id and e.status == "published")
    records, prev = [], GENESIS_HASH
    for e in entries[:last]:
        record = e.record()
        if e.seq == last:
            record["release_digest"] = hashlib.sha256(raw).hexdigest()
        record["prev_hash"] = prev
        record["entry_hash"] = prev = hash_record(record)
        records.append(record)
    _write_ledger(lake / "ledger", records, list(LEDGER_SCHEMA.names))
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
