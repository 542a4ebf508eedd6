"""Readers that interpret the synthetic files independently of the generator's code."""

from __future__ import annotations

import pandas as pd

from mobility.anonymize.pseudonymize import to_e164 as _pipeline_e164

HOME, REGION, ZONE = "PHL", "PH", "Asia/Manila"
# Small on purpose: 200 people over 18 months at 3 events a day is about 300k records.
RUN = dict(subscribers=200, months=18, start="2024-01", home_country=HOME, seed=11, events_per_day=3.0)

def to_e164(text: str, region: str = REGION) -> str | None:
    """E.164 of a written number, or None when phonenumbers does not accept it as valid."""
    return _pipeline_e164(text, region)


def parse_instants(text: pd.Series, zone: str = ZONE) -> pd.Series:
    """UTC instants of ISO 8601 strings; naive ones are in the home zone; NaT when unparseable."""
    aware = text.str.contains(r"(?:Z|[+-]\d\d:\d\d)$", regex=True)
    naive = pd.to_datetime(text.where(~aware), format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    naive = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    with_offset = pd.to_datetime(text.where(aware), format="ISO8601", utc=True, errors="coerce")
    return naive.where(~aware, with_offset)
