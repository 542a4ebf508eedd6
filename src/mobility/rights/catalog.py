"""Which Delta tables a lake holds and what each says about a person, found by walking the zones.

Tables are discovered, not listed: a stage that adds a table is covered by access, erasure and
retention as long as it names its identifier columns ``pseudonym`` or ``*_pseudonym``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobility import storage
from mobility.lake import Lake, is_delta

ZONES = ("operator", "office")
# A row *about* the person: deleted on erasure.
SUBJECT_COLUMNS = ("pseudonym", "sender_pseudonym")
# The raw operator row of a quarantined record: matched by the number it contains.
RAW_RECORD_COLUMN = "record"
# Columns whose values identify a person; their min/max statistics are scrubbed from Delta logs.
RAW_IDENTIFIER_COLUMNS = ("record", "msisdn", "counterpart_msisdn", "sender_msisdn", "receiver_msisdn", "imei")
# Event time per table, finest first: what retention counts from.
TIME_COLUMNS = ("event_hour", "txn_hour", "date", "crossing_date", "month")

# Plain-language description of the tables the pipeline writes (others are described by their columns).
DESCRIPTIONS = {
    "quarantine": "rejected input rows, kept as received (raw numbers included) so the operator can fix them",
    "events": "call, SMS and data events: hour, H3 cell (or country when abroad), event type",
    "subscribers": "registration attributes: sex and birth year",
    "payments": "payments and remittances: hour, corridor, amount, fee, channel, place of agent or card payments",
    "presence": "one row per day: the country where the person spent the night",
    "home_cells": "one row per month: the usual night-time H3 cell in the home country",
    "residence_changes": "changes of country of usual residence found by the 12/16-month rule",
    "cells": "the operator's cell sites (no personal data)",
}
# Tables that serve the rights machinery itself, not statistics.
RIGHTS_TABLES = ("suppression", "rights_log")


@dataclass(frozen=True)
class Table:
    zone: str
    name: str
    path: Path
    columns: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.zone}/{self.name}"

    @property
    def subject_column(self) -> str | None:
        return next((c for c in SUBJECT_COLUMNS if c in self.columns), None)

    @property
    def other_party_columns(self) -> tuple[str, ...]:
        """Columns naming the person as the other party of someone else's record: blanked, not deleted."""
        return tuple(c for c in self.columns if c.endswith("_pseudonym") and c != self.subject_column)

    @property
    def holds_raw_records(self) -> bool:
        return RAW_RECORD_COLUMN in self.columns and self.zone == "operator"

    @property
    def personal(self) -> bool:
        return bool(self.subject_column or self.other_party_columns or self.holds_raw_records)

    @property
    def time_column(self) -> str | None:
        return next((c for c in TIME_COLUMNS if c in self.columns), None)

    @property
    def identifier_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c == "pseudonym" or c.endswith("_pseudonym")
                     or c in RAW_IDENTIFIER_COLUMNS)

    @property
    def description(self) -> str:
        return DESCRIPTIONS.get(self.name, "columns: " + ", ".join(self.columns))


def delta_dirs(root: Path) -> list[Path]:
    """Every Delta table under ``root`` (a table's own folders are not searched further)."""
    found: list[Path] = []
    if not root.is_dir():
        return found
    if is_delta(root):
        return [root]
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        found += delta_dirs(child)
    return found


def _columns(path: Path) -> tuple[str, ...]:
    from deltalake import DeltaTable

    schema = DeltaTable(storage.uri(path), storage_options=storage.delta_options(path)).schema()
    return tuple(f.name for f in schema.fields)


def tables(lake: Lake, *, include_rights: bool = False) -> list[Table]:
    """Data tables of both zones, in a fixed order (operator first)."""
    out = []
    for zone in ZONES:
        zone_root = getattr(lake, zone)
        for path in delta_dirs(zone_root):
            name = path.relative_to(zone_root).as_posix()
            if not include_rights and name in RIGHTS_TABLES:
                continue
            out.append(Table(zone, name, path, _columns(path)))
    return out
