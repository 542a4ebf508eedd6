"""Entry point: draw a synthetic population and write its inputs and its ground truth."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa

from mobility.config import iso3 as check_iso3
from mobility.errors import ConfigError
from mobility.reference import plmns_of
from mobility.synth import events, formats, payments, population_truth, truth
from mobility.synth.cells import make_cells
from mobility.synth.clock import TimeRenderer, daily_offsets, make_calendar, zone_of
from mobility.synth.faults import CDR_MALFORMED, PAYMENT_MALFORMED, build_table, corrupt_rows, plan_person_faults
from mobility.synth.geo import country_geometry, nearest_foreign_country
from mobility.synth.numbers import invalid_numbers, national_numbers
from mobility.synth.operators import (
    check_operators,
    check_ratio,
    check_resolution,
    check_share,
    draw_holders,
    holding_probability,
    operator_plmns,
    plan_sim_drops,
    relabel_cells,
    subset_drops,
    subset_population,
    subset_trajectories,
    with_multi_sim,
    without_dropped_sims,
)
from mobility.synth.params import BEHAVIOURS, DEFAULT_BEHAVIOUR_SHARES, corridors_for, currency_of, origins_for
from mobility.synth.population import Population, behaviour_counts, make_population
from mobility.synth.population_truth import REGION_RESOLUTION
from mobility.synth.rng import stream
from mobility.synth.sims import foreign_numbers, make_sims
from mobility.synth.trajectories import make_trajectories
from mobility.synth.truth import person_ids
from mobility.synth.world import People, World, keyed
from mobility.synth.writer import CsvWriter, write_csv, write_parquet

FORMAT_VERSION = 1


@dataclass
class SynthSummary:
    """What a run wrote: paths relative to ``out_dir``, rows per dataset and every injected fault.

    A run with several operators (``generate(..., operators=...)``) returns the population's summary (its
    truth files, people and residence changes) with each operator's own in ``operators``."""

    out_dir: Path
    parameters: dict
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows written per dataset, duplicates included
    events: int = 0  # distinct CDR records written (rows minus exact duplicates)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset or "person" -> kind -> count
    behaviours: dict[str, int] = field(default_factory=dict)
    residence_changes: dict[str, int] = field(default_factory=dict)
    operator: dict[str, Any] = field(default_factory=dict)  # one operator's id, market share, holders ...
    operators: dict[str, SynthSummary] = field(default_factory=dict)  # several operators: id -> its summary

    def path(self, dataset: str) -> list[Path]:
        return [self.out_dir / p for p in self.files[dataset]]

    def to_dict(self) -> dict:
        """JSON-ready; paths stay relative so the same seed gives the same synth.json anywhere. The operator
        fields appear only when set, so a default run's synth.json keeps its keys."""
        out = asdict(replace(self, operators={}))
        out.pop("out_dir")
        for name in ("operator", "operators"):
            if not out[name]:
                out.pop(name)
        if self.operators:
            out["operators"] = {op: summary.to_dict() for op, summary in self.operators.items()}
        return {"format_version": FORMAT_VERSION, **out}


def _check(home: str, subscribers: int, seed: int, fault_rate: float, events_per_day: float, corridors: dict,
           time_zone: str | None) -> None:
    if subscribers < 1:
        raise ConfigError(f"subscribers must be at least 1 (got {subscribers})")
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (got {seed})")
    if not 0 <= fault_rate <= 0.5:
        raise ConfigError(f"fault_rate must be between 0 and 0.5 (got {fault_rate})")
    if not events_per_day > 0:
        raise ConfigError(f"events_per_day must be positive (got {events_per_day})")
    if time_zone is not None:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{time_zone!r} is not an IANA time zone", hint="for example Asia/Manila") from None
    for country in (home, *corridors):
        if not plmns_of(country):
            raise ConfigError(f"no mobile network known for {country}", where="mobility.reference.plmns_of",
                              hint="choose a country listed in the MCC/MNC table")
        currency_of(country)
        country_geometry(country)


def _check_operator_options(home: str, operators: dict[str, float] | None, multi_sim_share: float | None,
                            sim_drop_abroad: float, migrant_share_ratio: float,
                            region_resolution: int) -> dict[str, float] | None:
    check_share("multi_sim_share", multi_sim_share)
    check_share("sim_drop_abroad", sim_drop_abroad)
    check_ratio(migrant_share_ratio)
    check_resolution(region_resolution)
    if operators is None:
        if migrant_share_ratio != 1:
            raise ConfigError("migrant_share_ratio needs operators with a market share",
                              hint="give operators={'ID': SHARE} (--operator ID=SHARE): in a default run every "
                                   "person holds the operator's SIM")
        return None
    return check_operators(operators, plmns_of(home), home)


def generate(out_dir, subscribers: int, months: int, start: str, home_country: str, seed: int,
             fault_rate: float = 0.02, events_per_day: float = 6.0, corridors: dict[str, float] | None = None,
             behaviours: dict[str, float] | None = None, time_zone: str | None = None,
             input_format: str = "native", operators: dict[str, float] | None = None,
             multi_sim_share: float | None = None, sim_drop_abroad: float = 0.0, migrant_share_ratio: float = 1.0,
             region_resolution: int = REGION_RESOLUTION) -> SynthSummary:
    """Write a synthetic operator extract and its truth under ``out_dir``; same arguments, same bytes.

    ``input_format``: ``native`` (the project's contract), ``flowdb`` or ``multimno`` (``synth.formats``):
    the same population and records, as that format writes them; the truth is the same.

    ``operators`` (id -> market share in (0, 1]): several operators over the one population, each person
    holding a SIM of each independently; ``out_dir/ID/`` is each operator's delivery (as a default run writes
    one) and ``out_dir/truth/``, ``out_dir/population/`` the population's truth and each operator's public
    population factors. None (the default): one operator that every person holds, written as before.
    ``multi_sim_share``: share of an operator's holders with a second SIM of it (None: ``fault_rate`` of
    stayers); ``sim_drop_abroad``: share of long-term emigrants who stop using their home SIMs 1-30 days
    after crossing; ``migrant_share_ratio``: how much likelier labour migrants are to hold an operator's SIM
    than everyone else; ``region_resolution``: H3 resolution of the regions of the population factors."""
    if input_format not in formats.FORMATS:
        raise ConfigError(f"unknown format {input_format!r}", hint=f"use one of {', '.join(formats.FORMATS)}")
    try:
        home = check_iso3(home_country)
        chosen = None if corridors is None else {check_iso3(k): v for k, v in corridors.items()}
    except ValueError as exc:
        raise ConfigError(str(exc), hint="use ISO 3166-1 alpha-3 codes such as PHL") from None
    corridor_weights = corridors_for(home, chosen)
    _check(home, subscribers, seed, fault_rate, events_per_day, corridor_weights, time_zone)
    shares = _check_operator_options(home, operators, multi_sim_share, sim_drop_abroad, migrant_share_ratio,
                                     region_resolution)
    cal = make_calendar(start, months)
    params: dict[str, Any] = {
        "subscribers": subscribers, "months": months, "start": start, "home_country": home, "seed": seed,
        "fault_rate": fault_rate, "events_per_day": events_per_day, "corridors": corridor_weights,
        "behaviour_shares": dict(DEFAULT_BEHAVIOUR_SHARES if behaviours is None else behaviours),
        "behaviours": behaviour_counts(subscribers, behaviours), "time_zone": time_zone or zone_of(home),
        "format": input_format}
    # The new options are recorded only when used, so that a default run's synth.json is unchanged.
    if multi_sim_share is not None:
        params["multi_sim_share"] = float(multi_sim_share)
    if sim_drop_abroad:
        params["sim_drop_abroad"] = float(sim_drop_abroad)
    if shares is not None:
        params.update(operators=shares, migrant_share_ratio=float(migrant_share_ratio),
                      region_resolution=region_resolution)
    people = _people(cal, params, behaviours)
    out = Path(out_dir)
    if shares is None:
        world, cells_table = _operator_world(people, params)
        return _deliver(world, cells_table, out, params)
    return _several_operators(people, params, shares, out)


def _several_operators(people: People, params: dict, shares: dict[str, float], out: Path) -> SynthSummary:
    """Each operator's delivery in its folder, then the population's truth and each operator's factors."""
    summary = SynthSummary(out, params, behaviours=_behaviours(people.pop))
    _clear_parts(out)  # a default run's records in the same folder would be read as an operator's
    population_truth.clear(out)
    home, seed = params["home_country"], params["seed"]
    networks = operator_plmns(people.plmn, plmns_of(home), len(shares))
    foreign = foreign_numbers(stream(seed, "foreign_numbers"), people.traj)
    taken: set[int] = set()  # national numbers of the operators already written: numbers are never shared
    holdings = []
    for (op, share), plmn in zip(shares.items(), networks):
        probability = holding_probability(people.pop.behaviour, people.traj.foreign_sim, share,
                                          params["migrant_share_ratio"])
        keep = draw_holders(stream(seed, keyed("holders", op)), probability)
        world, cells_table = _operator_world(people, params, op, keep, plmn, taken, foreign)
        taken |= national_numbers(world.sims.e164[~world.sims.foreign])
        holding = population_truth.Holding.of(people, world, keep, share, plmn, probability)
        op_params = {**params, "operator": op, "market_share": share}
        summary.operators[op] = _deliver(world, cells_table, out / op, op_params, holding.describe())
        holdings.append(holding)
        del world
    population_truth.write(people, holdings, out, summary, params)
    summary.events = sum(s.events for s in summary.operators.values())
    _write_meta(summary)
    return summary


def _behaviours(pop: Population) -> dict[str, int]:
    return {b: int((pop.behaviour == i).sum()) for i, b in enumerate(BEHAVIOURS)}


def _write_meta(summary: SynthSummary) -> None:
    (summary.out_dir / "synth.json").write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n",
                                                encoding="utf-8")


def _deliver(world: World, cells_table: pa.Table, out: Path, params: dict,
             operator: dict[str, Any] | None = None) -> SynthSummary:
    """One operator's delivery under ``out``: cells, subscribers, CDRs, payments, its truth and synth.json."""
    input_format = params["format"]
    summary = SynthSummary(out, params, behaviours=_behaviours(world.pop), operator=dict(operator or {}))
    _clear_parts(out)
    writer = None if input_format == "native" else formats.writer_for(input_format, world, out)
    if writer is None:
        summary.files["cells"] = ["cells/cells.csv"]
        summary.rows["cells"] = write_csv(out / "cells/cells.csv", cells_table)
    else:
        rel, summary.rows["cells"] = writer.cells(cells_table)
        summary.files["cells"] = [rel]
    subscribers_table = truth.subscribers(world, world.stream("subscribers"))
    if input_format != "multimno":  # multimno has no subscriber register (FlowDB neither: the native file goes along)
        summary.files["subscribers"] = ["subscribers/subscribers.csv"]
        summary.rows["subscribers"] = write_csv(out / "subscribers/subscribers.csv", subscribers_table)
    spill_written = _write_cdr(world, out, params["events_per_day"], summary, writer)
    if input_format != "multimno":  # nor payments
        _write_payments(world, out, summary)
    _write_truth(world, out, summary, spill_written)
    _write_meta(summary)
    return summary


def _people(cal, params: dict, behaviours: dict | None) -> People:
    """Draw what does not depend on the operator nor the month: cell sites, people, journeys, SIM drops."""
    seed, home, corridors = params["seed"], params["home_country"], params["corridors"]
    cells, cells_table, plmn = make_cells(stream(seed, "cells"), home, params["subscribers"], cal)
    pop = make_population(stream(seed, "population"), params["subscribers"], behaviours, params["events_per_day"],
                          cells, cal.start.year)
    neighbour = nearest_foreign_country(home)
    traj = make_trajectories(stream(seed, "trajectories"), pop, cal, home, corridors, origins_for(home), (neighbour,))
    drop_person, drop_day = plan_sim_drops(stream(seed, "sim_drop"), traj, cal, params.get("sim_drop_abroad", 0.0))
    traj = without_dropped_sims(traj, drop_person, drop_day)
    zones = [params["time_zone"]] + [zone_of(c) for c in traj.countries[1:]]
    return People(seed, cal, pop, traj, cells, cells_table, plmn, traj.code(neighbour),
                  np.stack([daily_offsets(z, cal) for z in zones]), TimeRenderer(zones[0], cal),
                  tuple(np.array(plmns_of(c), dtype=object) for c in traj.countries), tuple(corridors),
                  drop_person, drop_day)


def _operator_world(people: People, params: dict, operator: str | None = None, keep: np.ndarray | None = None,
                    plmn: str | None = None, exclude: Collection[int] = (),
                    foreign: np.ndarray | None = None) -> tuple[World, pa.Table]:
    """One operator's view of the people: its holders (``keep``; everyone when None), its cells (the sites
    under its network code ``plmn``), its planned faults and its numbers (none of ``exclude``)."""
    seed, cal = people.seed, people.cal
    ids = person_ids(len(people.pop))
    if keep is None:
        pop, traj, drop_person, drop_day = people.pop, people.traj, people.drop_person, people.drop_day
    else:
        pop, traj = subset_population(people.pop, keep), subset_trajectories(people.traj, keep)
        ids = ids[keep]
        drop_person, drop_day = subset_drops(people.drop_person, people.drop_day, keep)
        foreign = None if foreign is None else foreign[keep]
    cells, cells_table = people.cells, people.cells_table
    own = plmn or people.plmn
    if own != people.plmn:
        cells, cells_table = relabel_cells(cells, cells_table, own)
    faults = plan_person_faults(stream(seed, keyed("person_faults", operator)), pop, cal, params["fault_rate"])
    if params.get("multi_sim_share") is not None:
        faults = with_multi_sim(stream(seed, keyed("multi_sim", operator)), faults, traj, params["multi_sim_share"])
    sims = make_sims(stream(seed, keyed("numbers", operator)), traj, faults, exclude, foreign)
    rng = stream(seed, keyed("bad_values", operator))
    unknown_cells = [f"{own[:3]}-{own[3:]}-9999-{v:05d}" for v in rng.integers(10000, 99999, 50)]
    world = World(seed, cal, params["fault_rate"], pop, traj, cells, sims, faults, people.neighbour,
                  people.zone_offsets, people.renderer, people.plmns,
                  invalid_numbers(rng, params["home_country"], 50), np.array(unknown_cells, dtype=object),
                  people.corridors, ids, operator, drop_person, drop_day, params.get("sim_drop_abroad", 0.0))
    return world, cells_table


def _clear_parts(out: Path) -> None:
    """Remove the record files of an earlier run in the same folder, in any format, and its subscriber file,
    so that no stale month (nor another format's copy of the records) survives."""
    formats.clear_outputs(out)
    for old in [*sorted((out / "payments").glob("part-*.csv.gz")), out / "subscribers" / "subscribers.csv"]:
        old.unlink(missing_ok=True)


def _merge(total: dict[str, int], more: dict[str, int]) -> None:
    for kind, count in more.items():
        total[kind] = total.get(kind, 0) + count


def _write_cdr(world: World, out: Path, events_per_day: float, summary: SynthSummary,
               writer: formats.FlowdbWriter | formats.MultimnoWriter | None = None) -> np.ndarray:
    """The CDRs month by month, in the native contract or (``writer``) in another format."""
    faults = {k: 0 for k in (*CDR_MALFORMED, "duplicate")}
    spill_written = np.zeros(len(world.faults.spill_person), dtype=np.int64)
    summary.files["cdr"], summary.rows["cdr"] = [], 0
    bad = {"invalid_msisdn": world.invalid_msisdn, "msisdn_column": "msisdn", "time_column": "event_time",
           "unknown_cell_id": world.unknown_cells}
    for month, label in enumerate(world.cal.months):
        rel = f"cdr/part-{label}.csv.gz"
        native = CsvWriter(out / rel, events.CDR_COLUMNS) if writer is None else None
        for block, (lo, hi) in enumerate(events.blocks(world, month, events_per_day)):
            rng = world.stream("cdr", month, block)
            draw = events.draw_events(world, rng, month, lo, hi)
            spill_written += np.bincount(draw.spill[draw.spill >= 0], minlength=len(spill_written))
            columns = events.render(world, rng, draw)
            order, counts = corrupt_rows(rng, columns, world.fault_rate, CDR_MALFORMED, bad)
            _merge(faults, counts)
            if native is not None:
                native.write(build_table(columns, order))
            else:
                assert writer is not None
                writer.block(label, block, columns, order, draw)
        if native is not None:
            native.close()
            summary.files["cdr"].append(rel)
            summary.rows["cdr"] += native.rows
        else:
            assert writer is not None
            writer.month_done()
    if writer is None:
        summary.events = summary.rows["cdr"] - faults["duplicate"]
    else:  # what the format could not say is left out: counted, and its copies with it
        summary.files["cdr"] = sorted(writer.files)
        summary.rows["cdr"] = writer.rows
        faults["not_in_format"] = writer.left_out
        summary.events = writer.rows - writer.duplicates
    summary.faults["cdr"] = faults
    return spill_written


def _write_payments(world: World, out: Path, summary: SynthSummary) -> None:
    faults = {k: 0 for k in (*PAYMENT_MALFORMED, "duplicate")}
    places = payments.place_pools(world.stream("payment_places"), world)
    summary.files["payments"], summary.rows["payments"] = [], 0
    for month, label in enumerate(world.cal.months):
        rng = world.stream("payments", month)
        columns = payments.month_payments(world, rng, month, places)
        order, counts = corrupt_rows(rng, columns, world.fault_rate, PAYMENT_MALFORMED, {})
        _merge(faults, counts)
        rel = f"payments/part-{label}.csv.gz"
        summary.rows["payments"] += write_csv(out / rel, build_table(columns, order))
        summary.files["payments"].append(rel)
    summary.faults["payments"] = faults


def _write_truth(world: World, out: Path, summary: SynthSummary, spill_written: np.ndarray) -> None:
    tables = {
        "truth/subjects.csv": truth.subjects(world),
        "truth/daily_country.parquet": truth.daily_country(world),
        "truth/residence_changes.csv": truth.residence_changes(world),
    }
    faults_table, summary.faults["person"] = truth.person_faults(world, spill_written)
    tables["truth/faults.csv"] = faults_table
    for rel, table in tables.items():
        name = rel.split("/")[1].split(".")[0]
        summary.files[f"truth_{name}"] = [rel]
        writer = write_parquet if rel.endswith(".parquet") else write_csv
        summary.rows[f"truth_{name}"] = writer(out / rel, table)
    changes = tables["truth/residence_changes.csv"].to_pydict()
    for kind, direction, decidable in zip(changes["kind"], changes["direction"], changes["decidable"]):
        key = f"{kind}_{direction}" + ("" if decidable else "_undecidable")
        summary.residence_changes[key] = summary.residence_changes.get(key, 0) + 1
