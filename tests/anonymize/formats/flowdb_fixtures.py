"""FlowDB deliveries for the tests: FlowDB's own table columns, FlowETL's file names, rows of every kind.

A plain module (not conftest) so that other test folders can import it by a unique name. The cell
positions are those of ``anon_fixtures.HOME_CELLS``, given in each of the forms a FlowDB export has.
"""

from __future__ import annotations

import struct
from pathlib import Path

from anon_fixtures import write_csv

IMEI, IMSI, TAC = "356938035643809", "515021234567890", "35693803"

CALLS_HEADER = ["id", "outgoing", "datetime", "duration", "network", "msisdn", "msisdn_counterpart", "location_id",
                "imsi", "imei", "tac", "operator_code", "country_code"]
SMS_HEADER = ["id", "outgoing", "datetime", "network", "msisdn", "msisdn_counterpart", "location_id", "imsi", "imei",
              "tac", "operator_code", "country_code"]
MDS_HEADER = ["id", "datetime", "duration", "volume_total", "volume_upload", "volume_download", "msisdn",
              "location_id", "imsi", "imei", "tac", "operator_code", "country_code"]
TOPUPS_HEADER = ["id", "datetime", "type", "recharge_amount", "airtime_fee", "tax_and_fee", "pre_event_balance",
                 "post_event_balance", "msisdn", "location_id", "imsi", "imei", "tac", "operator_code", "country_code"]
CELLS_HEADER = ["id", "version", "site_id", "date_of_first_service", "date_of_last_service", "geom_point",
                "longitude", "latitude"]


def ewkb_hex(lon: float, lat: float, srid: int | None = 4326, little: bool = True) -> str:
    """A 2-D point as PostGIS writes it in a COPY of a geometry column: hex (E)WKB."""
    order = "<" if little else ">"
    kind = 0x20000001 if srid is not None else 1
    head = struct.pack(f"{order}BI", 1 if little else 0, kind)
    body = (struct.pack(f"{order}I", srid) if srid is not None else b"") + struct.pack(f"{order}dd", lon, lat)
    return (head + body).hex().upper()


# (id, version, first, last, geom_point, longitude, latitude, expected)
CELL_ROWS = [
    ("C1", "0", "", "", "POINT(120.9842 14.5995)", "", "", "accepted"),  # WKT
    ("C2", "1", "2020-01-01", "", "SRID=4326;POINT(123.8854 10.3157)", "", "", "accepted"),  # EWKT
    ("C3", "0", "", "", ewkb_hex(125.4553, 7.1907), "", "", "accepted"),  # hex EWKB, little-endian
    ("COAST", "0", "", "", "", "120.80", "14.45", "accepted"),  # longitude and latitude columns
    ("C5", "0", "", "", ewkb_hex(121.0, 14.6, srid=None, little=False), "", "", "accepted"),  # WKB, big-endian
    ("SEA", "0", "", "", "POINT(140.0 15.0)", "", "", "cell_outside_boundaries"),
    ("BADXY", "0", "", "", "POINT(north 120)", "", "", "invalid_geom_point"),
    ("MERC", "0", "", "", "SRID=3857;POINT(13467000 1628000)", "", "", "unsupported_srid"),
    ("", "0", "", "", "POINT(120.9842 14.5995)", "", "", "missing_id"),
]

GOOD = "+639171234567"
# calls: (outgoing, datetime, duration, msisdn, counterpart, location_id, expected)
CALL_ROWS = [
    ("t", "2025-01-05 21:13:00", "60", GOOD, "+639181234567", "C1", "accepted"),
    ("FALSE", "2025-01-05 22:40:00+08", "12.6", "09171234567", "+639181234567", "C2", "accepted"),
    ("t", "2025-01-05 21:13:00", "60", GOOD, "+639181234567", "C1", "duplicate"),
    ("t", "2025-01-05 21:14:00", "60", "", "", "C1", "missing_msisdn"),
    ("t", "2025-01-05 21:15:00", "60", "12345", "", "C1", "invalid_msisdn"),
    ("t", "yesterday", "60", GOOD, "", "C1", "invalid_datetime"),
    ("", "2025-01-05 21:16:00", "60", GOOD, "", "C1", "invalid_outgoing"),
    ("maybe", "2025-01-05 21:17:00", "60", GOOD, "", "C1", "invalid_outgoing"),
    ("t", "2025-01-05 21:18:00", "-3", GOOD, "", "C1", "invalid_duration"),
    ("t", "2025-01-05 21:19:00", "long", GOOD, "", "C1", "invalid_duration"),
    ("t", "2025-01-05 21:20:00", "90000", GOOD, "", "C1", "implausible_duration"),
    ("t", "2025-01-05 21:21:00", "60", GOOD, "", "", "missing_location_id"),
    ("t", "2025-01-05 21:22:00", "60", GOOD, "", "NOPE", "unknown_location_id"),
    ("t", "2019-06-01 21:22:00", "60", GOOD, "", "C2", "unknown_cell"),  # known, but before its first service
    ("t", "2025-01-05 21:23:00", "60", GOOD, "", "SEA", "cell_outside_boundaries"),
    ("t", "1970-01-01 00:00:00+00", "60", GOOD, "", "C1", "implausible_event_time"),
]
# sms: (outgoing, datetime, msisdn, counterpart, location_id, expected)
SMS_ROWS = [
    ("t", "2025-01-05 08:00:00", GOOD, "+639181234567", "C3", "accepted"),
    ("f", "2025-01-05T09:00:00+08:00", "+639181234567", GOOD, "COAST", "accepted"),
    ("x", "2025-01-05 10:00:00", GOOD, "", "C1", "invalid_outgoing"),
    ("t", "2025-01-05 11:00:00", GOOD, "", "BADXY", "unusable_cell"),
]
# mds: (datetime, duration, msisdn, location_id, expected)
MDS_ROWS = [
    ("2025-01-06 01:10:00", "", "0917 123 4567", "C5", "accepted"),
    ("2025-01-06 02:10:00", "3600.0", GOOD, "C1", "accepted"),
    ("2025-13-45 99:00:00", "", GOOD, "C1", "invalid_datetime"),
    ("2025-01-06 03:10:00", "-1", GOOD, "C1", "invalid_duration"),
]
# topups: (datetime, msisdn, location_id, expected)
TOPUP_ROWS = [
    ("2025-01-06 12:00:00", "+639181234567", "C2", "accepted"),
    ("2025-01-06 12:30:00", "", "C2", "missing_msisdn"),
]
MALFORMED_LINE = f'sms-x,t,2025-01-05 21:30:00,,{GOOD},,C1,{IMSI},{IMEI},{TAC},,,EXTRA,"more"\n'  # 14 fields of 12

FILES = {"calls": "calls_20250105.csv.gz", "sms": "records/sms/SMS_20250105.csv", "mds": "mds_20250106.csv",
         "topups": "topups/topups_20250106.csv.gz", "cells": "infrastructure/cells.csv"}


def _call(i, row):
    outgoing, when, duration, msisdn, other, cell, _ = row
    return [f"call-{i}", outgoing, when, duration, "", msisdn, other, cell, IMSI, IMEI, TAC, "", ""]


def expected() -> dict[str, list[str]]:
    """Each file's expected fate per row (the malformed line last in the calls file)."""
    return {FILES["calls"]: [r[-1] for r in CALL_ROWS],
            FILES["sms"]: [r[-1] for r in SMS_ROWS] + ["malformed_row"], FILES["mds"]: [r[-1] for r in MDS_ROWS],
            FILES["topups"]: [r[-1] for r in TOPUP_ROWS], FILES["cells"]: [r[-1] for r in CELL_ROWS]}


def make_flowdb_inputs(root: Path) -> Path:
    """A dirty FlowDB delivery: one row for each thing that can go wrong, and good rows of every table."""
    # the duplicate must be an exact copy: the same FlowDB id as the row it copies
    calls = [_call(i if r[-1] != "duplicate" else 0, r) for i, r in enumerate(CALL_ROWS)]
    write_csv(root / FILES["calls"], CALLS_HEADER, calls, gz=True)
    write_csv(root / FILES["sms"], SMS_HEADER,
              [[f"sms-{i}", o, t, "", m, c, cell, IMSI, IMEI, TAC, "", ""] for i, (o, t, m, c, cell, _) in
               enumerate(SMS_ROWS)])
    with open(root / FILES["sms"], "a") as fh:  # a line with too many fields
        fh.write(MALFORMED_LINE)
    write_csv(root / FILES["mds"], MDS_HEADER,
              [[f"mds-{i}", t, d, "1000", "10", "990", m, cell, IMSI, IMEI, TAC, "", ""] for i, (t, d, m, cell, _) in
               enumerate(MDS_ROWS)])
    write_csv(root / FILES["topups"], TOPUPS_HEADER,
              [[f"top-{i}", t, "card", "100", "1", "0", "5", "104", m, cell, IMSI, IMEI, TAC, "", ""]
               for i, (t, m, cell, _) in enumerate(TOPUP_ROWS)], gz=True)
    write_csv(root / FILES["cells"], CELLS_HEADER, [[*r[:2], "site", *r[2:7]] for r in CELL_ROWS])
    return root


# ---- a clean delivery and the same events in the native contract --------------------------------

# (event_type, event_time, duration_s, msisdn, counterpart, cell)
CLEAN_EVENTS = [
    ("call_out", "2025-01-05 21:13:00", "60", "+639171234567", "+639181234567", "C1"),
    ("call_in", "2025-01-05 21:13:00", "60", "+639181234567", "+639171234567", "C2"),
    ("call_out", "2025-01-06 07:00:00+08", "5", "09171234567", "", "C3"),
    ("sms_out", "2025-01-05 23:59:00", "", "+639171234567", "+639191234567", "COAST"),
    ("sms_in", "2025-01-06 00:01:00", "", "+639191234567", "+639171234567", "C1"),
    ("data", "2025-01-06 03:00:00Z", "", "+639171234567", "", "C5"),
    ("data", "2025-02-01 10:00:00", "", "+97455123456", "", "C2"),  # an inbound roamer, next month
    ("call_out", "2025-02-03 10:00:00", "0", "+639191234567", "+639171234567", "C1"),
]
CLEAN_CELLS = [r for r in CELL_ROWS if r[-1] == "accepted"]


def make_clean_pair(native_root: Path, flowdb_root: Path) -> tuple[Path, Path]:
    """The same events as a native delivery and as a FlowDB one (cells given by WKT/EWKB in FlowDB, by
    latitude and longitude in the native cell list)."""
    from anon_fixtures import CDR_HEADER

    def lonlat(row):
        cid, _, first, last, geom, lon, lat, _ = row
        if geom.startswith(("POINT", "SRID")):
            lon, lat = geom[geom.index("(") + 1:-1].split()
        elif geom:
            raw = bytes.fromhex(geom)
            order = "<" if raw[0] == 1 else ">"
            lon, lat = (repr(v) for v in struct.unpack(f"{order}dd", raw[-16:]))
        return [cid, lat, lon, first, last]

    write_csv(native_root / "cells" / "cells.csv", ["cell_id", "latitude", "longitude", "valid_from", "valid_to"],
              [lonlat(r) for r in CLEAN_CELLS])
    write_csv(native_root / "cdr" / "part-1.csv", CDR_HEADER,
              [[m, t.replace(" ", "T"), e, cell, "", d, c, IMEI] for e, t, d, m, c, cell in CLEAN_EVENTS])
    write_csv(flowdb_root / "cells.csv", CELLS_HEADER, [[*r[:2], "site", *r[2:7]] for r in CLEAN_CELLS])
    by_file: dict[str, list[list[str]]] = {}
    for i, (etype, when, duration, msisdn, other, cell) in enumerate(CLEAN_EVENTS):
        day = when[:10].replace("-", "")
        if etype.startswith("call"):
            name, header = f"calls_{day}.csv", CALLS_HEADER
            row = [f"c{i}", "t" if etype == "call_out" else "f", when, duration, "", msisdn, other, cell, IMSI, IMEI,
                   TAC, "", ""]
        elif etype.startswith("sms"):
            name, header = f"sms_{day}.csv", SMS_HEADER
            row = [f"s{i}", "true" if etype == "sms_out" else "false", when, "", msisdn, other, cell, IMSI, IMEI,
                   TAC, "", ""]
        else:
            name, header = f"mds_{day}.csv.gz", MDS_HEADER
            row = [f"m{i}", when, duration, "", "", "", msisdn, cell, IMSI, IMEI, TAC, "", ""]
        by_file.setdefault(name, [header]).append(row)
    for name, (header, *rows) in by_file.items():
        write_csv(flowdb_root / name, header, rows, gz=name.endswith(".gz"))
    return native_root, flowdb_root
