"""Ground truth: who each person is, where they slept every night, which residence changes happened.

The 12/16-month rule (Statistics New Zealand's outcome-based migrant definition: a long-term
migrant spends at least 12 of the 16 months after crossing in the new country; UN 1998
Recommendations on Statistics of International Migration, rev. 1, set the 12-month threshold)
decides a long-term change once 365 of the 487 days after crossing_date are spent there.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from mobility.synth.clock import PAD, Calendar
from mobility.synth.params import BEHAVIOURS
from mobility.synth.trajectories import Trajectories
from mobility.synth.world import World

RULE_WINDOW_DAYS = 487  # 16 months
RULE_MIN_DAYS = 365  # 12 months
REGISTRATION_MISSING = (0.02, 0.03)  # sex, birth year left empty at registration (assumption)


def _dates(world: World, days) -> list[str | None]:
    return day_labels(world.cal, days)


def day_labels(cal: Calendar, days) -> list[str | None]:
    return [None if d is None or d < -PAD or d >= 10**5 else (cal.start + timedelta(days=int(d))).isoformat()
            for d in days]


def _s(values) -> pa.Array:
    return pa.array(values, pa.string())


def person_ids(n: int) -> np.ndarray:
    return np.array([f"P{i:06d}" for i in range(n)], dtype=object)


def primary_e164(world: World) -> np.ndarray:
    return world.sims.e164[world.sims.primary]


def subjects(world: World) -> pa.Table:
    traj, sims, pop = world.traj, world.sims, world.pop
    countries = np.array(traj.countries, dtype=object)
    returning = pop.behaviour == BEHAVIOURS.index("returning_migrant")
    at_start = np.where(returning, traj.destination, traj.origin)
    no = np.array([None], dtype=object)
    return pa.table({
        "person_id": _s(world.person_id),
        "msisdn": _s(primary_e164(world)),
        "behaviour": _s(pop.names()),
        "home_country": _s(countries[traj.origin]),
        "resident_at_start": _s(countries[at_start]),
        "destination": _s(np.where(traj.destination >= 0, countries[traj.destination], no)),
        "sex": _s(pop.sex),
        "birth_year": pa.array(pop.birth_year, pa.int64()),
        "dual_msisdn": _s(np.where(sims.second_sim >= 0, sims.e164[sims.second_sim], no)),
        "new_msisdn": _s(np.where(sims.new_sim >= 0, sims.e164[sims.new_sim], no)),
        "sim_change_date": _s(_dates(world, np.where(sims.new_sim >= 0, sims.switch_day, 10**6))),
    })


def daily_country(world: World) -> pa.Table:
    """One row per person and data day: the country of that night."""
    n, days = len(world.pop), world.cal.n_days
    person = np.repeat(np.arange(n, dtype=np.int32), days)
    codes = world.traj.country[:, PAD:PAD + days].ravel().astype(np.int32)
    return pa.table({
        "person_id": pa.DictionaryArray.from_arrays(person, pa.array(world.person_id, pa.string())),
        "msisdn": pa.DictionaryArray.from_arrays(person, pa.array(primary_e164(world), pa.string())),
        "date": pa.array(np.tile(world.cal.dates(), n)),
        "country": pa.DictionaryArray.from_arrays(codes, pa.array(world.traj.countries, pa.string())),
    })


def residence_changes(world: World) -> pa.Table:
    return changes_table(world.traj, world.cal, world.person_id, primary_e164(world))


def changes_table(traj: Trajectories, cal: Calendar, ids: np.ndarray, msisdn: np.ndarray | None) -> pa.Table:
    """One row per residence change of the people of ``traj`` (``ids`` their person ids); with their primary
    numbers when ``msisdn`` is given (one operator's truth), without any number otherwise (the population's)."""
    ch, days = traj.changes, cal.n_days
    decidable = np.zeros(len(ch["person"]), dtype=bool)
    prior = np.zeros(len(ch["person"]), dtype=np.int64)
    for i, (p, c, from_c, to_c, kind) in enumerate(zip(ch["person"], ch["crossing"], ch["from_c"], ch["to_c"],
                                                       ch["kind"])):
        after = traj.country[p, c + PAD:min(c + RULE_WINDOW_DAYS, days) + PAD]
        prior[i] = (traj.country[p, PAD:c + PAD] == from_c).sum()
        if kind == "long_term":  # 365 days in the new country accumulate before the data ends
            decidable[i] = (after == to_c).sum() >= RULE_MIN_DAYS
        else:  # a temporary absence is decided once the person is back
            decidable[i] = bool((traj.country[p, c + PAD:days + PAD] == from_c).any())
    countries = np.array(traj.countries, dtype=object)
    person = ch["person"].astype(int)
    columns = {"person_id": _s(ids[person])}
    if msisdn is not None:
        columns["msisdn"] = _s(msisdn[person])
    return pa.table({
        **columns,
        "from_country": _s(countries[ch["from_c"].astype(int)]),
        "to_country": _s(countries[ch["to_c"].astype(int)]),
        "crossing_date": _s(day_labels(cal, ch["crossing"])),
        "kind": _s(ch["kind"]),
        "direction": _s(ch["direction"]),
        "decidable": pa.array(decidable),
        "observable": pa.array(ch["observable"].astype(bool)),
        # Data nights in the old country before crossing: how well the old residence can be seen.
        "prior_nights": pa.array(prior),
    })


def person_faults(world: World, spill_written: np.ndarray) -> tuple[pa.Table, dict[str, int]]:
    """Every person-level fault with its subscriber and date, and counts per kind."""
    f, sims, days = world.faults, world.sims, world.cal.n_days
    primary = primary_e164(world)
    silent = f.silent[:, PAD:PAD + days] & world.traj.observed[:, PAD:PAD + days]
    s_person, s_day = np.nonzero(silent)
    neighbour = world.traj.countries[world.neighbour]
    rows: dict[str, Any] = {
        "kind": (["silent_day"] * len(s_person) + ["border_spillover"] * len(f.spill_person)
                 + ["sim_churn"] * len(f.churn_person) + ["dual_sim"] * len(f.dual_person)),
        "person_id": np.concatenate([s_person, f.spill_person, f.churn_person, f.dual_person]),
        "msisdn": np.concatenate([primary[s_person], primary[f.spill_person], sims.e164[sims.new_sim[f.churn_person]],
                                  sims.e164[sims.second_sim[f.dual_person]]]),
        "date": _dates(world, np.concatenate([s_day, f.spill_day, f.churn_day, np.full(len(f.dual_person), 10**6)])),
        "country": [None] * len(s_person) + [neighbour] * len(f.spill_person) + [None] * (len(f.churn_person)
                                                                                          + len(f.dual_person)),
        "events": np.concatenate([np.full(len(s_person), -1), spill_written,
                                  np.full(len(f.churn_person) + len(f.dual_person), -1)]),
    }
    if world.drop_share > 0:  # emigrants who stop using the SIM abroad: listed on their first day without events
        drop, day = world.drop_person, world.drop_day
        where = np.array(world.traj.countries, dtype=object)[world.traj.country[drop, day + PAD].astype(int)]
        rows["kind"] += ["sim_drop_abroad"] * len(drop)
        rows["person_id"] = np.concatenate([rows["person_id"], drop])
        rows["msisdn"] = np.concatenate([rows["msisdn"], primary[drop]])
        rows["date"] += _dates(world, day)
        rows["country"] += list(where)
        rows["events"] = np.concatenate([rows["events"], np.full(len(drop), -1)])
    table = pa.table({
        "kind": pa.array(rows["kind"], pa.string()),
        "person_id": pa.array(world.person_id[rows["person_id"].astype(int)], pa.string()),
        "msisdn": pa.array(rows["msisdn"], pa.string()),
        "date": pa.array(rows["date"], pa.string()),
        "country": pa.array(rows["country"], pa.string()),
        "events": pa.array(rows["events"].astype(np.int64), mask=rows["events"] < 0),
    })
    counts = {"silent_day": len(s_person), "border_spillover": len(f.spill_person),
              "border_spillover_events": int(spill_written.sum()), "sim_churn": len(f.churn_person),
              "dual_sim": len(f.dual_person)}
    if world.drop_share > 0:
        counts["sim_drop_abroad"] = len(world.drop_person)
    return table, counts


def subscribers(world: World, rng: np.random.Generator) -> pa.Table:
    """Registration data of every home SIM, as the operator holds it (some fields missing)."""
    sims, pop = world.sims, world.pop
    home = np.flatnonzero(~sims.foreign)
    owner = sims.person[home]
    spelled = np.where(rng.random(len(home)) < 0.8, 0, rng.integers(1, 3, len(home)))
    numbers = sims.spellings.take(pa.array(home * 3 + spelled))
    sex = np.where(rng.random(len(home)) < REGISTRATION_MISSING[0], None, pop.sex[owner])
    year = pop.birth_year[owner]
    return pa.table({
        "msisdn": numbers,
        "sex": pa.array(sex, pa.string()),
        "birth_year": pa.array(year, pa.int64(), mask=rng.random(len(home)) < REGISTRATION_MISSING[1]),
    })
