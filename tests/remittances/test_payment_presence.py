"""Payments as presence evidence: located agent/card payments fill days without events."""

from __future__ import annotations

import datetime as dt

import pytest

from mobility.residence.presence import PAYMENT_SOURCE, daily_presence, with_payment_days
from mobility.residence.rules import ResidenceParams
from remit_helpers import pseudonym, utc

pytestmark = pytest.mark.spark
TZ = "Asia/Manila"


def test_days_with_only_located_payments_become_presence_and_events_win(spark):
    p = pseudonym("traveller")
    events = spark.createDataFrame(
        [(p, utc("2024-05-01T22:00"), "SAU"), (p, utc("2024-05-02T22:00"), "SAU")],
        "pseudonym string, event_hour timestamp, country string")
    payments = spark.createDataFrame([
        (p, utc("2024-05-01T12:00"), "agent", "PHL"),  # a day with events: the events decide
        (p, utc("2024-05-03T12:00"), "card", "SAU"),  # only payments on this day
        (p, utc("2024-05-03T13:00"), "agent", "SAU"),
        (p, utc("2024-05-03T14:00"), "card", "ARE"),  # minority country of that day
        (p, utc("2024-05-04T12:00"), "mobile_money", "SAU"),  # not a presence channel
        (p, utc("2024-05-05T12:00"), "agent", None),  # no position kept
        (p, utc("2024-05-06T23:30"), "card", "SAU"),  # 23:30 local is still 05-06, although 15:00 UTC
    ], "sender_pseudonym string, txn_hour timestamp, channel string, location_country string")
    presence = daily_presence(events, TZ, ResidenceParams())
    rows = {(r["date"], r["country"], r["source"])
            for r in with_payment_days(presence, payments, TZ).collect()}
    assert rows == {(dt.date(2024, 5, 1), "SAU", "night"), (dt.date(2024, 5, 2), "SAU", "night"),
                    (dt.date(2024, 5, 3), "SAU", PAYMENT_SOURCE), (dt.date(2024, 5, 6), "SAU", PAYMENT_SOURCE)}
