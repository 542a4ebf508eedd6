"""Properties of the generator's building blocks, checked on many random inputs."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.errors import ConfigError
from mobility.synth.clock import PAD, TimeRenderer, make_calendar
from mobility.synth.columns import Column
from mobility.synth.faults import CDR_MALFORMED, corrupt_rows
from mobility.synth.numbers import imeis, mobile_numbers
from mobility.synth.params import BEHAVIOURS
from mobility.synth.population import behaviour_counts
from mobility.synth.trajectories import _fill

shares = st.dictionaries(st.sampled_from(BEHAVIOURS), st.floats(0, 10), min_size=1).filter(
    lambda d: sum(d.values()) > 0)


@given(st.integers(1, 5000), shares)
def test_behaviour_counts_split_everyone_close_to_the_shares(n, weights):
    counts = behaviour_counts(n, weights)
    assert sum(counts.values()) == n
    positive = [b for b, w in weights.items() if w > 0]
    if n >= len(positive):
        assert all(counts[b] >= 1 for b in positive)
    total = sum(weights.values())
    for b in BEHAVIOURS:
        assert abs(counts[b] - weights.get(b, 0) / total * n) <= len(BEHAVIOURS)
    assert all(counts[b] == 0 for b in BEHAVIOURS if weights.get(b, 0) == 0)


def test_behaviour_counts_reject_unknown_behaviours():
    with pytest.raises(ConfigError, match="unknown behaviours"):
        behaviour_counts(10, {"nomad": 1.0})


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["PHL", "NPL", "IDN", "MMR", "SAU", "QAT", "USA"]), st.integers(0, 2**32))
def test_mobile_numbers_are_valid_distinct_and_spelled_consistently(country, seed):
    numbers = mobile_numbers(np.random.Generator(np.random.PCG64(seed)), country, 40)
    region = phonenumbers.region_code_for_country_code(phonenumbers.parse(numbers.e164[0]).country_code)
    assert len(set(numbers.e164)) == 40
    for e164, national, spaced in zip(numbers.e164, numbers.national, numbers.spaced):
        for text in (e164, national, spaced):
            parsed = phonenumbers.parse(text, region)
            assert phonenumbers.is_valid_number(parsed)
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == e164


@given(st.integers(0, 2**32))
def test_imeis_have_15_digits_and_a_luhn_check_digit(seed):
    for imei in imeis(np.random.Generator(np.random.PCG64(seed)), 20):
        digits = [int(c) for c in imei]
        assert len(digits) == 15
        total = sum(d if i % 2 == 0 else (2 * d - 9 if 2 * d > 9 else 2 * d) for i, d in enumerate(digits))
        assert total % 10 == 0


@lru_cache(maxsize=8)
def _renderer(zone: str) -> TimeRenderer:
    return TimeRenderer(zone, make_calendar("2024-01", 24))


@settings(deadline=None)
@given(st.sampled_from(["Asia/Manila", "America/New_York", "Australia/Sydney", "Asia/Kathmandu"]),
       st.lists(st.integers(0, 365 * 2 * 86400 - 1), min_size=1, max_size=20), st.integers(0, 2))
def test_rendered_times_read_back_as_the_same_instant(zone, seconds, style):
    cal = make_calendar("2024-01", 24)
    utc = cal.epoch_day0 * 86400 + np.array(seconds)
    texts = _renderer(zone).render(utc, np.full(len(utc), style)).to_pylist()
    for instant, text in zip(utc, texts):
        if style == 0:
            local = datetime.fromisoformat(text)
            # A naive wall-clock time stands for the instant whose local reading it is (fold: DST repeats).
            assert local.tzinfo is None
            assert instant in {int(local.replace(tzinfo=ZoneInfo(zone), fold=f).timestamp()) for f in (0, 1)}
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            assert parsed.tzinfo is not None and int(parsed.timestamp()) == instant
            assert text.endswith("Z") == (style == 2)


@given(st.integers(1990, 2030), st.integers(1, 12), st.integers(1, 40))
def test_calendar_months_are_consecutive(year, month, months):
    cal = make_calendar(f"{year}-{month:02d}", months)
    assert len(cal.months) == months and cal.months[0] == f"{year}-{month:02d}"
    lengths = np.diff(cal.month_first_day)
    assert ((lengths >= 28) & (lengths <= 31)).all()
    assert cal.n_cols == cal.n_days + 2 * PAD


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-3, 25), st.integers(0, 12), st.integers(1, 9)),
                max_size=12))
def test_fill_writes_exactly_the_given_ranges(spans):
    fast = np.zeros((5, 20), dtype=np.int16)
    slow = fast.copy()
    if spans:
        rows, first, length, value = (np.array(v) for v in zip(*spans))
        _fill(fast, rows, first, first + length, value)
        for r, f, n, v in spans:
            slow[r, max(f, 0):max(min(f + n, 20), 0)] = v
    assert (fast == slow).all()


@given(st.integers(1, 400), st.floats(0, 0.5), st.integers(0, 2**32))
def test_corrupt_rows_counts_and_places_every_fault(n, rate, seed):
    rng = np.random.Generator(np.random.PCG64(seed))
    times = [f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00" for i in range(n)]
    columns = {
        "msisdn": Column.of(pa.array([f"+6391700{i:05d}" for i in range(n)])),
        "event_time": Column.of(pa.array(times)),
        "event_type": Column.of(pa.array(["data"] * n)),
        "cell_id": Column.of(pa.array(["c1"] * n)),
        "visited_plmn": Column.of(pa.array([None] * n, pa.string())),
        "duration_s": Column.of(pa.array([None] * n, pa.int64())),
    }
    bad = {"invalid_msisdn": np.array(["+631"], dtype=object), "msisdn_column": "msisdn",
           "time_column": "event_time", "unknown_cell_id": np.array(["zz"], dtype=object)}
    order, counts = corrupt_rows(rng, columns, rate, CDR_MALFORMED, bad)
    assert len(order) == n + counts["duplicate"]
    written = list(zip(*(c.build(order).to_pylist() for c in columns.values())))
    assert len(written) - len(set(written)) == counts["duplicate"]
    msisdn = columns["msisdn"].build().to_pylist()
    assert msisdn.count("+631") == counts["invalid_msisdn"]
    assert columns["cell_id"].build().to_pylist().count("zz") == counts["unknown_cell_id"]
    changed_time = sum(a != b for a, b in zip(columns["event_time"].build().to_pylist(), times))
    assert changed_time == counts["unparseable_time"]
    assert (np.diff(order) >= 0).all(), "a duplicate sits right after its original"
