"""Builders for residence-rule tests: presence frames from (country, days) segments.

A segment with country ``None`` is a run of unknown days (no row). Day 0 is ``START``.
Imported by the other ``test_rules_*`` modules; holds no tests itself.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from mobility.residence import detect_changes

START = date(2021, 1, 1)
HOME = "PHL"
MAIN = ["subject_id", "from_country", "to_country", "crossing_date", "resolved_date", "kind"]


def day(n: int) -> date:
    return START + timedelta(days=n)


def calendar(*segments: tuple[str | None, int]) -> list[str | None]:
    out: list[str | None] = []
    for country, n in segments:
        out.extend([country] * n)
    return out


def from_calendar(cal: list[str | None], subject: str = "a", offset: int = 0) -> pd.DataFrame:
    rows = [(subject, day(i + offset), c) for i, c in enumerate(cal) if c is not None]
    return pd.DataFrame(rows, columns=["subject_id", "date", "country"])


def presence(*segments: tuple[str | None, int], subject: str = "a") -> pd.DataFrame:
    return from_calendar(calendar(*segments), subject)


def changes(frame: pd.DataFrame, **kwargs) -> list[dict]:
    """detect_changes with home PHL, as a list of row dicts (easy to compare and print)."""
    return detect_changes(frame, HOME, **kwargs).to_dict("records")


def brief(rows: list[dict]) -> list[tuple]:
    """The six contract columns of each change, minus the subject."""
    return [(r["from_country"], r["to_country"], r["crossing_date"], r["resolved_date"], r["kind"])
            for r in rows]
