"""A tiny office zone of payments for the remittance tests (no tests here; a unique module name)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pyarrow as pa

AGREEMENT_ID = "test-phl"
RUN = "run-remit-test"
PERIOD = "2024-03"


def pseudonym(name: str) -> str:
    return hashlib.sha256(f"sender-{name}".encode()).hexdigest()


def utc(local: str) -> dt.datetime:
    """A Manila local time (UTC+8) as the UTC hour the office zone stores."""
    t = dt.datetime.fromisoformat(local) - dt.timedelta(hours=8)
    return t.replace(minute=0, second=0, tzinfo=dt.timezone.utc)


def payment(name, local, sender, receiver, amount, currency, fee, channel, fx_margin=0.01):
    t = utc(local)
    month = local[:7]
    return {"sender_pseudonym": pseudonym(name), "receiver_pseudonym": None, "key_id": "k-test", "txn_hour": t,
            "sender_country": sender, "receiver_country": receiver, "amount": float(amount), "currency": currency,
            "fee": float(fee), "fx_margin": fx_margin, "channel": channel, "h3_cell": None,
            "location_country": None, "agreement_id": AGREEMENT_ID, "run_id": RUN, "month": month}


# "heavy" sends 10 huge transfers in the month: only 4 count, each clamped to USD 2,000.
HEAVY = [payment("heavy", f"2024-03-{d:02d}T10:00", "SAU", "PHL", 100_000, "SAR", 100, "mobile_money")
         for d in range(1, 11)]
PAYMENTS = HEAVY + [
    # USD 200 at the peg, fee 2% + margin 1% = 3%: near the SDG reference amount
    payment("a", "2024-03-05T09:00", "ARE", "PHL", 734.50, "AED", 14.69, "agent"),
    payment("b", "2024-03-31T23:00", "KWT", "PHL", 30.0, "KWD", 0.9, "bank", fx_margin=None),  # last local day
    payment("b", "2024-03-12T12:00", "HKG", "PHL", 780.0, "HKD", 7.8, "card"),
    payment("dom", "2024-03-07T12:00", "PHL", "PHL", 500.0, "PHP", 5.0, "agent"),  # not a corridor
    payment("out", "2024-03-07T12:00", "PHL", "SAU", 5600.0, "PHP", 56.0, "bank"),  # not a listed corridor
    payment("c", "2024-02-28T12:00", "SAU", "PHL", 750.0, "SAR", 7.5, "bank"),  # previous month
    payment("c", "2024-04-02T12:00", "SAU", "PHL", 750.0, "SAR", 7.5, "bank"),  # next month: 2024-03 is complete
    payment("f", "2024-03-15T12:00", "SGP", "PHL", 268.0, "SGD", 2.68, "mobile_money"),
]
SUBSCRIBERS = [
    {"pseudonym": pseudonym("heavy"), "key_id": "k-test", "sex": "M", "birth_year": 1990,
     "agreement_id": AGREEMENT_ID, "run_id": RUN},  # 34 in 2024
    {"pseudonym": pseudonym("a"), "key_id": "k-test", "sex": "F", "birth_year": 2001,
     "agreement_id": AGREEMENT_ID, "run_id": RUN},  # 23 in 2024
]

PAYMENTS_ARROW = pa.schema([
    ("sender_pseudonym", pa.string()), ("receiver_pseudonym", pa.string()), ("key_id", pa.string()),
    ("txn_hour", pa.timestamp("us", tz="UTC")), ("sender_country", pa.string()), ("receiver_country", pa.string()),
    ("amount", pa.float64()), ("currency", pa.string()), ("fee", pa.float64()), ("fx_margin", pa.float64()),
    ("channel", pa.string()), ("h3_cell", pa.string()), ("location_country", pa.string()),
    ("agreement_id", pa.string()), ("run_id", pa.string()), ("month", pa.string())])
SUBSCRIBERS_ARROW = pa.schema([("pseudonym", pa.string()), ("key_id", pa.string()), ("sex", pa.string()),
                               ("birth_year", pa.int32()), ("agreement_id", pa.string()), ("run_id", pa.string())])


def write_office(root: Path, payments=PAYMENTS, subscribers=SUBSCRIBERS) -> Path:
    """Office payments and subscribers (delta-rs: quicker than a first Spark write) and the run's manifest."""
    from deltalake import write_deltalake

    write_deltalake(str(root / "office/payments"), pa.Table.from_pylist(payments, schema=PAYMENTS_ARROW))
    write_deltalake(str(root / "office/subscribers"), pa.Table.from_pylist(subscribers, schema=SUBSCRIBERS_ARROW))
    manifest = root / "office" / "manifests" / f"{RUN}.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"run_id": RUN, "agreement_id": AGREEMENT_ID, "files": []}))
    return root
