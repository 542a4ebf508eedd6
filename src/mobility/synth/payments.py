"""Payment records: monthly remittances from migrants, domestic agent/card payments, card use abroad.

A payment's sender_country is where the payer is when paying; agent and card payments carry a
location inside that country. Amounts are drawn in USD and converted with params.CURRENCIES.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mobility.schemas import CHANNELS, PAYMENTS  # channel shares below follow CHANNELS' order
from mobility.synth.clock import DAY_S, PAD
from mobility.synth.columns import Column
from mobility.synth.geo import clustered_points, jitter_inside
from mobility.synth.params import BEHAVIOURS, MSISDN_FORMAT_SHARES, TIME_FORMAT_SHARES, currency_of
from mobility.synth.world import World

PAYMENT_COLUMNS = PAYMENTS.columns
REMITTANCE_CHANNELS = (0.70, 0.05, 0.10, 0.15)
DOMESTIC_CHANNELS = (0.20, 0.35, 0.40, 0.05)
REMITTANCE_USD = (250.0, 0.5, 50.0, 2000.0)  # lognormal median, sigma, clip low, clip high
DOMESTIC_USD = (15.0, 0.8, 1.0, 500.0)
ABROAD_CARD_USD = (30.0, 0.8, 1.0, 800.0)
PAYMENT_USERS = 0.4  # share of residents who pay through the operator's wallet
ABROAD_CARD_DAILY = 0.08


def _pick_days(rng, allowed: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each entry of rows, one column uniformly among the True ones of allowed[row]."""
    cum = np.cumsum(allowed[rows], axis=1)
    k = (rng.random(len(rows)) * cum[:, -1]).astype(np.int64)
    return np.argmax(cum > k[:, None], axis=1)


def _usd(rng, n, spec):
    median, sigma, low, high = spec
    return np.clip(rng.lognormal(np.log(median), sigma, n), low, high)


def place_pools(rng: np.random.Generator, world: World) -> dict[int, np.ndarray]:
    """Points where people abroad pay, clustered around a few centres of each foreign country."""
    return {world.traj.code(iso3): clustered_points(rng, iso3, 300, centres=3, rural_share=0.05)[0]
            for iso3 in world.corridors}


def month_payments(world: World, rng: np.random.Generator, month: int, places: dict[int, np.ndarray]):
    """Columns of one month's payments (before row faults), sorted by time."""
    cal, traj, pop = world.cal, world.traj, world.pop
    first, stop = cal.month_first_day[month], cal.month_first_day[month + 1]
    cols = np.arange(first, stop) + PAD
    country = traj.country[:, cols]
    present = traj.observed[:, cols] & ~traj.foreign_sim[:, None]
    behaviour = pop.behaviour
    is_ = {b: behaviour == BEHAVIOURS.index(b) for b in BEHAVIOURS}
    parts = []
    # Migrants abroad at least 10 days this month send money home (about once a month).
    abroad = (country != 0) & present
    migrant = is_["emigrant_long_term"] | is_["temporary_worker"] | is_["returning_migrant"]
    eligible = np.flatnonzero(migrant & (abroad.sum(axis=1) >= 10))
    times = (rng.random(len(eligible)) < 0.9).astype(int) + (rng.random(len(eligible)) < 0.15)
    rows = np.repeat(eligible, times)
    parts.append(_payments(world, rng, rows, _pick_days(rng, abroad, rows), country, to_home=True,
                           channels=REMITTANCE_CHANNELS, usd=REMITTANCE_USD, fx=True))
    # Immigrants send money back to their origin.
    home_days = (country == 0) & present
    eligible = np.flatnonzero(is_["immigrant"] & (home_days.sum(axis=1) >= 10))
    rows = eligible[rng.random(len(eligible)) < 0.6]
    parts.append(_payments(world, rng, rows, _pick_days(rng, home_days, rows), country, to_home=False,
                           channels=REMITTANCE_CHANNELS, usd=REMITTANCE_USD, fx=True, to_origin=True))
    # Residents' domestic payments, near their usual cells.
    user = world.stream("payment_users").random(len(pop)) < PAYMENT_USERS  # same people every month
    resident = (is_["stayer"] | is_["short_trip"] | is_["immigrant"]) & user
    eligible = np.flatnonzero(resident & (home_days.sum(axis=1) > 0))
    rows = np.repeat(eligible, rng.poisson(1.5, len(eligible)))
    parts.append(_payments(world, rng, rows, _pick_days(rng, home_days, rows), country, to_home=False,
                           channels=DOMESTIC_CHANNELS, usd=DOMESTIC_USD, fx=False))
    # Card payments abroad by anyone travelling on a home SIM.
    hit = abroad & (rng.random(abroad.shape) < ABROAD_CARD_DAILY)
    rows, days = np.nonzero(hit)
    parts.append(_payments(world, rng, rows, days, country, to_home=False, channels=(0, 1, 0, 0),
                           usd=ABROAD_CARD_USD, fx=True))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _columns(world, rng, month, merged, first, places)


def _payments(world, rng, rows, day_cols, country, *, to_home, channels, usd, fx, to_origin=False):
    n = len(rows)
    where = country[rows, day_cols].astype(np.int64)
    receiver = np.where(to_origin, world.traj.origin[rows], np.where(to_home, 0, where))
    return {"person": rows, "day": day_cols, "where": where, "receiver": receiver.astype(np.int64),
            "usd": _usd(rng, n, usd), "channel": rng.choice(4, n, p=channels),
            "fx": np.full(n, fx), "remit": np.full(n, to_home or to_origin)}


def _columns(world: World, rng, month: int, p: dict[str, np.ndarray], first: int, places) -> dict[str, Column]:
    cal, countries = world.cal, world.traj.countries
    n = len(p["person"])
    day = p["day"] + first
    # Pay between 08:00 and 22:00 local where the payer is, on the same calendar day at home, so that
    # each month's file holds exactly the payments dated in that month in the home zone.
    payer_offset = world.zone_offsets[p["where"], day + PAD]
    ahead = world.zone_offsets[0, day + PAD] - payer_offset
    earliest = np.maximum(8 * 3600, -ahead)
    latest = np.maximum(np.minimum(22 * 3600, DAY_S - ahead), earliest + 1)
    local = earliest + (rng.random(n) * (latest - earliest)).astype(np.int64)
    utc = (cal.epoch_day0 + day) * DAY_S + local - payer_offset
    order = np.lexsort((p["person"], utc))
    p = {k: v[order] for k, v in p.items()}
    utc, day = utc[order], day[order]
    payers = {world.home, *world.corridors}
    codes = [currency_of(c) if c in payers else ("", 2, 1.0) for c in countries]
    digits = np.array([c[1] for c in codes])[p["where"]]
    per_usd = np.array([c[2] for c in codes], dtype=float)[p["where"]]
    amount = _round_minor(p["usd"] * per_usd, digits)
    fee_share = np.where(p["remit"], rng.uniform(0.01, 0.04, n), np.where(p["channel"] == 1, 0.0, 0.01))
    fee = _round_minor(amount * fee_share, digits)
    fx_margin = np.round(rng.uniform(0.005, 0.03, n), 4)
    lonlat = _locations(world, rng, p, places)
    located = (p["channel"] == 1) | (p["channel"] == 2)
    sims = world.sims
    sim = sims.active(p["person"], day, np.ones(n))  # payments go through the main SIM
    receiver_known = (p["channel"] == 0) | p["remit"]
    label = cal.months[month].replace("-", "")
    columns = {
        "txn_id": Column.of(pa.array([f"TX{label}{i:07d}" for i in range(n)], pa.string())),
        "txn_time": Column.of(world.renderer.render(utc, rng.choice(3, n, p=TIME_FORMAT_SHARES))),
        "sender_msisdn": Column.pick(sims.spellings, sim * 3 + rng.choice(3, n, p=MSISDN_FORMAT_SHARES)),
        "receiver_msisdn": Column(sims.counterparts,
                                  np.where(receiver_known, rng.integers(0, len(sims.counterparts), n), -1)),
        "sender_country": Column.pick(countries, p["where"], pa.string()),
        "receiver_country": Column.pick(countries, p["receiver"], pa.string()),
        "amount": Column.of(pa.array(amount, pa.float64())),
        "currency": Column.pick([c[0] for c in codes], p["where"], pa.string()),
        "fee": Column.of(pa.array(fee, pa.float64())),
        "fx_margin": Column.of(pa.array(fx_margin, pa.float64()), null=~p["fx"]),
        "channel": Column.pick(CHANNELS, p["channel"], pa.string()),
        "latitude": Column.of(pa.array(np.round(lonlat[:, 1], 6)), null=~located),
        "longitude": Column.of(pa.array(np.round(lonlat[:, 0], 6)), null=~located),
    }
    return {name: columns[name] for name in PAYMENT_COLUMNS}


def _round_minor(values: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Round each amount to its currency's minor unit (0, 2 or 3 decimals)."""
    out = values.copy()
    for d in np.unique(digits):
        out[digits == d] = np.round(values[digits == d], int(d))
    return out


def _locations(world: World, rng, p, places) -> np.ndarray:
    """At home: near one of the payer's usual cells; abroad: one of the country's payment places."""
    n = len(p["person"])
    anchor = world.pop.anchors[p["person"], rng.integers(0, 4, n)]
    lonlat = jitter_inside(rng, world.home, world.cells.lonlat[anchor], 0.005)
    for code, pool in places.items():
        here = np.flatnonzero(p["where"] == code)
        lonlat[here] = pool[rng.integers(0, len(pool), len(here))]
    return lonlat
