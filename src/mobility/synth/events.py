"""Call-detail records, drawn month by month and in blocks of people so memory stays bounded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mobility.schemas import CDR, EVENT_TYPES
from mobility.synth.clock import DAY_S, PAD
from mobility.synth.columns import Column
from mobility.synth.params import (
    ABROAD_ACTIVITY,
    CALL_MAX_S,
    CALL_MEDIAN_S,
    CALL_SIGMA,
    COUNTERPART_MISSING,
    DAY_START_HOUR,
    EVENT_TYPE_SHARES,
    HOURLY_PROFILE,
    MSISDN_FORMAT_SHARES,
    NIGHT_HOME_CELL,
    TIME_FORMAT_SHARES,
    VISITOR_ACTIVITY,
    WEEKDAY_FACTOR,
)
from mobility.synth.world import World

CDR_COLUMNS = CDR.columns
DAY_ANCHOR_SHARES = (0.25, 0.40, 0.20, 0.15)  # home, work-like, two other usual cells
TRAVEL_SHARE = 0.04  # home events on any cell of the country (travel within it)
PREFERRED_NETWORK = 0.85  # abroad, the share of events on the person's usual foreign network
EVENTS_PER_BLOCK = 500_000  # bounds memory per block; it does not grow with the period
# Presence-day hour slots start at DAY_START_HOUR; the profile is rotated to match.
_SLOT_P = np.roll(np.array(HOURLY_PROFILE), -DAY_START_HOUR) / sum(HOURLY_PROFILE)


@dataclass
class Draw:
    """Events of one block before rendering; parallel arrays."""

    person: np.ndarray
    day: np.ndarray  # presence day
    country: np.ndarray
    utc: np.ndarray  # seconds since 1970
    slot: np.ndarray  # hour of the presence day (0 = 07:00 local)
    spill: np.ndarray  # border-spillover episode number, -1 for ordinary events
    sim: np.ndarray | None = None

    def take(self, keep: np.ndarray) -> "Draw":
        return Draw(self.person[keep], self.day[keep], self.country[keep], self.utc[keep], self.slot[keep],
                    self.spill[keep], None if self.sim is None else self.sim[keep])


def blocks(world: World, month: int, events_per_day: float) -> list[tuple[int, int]]:
    """Ranges of people whose events for the month fit in about EVENTS_PER_BLOCK."""
    days = world.cal.month_first_day[month + 1] - world.cal.month_first_day[month] + 3
    size = max(1, int(EVENTS_PER_BLOCK / max(events_per_day * days, 1e-9)))
    n = len(world.pop)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def draw_events(world: World, rng: np.random.Generator, month: int, lo: int, hi: int) -> Draw:
    cal, traj, pop = world.cal, world.traj, world.pop
    first, stop = cal.month_first_day[month], cal.month_first_day[month + 1]
    # Presence days whose 24 hours can reach into this month in the home zone.
    days = np.arange(max(first - 2, -PAD), min(stop, cal.n_days + PAD - 1) + 1)
    cols = days + PAD
    country = traj.country[lo:hi][:, cols]
    factor = np.where(country == 0, 1.0, ABROAD_ACTIVITY)
    factor = np.where(traj.foreign_sim[lo:hi, None], VISITOR_ACTIVITY, factor)
    live = traj.observed[lo:hi][:, cols] & ~world.faults.silent[lo:hi][:, cols]
    lam = pop.rate[lo:hi, None] * np.array(WEEKDAY_FACTOR)[cal.weekday(days)][None, :] * factor * live
    counts = rng.poisson(lam).ravel()
    person = np.repeat(np.repeat(np.arange(lo, hi), len(days)), counts)
    day = np.repeat(np.tile(days, hi - lo), counts)
    ev_country = np.repeat(country.ravel(), counts).astype(np.int64)
    slot = rng.choice(24, len(person), p=_SLOT_P)
    offset = slot * 3600 + rng.integers(0, 3600, len(person))
    spill = np.full(len(person), -1)
    extra = _spillover(world, rng, days, lo, hi)
    if extra is not None:
        person, day, ev_country, offset, spill = (np.concatenate(pair) for pair in
                                                  zip((person, day, ev_country, offset, spill), extra))
        slot = np.concatenate([slot, extra[3] // 3600])
    utc = ((cal.epoch_day0 + day) * DAY_S + DAY_START_HOUR * 3600 + offset
           - world.zone_offsets[ev_country, day + PAD])
    draw = Draw(person, day, ev_country, utc, slot, spill)
    local_day = world.renderer.local(utc) // DAY_S - cal.epoch_day0
    draw = draw.take((local_day >= first) & (local_day < stop))
    draw.sim = world.sims.active(draw.person, draw.day, rng.random(len(draw.person)))
    # One SIM cannot have two records in the same second: drop the rare collisions, keep time order.
    order = np.lexsort((draw.sim, draw.utc))
    draw = draw.take(order)
    assert draw.sim is not None
    clash = np.zeros(len(order), dtype=bool)
    clash[1:] = (np.diff(draw.utc) == 0) & (np.diff(draw.sim) == 0)
    return draw.take(~clash)


def _spillover(world: World, rng, days: np.ndarray, lo: int, hi: int):
    """A few night-time events on the neighbour's network for people who never left home."""
    f = world.faults
    mine = np.flatnonzero((f.spill_person >= lo) & (f.spill_person < hi)
                          & (f.spill_day >= days[0]) & (f.spill_day <= days[-1]))
    if not len(mine):
        return None
    n = f.spill_events[mine]
    episode = np.repeat(mine, n)
    # Night of the presence day: 19:00 to 07:00 local, i.e. 12 to 24 hours after the day starts.
    offset = rng.integers(12 * 3600, 24 * 3600, len(episode))
    return (f.spill_person[episode], f.spill_day[episode], np.zeros(len(episode), dtype=np.int64), offset, episode)


def render(world: World, rng: np.random.Generator, d: Draw) -> dict[str, Column]:
    """Turn drawn events into the CDR columns (strings as the operator would export them)."""
    n = len(d.person)
    cells, sims = world.cells, world.sims
    assert d.sim is not None, "draw_events assigns each event its SIM"
    etype = rng.choice(len(EVENT_TYPES), n, p=EVENT_TYPE_SHARES)
    is_call = np.isin(etype, [EVENT_TYPES.index("call_out"), EVENT_TYPES.index("call_in")])
    duration = np.clip(np.round(rng.lognormal(np.log(CALL_MEDIAN_S), CALL_SIGMA, n)), 1, CALL_MAX_S).astype(np.int64)
    roaming = (d.country != 0) | (d.spill >= 0)
    # Home-network events: mostly the home cell at night, the usual cells by day, a few anywhere.
    local_hour = (d.slot + DAY_START_HOUR) % 24
    night = (local_hour >= 19) | (local_hour < DAY_START_HOUR)
    u = rng.random(n)
    by_day = np.minimum(np.searchsorted(np.cumsum(DAY_ANCHOR_SHARES), u, side="right"), 3)
    by_night = np.where(u < NIGHT_HOME_CELL, 0, rng.integers(0, 4, n))
    cell = world.pop.anchors[d.person, np.where(night, by_night, by_day)]
    cell = np.where(rng.random(n) < TRAVEL_SHARE, rng.integers(0, len(cells.cell_id), n), cell)
    local_day = world.renderer.local(d.utc) // DAY_S - world.cal.epoch_day0
    in_service = (cells.first_day[cell] <= local_day) & (local_day <= cells.last_day[cell])
    cell = np.where(in_service, cell, world.pop.anchors[d.person, 0])
    # Abroad: the person's usual network in that country, sometimes another one.
    sizes = np.array([len(p) for p in world.plmns])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    net_country = np.where(d.spill >= 0, world.neighbour, d.country)
    usual = (d.person * 7919 + net_country * 104729) % np.maximum(sizes[net_country], 1)
    other = (rng.random(n) * sizes[net_country]).astype(np.int64)
    network = starts[net_country] + np.where(rng.random(n) < PREFERRED_NETWORK, usual, other)
    counterpart = rng.integers(0, len(sims.counterparts), n)
    no_counterpart = (etype == EVENT_TYPES.index("data")) | (rng.random(n) < COUNTERPART_MISSING)
    return {
        "msisdn": Column.pick(sims.spellings, d.sim * 3 + rng.choice(3, n, p=MSISDN_FORMAT_SHARES)),
        "event_time": Column.of(world.renderer.render(d.utc, rng.choice(3, n, p=TIME_FORMAT_SHARES))),
        "event_type": Column.pick(EVENT_TYPES, etype, pa.string()),
        "cell_id": Column.pick(cells.cell_id, np.where(roaming, -1, cell), pa.string()),
        "visited_plmn": Column.pick(np.concatenate(world.plmns), np.where(roaming, network, -1), pa.string()),
        "duration_s": Column.of(pa.array(duration), null=~is_call),
        "counterpart_msisdn": Column(sims.counterparts, np.where(no_counterpart, -1, counterpart)),
        "imei": Column.pick(sims.imei, d.sim),
    }
