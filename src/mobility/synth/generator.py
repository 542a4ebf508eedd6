"""Entry point: draw a synthetic population and write its inputs and its ground truth."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from mobility.config import iso3 as check_iso3
from mobility.errors import ConfigError
from mobility.reference import plmns_of
from mobility.synth import events, formats, payments, truth
from mobility.synth.cells import make_cells
from mobility.synth.clock import TimeRenderer, daily_offsets, make_calendar, zone_of
from mobility.synth.faults import CDR_MALFORMED, PAYMENT_MALFORMED, build_table, corrupt_rows, plan_person_faults
from mobility.synth.geo import country_geometry, nearest_foreign_country
from mobility.synth.numbers import invalid_numbers
from mobility.synth.params import DEFAULT_BEHAVIOUR_SHARES, corridors_for, currency_of, origins_for
from mobility.synth.population import behaviour_counts, make_population
from mobility.synth.rng import stream
from mobility.synth.sims import make_sims
from mobility.synth.trajectories import make_trajectories
from mobility.synth.world import World
from mobility.synth.writer import CsvWriter, write_csv, write_parquet

FORMAT_VERSION = 1


@dataclass
class SynthSummary:
    """What a run wrote: paths relative to ``out_dir``, rows per dataset and every injected fault."""

    out_dir: Path
    parameters: dict
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows written per dataset, duplicates included
    events: int = 0  # distinct CDR records written (rows minus exact duplicates)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset or "person" -> kind -> count
    behaviours: dict[str, int] = field(default_factory=dict)
    residence_changes: dict[str, int] = field(default_factory=dict)

    def path(self, dataset: str) -> list[Path]:
        return [self.out_dir / p for p in self.files[dataset]]

    def to_dict(self) -> dict:
        """JSON-ready; paths stay relative so the same seed gives the same synth.json anywhere."""
        out = asdict(self)
        out.pop("out_dir")
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


def generate(out_dir, subscribers: int, months: int, start: str, home_country: str, seed: int,
             fault_rate: float = 0.02, events_per_day: float = 6.0, corridors: dict[str, float] | None = None,
             behaviours: dict[str, float] | None = None, time_zone: str | None = None,
             input_format: str = "native") -> SynthSummary:
    """Write a synthetic operator extract and its truth under ``out_dir``; same arguments, same bytes.

    ``input_format``: ``native`` (the project's contract), ``flowdb`` or ``multimno`` (``synth.formats``):
    the same population and records, as that format writes them; the truth is the same."""
    if input_format not in formats.FORMATS:
        raise ConfigError(f"unknown format {input_format!r}", hint=f"use one of {', '.join(formats.FORMATS)}")
    try:
        home = check_iso3(home_country)
        chosen = None if corridors is None else {check_iso3(k): v for k, v in corridors.items()}
    except ValueError as exc:
        raise ConfigError(str(exc), hint="use ISO 3166-1 alpha-3 codes such as PHL") from None
    corridor_weights = corridors_for(home, chosen)
    _check(home, subscribers, seed, fault_rate, events_per_day, corridor_weights, time_zone)
    cal = make_calendar(start, months)
    params: dict[str, Any] = {
        "subscribers": subscribers, "months": months, "start": start, "home_country": home, "seed": seed,
        "fault_rate": fault_rate, "events_per_day": events_per_day, "corridors": corridor_weights,
        "behaviour_shares": dict(DEFAULT_BEHAVIOUR_SHARES if behaviours is None else behaviours),
        "behaviours": behaviour_counts(subscribers, behaviours), "time_zone": time_zone or zone_of(home),
        "format": input_format}
    world, cells_table = _world(cal, params, behaviours)
    out = Path(out_dir)
    summary = SynthSummary(out, params, behaviours=params["behaviours"])
    _clear_parts(out)
    writer = None if input_format == "native" else formats.writer_for(input_format, world, out)
    if writer is None:
        summary.files["cells"] = ["cells/cells.csv"]
        summary.rows["cells"] = write_csv(out / "cells/cells.csv", cells_table)
    else:
        rel, summary.rows["cells"] = writer.cells(cells_table)
        summary.files["cells"] = [rel]
    subscribers_table = truth.subscribers(world, stream(seed, "subscribers"))
    if input_format != "multimno":  # multimno has no subscriber register (FlowDB neither: the native file goes along)
        summary.files["subscribers"] = ["subscribers/subscribers.csv"]
        summary.rows["subscribers"] = write_csv(out / "subscribers/subscribers.csv", subscribers_table)
    spill_written = _write_cdr(world, out, events_per_day, summary, writer)
    if input_format != "multimno":  # nor payments
        _write_payments(world, out, summary)
    _write_truth(world, out, summary, spill_written)
    (out / "synth.json").write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def _world(cal, params: dict, behaviours: dict | None):
    """Draw everything that does not depend on the month: cells, people, journeys, SIMs, planned faults."""
    seed, home, corridors = params["seed"], params["home_country"], params["corridors"]
    cells, cells_table, operator = make_cells(stream(seed, "cells"), home, params["subscribers"], cal)
    pop = make_population(stream(seed, "population"), params["subscribers"], behaviours, params["events_per_day"],
                          cells, cal.start.year)
    neighbour = nearest_foreign_country(home)
    traj = make_trajectories(stream(seed, "trajectories"), pop, cal, home, corridors, origins_for(home), (neighbour,))
    faults = plan_person_faults(stream(seed, "person_faults"), pop, cal, params["fault_rate"])
    sims = make_sims(stream(seed, "numbers"), traj, faults)
    zones = [params["time_zone"]] + [zone_of(c) for c in traj.countries[1:]]
    rng = stream(seed, "bad_values")
    unknown_cells = [f"{operator[:3]}-{operator[3:]}-9999-{v:05d}" for v in rng.integers(10000, 99999, 50)]
    world = World(seed, cal, params["fault_rate"], pop, traj, cells, sims, faults, traj.code(neighbour),
                  np.stack([daily_offsets(z, cal) for z in zones]), TimeRenderer(zones[0], cal),
                  tuple(np.array(plmns_of(c), dtype=object) for c in traj.countries),
                  invalid_numbers(rng, home, 50), np.array(unknown_cells, dtype=object), tuple(corridors))
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
            rng = stream(world.seed, "cdr", month, block)
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
    places = payments.place_pools(stream(world.seed, "payment_places"), world)
    summary.files["payments"], summary.rows["payments"] = [], 0
    for month, label in enumerate(world.cal.months):
        rng = stream(world.seed, "payments", month)
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
