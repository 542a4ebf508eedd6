"""Exact remittance aggregates per corridor and channel, on public domains (memory only).

One pure pandas core, ``cell_sums``, bounds each sender's contribution and sums the measures of
a month's corridor transfers; the Spark path applies it to hash buckets of senders (as the
residence job does), and the benchmark applies it to a raw file, so both count alike. The
exact tables returned here must go only to ``mobility.privacy_budget.publish``.

Measures (integers, so OpenDP adds integer noise): number of transfers, volume in whole USD,
and the sum of per-transfer total cost in basis points of the amount sent, overall and for
transfers near the SDG 10.c.1 reference amount. Mean cost percentages are ratios of two noisy
tables (``cost_ratios``), computed after noise.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pycountry

from mobility.aggregate import domains as D
from mobility.config import RemittanceBounds
from mobility.reference import PACKAGE_DATA
from mobility.schemas import CHANNELS

SENDER = "sender"  # the sender's pseudonym inside the core; never in an output
CORRIDOR_KEYS = ("sender_country", "receiver_country", "channel")

TRANSFERS = "transfers"
VOLUME = "volume_usd"
COST = "cost_bp_sum"
TRANSFERS_NEAR = "transfers_near_200"
COST_NEAR = "cost_bp_sum_near_200"
MEASURES = (TRANSFERS, VOLUME, COST, TRANSFERS_NEAR, COST_NEAR)
COST_PCT = "cost_pct"  # the derived table of mean cost percentages
# Budget split: counts and volume are the headline SDG 17.3.2 figures, the cost sums serve 10.c.1 ratios.
SHARES = {TRANSFERS: 0.3, VOLUME: 0.3, COST: 0.2, TRANSFERS_NEAR: 0.1, COST_NEAR: 0.1}

# SDG indicator 10.c.1 (metadata, UN Statistics Division; World Bank Remittance Prices Worldwide):
# cost of sending USD 200. Transfers of USD 150-250 (reference +-25%, project choice) stand for it.
REFERENCE_USD = 200
NEAR_BAND_USD = (150.0, 250.0)
ALL_BAND, NEAR_BAND = "all", "150-250"
BP_PER_PCT = 100  # costs are summed in basis points so the noisy sums are integers

FX_COLUMNS = ("currency", "date", "frequency", "units_per_usd", "source")
PACKAGED_FX = PACKAGE_DATA / "fx-usd-rates.csv"


# ---- bounds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bounds:
    """Contribution bounds of one sender in one month and the sensitivities they imply."""

    max_transfers: int
    amount_min_usd: float
    amount_max_usd: float
    cost_max_pct: float

    @classmethod
    def of(cls, bounds: RemittanceBounds) -> "Bounds":
        return cls(bounds.max_transfers_per_sender_month, bounds.amount_min_usd, bounds.amount_max_usd,
                   bounds.cost_max_pct)

    @property
    def amount_cap(self) -> int:
        """Largest whole-USD amount a transfer can add (a clamped amount rounds to at most this)."""
        return int(math.ceil(self.amount_max_usd))

    @property
    def cost_cap_bp(self) -> int:
        return int(math.ceil(self.cost_max_pct * BP_PER_PCT))

    def sensitivities(self) -> dict[str, int]:
        """d_in per table: a sender adds at most k transfers, each at most the per-transfer cap."""
        k = self.max_transfers
        return {TRANSFERS: k, VOLUME: k * self.amount_cap, COST: k * self.cost_cap_bp,
                TRANSFERS_NEAR: k, COST_NEAR: k * self.cost_cap_bp}

    def describe(self) -> dict:
        return {"max_transfers_per_sender_month": self.max_transfers,
                "amount_usd_clamped_to": [self.amount_min_usd, self.amount_max_usd],
                "cost_pct_clamped_to": [0.0, self.cost_max_pct], "sensitivities": self.sensitivities()}


# ---- what to count ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RemittanceSpec:
    """Public parameters only: the corridor list, the month, the breakdowns and the bounds."""

    corridors: tuple[tuple[str, str], ...]
    period: str  # YYYY-MM, local month of the transfer
    by: tuple[str, ...] = ()
    age_bands: tuple[tuple[int, int | None], ...] = D.AGE_BANDS
    bounds: Bounds | None = None  # None: no bounding (the benchmark's truth only)
    channels: tuple[str, ...] = CHANNELS

    def __post_init__(self):
        if not self.corridors:
            raise ValueError("no corridors: the agreement's 'corridors' list is empty")
        if len(set(self.corridors)) != len(self.corridors):
            raise ValueError("the corridor list has duplicates")
        unknown = [b for b in self.by if b not in D.BY_COLUMNS]
        if unknown or len(set(self.by)) != len(self.by):
            raise ValueError(f"by must be distinct values of {list(D.BY_COLUMNS)}, got {list(self.by)}")

    @property
    def keys(self) -> list[str]:
        return [*CORRIDOR_KEYS, *self.by]

    def domain(self) -> pd.DataFrame:
        """Every corridor x channel (x sex x age band) cell, published even when empty."""
        levels = D.by_levels(self.by, self.age_bands)
        rows = [(s, r, c, *combo) for s, r in self.corridors for c in self.channels
                for combo in _product(levels)]
        return pd.DataFrame(rows, columns=self.keys, dtype=object)

    def cost_domain(self) -> pd.DataFrame:
        cells = self.domain()
        return pd.concat([cells.assign(amount_band=band) for band in (ALL_BAND, NEAR_BAND)], ignore_index=True)


def _product(levels: list[tuple[str, ...]]):
    import itertools

    return itertools.product(*levels)


# ---- FX table --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FxTable:
    """Units of each currency per USD, monthly (dated on the 1st) or daily; a daily rate wins."""

    path: Path
    sha256: str
    monthly: dict[tuple[str, str], float] = field(repr=False)  # (currency, YYYY-MM) -> units per USD
    daily: dict[tuple[str, dt.date], float] = field(repr=False)
    sources: tuple[str, ...] = ()

    def rate(self, currency: str, day: dt.date) -> float | None:
        found = self.daily.get((currency, day))
        return found if found is not None else self.monthly.get((currency, f"{day:%Y-%m}"))

    def rates_for(self, keys: Iterable[tuple[str, dt.date]]) -> tuple[dict, list[tuple[str, dt.date]]]:
        """(rates of the keys found, keys without a rate, sorted)."""
        found, missing = {}, []
        for currency, day in keys:
            rate = self.rate(currency, day)
            if rate is None:
                missing.append((currency, day))
            else:
                found[(currency, day)] = rate
        return found, sorted(missing)

    def describe(self) -> dict:
        return {"file": self.path.name, "sha256": f"sha256:{self.sha256}",  # prefixed: bare hex reads as an identifier
                "sources": list(self.sources),
                "convention": "units of the sending currency per USD; a daily rate for the transfer's local "
                              "date, else the monthly rate of its month"}


def default_fx_path() -> Path:
    """``$MOBILITY_FX``, else ``$MOBILITY_CONF/fx/usd-rates.csv``, else ``./conf/fx/usd-rates.csv``,
    else the copy shipped in the package."""
    if os.environ.get("MOBILITY_FX"):
        return Path(os.environ["MOBILITY_FX"])
    candidates = [Path(os.environ["MOBILITY_CONF"]) / "fx" / "usd-rates.csv"] if os.environ.get("MOBILITY_CONF") else []
    candidates.append(Path.cwd() / "conf" / "fx" / "usd-rates.csv")
    return next((p for p in candidates if p.is_file()), PACKAGED_FX)


def load_fx(path: str | os.PathLike | None = None) -> FxTable:
    """Read and check an FX table; errors name the file, line and field."""
    from mobility.errors import ConfigError

    path = Path(path) if path is not None else default_fx_path()
    if not path.is_file():
        raise ConfigError("FX table not found", where=str(path), hint="point MOBILITY_FX at a usd-rates.csv")
    raw = path.read_bytes()
    reader = csv.DictReader(raw.decode("utf-8").splitlines())
    if tuple(reader.fieldnames or ()) != FX_COLUMNS:
        raise ConfigError(f"expected columns {','.join(FX_COLUMNS)}, got {reader.fieldnames}", where=str(path))
    monthly: dict[tuple[str, Any], float] = {}  # (currency, "YYYY-MM")
    daily: dict[tuple[str, Any], float] = {}  # (currency, date)
    sources: set[str] = set()
    key: tuple[str, Any]
    for line, row in enumerate(reader, start=2):
        where = f"{path}:{line}"
        currency = (row["currency"] or "").strip().upper()
        if pycountry.currencies.get(alpha_3=currency) is None:
            raise ConfigError(f"currency {currency!r} is not an ISO 4217 code", where=where)
        try:
            day = dt.date.fromisoformat(row["date"].strip())
            rate = float(row["units_per_usd"])
        except (ValueError, AttributeError):
            raise ConfigError("date must be YYYY-MM-DD and units_per_usd a number", where=where) from None
        if not math.isfinite(rate) or rate <= 0:
            raise ConfigError(f"units_per_usd must be positive, got {row['units_per_usd']!r}", where=where)
        frequency = (row["frequency"] or "").strip()
        if frequency == "monthly":
            if day.day != 1:
                raise ConfigError("a monthly rate is dated on the first day of its month", where=where)
            key, table = (currency, f"{day:%Y-%m}"), monthly
        elif frequency == "daily":
            key, table = (currency, day), daily
        else:
            raise ConfigError(f"frequency must be 'monthly' or 'daily', got {frequency!r}", where=where)
        if key in table:
            raise ConfigError(f"a second {frequency} rate for {currency} on {day}", where=where)
        table[key] = rate
        sources.add((row["source"] or "").strip() or "unstated")
    return FxTable(path, hashlib.sha256(raw).hexdigest(), monthly, daily, tuple(sorted(sources)))


# ---- the pure core ---------------------------------------------------------------------------
def bounded(transfers: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """Each sender's first ``max_transfers`` transfers of the month (by time; ties on the other
    columns so a rerun keeps the same rows)."""
    order = [SENDER, "txn_time", "sender_country", "receiver_country", "channel", "amount", "fee"]
    ranked = transfers.sort_values(order, kind="stable")
    return ranked[ranked.groupby(SENDER, sort=False).cumcount() < bounds.max_transfers]


def with_measures(transfers: pd.DataFrame, rates: Mapping[tuple[str, dt.date], float],
                  bounds: Bounds | None) -> pd.DataFrame:
    """Per transfer: USD amount, cost in basis points, near-200 flag; clamped when ``bounds`` is given."""
    out = transfers.copy()
    per_usd = pd.Series([rates[(c, d)] for c, d in zip(out["currency"], out["date"])], index=out.index,
                        dtype="float64")
    usd = out["amount"].astype("float64") / per_usd
    margin = out["fx_margin"].astype("float64").fillna(0.0)  # no margin reported: no conversion charged
    cost_bp = (out["fee"].astype("float64") / out["amount"].astype("float64") + margin) * 100 * BP_PER_PCT
    out["near"] = usd.between(*NEAR_BAND_USD)
    if bounds is None:
        out["usd"], out["cost_bp"] = usd, cost_bp
    else:
        out["usd"] = usd.clip(bounds.amount_min_usd, bounds.amount_max_usd).round().astype("int64")
        out["cost_bp"] = cost_bp.clip(0, bounds.cost_cap_bp).round().astype("int64")
    return out


def cell_sums(transfers: pd.DataFrame, spec: RemittanceSpec,
              rates: Mapping[tuple[str, dt.date], float]) -> pd.DataFrame:
    """Bound (unless ``spec.bounds`` is None), convert and sum: one row per key combination seen."""
    frame = transfers if spec.bounds is None else bounded(transfers, spec.bounds)
    frame = with_measures(frame, rates, spec.bounds)
    near = frame["near"]
    frame = frame.assign(**{TRANSFERS: 1, VOLUME: frame["usd"], COST: frame["cost_bp"],
                            TRANSFERS_NEAR: near.astype("int64"), COST_NEAR: frame["cost_bp"].where(near, 0)})
    if frame.empty:
        return pd.DataFrame({**{k: pd.Series(dtype=object) for k in spec.keys},
                             **{m: pd.Series(dtype="int64") for m in MEASURES}})
    return frame.groupby(spec.keys, as_index=False, dropna=False)[list(MEASURES)].sum()


def tables_from_sums(sums: pd.DataFrame, spec: RemittanceSpec) -> dict[str, pd.DataFrame]:
    """One table per measure, every domain cell present (zeros included), column ``count``."""
    frame = sums.copy()
    D.breakdown_values(frame, spec.by, spec.age_bands)
    domain = spec.domain()
    measures = list(MEASURES)
    summed = frame.groupby(spec.keys, as_index=False, dropna=False)[measures].sum()
    merged = domain.merge(summed, on=spec.keys, how="left", validate="one_to_one")
    if merged[measures].notna().all(axis=1).sum() != len(summed):  # one merge for all five measures
        raise ValueError(f"sums with keys outside the public domain of columns {spec.keys}; map them first")
    dtype = "float64" if spec.bounds is None else "int64"  # the unbounded truth keeps fractions
    return {m: merged[spec.keys].assign(**{D.COUNT: merged[m].fillna(0).astype(dtype)}) for m in measures}


def exact_tables(transfers: pd.DataFrame, spec: RemittanceSpec,
                 rates: Mapping[tuple[str, dt.date], float]) -> dict[str, pd.DataFrame]:
    """The five tables of one month from per-transfer rows (columns of ``TRANSFER_COLUMNS``)."""
    return tables_from_sums(cell_sums(transfers, spec, rates), spec)


TRANSFER_COLUMNS = (SENDER, "txn_time", "date", "sender_country", "receiver_country", "channel", "amount",
                    "currency", "fee", "fx_margin")


# ---- ratios after noise ----------------------------------------------------------------------
def ratio_interval(numerator: float, denominator: float, num_bound: float, den_bound: float,
                   cap: float) -> tuple[float | None, float, float]:
    """(estimate, low, high) of numerator/denominator from noisy values and their error bounds.

    If both noisy values are within their bounds of the exact ones, the exact ratio lies in
    [(S - bS) / (N + bN), (S + bS) / (N - bN)] (clipped to [0, cap]); with N <= bN the
    denominator may be 0 and only [0, cap] is stated. No estimate is given then.
    """
    if denominator <= den_bound:
        return None, 0.0, float(cap)
    estimate = min(max(numerator / denominator, 0.0), cap)
    low = max((numerator - num_bound) / (denominator + den_bound), 0.0)
    high = min((numerator + num_bound) / (denominator - den_bound), cap)
    return estimate, min(low, estimate), max(high, estimate)


def cost_ratios(noisy: Mapping[str, pd.DataFrame], spec: RemittanceSpec,
                error_bounds: Mapping[str, int], value: str = "noisy_count") -> pd.DataFrame:
    """Mean total cost in % of the amount sent, per cell and amount band, from the noisy measurements
    (column ``value``: as drawn, negatives included) only."""
    assert spec.bounds is not None, "cost ratios are those of a bounded (release) spec"
    cap_pct = spec.bounds.cost_cap_bp / BP_PER_PCT
    rows = []
    for band, (num_name, den_name) in ((ALL_BAND, (COST, TRANSFERS)), (NEAR_BAND, (COST_NEAR, TRANSFERS_NEAR))):
        num = noisy[num_name].set_index(spec.keys)[value]
        den = noisy[den_name].set_index(spec.keys)[value]
        for key in spec.domain().itertuples(index=False, name=None):
            estimate, low, high = ratio_interval(num.loc[key] / BP_PER_PCT, den.loc[key],
                                                 error_bounds[num_name] / BP_PER_PCT, error_bounds[den_name],
                                                 cap_pct)
            rows.append((*key, band, int(den.loc[key]),
                         None if estimate is None else round(estimate, 2), round(low, 2), round(high, 2)))
    return pd.DataFrame(rows, columns=[*spec.keys, "amount_band", "noisy_transfers", "mean_cost_pct",
                                       "cost_pct_low", "cost_pct_high"])


def ratio_description(error_bounds: Mapping[str, int], confidence: float) -> dict:
    return {"post_processing_of": {ALL_BAND: [COST, TRANSFERS], NEAR_BAND: [COST_NEAR, TRANSFERS_NEAR]},
            "mean_cost_pct": "noisy cost sum (basis points) / 100 / noisy transfers; empty when the noisy "
                             "transfers are within their 95% error bound (the denominator may be 0)",
            "interval": "cost_pct_low..cost_pct_high holds the exact mean of the clamped costs whenever both "
                        "noisy tables are within their 95% bounds",
            "confidence": round(confidence, 4), "error_bounds_95_used": dict(error_bounds),
            "amount_band": f"{ALL_BAND}: every transfer; {NEAR_BAND}: USD {NEAR_BAND_USD[0]:g}-{NEAR_BAND_USD[1]:g} "
                           f"before clamping, standing for the SDG 10.c.1 reference of USD {REFERENCE_USD}",
            "privacy_cost": "none (post-processing of published noisy tables)"}


# ---- Spark path ------------------------------------------------------------------------------
SENDERS_PER_BATCH = 5000  # one pandas call per hash bucket of senders, not per sender


def corridor_transfers(payments, spec: RemittanceSpec, time_zone: str):
    """The month's transfers on a listed corridor, in the core's column names (Spark)."""
    from pyspark.sql import functions as F

    pairs = [f"{s}>{r}" for s, r in spec.corridors]
    return (payments.where((F.col("month") == spec.period)
                           & F.concat_ws(">", "sender_country", "receiver_country").isin(*pairs))
            .select(F.col("sender_pseudonym").alias(SENDER), F.col("txn_hour").alias("txn_time"),
                    F.to_date(F.from_utc_timestamp("txn_hour", time_zone)).alias("date"),
                    "sender_country", "receiver_country", "channel", "amount", "currency", "fee", "fx_margin"))


def fx_keys(transfers) -> list[tuple[str, dt.date]]:
    """Distinct (currency, local date) pairs of the month: at most currencies x 31 rows."""
    return sorted((r["currency"], r["date"]) for r in transfers.select("currency", "date").distinct().collect())


def exact_tables_spark(transfers, profile, spec: RemittanceSpec, rates: Mapping[tuple[str, dt.date], float],
                       senders: int | None = None) -> dict[str, pd.DataFrame]:
    """``cell_sums`` on hash buckets of senders (a sender's transfers share a bucket), summed in Spark."""
    from pyspark.sql import functions as F

    from mobility.aggregate.flows import with_demographics

    if spec.by:
        if profile is None:
            raise ValueError("a breakdown by sex or age_band needs the subscribers profile")
        transfers = with_demographics(transfers, profile, spec.age_bands, date_column="date", key=SENDER)
    columns = [*TRANSFER_COLUMNS, *spec.by]
    senders = senders if senders is not None else transfers.select(SENDER).distinct().count()
    batches = max(1, -(-senders // SENDERS_PER_BATCH))
    schema = ", ".join([*(f"{k} string" for k in spec.keys), *(f"{m} long" for m in MEASURES)])
    rates = dict(rates)

    def per_batch(frame: pd.DataFrame) -> pd.DataFrame:
        return cell_sums(frame[columns], spec, rates)

    sums = (transfers.select(*columns).withColumn("_batch", F.pmod(F.xxhash64(SENDER), F.lit(batches)))
            .groupBy("_batch").applyInPandas(per_batch, schema)
            .groupBy(*spec.keys).agg(*(F.sum(m).alias(m) for m in MEASURES)).toPandas())
    return tables_from_sums(sums.astype({m: "int64" for m in MEASURES}), spec)


def domain_sizes(spec: RemittanceSpec) -> dict[str, int]:
    return {m: len(spec.domain()) for m in MEASURES}


def corridor_list(corridors: Sequence) -> tuple[tuple[str, str], ...]:
    return tuple((c.sender_country, c.receiver_country) for c in corridors)
