"""The synthetic CDRs and cells in an operator's own format: Flowminder's FlowDB or Eurostat's multimno.

Each writer gets the records exactly as the native writer builds them (the same draws, the same
injected faults, in the same order) and writes what the format can say of them, so that
``mobility anonymize`` with the matching ``input_format`` accepts the same events as with the native
contract. What a format cannot say is left out and counted (``SynthSummary.faults[...]["not_in_format"]``):

* FlowDB (``mobility.anonymize.formats.flowdb``): CSV per table and day, ``calls/calls_YYYYMMDD.csv.gz``,
  ``sms/...``, ``mds/...``, and ``infrastructure/cells.csv`` with ``geom_point`` as hex EWKB (what a
  ``COPY`` of the PostGIS column writes). FlowDB holds the operator's own network: events served
  abroad are left out. A record whose event type is not one of the five (a fault) goes to ``calls``
  with that text as ``outgoing``. Subscribers and payments stay in the native folders alongside.
* multimno (``mobility.anonymize.formats.multimno``): the bronze layout, Parquet partitioned
  ``year=/month=/day=`` by the event's local day: ``mno_events`` (``user_id`` = SHA-256 of the SIM's
  E.164 number with a synth-only salt, as the operator's pseudonymous id; ``timestamp`` as written
  natively; ``mcc``/``mnc`` of the SIM's home network; ``plmn`` of the serving network; ``cell_id``
  as digits) and ``mno_network`` (every cell in service that day). multimno has no service type, no
  counterpart, no subscriber register and no payments: records of an unknown event type are left out,
  and a record whose number is invalid (a fault) has no ``user_id``.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mobility.schemas import EVENT_TYPES
from mobility.synth.clock import DAY_S
from mobility.synth.columns import Column
from mobility.synth.events import Draw
from mobility.synth.faults import build_table
from mobility.synth.world import World
from mobility.synth.writer import CsvWriter, write_csv, write_parquet

FORMATS = ("native", "multimno", "flowdb")
USER_ID_SALT = b"mobility synth: multimno user_id\0"  # synthetic data only: no real operator's scheme

FLOWDB_CALLS = ("id", "outgoing", "datetime", "duration", "network", "msisdn", "msisdn_counterpart", "location_id",
                "imsi", "imei", "tac", "operator_code", "country_code")
FLOWDB_SMS = ("id", "outgoing", "datetime", "network", "msisdn", "msisdn_counterpart", "location_id", "imsi", "imei",
              "tac", "operator_code", "country_code")
FLOWDB_MDS = ("id", "datetime", "duration", "volume_total", "volume_upload", "volume_download", "msisdn",
              "location_id", "imsi", "imei", "tac", "operator_code", "country_code")
FLOWDB_CELLS = ("id", "version", "site_id", "date_of_first_service", "date_of_last_service", "geom_point")
_FLOWDB_HEADERS = {"calls": FLOWDB_CALLS, "sms": FLOWDB_SMS, "mds": FLOWDB_MDS}
_TABLE_OF_TYPE = ("calls", "calls", "sms", "sms", "mds")  # in the order of EVENT_TYPES
_OUTGOING = np.array(["t", "f", "t", "f", ""], dtype=object)

MNO_EVENTS, MNO_NETWORK = "mno_events", "mno_network"


def output_patterns() -> list[str]:
    """Globs (under the output folder) of every CDR and cell file any format's writer makes: cleared
    before a run, so that no file of an earlier run, in this format or another, is read with the new ones."""
    return ["cdr/part-*.csv.gz", "cells/cells.csv", "calls/calls_*.csv.gz", "sms/sms_*.csv.gz", "mds/mds_*.csv.gz",
            "infrastructure/cells.csv", f"{MNO_EVENTS}/year=*/month=*/day=*/part-*.parquet",
            f"{MNO_NETWORK}/year=*/month=*/day=*/part-*.parquet"]


def clear_outputs(out: Path) -> None:
    for pattern in output_patterns():
        for old in sorted(out.glob(pattern)):
            old.unlink()
    for folder in (MNO_EVENTS, MNO_NETWORK):  # the emptied partition folders
        for d in sorted((out / folder).glob("**/*"), key=lambda p: -len(p.parts)):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def _day_label(epoch_day: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(epoch_day.astype("datetime64[D]"))


def _local_days(world: World, draw: Draw, order: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of each written record's local date (of its true instant, even when its
    written time is broken by a fault): the day file or partition it belongs to."""
    return world.renderer.local(draw.utc[order]) // DAY_S


def _digits(cell_ids: pa.Array) -> pa.Array:
    """Cell ids as digits only (``515-02-0101-12345`` -> ``51502010112345``), as a CGI is written."""
    return pc.replace_substring(cell_ids, "-", "")


def _operator(world: World) -> str:
    mcc, mnc = str(world.cells.cell_id[0]).split("-")[:2]
    return mcc + mnc


class FlowdbWriter:
    """FlowDB's event tables, one CSV per table and local day, and its cell table."""

    def __init__(self, world: World, out: Path):
        self.world, self.out = world, out
        self.files: set[str] = set()
        self.rows = self.duplicates = self.left_out = 0
        self._open: dict[str, CsvWriter] = {}

    def cells(self, table: pa.Table) -> tuple[str, int]:
        ids = table["cell_id"].to_numpy(zero_copy_only=False)
        n = np.arange(len(ids))
        first_of_id = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, dtype=bool)
        version = n - np.maximum.accumulate(np.where(first_of_id, n, 0))  # rows are sorted by id, then first day
        lon, lat = table["longitude"].to_numpy(), table["latitude"].to_numpy()
        geom = [struct.pack("<BIIdd", 1, 0x20000001, 4326, x, y).hex().upper() for x, y in zip(lon, lat)]
        rel = "infrastructure/cells.csv"
        rows = write_csv(self.out / rel, pa.table({
            "id": table["cell_id"], "version": pa.array(version), "site_id": pc.utf8_slice_codeunits(
                table["cell_id"], 0, 11), "date_of_first_service": table["valid_from"],
            "date_of_last_service": table["valid_to"], "geom_point": pa.array(geom, pa.string())}))
        return rel, rows

    def block(self, label: str, block: int, columns: dict[str, Column], order: np.ndarray, draw: Draw) -> None:
        native = build_table(columns, order)
        etype = columns["event_type"].idx[order]
        known = (etype >= 0) & (etype < len(EVENT_TYPES))
        keep = ~native["visited_plmn"].is_valid().to_numpy(zero_copy_only=False)  # served abroad: not in FlowDB
        self.left_out += int((~keep).sum())
        table_of = np.where(known, np.array(_TABLE_OF_TYPE, dtype=object)[np.where(known, etype, 0)], "calls")
        outgoing = np.where(known, _OUTGOING[np.where(known, etype, 4)],
                            native["event_type"].to_numpy(zero_copy_only=False))
        ids = np.char.add(f"{label.replace('-', '')}{block:03d}", np.char.zfill(order.astype(str), 7))
        n, imei, none = len(order), native["imei"], pa.nulls(len(order), pa.string())
        flat = pa.table({
            "id": pa.array(ids, pa.string()), "outgoing": pa.array(outgoing, pa.string()),
            "datetime": pc.replace_substring(native["event_time"], "T", " "),
            "duration": pc.cast(native["duration_s"], pa.string()), "network": none,
            "msisdn": native["msisdn"], "msisdn_counterpart": native["counterpart_msisdn"],
            "location_id": native["cell_id"], "imsi": none, "imei": imei, "tac": pc.utf8_slice_codeunits(imei, 0, 8),
            "operator_code": none, "country_code": none, "volume_total": none, "volume_upload": none,
            "volume_download": none})
        copy = np.r_[False, order[1:] == order[:-1]] if n else np.zeros(0, dtype=bool)
        self.duplicates += int((copy & keep).sum())
        days = pd.Series(_day_label(_local_days(self.world, draw, order)))
        groups = pd.DataFrame({"table": table_of, "day": days})[keep].groupby(["table", "day"], sort=True).indices
        for (table, day), rows in groups.items():
            rel = f"{table}/{table}_{day.replace('-', '')}.csv.gz"
            if rel not in self._open:
                self._open[rel] = CsvWriter(self.out / rel, _FLOWDB_HEADERS[table])
                self.files.add(rel)
            kept = np.flatnonzero(keep)[rows]
            self._open[rel].write(flat.take(pa.array(kept)).select(list(_FLOWDB_HEADERS[table])))
            self.rows += len(kept)

    def month_done(self) -> None:
        for writer in self._open.values():
            writer.close()
        self._open = {}


class MultimnoWriter:
    """multimno's bronze event data and network topology, partitioned by local day."""

    def __init__(self, world: World, out: Path):
        self.world, self.out = world, out
        self.files: set[str] = set()
        self.rows = self.duplicates = self.left_out = 0
        sims = world.sims
        e164 = sims.e164.astype(str)
        self.user_id = pa.array([hashlib.sha256(USER_ID_SALT + n.encode()).digest() for n in e164], pa.binary())
        home = _operator(world)
        sim_country = np.where(sims.foreign, world.traj.origin[sims.person], 0)
        plmn = np.array([home if c == 0 else str(world.plmns[c][0]) for c in sim_country], dtype=object)
        self.mcc = pa.array([int(p[:3]) for p in plmn], pa.int32())
        self.mnc = pa.array([p[3:] for p in plmn], pa.string())
        self.home_plmn = int(home)
        self.n_spellings = 3 * len(e164)

    def cells(self, table: pa.Table) -> tuple[str, int]:
        """Every cell in service on each day of the period: one partition per day, as multimno expects."""
        cal = self.world.cal
        first = self._days(table["valid_from"], -10**6)
        last = self._days(table["valid_to"], 10**6)
        start = pc.binary_join_element_wise(table["valid_from"], "T00:00:00", "")
        end = pc.binary_join_element_wise(table["valid_to"], "T23:59:59", "")
        network = pa.table({
            "cell_id": _digits(table["cell_id"]), "latitude": table["latitude"], "longitude": table["longitude"],
            "technology": table["technology"], "valid_date_start": start, "valid_date_end": end})
        rows = 0
        for day in range(cal.n_days):
            on = np.flatnonzero((first <= day) & (day <= last))
            d = cal.start + timedelta(days=day)
            rel = f"{MNO_NETWORK}/year={d.year}/month={d.month}/day={d.day}/part-00000.parquet"
            rows += write_parquet(self.out / rel, network.take(pa.array(on)))
        return MNO_NETWORK, rows

    def _days(self, labels: pa.ChunkedArray, missing: int) -> np.ndarray:
        start = self.world.cal.start
        return np.array([missing if v is None else (date.fromisoformat(v) - start).days for v in labels.to_pylist()])

    def block(self, label: str, block: int, columns: dict[str, Column], order: np.ndarray, draw: Draw) -> None:
        native = build_table(columns, order)
        etype = columns["event_type"].idx[order]
        keep = (etype >= 0) & (etype < len(EVENT_TYPES))  # multimno has no service type to get wrong
        self.left_out += int((~keep).sum())
        spelled = columns["msisdn"].idx[order]
        valid = (spelled >= 0) & (spelled < self.n_spellings)  # the fault's invalid numbers come after
        sim = np.where(valid, spelled // 3, 0)
        user_id = pc.if_else(pa.array(valid), self.user_id.take(pa.array(sim)), pa.nulls(len(order), pa.binary()))
        visited = native["visited_plmn"]
        numeric = pc.fill_null(pc.match_substring_regex(visited, r"^\d{1,9}$"), False)
        abroad = pc.if_else(numeric, pc.cast(pc.if_else(numeric, visited, "0"), pa.int32()),
                            pa.nulls(len(order), pa.int32()))  # not a number: no network multimno can read
        plmn = pc.if_else(visited.is_valid(), abroad, pa.array(np.full(len(order), self.home_plmn, dtype=np.int32)))
        events = pa.table({
            "user_id": user_id, "timestamp": native["event_time"], "mcc": self.mcc.take(pa.array(sim)),
            "mnc": self.mnc.take(pa.array(sim)), "plmn": plmn, "cell_id": _digits(native["cell_id"].combine_chunks()),
            "latitude": pa.nulls(len(order), pa.float32()), "longitude": pa.nulls(len(order), pa.float32()),
            "loc_error": pa.nulls(len(order), pa.float32())})
        copy = np.r_[False, order[1:] == order[:-1]] if len(order) else np.zeros(0, dtype=bool)
        self.duplicates += int((copy & keep).sum())
        days = _local_days(self.world, draw, order)
        for day in np.unique(days[keep]):
            rows = np.flatnonzero(keep & (days == day))
            d = date(1970, 1, 1) + timedelta(days=int(day))
            rel = f"{MNO_EVENTS}/year={d.year}/month={d.month}/day={d.day}/part-{label}-{block:05d}.parquet"
            self.rows += write_parquet(self.out / rel, events.take(pa.array(rows)))
            self.files.add(rel)

    def month_done(self) -> None:
        pass


def writer_for(fmt: str, world: World, out: Path) -> FlowdbWriter | MultimnoWriter:
    if fmt == "flowdb":
        return FlowdbWriter(world, out)
    if fmt == "multimno":
        return MultimnoWriter(world, out)
    raise ValueError(f"no writer for format {fmt!r} (one of {', '.join(FORMATS[1:])})")
