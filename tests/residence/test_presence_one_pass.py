"""Daily presence and home cells in Spark against a plain-Python reference.

``presence_and_home_cells`` (one pass over the events, what the job runs), ``daily_presence`` and
``monthly_home_cells`` must all give what the reference below gives: java-free local times from
``zoneinfo``, the night rule of ``ResidenceParams``, counting per day and per month. The zones cover
the conversion's two branches (a zone whose offset has been fixed since its last transition, with
events before and after that transition; zones with daylight saving), half-hour offsets and UTC.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import h3
import pytest

from mobility.residence.presence import daily_presence, monthly_home_cells, presence_and_home_cells
from mobility.residence.rules import ResidenceParams

pytestmark = pytest.mark.spark

HOME = "PHL"
# Manila: +08:00 fixed since 1978 (DST before); London and St John's: DST today; Kolkata: +05:30
ZONES = ["Asia/Manila", "Europe/London", "America/St_Johns", "Asia/Kolkata", "UTC"]
SCHEMA = "pseudonym string, event_hour timestamp, country string, h3_cell string"


def _events(seed: int) -> list[tuple]:
    """Events of a few subjects around days where the country, the hour and the cell vary; hours
    cluster around midnight, the night's bounds and DST changes, some years before 1978."""
    rng = random.Random(seed)
    cells = [h3.latlng_to_cell(lat, lng, 8) for lat, lng in
             [(14.6, 121.0), (14.61, 121.01), (10.3, 123.9), (7.1, 125.6)]]
    cells.append(h3.cell_to_parent(cells[0], 4))  # a cell already coarser than the home-cell resolution
    starts = [dt.datetime(1976, 3, 25), dt.datetime(2023, 3, 24), dt.datetime(2024, 10, 25),
              dt.datetime(2024, 12, 29)]
    rows = []
    for s in range(6):
        subject = f"{s:064x}"
        for start in starts:
            for _ in range(rng.randint(20, 60)):
                hour = start + dt.timedelta(days=rng.randint(0, 6), hours=rng.randint(0, 23),
                                            minutes=rng.choice([0, 0, 30]))
                country = rng.choice([HOME, HOME, HOME, "SAU", "ARE"])
                cell = rng.choice(cells + [None]) if country == HOME else None
                rows.append((subject, hour.replace(tzinfo=dt.UTC), country, cell))
    return rows


def _reference(rows: list[tuple], tz: str, params: ResidenceParams):
    zone = ZoneInfo(tz)
    per_day: dict = defaultdict(Counter)  # (pseudonym, date) -> {(country, is_night): events}
    per_month: dict = defaultdict(Counter)  # (pseudonym, month) -> {coarse cell: home nights}
    for pseudonym, when, country, cell in rows:
        local = when.astimezone(zone)
        hour = local.hour
        if params.night_start > params.night_end:
            night = hour >= params.night_start or hour < params.night_end
        else:
            night = params.night_start <= hour < params.night_end
        day = local.date() - dt.timedelta(days=1 if night and hour < params.night_end else 0)
        per_day[(pseudonym, day)][(country, night)] += 1
        if night and country == HOME and cell is not None:
            coarse = (h3.cell_to_parent(cell, params.home_cell_resolution)
                      if h3.get_resolution(cell) > params.home_cell_resolution else cell)
            per_month[(pseudonym, f"{day:%Y-%m}")][coarse] += 1
    presence = set()
    for (pseudonym, day), counts in per_day.items():
        countries = {c for c, _ in counts}
        best = min(countries, key=lambda c: (-counts[(c, True)], -counts[(c, False)], c))
        nights = sum(n for (_, is_night), n in counts.items() if is_night)
        presence.add((pseudonym, day, best, "night" if counts[(best, True)] else "day", nights))
    home = {(p, month, min(cells, key=lambda c: (-cells[c], c)), max(cells.values()))
            for (p, month), cells in per_month.items()}
    return presence, home


def _presence_rows(frame) -> set:
    return {(r["pseudonym"], r["date"], r["country"], r["source"], r["night_events"]) for r in frame.collect()}


def _home_rows(frame) -> set:
    return {(r["pseudonym"], r["month"], r["h3_cell"], r["night_events"]) for r in frame.collect()}


@pytest.mark.parametrize("tz", ZONES)
def test_one_pass_and_separate_tables_equal_the_reference(spark, tz):
    params = ResidenceParams()
    rows = _events(seed=ZONES.index(tz))
    events = spark.createDataFrame(rows, SCHEMA)
    expected_presence, expected_home = _reference(rows, tz, params)
    assert expected_home, "the data must give home cells for the comparison to mean something"
    presence, home = presence_and_home_cells(spark, events, HOME, tz, params)
    assert _presence_rows(presence) == expected_presence
    assert _home_rows(home) == expected_home
    assert _presence_rows(daily_presence(events, tz, params)) == expected_presence
    assert _home_rows(monthly_home_cells(spark, events, HOME, tz, params)) == expected_home


@pytest.mark.parametrize("params", [ResidenceParams(night_start=22, night_end=4, home_cell_resolution=6),
                                    ResidenceParams(night_start=1, night_end=5)])
def test_other_night_bounds_and_resolutions_equal_the_reference(spark, params):
    rows = _events(seed=7)
    tz = "Europe/London"
    presence, home = presence_and_home_cells(spark, spark.createDataFrame(rows, SCHEMA), HOME, tz, params)
    expected_presence, expected_home = _reference(rows, tz, params)
    assert _presence_rows(presence) == expected_presence
    assert _home_rows(home) == expected_home
