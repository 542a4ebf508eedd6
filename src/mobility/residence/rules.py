"""Changes of country of usual residence from daily presence: the 12-of-16-months rule, in days.

Pure pandas/numpy so the same code runs in tests and, per subject, inside Spark's
``applyInPandas``. The method is described in docs/methodology.md; in short:

* presence is smoothed first (``smooth_presence``: spillover fix, gap carry up to 7 days);
* the initial status comes from the first ``initial_days`` of the subject's data;
* every crossing out of the country of residence (a run of at least ``min_crossing_nights``
  known nights on the other side) opens a window of ``window_days`` calendar days, crossing day
  included. For a resident of the home country the window counts known days abroad (any foreign
  country), for a resident abroad it counts known days at home. Reaching ``migration_days``
  makes the crossing a long-term migration and flips the status; more than
  ``non_migration_days`` days not counted (other side or unknown) decides it as no migration,
  because the count can no longer reach ``migration_days`` inside the window;
* crossings are evaluated one after the other: after a decided migration the next candidate is
  the first crossing back; after a crossing that did not make a migration the next candidate is
  the first crossing out after the subject has come back;
* a crossing still open at the end of the data is ``unresolved`` and stops the evaluation.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from mobility.errors import InputContractError
from mobility.residence.params import ResidenceParams
from mobility.residence.presence_rules import SUBJECT, WHERE, as_dates, prepare, smooth_subject

KIND_LONG_TERM = "long_term"
KIND_TEMPORARY = "temporary"
KIND_UNRESOLVED = "unresolved"
DEPARTURE = "departure"
ARRIVAL = "arrival"
CHANGE_COLUMNS = (SUBJECT, "from_country", "to_country", "crossing_date", "resolved_date", "kind",
                  "direction", "days_counted", "stay_days", "gap_days", "in_initial_period")


class _Subject:
    """One subject's smoothed calendar from the first known day to the end of data."""

    def __init__(self, days: np.ndarray, codes: np.ndarray, home: int, end_day: int):
        self.start = int(days[0])
        self.home = home
        self.n = end_day - self.start + 1
        cal = np.full(self.n, -1, dtype=np.int64)
        cal[days - self.start] = codes
        self.cal = cal
        known = cal >= 0
        at_home = cal == home
        abroad = known & ~at_home
        zero = np.zeros(1, dtype=np.int64)
        # prefix sums: count in [a, b] is P[b + 1] - P[a]
        self.home_sum = np.r_[zero, np.cumsum(at_home)]
        self.abroad_sum = np.r_[zero, np.cumsum(abroad)]
        self.unknown_sum = np.r_[zero, np.cumsum(~known)]
        # days *not* counted (other side or unknown) in [0, i), for the early no-migration decision
        elapsed = np.arange(self.n + 1)
        self.not_home_sum = elapsed - self.home_sum
        self.not_abroad_sum = elapsed - self.abroad_sum
        # runs of known days alternate home / abroad; a run of >= k known days can be a crossing
        kidx = np.flatnonzero(known)
        flag = at_home[kidx]
        starts = np.flatnonzero(np.r_[True, flag[1:] != flag[:-1]]) if len(kidx) else np.array([], int)
        lengths = np.diff(np.r_[starts, len(kidx)])
        self.run_start = kidx[starts] if len(kidx) else starts
        self.run_home = flag[starts] if len(kidx) else starts.astype(bool)
        self.run_len = lengths

    def crossings(self, into_home: bool, min_nights: int) -> np.ndarray:
        """Calendar indices where a run of >= min_nights known nights starts on the given side.

        The first run of the data is never a crossing: nothing shows where the subject was before.
        """
        ok = (self.run_home == into_home) & (self.run_len >= min_nights)
        ok[:1] = False
        return self.run_start[ok]

    def count(self, prefix: np.ndarray, a: int, b: int) -> int:
        return int(prefix[b + 1] - prefix[a])

    def first_reaching(self, prefix: np.ndarray, a: int, target: int) -> int:
        """Smallest t >= a with count(prefix, a, t) >= target, or self.n if never."""
        return int(np.searchsorted(prefix, prefix[a] + target, side="left")) - 1

    def main_country(self, a: int, b: int, abroad: bool) -> int:
        """Country code with most known nights in [a, b] on the given side; ties -> seen first."""
        seg = self.cal[a:b + 1]
        seg = seg[seg >= 0]
        if abroad:
            seg = seg[seg != self.home]
        counts = np.bincount(seg)
        best = np.flatnonzero(counts == counts.max())
        if len(best) == 1:
            return int(best[0])
        first_seen = [int(np.argmax(seg == c)) for c in best]
        return int(best[int(np.argmin(first_seen))])


def _next_after(candidates: np.ndarray, position: int) -> int | None:
    i = int(np.searchsorted(candidates, position, side="right"))
    return int(candidates[i]) if i < len(candidates) else None


def _initial_status(s: _Subject, home: int, params: ResidenceParams) -> int:
    head = s.cal[:params.initial_days]
    counts = np.bincount(head[head >= 0])
    if 0 <= home < len(counts) and counts[home] >= params.initial_resident_nights:
        return home
    # Seen living at home first (a stay at least as long as a temporary move) and then leaving:
    # the residence is observed, not inferred, and that departure is judged by the 12/16 rule.
    # Without this, a worker who leaves in month four and returns within the year reads as an
    # arrival of a foreign resident.
    if len(s.run_len) and s.run_home[0] and s.run_len[0] >= params.temporary_min_days:
        return home
    best = np.flatnonzero(counts == counts.max())
    # a tie with home keeps the subject at home; otherwise the alphabetically first country
    return home if home in best else int(best[0])


def _detect_subject(days: np.ndarray, codes: np.ndarray, home: int, end_day: int,
                    params: ResidenceParams) -> list[dict]:
    s = _Subject(days, codes, home, end_day)
    status = _initial_status(s, home, params)
    last = s.n - 1
    outs = s.crossings(False, params.min_crossing_nights)
    ins = s.crossings(True, params.min_crossing_nights)
    records: list[dict] = []
    position = -1
    # the day the current status became known: a record cannot be decided before its status is
    status_known = min(params.initial_days, s.n) - 1
    while True:
        departing = status == home
        crossing = _next_after(outs if departing else ins, position)
        if crossing is None:
            return records
        counted = s.abroad_sum if departing else s.home_sum
        not_counted = s.not_abroad_sum if departing else s.not_home_sum
        window_end = crossing + params.window_days - 1
        reached = s.first_reaching(counted, crossing, params.migration_days)
        # more than non_migration_days days not counted and migration_days is out of reach
        failed = s.first_reaching(not_counted, crossing, params.non_migration_days + 1)
        back = _next_after(ins if departing else outs, crossing)
        stay = s.count(counted, crossing, back - 1) if back is not None else None
        record = {
            SUBJECT: None, "crossing_date": crossing,
            "direction": DEPARTURE if departing else ARRIVAL,
            "stay_days": stay, "in_initial_period": crossing < params.initial_days,
        }
        if reached <= min(window_end, last):
            destination = s.main_country(crossing, reached, abroad=True) if departing else home
            record.update(from_country=status, to_country=destination, resolved_date=reached,
                          kind=KIND_LONG_TERM)
            records.append(_finish(record, s, counted, crossing, reached))
            status = destination
            position = crossing
            status_known = max(status_known, reached)
            continue
        if failed > min(window_end, last):
            # still open at the end of the data: never a migration, and nothing after it can be judged
            other = s.main_country(crossing, last, abroad=True) if departing else home
            record.update(from_country=status, to_country=other, resolved_date=None,
                          kind=KIND_UNRESOLVED)
            records.append(_finish(record, s, counted, crossing, last))
            return records
        # decided: no migration. A stay of temporary_min_days or more that ended inside the window
        # is a temporary move, known once the return, the decision and the status are all known.
        if back is not None and stay is not None and back <= window_end and stay >= params.temporary_min_days:
            resolved = max(failed, back, status_known)
            other = s.main_country(crossing, back - 1, abroad=True) if departing else home
            record.update(from_country=status, to_country=other, resolved_date=resolved,
                          kind=KIND_TEMPORARY)
            records.append(_finish(record, s, counted, crossing, resolved))
        if back is None:
            return records
        position = back


def _finish(record: dict, s: _Subject, counted: np.ndarray, crossing: int, until: int) -> dict:
    record["days_counted"] = s.count(counted, crossing, until)
    record["gap_days"] = s.count(s.unknown_sum, crossing, until)
    return record


def _end_day(data_end) -> int | None:
    if data_end is None:
        return None
    return int(np.datetime64(pd.Timestamp(data_end).date(), "D").astype(np.int64))


def detect_changes(presence: pd.DataFrame, home_country: str, params: ResidenceParams | None = None,
                   *, data_end: date | None = None) -> pd.DataFrame:
    """Residence changes per subject from raw known days (smoothed here, do not pre-smooth).

    ``presence``: ``subject_id``, ``date``, ``country`` (ISO3), one row per subject and known day.
    ``data_end``: last day the source data covers; days after a subject's last known day up to it
    are unknown rather than not yet observed. Default: each subject's own last known day.

    Returns ``subject_id, from_country, to_country, crossing_date, resolved_date, kind`` then
    ``direction`` (departure/arrival), ``days_counted`` (known days on the counted side from the
    crossing to the resolved date, or to the end of data when unresolved), ``stay_days`` (known
    days on the other side until the first crossing back, null if none seen), ``gap_days``
    (unknown days over the same span as days_counted) and ``in_initial_period`` (crossing within
    the first ``initial_days``, when the status was inferred rather than observed). Kinds:
    ``long_term``, ``temporary``, ``unresolved``; short trips are not reported. Sorted by
    subject_id, crossing_date; dates are ``datetime.date``.
    """
    params = params or ResidenceParams()
    home_country = str(home_country).strip().upper()
    prepared = prepare(presence)
    home = prepared.code_of(home_country)
    end = _end_day(data_end)
    rows: list[dict] = []
    for subject, days, codes in prepared.groups():
        if end is not None and end < days[-1]:
            raise InputContractError(
                f"data_end {np.datetime64(end, 'D')} is before subject {subject!r}'s last known day "
                f"{np.datetime64(int(days[-1]), 'D')}", where=WHERE,
                hint="pass the last day the presence data covers, or leave data_end unset")
        sd, sc, _ = smooth_subject(days, codes, params)
        found = _detect_subject(sd, sc, home, end if end is not None else int(sd[-1]), params)
        start = int(sd[0])
        for r in found:
            r[SUBJECT] = subject
            r["crossing_date"] += start
            if r["resolved_date"] is not None:
                r["resolved_date"] += start
        rows.extend(found)
    return _to_frame(rows, prepared.countries, presence[SUBJECT].dtype)


def _to_frame(rows: list[dict], countries: np.ndarray, subject_dtype) -> pd.DataFrame:
    def col(name):
        return [r[name] for r in rows]

    def dates(values):
        return as_dates(np.asarray(values, dtype=np.int64))

    resolved = col("resolved_date")
    known = [v for v in resolved if v is not None]
    resolved_dates = iter(dates(known))
    # built column by column: this runs once per subject inside Spark, so frame overhead matters
    return pd.DataFrame({
        SUBJECT: pd.Series(col(SUBJECT), dtype=subject_dtype),
        "from_country": countries[np.asarray(col("from_country"), dtype=np.int64)],
        "to_country": countries[np.asarray(col("to_country"), dtype=np.int64)],
        "crossing_date": dates(col("crossing_date")),
        "resolved_date": np.array([None if v is None else next(resolved_dates) for v in resolved],
                                  dtype=object),
        "kind": np.array(col("kind"), dtype=object),
        "direction": np.array(col("direction"), dtype=object),
        "days_counted": np.asarray(col("days_counted"), dtype=np.int64),
        "stay_days": pd.array(col("stay_days"), dtype="Int64"),
        "gap_days": np.asarray(col("gap_days"), dtype=np.int64),
        "in_initial_period": np.asarray(col("in_initial_period"), dtype=bool),
    }, columns=list(CHANGE_COLUMNS))
