"""A tiny operator input with one row per quarantine reason, and an agreement with a key.

A plain module (not conftest) so that other test folders can import it by a unique name.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from agreement_helpers import make_agreement  # noqa: F401  (re-exported for the anonymize tests)

HOME_CELLS = [  # Manila, Cebu, Davao: inside PHL
    ("C1", "14.5995", "120.9842", "", ""),
    ("C2", "10.3157", "123.8854", "2020-01-01", ""),
    ("C3", "7.1907", "125.4553", "", ""),
    ("COAST", "14.45", "120.80", "", ""),  # Manila Bay: in the sea, within the coast tolerance
    ("SEA", "15.0", "140.0", "", ""),  # Pacific: outside every boundary
    ("BADXY", "north", "120", "", ""),
]

# (msisdn, event_time, event_type, cell_id, visited_plmn, duration_s, counterpart, imei, expected)
CDR_ROWS = [
    ("+639171234567", "2025-01-05T21:13:00", "call_out", "C1", "", "60", "+639181234567", "356938035643809",
     "accepted"),
    ("09171234567", "2025-01-05 22:40:00", "sms_out", "C2", "", "", "", "356938035643809", "accepted"),
    ("0917 123 4567", "2025-01-06T01:10:00+08:00", "data", "C3", "", "", "", "", "accepted"),
    ("+639171234567", "2025-03-01T23:00:00Z", "call_in", "", "42001", "30", "", "", "accepted"),  # roaming SAU
    ("+639181234567", "2025-01-05T20:00:00", "call_out", "COAST", "", "5", "", "", "accepted"),
    ("+97455123456", "2025-01-05T20:00:00", "sms_in", "C1", "", "", "", "", "accepted"),  # inbound roamer (QAT)
    ("+639171234567", "2025-01-05T21:13:00", "call_out", "C1", "", "60", "+639181234567", "356938035643809",
     "duplicate"),
    ("", "2025-01-05T21:13:00", "call_out", "C1", "", "", "", "", "missing_msisdn"),
    ("12345", "2025-01-05T21:13:00", "call_out", "C1", "", "", "", "", "invalid_msisdn"),
    ("+639171234567", "2025-13-45T99:00:00", "call_out", "C1", "", "", "", "", "invalid_event_time"),
    ("+639171234567", "2025-01-05T21:14:00", "fax", "C1", "", "", "", "", "unknown_event_type"),
    ("+639171234567", "2025-01-05T21:15:00", "call_out", "C1", "", "-3", "", "", "invalid_duration"),
    ("+639171234567", "2025-01-05T21:16:00", "call_out", "C1", "42001", "", "", "", "conflicting_location"),
    ("+639171234567", "2025-01-05T21:17:00", "call_out", "", "", "", "", "", "missing_location"),
    ("+639171234567", "2025-01-05T21:18:00", "call_out", "", "99999", "", "", "", "invalid_visited_plmn"),
    ("+639171234567", "2025-01-05T21:19:00", "call_out", "NOPE", "", "", "", "", "unknown_cell"),
    ("+639171234567", "2025-01-05T21:20:00", "call_out", "SEA", "", "", "", "", "cell_outside_boundaries"),
    ("+639171234567", "2019-06-01T21:20:00", "call_out", "C2", "", "", "", "", "unknown_cell"),  # before valid_from
    ("+639171234567", "2025-01-05T21:21:00", "call_out", "BADXY", "", "", "", "", "unusable_cell"),
]
CDR_HEADER = ["msisdn", "event_time", "event_type", "cell_id", "visited_plmn", "duration_s",
              "counterpart_msisdn", "imei"]

SUBSCRIBER_ROWS = [
    ("+639171234567", "F", "1990", "accepted"),
    ("+639181234567", "", "", "accepted"),
    ("+639191234567", "Q", "1980", "invalid_sex"),
    ("+639201234567", "M", "1850", "invalid_birth_year"),
    ("+639221234567", "F", "2001", "accepted"),
    ("+639221234567", "F", "2001", "duplicate"),  # an exact copy is a duplicate, not a conflict
    ("+639211234567", "M", "1985", "conflicting_subscriber_record"),
    ("09211234567", "F", "1985", "conflicting_subscriber_record"),
]

PAYMENT_HEADER = ["txn_id", "txn_time", "sender_msisdn", "receiver_msisdn", "sender_country", "receiver_country",
                  "amount", "currency", "fee", "fx_margin", "channel", "latitude", "longitude"]
PAYMENT_ROWS = [
    ("T1", "2025-03-02T10:00:00", "+639171234567", "+639181234567", "SAU", "PHL", "800", "SAR", "20", "8",
     "mobile_money", "", "", "accepted"),
    ("T2", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "500", "PHP", "10", "", "agent",
     "14.5995", "120.9842", "accepted"),
    ("T2", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "500", "PHP", "10", "", "agent",
     "14.5995", "120.9842", "duplicate"),
    ("T8", "2025-01-07T10:00:00", "+639181234567", "+639171234567", "PHL", "PHL", "50", "PHP", "1", "", "mobile_money",
     "", "", "accepted"),
    ("T9", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "NaN", "PHP", "1", "", "agent", "", "",
     "invalid_amount"),
    ("T3", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "-5", "PHP", "1", "", "agent", "", "",
     "invalid_amount"),
    ("T4", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "5", "XXQ", "1", "", "agent", "", "",
     "unknown_currency"),
    ("T5", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "ZZZ", "5", "PHP", "1", "", "agent", "", "",
     "unknown_country"),
    ("T6", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "5", "PHP", "9", "", "agent", "", "",
     "fee_exceeds_amount"),
    ("T7", "2025-01-06T10:00:00", "+639181234567", "", "PHL", "PHL", "5", "PHP", "1", "", "pigeon", "", "",
     "unknown_channel"),
]


def write_csv(path: Path, header, rows, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = (lambda p: gzip.open(p, "wt", newline="")) if gz else (lambda p: open(p, "w", newline=""))
    with opener(path) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


ODD_NAME = "part 2 #ü%.csv"


def make_inputs(root: Path) -> Path:
    write_csv(root / "cells" / "cells.csv", ["cell_id", "latitude", "longitude", "valid_from", "valid_to"], HOME_CELLS)
    half = len(CDR_ROWS) // 2
    write_csv(root / "cdr" / "part-1.csv.gz", CDR_HEADER, [r[:-1] for r in CDR_ROWS[:half]], gz=True)
    # a sub-folder, a space and characters a URI escapes: files are named by their path under the
    # input folder, whatever form Spark's file URI takes
    write_csv(root / "cdr" / "2025" / ODD_NAME, CDR_HEADER, [r[:-1] for r in CDR_ROWS[half:]])
    # a row with too many fields: malformed
    with open(root / "cdr" / "2025" / ODD_NAME, "a") as fh:
        fh.write('+639171234567,2025-01-05T21:13:00,call_out,C1,,,,,EXTRA,"more"\n')
    write_csv(root / "subscribers" / "subscribers.csv", ["msisdn", "sex", "birth_year"],
              [r[:-1] for r in SUBSCRIBER_ROWS])
    write_csv(root / "payments" / "payments.csv", PAYMENT_HEADER, [r[:-1] for r in PAYMENT_ROWS])
    return root
