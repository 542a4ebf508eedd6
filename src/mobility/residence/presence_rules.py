"""Daily presence, pure pandas/numpy: validate known days, remove border spillover, carry short gaps.

The Spark job builds one row per subject and *known* day (the country of the night-time events,
or of the day-time events when the night is empty) and then calls these functions per subject
through ``groupBy(...).applyInPandas``; tests call them on small frames. Nothing here needs Spark.

Order of the two smoothing steps (both per subject, on known days sorted by date):

1. Spillover: a run of fewer than ``min_crossing_nights`` known days in a country, sitting between
   two runs of one same other country (each at most ``max_gap_days`` unknown days away), is a
   border cell serving across the line, not a trip; it takes the surrounding country
   (``source='spillover_fixed'``). Runs are judged left to right against the already-corrected
   previous run, so an alternating A B A B A border pattern collapses to A rather than flipping.
   A short run at either end of the data is kept: there is only one neighbour to judge it by.
2. Gap carry: unknown days between two known days of the same country, when the gap is at most
   ``max_gap_days`` days, take that country (``source='carried'``). A gap whose two sides are in
   different countries is left unknown: the crossing happened somewhere inside it and either
   choice would move crossing dates and add days to one side that nobody observed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd

from mobility.errors import InputContractError
from mobility.residence.params import ResidenceParams

SUBJECT = "subject_id"
PRESENCE_COLUMNS = (SUBJECT, "date", "country")
SOURCE_OBSERVED = "observed"
SOURCE_CARRIED = "carried"
SOURCE_SPILLOVER = "spillover_fixed"
_SOURCES = np.array([SOURCE_OBSERVED, SOURCE_CARRIED, SOURCE_SPILLOVER], dtype=object)
_OBS, _CARRIED, _SPILL = 0, 1, 2
WHERE = "daily presence"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class Prepared:
    """Known days of every subject, sorted, with dates as day numbers and countries as codes."""

    def __init__(self, subjects: np.ndarray, days: np.ndarray, codes: np.ndarray,
                 countries: np.ndarray, bounds: np.ndarray):
        self.subjects = subjects    # subject_id per row, sorted by subject then date
        self.days = days            # int64 days since 1970-01-01
        self.codes = codes          # index into countries (alphabetical)
        self.countries = countries  # sorted unique ISO3 codes
        self.bounds = bounds        # row offsets where each subject starts, plus the end

    def groups(self) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            yield self.subjects[lo], self.days[lo:hi], self.codes[lo:hi]

    def code_of(self, country: str) -> int:
        """Code of a country, or -2 when no subject was ever seen there (-1 means unknown)."""
        pos = int(np.searchsorted(self.countries, country))
        if pos < len(self.countries) and self.countries[pos] == country:
            return pos
        return -2


def prepare(presence: pd.DataFrame) -> Prepared:
    """Check the input contract and bring the known days into sorted numpy arrays."""
    if not isinstance(presence, pd.DataFrame):
        raise InputContractError(f"expected a pandas DataFrame, got {type(presence).__name__}",
                                 where=WHERE, hint="pass one row per subject and known day")
    missing = [c for c in PRESENCE_COLUMNS if c not in presence.columns]
    if missing:
        raise InputContractError(
            f"missing column(s) {missing}; found {list(presence.columns)}", where=WHERE,
            hint="give columns subject_id, date (a calendar day) and country (ISO3), one row per known day")
    nulls = [c for c in PRESENCE_COLUMNS if presence[c].isna().any()]
    if nulls:
        raise InputContractError(
            f"null values in {nulls}", where=WHERE,
            hint="drop days without a country: a day with no events is simply absent (unknown)")
    days = _day_numbers(presence["date"])
    codes, countries = pd.factorize(presence["country"].astype(str).to_numpy(), sort=True)
    subjects = presence[SUBJECT].to_numpy()
    order = np.lexsort((days, pd.factorize(subjects, sort=True)[0]))
    subjects, days, codes = subjects[order], days[order], codes[order].astype(np.int64)
    if len(days):
        new_subject = np.r_[True, subjects[1:] != subjects[:-1]]
        same_day = ~new_subject[1:] & (days[1:] == days[:-1])
        if same_day.any():
            i = int(np.flatnonzero(same_day)[0])
            raise InputContractError(
                f"subject {subjects[i]!r} has more than one row for "
                f"{np.datetime64(int(days[i]), 'D')}", where=WHERE,
                hint="keep one country per subject and day (the night-time country) before calling")
        bounds = np.r_[np.flatnonzero(new_subject), len(days)]
    else:
        bounds = np.array([0])
    return Prepared(subjects, days, codes, np.asarray(countries, dtype=object), bounds)


def _day_numbers(dates: pd.Series) -> np.ndarray:
    """Calendar days as int64 days since 1970-01-01; numpy first (Spark hands over date objects)."""
    if dates.dtype == object:
        try:  # date/datetime/Timestamp objects; toordinal is far cheaper than numpy's date parsing
            ordinals = np.fromiter((d.toordinal() for d in dates), dtype=np.int64, count=len(dates))
            return ordinals - _EPOCH_ORDINAL
        except (AttributeError, TypeError):
            pass  # strings or mixed objects: let pandas parse them below
    try:
        parsed = pd.to_datetime(dates)
    except (ValueError, TypeError) as exc:
        raise InputContractError(f"column 'date' is not a calendar date: {exc}", where=WHERE,
                                 hint="use datetime.date or datetime64 values") from exc
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.to_numpy().astype("datetime64[D]").astype(np.int64)


def smooth_subject(days: np.ndarray, codes: np.ndarray, params: ResidenceParams
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One subject's known days -> (days, codes, source codes) after spillover fix and gap carry."""
    codes = codes.copy()
    source = np.full(len(days), _OBS, dtype=np.int8)
    if len(days) == 0:
        return days, codes, source
    _fix_spillover(days, codes, source, params.min_crossing_nights, params.max_gap_days)
    return _carry_gaps(days, codes, source, params.max_gap_days)


def _fix_spillover(days, codes, source, min_nights: int, max_gap: int) -> None:
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    if len(starts) < 3:
        return
    ends = np.r_[starts[1:], len(codes)]  # exclusive
    lengths = ends - starts
    run_code = codes[starts].copy()
    effective = run_code.copy()
    # only short interior runs can be spillover; walk them in order so a fix feeds the next one
    for r in np.flatnonzero(lengths < min_nights):
        if r == 0 or r == len(starts) - 1:
            continue
        around = effective[r - 1]
        if around == run_code[r] or run_code[r + 1] != around:
            continue
        gap_before = days[starts[r]] - days[starts[r] - 1] - 1
        gap_after = days[ends[r]] - days[ends[r] - 1] - 1
        if gap_before <= max_gap and gap_after <= max_gap:
            effective[r] = around
            codes[starts[r]:ends[r]] = around
            source[starts[r]:ends[r]] = _SPILL


def _carry_gaps(days, codes, source, max_gap: int):
    step = np.diff(days)
    carry = (step > 1) & (step <= max_gap + 1) & (codes[1:] == codes[:-1])
    if not carry.any():
        return days, codes, source
    at = np.flatnonzero(carry)
    fill = step[at] - 1
    # day offsets 1..fill for each carried gap, built without a Python loop
    offsets = np.arange(fill.sum()) - np.repeat(np.cumsum(fill) - fill, fill) + 1
    new_days = np.repeat(days[at], fill) + offsets
    all_days = np.concatenate([days, new_days])
    order = np.argsort(all_days, kind="stable")
    return (all_days[order],
            np.concatenate([codes, np.repeat(codes[at], fill)])[order],
            np.concatenate([source, np.full(len(new_days), _CARRIED, dtype=np.int8)])[order])


def as_dates(days: np.ndarray) -> np.ndarray:
    """Day numbers -> datetime.date objects (what Spark's DateType takes through Arrow)."""
    return np.asarray(days, dtype="int64").astype("datetime64[D]").astype(object)


def smooth_presence(presence: pd.DataFrame, params: ResidenceParams | None = None) -> pd.DataFrame:
    """Known days per subject -> smoothed daily presence with a ``source`` column.

    Takes ``subject_id``, ``date``, ``country`` (one row per subject and known day; other columns
    are ignored) and returns those three columns plus ``source`` in {``observed``, ``carried``,
    ``spillover_fixed``}, sorted by subject and date, dates as ``datetime.date``. Carried days are
    new rows; spillover-fixed rows keep their date with the surrounding country.
    """
    if params is None:
        params = ResidenceParams()
    prepared = prepare(presence)
    subj, day_parts, code_parts, src_parts = [], [], [], []
    for subject, days, codes in prepared.groups():
        d, c, s = smooth_subject(days, codes, params)
        subj.append(np.full(len(d), subject, dtype=object))
        day_parts.append(d)
        code_parts.append(c)
        src_parts.append(s)
    if not day_parts:
        return pd.DataFrame({SUBJECT: pd.Series([], dtype=presence[SUBJECT].dtype),
                             "date": pd.Series([], dtype=object), "country": pd.Series([], dtype=object),
                             "source": pd.Series([], dtype=object)})
    codes = np.concatenate(code_parts)
    out = pd.DataFrame({
        SUBJECT: np.concatenate(subj),
        "date": as_dates(np.concatenate(day_parts)),
        "country": prepared.countries[codes],
        "source": _SOURCES[np.concatenate(src_parts)],
    })
    out[SUBJECT] = out[SUBJECT].astype(presence[SUBJECT].dtype)
    return out
