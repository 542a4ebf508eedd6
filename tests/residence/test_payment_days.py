"""Payments as presence use the same presence day as events: small hours belong to the night before."""

from __future__ import annotations

import datetime as dt

import pytest

from mobility.residence.presence import PAYMENT_SOURCE, daily_presence, with_payment_days
from mobility.residence.rules import ResidenceParams

pytestmark = pytest.mark.spark
TZ = "Asia/Manila"
P = "b" * 64


def _utc(local: str) -> dt.datetime:
    """A Manila local hour (UTC+8) as the UTC instant the office zone stores."""
    return (dt.datetime.fromisoformat(local) - dt.timedelta(hours=8)).replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("night_end", [7, 4])
def test_small_hours_payment_fills_the_night_it_belongs_to(spark, night_end):
    params = ResidenceParams(night_end=night_end)
    # Events on the presence day of 4 May only; 3 May has none.
    events = spark.createDataFrame([(P, _utc("2024-05-04T21:00"), "SAU")],
                                   "pseudonym string, event_hour timestamp, country string")
    # A card payment at 03:00 on 4 May (local) is made during the night that began on 3 May.
    payments = spark.createDataFrame([(P, _utc("2024-05-04T03:00"), "card", "SAU"),
                                      (P, _utc("2024-05-06T05:00"), "agent", "SAU")],
                                     "sender_pseudonym string, txn_hour timestamp, channel string, "
                                     "location_country string")
    rows = {(r["date"], r["source"]) for r in
            with_payment_days(daily_presence(events, TZ, params), payments, TZ, params).collect()}
    assert (dt.date(2024, 5, 3), PAYMENT_SOURCE) in rows
    assert (dt.date(2024, 5, 4), "night") in rows
    # 05:00 is still night when the night ends at 07:00, already day when it ends at 04:00.
    expected_05 = dt.date(2024, 5, 5) if night_end == 7 else dt.date(2024, 5, 6)
    assert (expected_05, PAYMENT_SOURCE) in rows
    assert len(rows) == 3
