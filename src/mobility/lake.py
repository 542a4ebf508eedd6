"""Zone paths of a lake and the Delta writes every stage shares.

One root holds both zones in a demo; in production the operator zone sits on the operator's
premises and only ``office/`` is handed over. See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Lake:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).resolve())

    # operator zone: raw-facing, where the key is used; never leaves the operator
    @property
    def operator(self) -> Path:
        return self.root / "operator"

    @property
    def quarantine(self) -> Path:
        return self.operator / "quarantine"

    @property
    def cells(self) -> Path:
        return self.operator / "cells"

    @property
    def operator_manifests(self) -> Path:
        return self.operator / "manifests"

    @property
    def suppression(self) -> Path:
        """Keyed pseudonyms never to be ingested again (erasures, opt-outs)."""
        return self.operator / "suppression"

    @property
    def rights_log(self) -> Path:
        return self.operator / "rights_log"

    # office zone: pseudonymized, minimized; what the statistics office receives
    @property
    def office(self) -> Path:
        return self.root / "office"

    def office_table(self, name: str) -> Path:
        return self.office / name

    @property
    def office_manifests(self) -> Path:
        return self.office / "manifests"

    # publication and audit
    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    def ensure(self) -> "Lake":
        for p in (self.operator, self.office, self.releases):
            p.mkdir(parents=True, exist_ok=True)
        return self


def is_delta(path: Path) -> bool:
    return (Path(path) / "_delta_log").is_dir()


def delta_version(path: Path) -> int | None:
    """Current version of a Delta table (recorded in manifests), or None when there is none."""
    if not is_delta(path):
        return None
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaProtocolError

    try:  # delta-rs reads the log directly: a Spark history query took about 0.3 s a table
        return int(DeltaTable(str(path)).version())
    except DeltaProtocolError:  # a table feature delta-rs cannot read: ask the session's Delta
        from delta.tables import DeltaTable as SparkDeltaTable
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise
        return int(SparkDeltaTable.forPath(spark, str(path)).history(1).collect()[0]["version"])
