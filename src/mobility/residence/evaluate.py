"""Accuracy of detected residence changes against a synthetic ground truth.

Used by tests and the benchmark harness: precision, recall and F1 of detected long-term
changes, and the error of ``crossing_date``. The truth is what the 12/16-month rule could
decide from this operator's data: changes marked decidable and observable whose crossing
leaves a full initial-status year before it (the method needs one; docs/methodology.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import pandas as pd

MATCH_DAYS = 30  # a detected crossing within a month of the true one is the same crossing


@dataclass
class Accuracy:
    truth: int
    detected: int
    matched: int
    precision: float
    recall: float
    f1: float
    crossing_mae_days: float | None
    crossing_max_days: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def eligible_truth(truth: pd.DataFrame, data_start, initial_days: int = 365) -> pd.DataFrame:
    t = truth.copy()
    t["crossing_date"] = pd.to_datetime(t["crossing_date"]).dt.date
    for col in ("decidable", "observable"):
        t[col] = t[col].astype(str).str.lower().eq("true")
    earliest = pd.Timestamp(data_start).date() + timedelta(days=initial_days)
    return t[(t["kind"] == "long_term") & t["decidable"] & t["observable"] & (t["crossing_date"] >= earliest)]


def score(detected: pd.DataFrame, truth: pd.DataFrame, pseudonym_of, data_start,
          initial_days: int = 365) -> Accuracy:
    """``detected``: residence_changes rows; ``truth``: truth/residence_changes.csv;
    ``pseudonym_of``: maps a truth E.164 number to its pseudonym (the operator's key)."""
    t = eligible_truth(truth, data_start, initial_days)
    t = t.assign(pseudonym=t["msisdn"].map(pseudonym_of))
    d = detected[(detected["kind"] == "long_term") & ~detected["in_initial_period"].astype(bool)].copy()
    d["crossing_date"] = pd.to_datetime(d["crossing_date"]).dt.date
    pairs = t.merge(d, on=["pseudonym", "direction", "to_country"], suffixes=("_true", "_found"))
    pairs["error"] = [(b - a).days for a, b in zip(pairs["crossing_date_true"], pairs["crossing_date_found"])]
    pairs = pairs[pairs["error"].abs() <= MATCH_DAYS]
    pairs = pairs.sort_values("error", key=abs).drop_duplicates(["pseudonym", "crossing_date_true"]) \
        .drop_duplicates(["pseudonym", "crossing_date_found"])
    matched = len(pairs)
    precision = matched / len(d) if len(d) else 1.0
    recall = matched / len(t) if len(t) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    errors = pairs["error"].abs()
    return Accuracy(len(t), len(d), matched, round(precision, 4), round(recall, 4), round(f1, 4),
                    round(float(errors.mean()), 2) if matched else None,
                    int(errors.max()) if matched else None)
