"""The 12/16 rule over spells: a history whose size grows with country changes, not with days.

A *spell* is a maximal run of consecutive days of one subject in one country after smoothing
(spillover fix and gap carry, ``presence_rules``): ``subject_id, country, first_date, last_date``.
Smoothed presence has no unknown day inside a spell; the unknown days are exactly the days
between spells (and after the last one up to ``data_end``). A subject living at home with ten
percent of nights unobserved has one spell per stay, not one row per day: the carry fills every
hole of up to ``max_gap_days`` days, and only holes longer than that, or a hole where the country
changes, separate two spells of a stay.

Three pieces:

* ``spells_in_spark``: daily presence (one row per subject and known day) -> spells, as Spark
  expressions (window functions, one shuffle and one sort of the daily rows). The smoothing is
  the one of ``presence_rules`` restated over runs (see the function); ``spells_from_presence``
  is the pure reference for it (``smooth_presence`` and then consecutive days collapsed).
* ``detect_from_spells``: the rule of ``rules.detect_changes`` over spells of many subjects in
  one call: the spells become flat arrays (one sort) and a numba-compiled loop walks them; the
  only per-subject work is inside that loop. It gives exactly what ``detect_changes`` gives on
  the daily presence the spells came from (same rows, columns and dtypes; tests/residence).
* ``detect_in_spark_fast``: the two above in Spark, with the contract of ``job.detect_in_spark``.

The compiled loop is cached on disk (``cache=True``, in ``__pycache__`` next to this file, or in
``NUMBA_CACHE_DIR``): every Spark Python worker loads it instead of compiling it again. Where
neither is writable (a package installed by root and run as another user, as in the job image)
numba would refuse to import this module, so a private folder under the temporary directory is
used instead (``_cache_dir``).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numba import njit
from numba.core import config as numba_config

from mobility.errors import InputContractError
from mobility.residence.params import ResidenceParams
from mobility.residence.presence_rules import SUBJECT, _day_numbers, as_dates, smooth_presence
from mobility.residence.rules import (
    ARRIVAL,
    CHANGE_COLUMNS,
    DEPARTURE,
    KIND_LONG_TERM,
    KIND_TEMPORARY,
    KIND_UNRESOLVED,
    _end_day,
)
from mobility.schemas import PSEUDONYM, RULE_CHANGES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

def _cache_dir(package_dir: Path, environ: os._Environ | dict) -> str | None:
    """The folder to give numba for its cache, or None when its own choices work: the
    ``__pycache__`` next to this file, or an explicit ``NUMBA_CACHE_DIR``. (numba's per-user
    cache under the home directory is not tried: service accounts often have no writable home.)"""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    cache = package_dir / "__pycache__"
    if os.access(cache if cache.exists() else package_dir, os.W_OK):
        return None
    return str(Path(tempfile.gettempdir()) / f"mobility-numba-{os.getuid()}")


if (_folder := _cache_dir(Path(__file__).resolve().parent, os.environ)) is not None:
    os.environ["NUMBA_CACHE_DIR"] = _folder
    numba_config.reload_config()

SPELL_COLUMNS = (SUBJECT, "country", "first_date", "last_date")
WHERE = "presence spells"
_KINDS = np.array([KIND_LONG_TERM, KIND_TEMPORARY, KIND_UNRESOLVED], dtype=object)
_DIRECTIONS = np.array([DEPARTURE, ARRIVAL], dtype=object)
_LONG_TERM, _TEMPORARY, _UNRESOLVED = 0, 1, 2
_HOME, _ABROAD = 0, 1  # the side of a count: known days at home, known days in any other country


# ---------------------------------------------------------------------------------------------
# Pure reference conversion (tests, small inputs)
# ---------------------------------------------------------------------------------------------

def spells_from_presence(presence: pd.DataFrame, params: ResidenceParams | None = None) -> pd.DataFrame:
    """Known days per subject -> smoothed spells, through ``smooth_presence`` (the reference).

    Returns ``subject_id, country, first_date, last_date`` sorted by subject and first date, dates
    as ``datetime.date``; the subject column keeps its dtype.
    """
    smoothed = smooth_presence(presence, params)
    subjects = smoothed[SUBJECT].to_numpy()
    days = _day_numbers(smoothed["date"]) if len(smoothed) else np.zeros(0, dtype=np.int64)
    country = smoothed["country"].to_numpy()
    new = np.ones(len(days), dtype=bool)
    new[1:] = (subjects[1:] != subjects[:-1]) | (days[1:] != days[:-1] + 1) | (country[1:] != country[:-1])
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:] - 1, len(days) - 1] if len(starts) else starts
    return pd.DataFrame({
        SUBJECT: pd.Series(subjects[starts], dtype=presence[SUBJECT].dtype),
        "country": country[starts],
        "first_date": as_dates(days[starts]),
        "last_date": as_dates(days[ends]),
    }, columns=list(SPELL_COLUMNS))


# ---------------------------------------------------------------------------------------------
# The rule over spells: one compiled loop over all subjects of a call
# ---------------------------------------------------------------------------------------------
# Days are absolute day numbers. A subject's calendar runs from its first known day s0 to its
# end e (data_end, or its last known day); the reference's calendar index i is day s0 + i, and its
# "never" (index n) is day e + 1. Spells of one subject are sorted, disjoint and lie inside
# [s0, e]. Every helper below scans the spells [lo, hi) of one subject.

@njit(cache=True, nogil=True)
def _first_ending_from(last, lo, hi, a):  # pragma: no cover - compiled
    """Smallest i in [lo, hi) with last[i] >= a (hi if none): binary search, last is increasing."""
    while lo < hi:
        mid = (lo + hi) // 2
        if last[mid] < a:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _on_side(code, home, side):  # pragma: no cover - compiled
    return (code == home) == (side == _HOME)


@njit(cache=True, nogil=True)
def _count(first, last, code, lo, hi, home, side, a, b):  # pragma: no cover - compiled
    """Known days on the side (or any known day with side < 0) in [a, b]."""
    total = 0
    i = _first_ending_from(last, lo, hi, a)
    while i < hi and first[i] <= b:
        if side < 0 or _on_side(code[i], home, side):
            total += min(last[i], b) - max(first[i], a) + 1
        i += 1
    return total


@njit(cache=True, nogil=True)
def _first_reaching(first, last, code, lo, hi, home, side, a, target, end):  # pragma: no cover
    """Smallest t >= a with target known days on the side in [a, t], or end + 1 if never."""
    got = 0
    i = _first_ending_from(last, lo, hi, a)
    while i < hi:
        if _on_side(code[i], home, side):
            start = max(first[i], a)
            length = last[i] - start + 1
            if got + length >= target:
                return start + (target - got) - 1
            got += length
        i += 1
    return end + 1


@njit(cache=True, nogil=True)
def _first_reaching_not(first, last, code, lo, hi, home, side, a, target, end):  # pragma: no cover
    """Smallest t >= a with target days *not* on the side (other side or unknown) in [a, t],
    or end + 1 if never."""
    got = 0
    p = a  # first day not yet looked at
    i = _first_ending_from(last, lo, hi, a)
    while i < hi:
        if _on_side(code[i], home, side):
            start = max(first[i], a)
            free = start - p
            if got + free >= target:
                return p + (target - got) - 1
            got += free
            p = last[i] + 1
        i += 1
    if got + (end - p + 1) >= target:
        return p + (target - got) - 1
    return end + 1


@njit(cache=True, nogil=True)
def _main_country(first, last, code, lo, hi, home, a, b, counts, seen):  # pragma: no cover
    """Country with the most known days abroad in [a, b]; a tie goes to the one seen first.
    ``counts`` is all zeros on entry and on return."""
    n_seen = 0
    i = _first_ending_from(last, lo, hi, a)
    while i < hi and first[i] <= b:
        c = code[i]
        if c != home:
            if counts[c] == 0:
                seen[n_seen] = c
                n_seen += 1
            counts[c] += min(last[i], b) - max(first[i], a) + 1
        i += 1
    best, best_count = -1, -1
    for j in range(n_seen):
        c = seen[j]
        if counts[c] > best_count:
            best, best_count = c, counts[c]
        counts[c] = 0
    return best


@njit(cache=True, nogil=True)
def _next_after(values, n, position):  # pragma: no cover - compiled
    """Index of the first of values[:n] (increasing) above position, or n."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] <= position:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _counted_and_gap(first, last, code, lo, hi, home, side, crossing, until):  # pragma: no cover - compiled
    """Known days on ``side`` from the crossing through ``until``, and the unknown days in that span."""
    known = _count(first, last, code, lo, hi, home, -1, crossing, until)
    return _count(first, last, code, lo, hi, home, side, crossing, until), (until - crossing + 1) - known


@njit(cache=True, nogil=True)
def _rule_kernel(bounds, first, last, code, n_codes, home, has_end, end_day,
                 window_days, migration_days, non_migration_days, initial_days,
                 initial_resident_nights, temporary_min_days, min_nights):  # pragma: no cover - compiled
    """``rules._detect_subject`` for every subject of the call; see there for the rule itself.

    Returns the number of changes and their columns: subject index, from/to country code,
    crossing and resolved day (resolved -1 with ``has_resolved`` False), kind, direction (0
    departure, 1 arrival), days counted, stay days (-1 when no return was seen), gap days and
    whether the crossing lies in the initial period.
    """
    cap = len(first) + 1  # a subject has fewer changes than runs, and fewer runs than spells
    o_subject = np.empty(cap, np.int64)
    o_from = np.empty(cap, np.int64)
    o_to = np.empty(cap, np.int64)
    o_crossing = np.empty(cap, np.int64)
    o_resolved = np.empty(cap, np.int64)
    o_has_resolved = np.empty(cap, np.bool_)
    o_kind = np.empty(cap, np.int8)
    o_direction = np.empty(cap, np.int8)
    o_counted = np.empty(cap, np.int64)
    o_stay = np.empty(cap, np.int64)
    o_gap = np.empty(cap, np.int64)
    o_initial = np.empty(cap, np.bool_)
    counts = np.zeros(max(n_codes, 1), np.int64)
    seen = np.empty(max(n_codes, 1), np.int64)
    most = 1
    for s in range(len(bounds) - 1):
        most = max(most, bounds[s + 1] - bounds[s])
    outs = np.empty(most, np.int64)  # crossings out of home: starts of runs abroad of >= k nights
    ins = np.empty(most, np.int64)   # crossings back home
    k = 0
    for s in range(len(bounds) - 1):
        lo, hi = bounds[s], bounds[s + 1]
        if lo == hi:
            continue
        s0 = first[lo]
        end = end_day if has_end else last[hi - 1]
        n = end - s0 + 1
        # runs of known days alternating home / abroad (over unknown days), their starts and lengths
        n_out, n_in = 0, 0
        first_run_home = code[lo] == home
        first_run_len = 0
        run_home = first_run_home
        run_start = first[lo]
        run_len = 0
        n_runs = 0
        for i in range(lo, hi + 1):
            if i == hi or (code[i] == home) != run_home:
                if n_runs == 0:
                    first_run_len = run_len
                elif run_len >= min_nights:
                    if run_home:
                        ins[n_in] = run_start
                        n_in += 1
                    else:
                        outs[n_out] = run_start
                        n_out += 1
                n_runs += 1
                if i == hi:
                    break
                run_home = code[i] == home
                run_start = first[i]
                run_len = 0
            run_len += last[i] - first[i] + 1
        # initial status: the known days in the first initial_days of the calendar
        head_end = s0 + min(initial_days, n) - 1
        n_seen = 0
        i = lo
        while i < hi and first[i] <= head_end:
            c = code[i]
            if counts[c] == 0:
                seen[n_seen] = c
                n_seen += 1
            counts[c] += min(last[i], head_end) - first[i] + 1
            i += 1
        home_count = counts[home] if home >= 0 else 0
        best, best_count = n_codes, 0
        for j in range(n_seen):
            c = seen[j]
            if counts[c] > best_count or (counts[c] == best_count and c < best):
                best, best_count = c, counts[c]
            counts[c] = 0
        if home >= 0 and home_count >= initial_resident_nights:
            status = home
        elif first_run_home and first_run_len >= temporary_min_days:
            status = home
        elif home >= 0 and home_count == best_count:
            status = home
        else:
            status = best
        # the crossings, one after the other (rules._detect_subject)
        position = s0 - 1
        status_known = s0 + min(initial_days, n) - 1
        while True:
            departing = status == home
            # leaving home, the crossing is a start of a run abroad and the return a start of one at
            # home; arriving, the other way round
            if departing:
                leave, n_leave, come, n_come, side = outs, n_out, ins, n_in, _ABROAD
            else:
                leave, n_leave, come, n_come, side = ins, n_in, outs, n_out, _HOME
            j = _next_after(leave, n_leave, position)
            if j == n_leave:
                break
            crossing = leave[j]
            j = _next_after(come, n_come, crossing)
            has_back = j < n_come
            back = come[j] if has_back else -1
            window_end = crossing + window_days - 1
            horizon = min(window_end, end)
            reached = _first_reaching(first, last, code, lo, hi, home, side, crossing, migration_days, end)
            failed = _first_reaching_not(first, last, code, lo, hi, home, side, crossing,
                                         non_migration_days + 1, end)
            stay = _count(first, last, code, lo, hi, home, side, crossing, back - 1) if has_back else -1
            o_subject[k] = s
            o_from[k] = status
            o_crossing[k] = crossing
            o_direction[k] = 0 if departing else 1
            o_stay[k] = stay
            o_initial[k] = crossing - s0 < initial_days
            if reached <= horizon:
                destination = _main_country(first, last, code, lo, hi, home, crossing, reached, counts,
                                            seen) if departing else home
                until = reached
                o_to[k] = destination
                o_resolved[k] = reached
                o_has_resolved[k] = True
                o_kind[k] = _LONG_TERM
                o_counted[k], o_gap[k] = _counted_and_gap(first, last, code, lo, hi, home, side, crossing, until)
                k += 1
                status = destination
                position = crossing
                status_known = max(status_known, reached)
                continue
            if failed > horizon:
                # still open at the end of the data: nothing after it can be judged
                until = end
                o_to[k] = _main_country(first, last, code, lo, hi, home, crossing, end, counts,
                                        seen) if departing else home
                o_resolved[k] = -1
                o_has_resolved[k] = False
                o_kind[k] = _UNRESOLVED
                o_counted[k], o_gap[k] = _counted_and_gap(first, last, code, lo, hi, home, side, crossing, until)
                k += 1
                break
            if has_back and back <= window_end and stay >= temporary_min_days:
                until = max(failed, back, status_known)
                o_to[k] = _main_country(first, last, code, lo, hi, home, crossing, back - 1, counts,
                                        seen) if departing else home
                o_resolved[k] = until
                o_has_resolved[k] = True
                o_kind[k] = _TEMPORARY
                o_counted[k], o_gap[k] = _counted_and_gap(first, last, code, lo, hi, home, side, crossing, until)
                k += 1
            if not has_back:
                break
            position = back
    return (k, o_subject, o_from, o_to, o_crossing, o_resolved, o_has_resolved, o_kind, o_direction,
            o_counted, o_stay, o_gap, o_initial)


def warm() -> float:
    """Compile the loop (or load it from the on-disk cache); returns the seconds it took."""
    import time

    started = time.perf_counter()
    one = np.zeros(1, dtype=np.int64)
    _rule_kernel(np.array([0, 1], dtype=np.int64), one, one, one, 1, 0, False, 0, 487, 365, 122, 365, 183,
                 90, 2)
    return time.perf_counter() - started


def detect_from_spells(spells: pd.DataFrame, home_country: str, params: ResidenceParams | None = None,
                       *, data_end: dt.date | None = None) -> pd.DataFrame:
    """``detect_changes`` over smoothed spells of many subjects (``spells_from_presence`` or
    ``spells_in_spark``): the same rows, columns and dtypes as ``detect_changes`` on the daily
    presence the spells were built from, with the same ``params`` and ``data_end``.

    ``spells``: ``subject_id, country, first_date, last_date`` (dates as ``datetime.date`` or
    datetime64), one row per spell, spells of one subject disjoint. Spells must be smoothed
    already: this function does not smooth (two adjacent or near spells of one country give the
    same result as their union, since the rule only counts days).
    """
    if not isinstance(spells, pd.DataFrame):
        raise InputContractError(f"expected a pandas DataFrame, got {type(spells).__name__}", where=WHERE)
    missing = [c for c in SPELL_COLUMNS if c not in spells.columns]
    if missing:
        raise InputContractError(f"missing column(s) {missing}; found {list(spells.columns)}", where=WHERE,
                                 hint="give subject_id, country, first_date, last_date, one row per spell")
    nulls = [c for c in SPELL_COLUMNS if spells[c].isna().any()]
    if nulls:
        raise InputContractError(f"null values in {nulls}", where=WHERE)
    return detect_arrays(spells[SUBJECT].to_numpy(), spells["country"].to_numpy(),
                         _day_numbers(spells["first_date"]), _day_numbers(spells["last_date"]),
                         home_country, params, data_end=data_end, subject_dtype=spells[SUBJECT].dtype)


def detect_arrays(subjects: np.ndarray, country: np.ndarray, first: np.ndarray, last: np.ndarray,
                  home_country: str, params: ResidenceParams | None = None, *, data_end: dt.date | None = None,
                  subject_dtype=None) -> pd.DataFrame:
    """``detect_from_spells`` on columns: first and last as int day numbers since 1970-01-01."""
    params = params or ResidenceParams()
    home_country = str(home_country).strip().upper()
    first = np.asarray(first, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    subject_dtype = subject_dtype if subject_dtype is not None else np.asarray(subjects).dtype
    codes, countries = pd.factorize(np.asarray(country).astype(str), sort=True)
    countries = np.asarray(countries, dtype=object)
    subject_codes, unique_subjects = pd.factorize(np.asarray(subjects), sort=True)
    order = np.lexsort((first, subject_codes))
    subject_codes, first, last = subject_codes[order], first[order], last[order]
    codes = codes[order].astype(np.int64)
    if (last < first).any():
        raise InputContractError("a spell ends before it starts", where=WHERE)
    new_subject = np.ones(len(first), dtype=bool)
    new_subject[1:] = subject_codes[1:] != subject_codes[:-1]
    if (~new_subject[1:] & (first[1:] <= last[:-1])).any():
        i = int(np.flatnonzero(~new_subject[1:] & (first[1:] <= last[:-1]))[0]) + 1
        raise InputContractError(
            f"spells of subject {unique_subjects[subject_codes[i]]!r} overlap on "
            f"{np.datetime64(int(first[i]), 'D')}", where=WHERE, hint="one country per subject and day")
    bounds = np.r_[np.flatnonzero(new_subject), len(first)].astype(np.int64)
    end = _end_day(data_end)
    if end is not None and len(last):
        ends = last[bounds[1:] - 1]  # sorted and disjoint: a subject's last spell ends last
        late = np.flatnonzero(ends > end)
        if len(late):
            s = int(late[0])
            raise InputContractError(
                f"data_end {np.datetime64(end, 'D')} is before subject {unique_subjects[s]!r}'s last known "
                f"day {np.datetime64(int(ends[s]), 'D')}", where=WHERE,
                hint="pass the last day the presence data covers, or leave data_end unset")
    pos = int(np.searchsorted(countries, home_country))
    home = pos if pos < len(countries) and countries[pos] == home_country else -1
    (k, subject, from_code, to_code, crossing, resolved, has_resolved, kind, direction, counted, stay, gap,
     initial) = _rule_kernel(bounds, first, last, codes, len(countries), home, end is not None,
                             end if end is not None else 0, params.window_days, params.migration_days,
                             params.non_migration_days, params.initial_days, params.initial_resident_nights,
                             params.temporary_min_days, params.min_crossing_nights)
    has_resolved = has_resolved[:k]
    resolved_dates = np.full(k, None, dtype=object)
    resolved_dates[has_resolved] = as_dates(resolved[:k][has_resolved])
    stay = stay[:k]
    return pd.DataFrame({
        SUBJECT: pd.Series(np.asarray(unique_subjects)[subject[:k]], dtype=subject_dtype),
        "from_country": countries[from_code[:k]],
        "to_country": countries[to_code[:k]],
        "crossing_date": as_dates(crossing[:k]),
        "resolved_date": resolved_dates,
        "kind": _KINDS[kind[:k]],
        "direction": _DIRECTIONS[direction[:k]],
        "days_counted": counted[:k].copy(),
        "stay_days": pd.arrays.IntegerArray(np.where(stay < 0, 0, stay), stay < 0),
        "gap_days": gap[:k].copy(),
        "in_initial_period": initial[:k].copy(),
    }, columns=list(CHANGE_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Spark: daily presence -> spells, and the rule over spells in batches of subjects
# ---------------------------------------------------------------------------------------------

def spells_in_spark(presence: DataFrame, params: ResidenceParams | None = None) -> DataFrame:
    """Daily presence (``pseudonym, date, country``, one row per known day) -> smoothed spells
    ``pseudonym, country, first_date, last_date``: the spells of ``spells_from_presence``.

    The smoothing of ``presence_rules`` restated so that window functions can do it:

    * a *run* is a maximal sequence of known days in one country (unknown days inside allowed),
      a *piece* a maximal part of a run without a gap longer than ``max_gap_days``. Pieces come
      from one window over the daily rows (the only shuffle and sort of the daily table) and one
      aggregation; every later step works on pieces, a few rows per subject.
    * Spillover: a run is fixable (``cond``) when it is interior, has fewer than
      ``min_crossing_nights`` known days, both neighbouring runs are in one same country and both
      gaps to them are at most ``max_gap_days``. Judged left to right against the corrected
      previous run, as the reference does, a fixable run is fixed exactly when the fixable run
      before it was not: in a chain of consecutive fixable runs the 1st, 3rd, 5th ... are fixed
      (a fixed run takes the country of the next run, so the next one then borders its own
      country and stays). A fixed run takes the country of the run before it.
    * Gap carry: two consecutive pieces merge when their countries (after the fix) are equal and
      the gap between them is at most ``max_gap_days`` days; inside a piece every gap is carried.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    params = params or ResidenceParams()
    gap, k = params.max_gap_days, params.min_crossing_nights
    p = PSEUDONYM
    col = F.col
    # One sort of the daily rows by (pseudonym, day); every later window has the same partitioning
    # and order ("day" is a piece's first day from the second step on), so Spark sorts only once.
    w = Window.partitionBy(p).orderBy("day")
    before = w.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    after = w.rowsBetween(Window.currentRow, Window.unboundedFollowing)

    # 1. Pieces from the daily rows: keep only the first and last day of each piece
    days = (presence.select(p, F.unix_date(col("date")).alias("day"), "country")
            .select(p, "day", "country", F.row_number().over(w).alias("nth"),
                    F.lag("day").over(w).alias("prev_day"), F.lag("country").over(w).alias("prev_country"),
                    F.lead("day").over(w).alias("next_day"), F.lead("country").over(w).alias("next_country")))
    # the reference refuses a null and two rows for one subject and day; so does this (when the job runs)
    step = (F.when(col("day") == col("prev_day"),
                   F.raise_error(F.lit(f"{WHERE}: more than one presence row for a subject and day")))
            .when(col("country").isNull() | col("day").isNull(),
                  F.raise_error(F.lit(f"{WHERE}: null date or country in daily presence")))
            .otherwise(col("day") - col("prev_day")))
    new_run = col("prev_country").isNull() | (col("prev_country") != col("country"))
    starts = (step > gap + 1) | new_run  # step first: Or skips its right side when the left is true
    ends = col("next_country").isNull() | (col("next_country") != col("country")) | (
        col("next_day") - col("day") > gap + 1)
    edges = days.select(p, "day", "country", "nth", starts.alias("starts"), ends.alias("ends"),
                        new_run.alias("new_run")).where(col("starts") | col("ends"))
    # a piece's first row is followed by its last row unless it is both
    pieces = (edges.select(p, "day", "country", "starts", "new_run",
                           F.when(col("ends"), col("day")).otherwise(F.lead("day").over(w)).alias("last"),
                           (F.when(col("ends"), col("nth")).otherwise(F.lead("nth").over(w)) - col("nth") + 1)
                           .alias("known"))
              .where(col("starts"))
              .select(p, "day", "last", "country", "known",
                      F.sum(col("new_run").cast("int")).over(before).alias("run")))

    # 2. Runs: values of a run's first and last piece on every piece of the run
    prev_run, next_run = F.lag("run").over(w), F.lead("run").over(w)
    marked = pieces.select(
        p, "day", "last", "country", "run",
        (prev_run.isNull() | (prev_run != col("run"))).alias("run_starts"),
        (next_run.isNull() | (next_run != col("run"))).alias("run_ends"),
        F.lag("country").over(w).alias("prev_country"), F.lead("country").over(w).alias("next_country"),
        (col("day") - F.lag("last").over(w) - 1).alias("gap_before"),
        (F.lead("day").over(w) - col("last") - 1).alias("gap_after"),
        (F.sum("known").over(before) - col("known")).alias("known_before"),
        F.sum("known").over(before).alias("known_through"))

    def from_start(c):  # the value on the run's first piece
        return F.last(F.when(col("run_starts"), c), ignorenulls=True).over(before)

    def from_end(c):  # the value on the run's last piece
        return F.first(F.when(col("run_ends"), c), ignorenulls=True).over(after)

    runs = marked.select(
        p, "day", "last", "country", "run", "run_starts",
        from_start(col("prev_country")).alias("run_prev"),
        (from_end(col("known_through")) - from_start(col("known_before"))).alias("run_known"),
        from_start(col("gap_before")).alias("run_gap_before"),
        from_end(col("gap_after")).alias("run_gap_after"),
        from_end(col("next_country")).alias("run_next"))

    # 3. Spillover: fixable runs, and in each chain of them the 1st, 3rd, ... fixed
    fixable = F.coalesce((col("run_known") < k) & (col("run_prev") == col("run_next"))
                         & (col("run_gap_before") <= gap) & (col("run_gap_after") <= gap), F.lit(False))
    judged = runs.select(p, "day", "last", "country", "run", "run_starts", "run_prev", fixable.alias("fixable"))
    chain_head = F.when(col("run_starts") & col("fixable") & ~F.coalesce(F.lag("fixable").over(w), F.lit(False)),
                        col("run"))
    heads = judged.select(p, "day", "last", "country", "run", "run_prev", "fixable", chain_head.alias("head"))
    fixed = col("fixable") & (((col("run") - F.last("head", ignorenulls=True).over(before)) % 2) == 0)
    smoothed = heads.select(p, "day", "last", F.when(fixed, col("run_prev")).otherwise(col("country")).alias("country"))

    # 4. Gap carry: consecutive pieces in one country at most max_gap_days apart make one spell
    prev_country, prev_last = F.lag("country").over(w), F.lag("last").over(w)
    new_spell = prev_country.isNull() | (prev_country != col("country")) | (col("day") - prev_last - 1 > gap)
    return (smoothed.select(p, "day", "last", "country", new_spell.cast("int").alias("new"))
            .select(p, "day", "last", "country", F.sum("new").over(before).alias("spell"))
            .groupBy(p, "spell")
            .agg(F.min("country").alias("country"), F.min("day").alias("first"), F.max("last").alias("last"))
            .select(p, "country", F.date_from_unix_date(col("first")).alias("first_date"),
                    F.date_from_unix_date(col("last")).alias("last_date")))


SPELL_SUBJECTS_PER_BATCH = 20_000  # ~5 spells each: one pandas call per 100k rows or so


def rule_in_batches(rows: DataFrame, per_batch, batch_size: int, subjects: int | None = None) -> DataFrame:
    """``per_batch`` (a pandas frame of whole pseudonyms -> their changes, ``schemas.RULE_CHANGES``)
    over batches of about ``batch_size`` pseudonyms, by a hash of the pseudonym: Spark's per-call cost
    is paid once per batch, not once per person. ``subjects`` (how many pseudonyms) only sizes the
    batches; it is counted when not given."""
    from pyspark.sql import functions as F

    subjects = subjects if subjects is not None else rows.select(PSEUDONYM).distinct().count()
    batches = max(1, -(-subjects // batch_size))
    return (rows.withColumn("_batch", F.pmod(F.xxhash64(PSEUDONYM), F.lit(batches)))
            .groupBy("_batch").applyInPandas(per_batch, RULE_CHANGES))


def detect_spells_in_spark(spells: DataFrame, home_country: str, params: ResidenceParams, data_end: dt.date,
                           subjects: int | None = None) -> DataFrame:
    """``detect_from_spells`` over batches of pseudonyms: spells (``pseudonym, country,
    first_date, last_date``) -> changes with ``schemas.RULE_CHANGES``."""
    from pyspark.sql import functions as F

    def per_batch(frame: pd.DataFrame) -> pd.DataFrame:
        found = detect_arrays(frame[PSEUDONYM].to_numpy(), frame["country"].to_numpy(),
                              frame["first_day"].to_numpy(), frame["last_day"].to_numpy(), home_country, params,
                              data_end=data_end, subject_dtype=frame[PSEUDONYM].dtype)
        return found.rename(columns={SUBJECT: PSEUDONYM})

    days = spells.select(PSEUDONYM, "country", F.unix_date("first_date").alias("first_day"),
                         F.unix_date("last_date").alias("last_day"))
    return rule_in_batches(days, per_batch, SPELL_SUBJECTS_PER_BATCH, subjects)


def detect_in_spark_fast(presence: DataFrame, home_country: str, params: ResidenceParams, data_end: dt.date,
                         subjects: int | None = None) -> DataFrame:
    """``job.detect_in_spark`` with the same arguments and result (rows and ``schemas.RULE_CHANGES``),
    through spells: ``spells_in_spark`` and then ``detect_spells_in_spark``."""
    return detect_spells_in_spark(spells_in_spark(presence, params), home_country, params, data_end, subjects)
