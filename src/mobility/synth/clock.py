"""The simulation calendar, time zones and ISO 8601 rendering of instants.

Days are integers counted from the first day of the data period (day 0). The calendar keeps
``PAD`` days either side so that events of boundary nights exist before the data start and after its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import timezone as pn_timezone

from mobility.config import iso2_of
from mobility.errors import ConfigError
from mobility.synth.params import TIME_ZONES

PAD = 2
DAY_S = 86400


@dataclass(frozen=True)
class Calendar:
    start: date
    months: tuple[str, ...]  # "YYYY-MM"
    month_first_day: tuple[int, ...]  # day index of each month's first day; one extra entry: the end
    epoch_day0: int  # days from 1970-01-01 to day 0

    @property
    def n_days(self) -> int:
        return self.month_first_day[-1]

    @property
    def n_cols(self) -> int:
        """Columns of a person x day matrix: days -PAD .. n_days+PAD-1."""
        return self.n_days + 2 * PAD

    def dates(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n_days if stop is None else stop
        return (np.arange(first, stop) + self.epoch_day0).astype("datetime64[D]")

    def weekday(self, days: np.ndarray) -> np.ndarray:
        """0 = Monday; 1970-01-01 was a Thursday."""
        return (days + self.epoch_day0 + 3) % 7


def make_calendar(start: str, months: int) -> Calendar:
    try:
        year, month = (int(x) for x in start.split("-"))
        first = date(year, month, 1)
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"start {start!r} is not a month",
                          hint="write the first month as YYYY-MM, e.g. 2024-01") from None
    if months < 1:
        raise ConfigError(f"months must be at least 1 (got {months})")
    labels, firsts = [], []
    for i in range(months + 1):
        y, m = divmod(month - 1 + i, 12)
        d = date(year + y, m + 1, 1)
        firsts.append((d - first).days)
        if i < months:
            labels.append(f"{d.year:04d}-{d.month:02d}")
    return Calendar(first, tuple(labels), tuple(firsts), (first - date(1970, 1, 1)).days)


@lru_cache(maxsize=64)
def zone_of(iso3: str) -> str:
    """IANA zone of a country: a fixed choice for multi-zone countries, else from phonenumbers' mobile example."""
    if iso3 in TIME_ZONES:
        return TIME_ZONES[iso3]
    example = phonenumbers.example_number_for_type(iso2_of(iso3), phonenumbers.PhoneNumberType.MOBILE)
    zones = [z for z in pn_timezone.time_zones_for_number(example) if z != "Etc/Unknown"] if example else []
    if not zones:
        raise ConfigError(f"no time zone known for {iso3}", where="mobility.synth.params.TIME_ZONES",
                          hint="add the country's IANA zone to TIME_ZONES")
    return zones[0]


def _utc_offset_s(instant: float, tz: ZoneInfo) -> int:
    """UTC offset in seconds of a zone at an instant (an aware datetime always has one)."""
    offset = datetime.fromtimestamp(instant, tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def daily_offsets(zone: str, cal: Calendar) -> np.ndarray:
    """UTC offset in seconds at local noon of each calendar column (days -PAD .. n_days+PAD-1)."""
    tz = ZoneInfo(zone)
    out = np.empty(cal.n_cols, dtype=np.int64)
    for j in range(cal.n_cols):
        noon = (cal.epoch_day0 + j - PAD) * DAY_S + 12 * 3600
        out[j] = _utc_offset_s(noon, tz)
    return out


class TimeRenderer:
    """Renders UTC instants as ISO 8601 strings in the home zone: naive, with offset, or in UTC."""

    def __init__(self, zone: str, cal: Calendar):
        tz = ZoneInfo(zone)
        self.base = (cal.epoch_day0 - PAD - 1) * DAY_S
        hours = (cal.n_cols + 2) * 24
        # Hourly table: zone transitions fall on whole hours in every zone we simulate.
        self.hour_offsets = np.array(
            [_utc_offset_s(self.base + h * 3600, tz) for h in range(hours)],
            dtype=np.int64)
        self.first_day = self.base // DAY_S
        n_days = hours // 24 + 2
        self.day_strings = pa.array(np.datetime_as_string(np.arange(self.first_day, self.first_day + n_days)
                                                          .astype("datetime64[D]")))
        self.clock_strings = _clock_strings()

    def offset_at(self, utc: np.ndarray) -> np.ndarray:
        return self.hour_offsets[np.clip((utc - self.base) // 3600, 0, len(self.hour_offsets) - 1)]

    def local(self, utc: np.ndarray) -> np.ndarray:
        return utc + self.offset_at(utc)

    def render(self, utc: np.ndarray, style: np.ndarray) -> pa.Array:
        """style 0: naive local; 1: local with its offset (``+08:00``); 2: UTC with ``Z``."""
        offsets = self.offset_at(utc)
        shown = np.where(style == 2, utc, utc + offsets)
        suffixes, inverse = np.unique(offsets, return_inverse=True)
        labels = ["", "Z"] + [_offset_label(int(o)) for o in suffixes]
        which = np.where(style == 0, 0, np.where(style == 2, 1, 2 + inverse))
        return pc.binary_join_element_wise(
            pc.take(self.day_strings, pa.array(shown // DAY_S - self.first_day)),
            pc.take(self.clock_strings, pa.array(shown % DAY_S)),
            pc.take(pa.array(labels), pa.array(which)), "")


@lru_cache(maxsize=1)
def _clock_strings() -> pa.Array:
    """"T00:00:00" .. "T23:59:59", indexed by second of the day."""
    return pa.array([f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY_S)])


def _offset_label(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"

