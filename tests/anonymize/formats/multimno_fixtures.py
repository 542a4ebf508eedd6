"""Small multimno bronze deliveries, written with pyarrow in multimno's own schemas and layout.

``mno_events/`` and ``mno_network/`` partitioned ``year=/month=/day=``, with the Arrow types of
multimno's ``BronzeEventDataObject`` and ``BronzeNetworkDataObject`` (user_id binary, timestamp text,
mcc and plmn int32, mnc text, coordinates float32). Each dirty event row carries the reason it must
get; a plain module (not conftest) so that its name is unique on sys.path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DAY1, DAY2 = dt.date(2025, 1, 5), dt.date(2025, 1, 6)
HOME_MCC, HOME_PLMN = 515, 51502  # Philippines (the test agreement's home country), Smart

EVENT_SCHEMA = pa.schema([("user_id", pa.binary()), ("timestamp", pa.string()), ("mcc", pa.int32()),
                          ("mnc", pa.string()), ("plmn", pa.int32()), ("cell_id", pa.string()),
                          ("latitude", pa.float32()), ("longitude", pa.float32()), ("loc_error", pa.float32())])
NETWORK_SCHEMA = pa.schema([("cell_id", pa.string()), ("latitude", pa.float32()), ("longitude", pa.float32()),
                            ("altitude", pa.float32()), ("technology", pa.string()),
                            ("valid_date_start", pa.string()), ("valid_date_end", pa.string()),
                            ("cell_type", pa.string())])

# (cell_id, latitude, longitude, valid_date_start, valid_date_end, what the cells stage makes of its first row)
NETWORK = [
    ("C1", 14.5995, 120.9842, "2020-01-01T00:00:00", None, "accepted"),  # Manila
    ("C2", 10.3157, 123.8854, None, None, "accepted"),  # Cebu
    ("C3", 7.1907, 125.4553, None, None, "accepted"),  # Davao
    ("LATE", 14.6, 121.0, "2025-01-05T12:00:00", None, "accepted"),  # in service from noon on the first day
    ("SEA", 15.0, 140.0, None, None, "cell_outside_boundaries"),  # the Pacific
    ("NOLAT", None, 121.0, None, None, "latitude_null_value"),
]


def user(label: str) -> bytes:
    """An operator's pseudonymous id as multimno carries it: 32 bytes (SHA-256 of something only it knows)."""
    return hashlib.sha256(label.encode()).digest()


def hex_id(label: str) -> str:
    return user(label).hex()


def event(label: str | None, timestamp: str | None, *, day: dt.date = DAY1, mcc: int | None = HOME_MCC,
          mnc: str | None = "02", plmn: int | None = HOME_PLMN, cell: str | None = "C1",
          lat: float | None = None, lon: float | None = None, expect: str = "accepted",
          user_id: bytes | None = None) -> dict:
    return {"user_id": user(label) if label is not None else user_id, "timestamp": timestamp, "mcc": mcc,
            "mnc": mnc, "plmn": plmn, "cell_id": cell, "latitude": lat, "longitude": lon, "loc_error": None,
            "_day": day, "_expect": expect, "_label": label}


# One row per kind of dirty row multimno's cleaning knows (and the native checks after it), and clean ones.
# Each dirty row has a user of its own, so that its quarantine record names it.
DIRTY_EVENTS = [
    event("ana", "2025-01-05T21:13:00"),
    event("ana", "2025-01-05 22:40:00", cell="C2"),  # the format of multimno's demo configuration
    event("ben", "2025-01-05T10:00:00.250", cell="C3"),  # fractions of a second
    event("ben", "2025-01-05T23:30:00+08:00"),  # an explicit offset
    event("ana", "2025-01-05T23:50:00", plmn=42001, cell=None),  # outbound: served in Saudi Arabia
    event("qat", "2025-01-05T12:30:00", mcc=427, mnc="01"),  # inbound: a Qatari SIM on a home cell
    event("ben", "2025-01-05T14:00:00", cell=None, lat=14.676, lon=121.0437),  # located by coordinates (Quezon City)
    event("ana", "2025-01-05T21:13:00", expect="duplicate"),  # an exact copy of the first row
    event(None, "2025-01-05T21:14:00", expect="user_id_null_value"),
    event(None, "2025-01-05T21:15:00", user_id=b"", expect="user_id_null_value"),  # an empty id is no id
    event("t-null", None, expect="timestamp_null_value"),
    event("mcc-null", "2025-01-05T21:16:00", mcc=None, expect="mcc_null_value"),
    event("mnc-null", "2025-01-05T21:17:00", mnc=None, expect="mnc_null_value"),
    event("t-dmy", "05/01/2025 21:18:00", expect="timestamp_cannot_parse"),
    event("t-bad", "2025-13-45T99:00:00", expect="timestamp_cannot_parse"),
    event("t-epoch", "1736083080", expect="timestamp_cannot_parse"),
    event("t-minutes", "2025-01-05T21:19", expect="timestamp_cannot_parse"),
    event("t-day", "2025-01-05", expect="timestamp_cannot_parse"),
    event("t-other-day", "2025-01-07T10:00:00", expect="timestamp_out_of_range"),  # not the partition's day
    event("t-utc", "2025-01-05T20:00:00Z", expect="timestamp_out_of_range"),  # 04:00 on the 6th in Manila
    event("mcc-99", "2025-01-05T21:20:00", mcc=99, expect="mcc_out_of_range"),
    event("mnc-1", "2025-01-05T21:21:00", mnc="1", expect="mnc_out_of_range"),
    event("plmn-4", "2025-01-05T21:22:00", plmn=4201, cell=None, expect="plmn_out_of_range"),
    event("mcc-999", "2025-01-05T21:23:00", mcc=999, expect="unknown_mcc"),  # in range, but no country's
    event("plmn-999", "2025-01-05T21:24:00", plmn=99901, cell=None, expect="unknown_mcc"),  # abroad, nowhere known
    event("nowhere", "2025-01-05T21:25:00", cell=None, expect="no_location"),
    event("cell-nope", "2025-01-05T21:26:00", cell="NOPE", expect="cell_id_non_existent"),
    event("cell-nolat", "2025-01-05T21:27:00", cell="NOLAT", expect="cell_id_non_existent"),  # its row is unsound
    event("cell-late", "2025-01-05T10:00:00", cell="LATE", expect="cell_id_not_valid"),  # before its noon start
    event("cell-late-ok", "2025-01-05T13:00:00", cell="LATE"),
    event("cell-sea", "2025-01-05T21:28:00", cell="SEA", expect="cell_outside_boundaries"),  # native check
    event("pt-sea", "2025-01-05T21:29:00", cell=None, lat=15.0, lon=140.0, expect="coordinates_outside_boundaries"),
    event("pt-bad", "2025-01-05T21:30:00", cell=None, lat=95.0, lon=121.0, expect="invalid_coordinates"),
    event("t-1999", "1999-12-31T23:00:00", day=dt.date(1999, 12, 31), cell=None, lat=14.5995, lon=120.9842,
          expect="implausible_event_time"),  # a native check, after multimno's
    event("ana", "2025-01-06T08:00:00", day=DAY2, cell="C3"),
    event("ben", "2025-01-06T09:00:00", day=DAY2, cell="LATE"),
    event("day2-nope", "2025-01-06T09:30:00", day=DAY2, cell="NOPE", expect="cell_id_non_existent"),
]

# People of the clean delivery: the operator's id (multimno) and the same person's number (native).
PEOPLE = {"ana": "+639171234567", "ben": "+639181234567", "cy": "+639191234567", "qat": "+97455123456"}
CLEAN_EVENTS = [
    event("ana", "2025-01-05T21:13:00"),
    event("ana", "2025-01-05 22:40:00", cell="C2"),
    event("ben", "2025-01-05T10:00:00.250", cell="C3"),
    event("ben", "2025-01-05T23:30:00+08:00"),
    event("cy", "2025-01-05T18:05:00", cell="LATE"),
    event("ana", "2025-01-05T23:50:00", plmn=42001, cell=None),  # roaming in Saudi Arabia
    event("ana", "2025-01-05T23:55:00", plmn=310410, cell=None),  # a 3-digit MNC: the United States
    event("qat", "2025-01-05T12:30:00", mcc=427, mnc="01"),
    event("ana", "2025-01-06T08:00:00", day=DAY2, cell="C3"),
    event("cy", "2025-01-06T00:00:00", day=DAY2, cell="C1"),
    event("ben", "2025-01-06T09:00:00", day=DAY2, cell="C2"),
]


def _write(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema), path)


def day_folder(root: Path, folder: str, day: dt.date) -> Path:
    return root / folder / f"year={day.year}" / f"month={day.month}" / f"day={day.day}"


def write_network(root: Path, days=(DAY1, DAY2), rows=NETWORK) -> None:
    """The same snapshot on every day, as multimno's daily network topology is."""
    records = [{"cell_id": c, "latitude": lat, "longitude": lon, "altitude": 10.0, "technology": "LTE",
                "valid_date_start": start, "valid_date_end": end, "cell_type": "macrocell"}
               for c, lat, lon, start, end, _ in rows]
    for day in days:
        _write(day_folder(root, "mno_network", day) / "part-00000.parquet", records, NETWORK_SCHEMA)


def write_events(root: Path, events: list[dict], schema: pa.Schema = EVENT_SCHEMA) -> dict[str, list[dict]]:
    """One Parquet file per day; returns each file's name under ``root`` with its rows."""
    by_file: dict[str, list[dict]] = {}
    for e in events:
        path = day_folder(root, "mno_events", e["_day"]) / "part-00000.parquet"
        by_file.setdefault(path.relative_to(root).as_posix(), []).append(e)
    for name, rows in by_file.items():
        _write(root / name, rows, schema)
    return by_file


def write_delivery(root: Path, events: list[dict]) -> dict[str, list[dict]]:
    days = sorted({e["_day"] for e in events})
    write_network(root, days=days)
    return write_events(root, events)


def native_rows(events: list[dict]) -> list[list[str]]:
    """The clean events in the native contract: the person's number, the same time text, the cell or the
    visited network; what the native reader must make of them is what the multimno reader makes."""
    rows = []
    for e in events:
        label = next(k for k in PEOPLE if user(k) == e["user_id"])
        abroad = e["plmn"] is not None and e["plmn"] // (1000 if e["plmn"] > 99999 else 100) != HOME_MCC
        rows.append([PEOPLE[label], e["timestamp"], "signal", "" if abroad else (e["cell_id"] or ""),
                     str(e["plmn"]) if abroad else "", "", "", ""])
    return rows


def native_cells(days=(DAY1, DAY2)) -> list[list[str]]:
    """The network as a native cell list: one row per cell, in service over the delivered days."""
    return [[c, float_text(lat), float_text(lon), days[0].isoformat(), days[-1].isoformat()]
            for c, lat, lon, _, _, _ in NETWORK if lat is not None]


def float_text(x: float) -> str:
    """A float32 coordinate as its shortest text (how Spark shows a FloatType value)."""
    import numpy as np

    return str(np.float32(x))
