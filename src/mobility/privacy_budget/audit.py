"""Read-only checks and views of the ledger for auditors and the CLI (verify, show, export)."""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from mobility.config import BudgetCaps
from mobility.errors import ConfigError, LedgerIntegrityError
from mobility.lake import Lake, is_delta
from mobility.privacy_budget import accountant
from mobility.privacy_budget.ledger import (
    CHARGED,
    COLUMNS,
    PUBLISHED,
    TABLE_PROPERTIES,
    Ledger,
    LedgerEntry,
    chain_problems,
    entries_by_release,
    release_dir_problems,
)
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE


@dataclass(frozen=True)
class Problem:
    reason: str
    seq: int | None = None
    release_id: str | None = None
    rank: int = 0  # 0 entry chain and fields, 1 Delta history, 2 caps and anchor, 3 release directories

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else ""
        if self.release_id:
            where = f"{where} release {self.release_id}".strip()
        return f"{where}: {self.reason}" if where else self.reason


@dataclass
class VerifyReport:
    """Outcome of ``verify``: ``ok`` and, when not ok, the first bad entry and why."""

    ledger: str
    entries: int = 0
    releases: int = 0
    delta_version: int | None = None
    tail_hash: str | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """Entry problems first (lowest seq first), then Delta history, caps and anchor, release directories."""
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.rank, p.seq is None, p.seq or 0))

    @property
    def first_bad_seq(self) -> int | None:
        return self.first.seq if self.first else None

    @property
    def first_bad_release_id(self) -> str | None:
        return self.first.release_id if self.first else None

    @property
    def reason(self) -> str | None:
        return self.first.reason if self.first else None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "ledger": self.ledger, "entries": self.entries, "releases": self.releases,
                "delta_version": self.delta_version, "tail_hash": self.tail_hash,
                "first_bad_seq": self.first_bad_seq, "first_bad_release_id": self.first_bad_release_id,
                "reason": self.reason, "problems": [str(p) for p in self.problems], "notes": self.notes}

    def summary(self) -> str:
        head = (f"ledger {self.ledger}: {self.entries} entries, {self.releases} release directories, "
                f"Delta version {self.delta_version}, tail hash {self.tail_hash}")
        if self.ok:
            return f"OK {head}" + "".join(f"\n  note: {n}" for n in self.notes)
        lines = [f"FAILED {head}", f"  first bad: {self.first}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def raise_if_failed(self) -> "VerifyReport":
        if not self.ok:
            raise LedgerIntegrityError(f"verification failed at {self.first}", where=self.ledger,
                                       hint="restore the ledger and releases from a trusted copy and report it")
        return self


def _history_problems(path: Path, entries: list[LedgerEntry]) -> list[Problem]:
    """The Delta log must show one single-row append per entry, in order, and nothing else."""
    from deltalake import DeltaTable

    table = DeltaTable(str(path))
    problems = []
    config = table.metadata().configuration
    if config.get("delta.appendOnly") != TABLE_PROPERTIES["delta.appendOnly"]:
        problems.append(Problem("table property delta.appendOnly is not 'true' (it was changed)"))
    names = [f.name for f in table.schema().fields]
    if names != COLUMNS:
        problems.append(Problem(f"ledger columns changed: {names}"))
    history = sorted(table.history(), key=lambda h: h.get("version", -1))
    versions = [h.get("version") for h in history]
    if versions != list(range(len(history))) or versions[-1:] != [table.version()]:
        problems.append(Problem(f"Delta history is incomplete (versions {versions[:3]}...{versions[-3:]}); "
                                "cannot prove the table only grew by appends"))
    by_seq = {e.seq: e for e in entries}
    for h in history:
        v, op = h["version"], h.get("operation")  # deltalake numbers every commit it returns
        mode = (h.get("operationParameters") or {}).get("mode")
        metrics = h.get("operationMetrics") or {}
        # the first entry creates the table only if no other writer has (ledger.Ledger._append)
        if op != "WRITE" or mode not in (("Append", "ErrorIfExists") if v == 0 else ("Append",)):
            problems.append(Problem(f"Delta version {v} is a {op} {mode or ''} commit, not an append: "
                                    "the ledger table was rewritten".replace("  ", " ")))
            continue
        if metrics.get("num_removed_files", 0) or metrics.get("num_added_rows", 1) != 1:
            problems.append(Problem(f"Delta version {v} added {metrics.get('num_added_rows')} rows "
                                    f"and removed {metrics.get('num_removed_files')} files; expected one row"))
        seq, digest = h.get("mobility.seq"), h.get("mobility.entry_hash")
        entry = by_seq.get(int(seq)) if seq and str(seq).isdigit() else None
        if entry is None or entry.entry_hash != digest or entry.seq != v + 1:
            problems.append(Problem(f"Delta version {v} does not record ledger entry seq {v + 1} "
                                    "(commit not written by the ledger, or entry rewritten)",
                                    seq=entry.seq if entry else None))
    if len(history) != len(entries):
        problems.append(Problem(f"{len(entries)} entries but {len(history)} Delta commits"))
    return problems


def _entry_problems(entries: list[LedgerEntry]) -> list[Problem]:
    problems = [Problem(reason, e.seq, e.release_id) for e, reason in chain_problems(entries)]
    charged: dict[str, LedgerEntry] = {}
    published: set[str] = set()
    for e in entries:
        def bad(reason: str, e=e) -> None:
            problems.append(Problem(reason, e.seq, e.release_id))
        if e.status == CHARGED:
            if e.release_id in charged:
                bad(f"release_id charged twice (first at seq {charged[e.release_id].seq})")
            charged.setdefault(e.release_id, e)
            if not (math.isfinite(e.rho) and e.rho > 0 and math.isfinite(e.epsilon) and e.epsilon > 0):
                bad("a charge must have positive finite rho and epsilon")
            elif e.mechanism == DISCRETE_GAUSSIAN and not (0 < e.delta < 1 and e.epsilon <= accountant.
                                                           bun_steinke_epsilon(e.rho, e.delta) * (1 + 1e-9)):
                bad("epsilon exceeds the Bun-Steinke bound rho + 2 sqrt(rho ln(1/delta)) for its rho")
            elif e.mechanism == DISCRETE_LAPLACE and e.rho > e.epsilon ** 2 / 2 * (1 + 1e-9):
                bad("rho exceeds epsilon^2/2 for a pure epsilon-DP release")
            elif e.mechanism not in (DISCRETE_GAUSSIAN, DISCRETE_LAPLACE):
                bad(f"unknown mechanism {e.mechanism!r}")
        elif e.status == PUBLISHED:
            if e.release_id not in charged:
                bad("published entry without an earlier charge entry")
            elif e.release_id in published:
                bad("release published twice")
            published.add(e.release_id)
            if e.rho != 0 or e.epsilon != 0 or len(e.release_digest) != 64:
                bad("a published entry must carry zero budget and a 64-hex manifest digest")
        else:
            bad(f"unknown status {e.status!r}")
        try:
            accountant.year_of(e.period)
        except ValueError:
            bad(f"period {e.period!r} is not YYYY-MM")
    return problems


def _cap_problems(entries: list[LedgerEntry], caps: Mapping[str, BudgetCaps]) -> tuple[list[Problem], list[str]]:
    problems, notes = [], []
    agreements = sorted({e.agreement_id for e in entries if e.status == CHARGED})
    for agreement_id in agreements:
        cap = caps.get(agreement_id)
        if cap is None:
            notes.append(f"no caps given for agreement {agreement_id}; its totals were not checked")
            continue
        mine = [e for e in entries if e.status == CHARGED and e.agreement_id == agreement_id]
        running_total: dict[int | None, float] = {}
        for e in mine:  # name the first entry at which a cap was crossed
            for key, limit, label in ((e.year, cap.rho_per_year, f"per-year cap for {e.year}"),
                                      (None, cap.rho_lifetime, "lifetime cap")):
                before = running_total.get(key, 0.0)
                if before <= limit * (1 + accountant.CAP_TOLERANCE) and not accountant.fits(before, e.rho, limit):
                    problems.append(Problem(f"charges of {agreement_id} exceed the {label} "
                                            f"(rho {before + e.rho:.6g} > {limit:.6g})", e.seq, e.release_id))
                running_total[key] = before + e.rho
    return problems, notes


def verify(lake_root: str | os.PathLike, caps: Mapping[str, BudgetCaps] | None = None,
           anchor: str | None = None) -> VerifyReport:
    """Check the ledger's chain, its Delta history, caps (if given) and every release directory.

    ``anchor`` is an entry hash the auditor recorded earlier; it must still be in the chain,
    which detects a ledger rebuilt from scratch or truncated at the tail.
    """
    lake = Lake(lake_root)
    ledger = Ledger(lake.ledger)
    report = VerifyReport(ledger=str(ledger.path))
    entries, version = ledger.read()
    report.entries, report.delta_version = len(entries), version
    report.tail_hash = entries[-1].entry_hash if entries else None
    report.problems += _entry_problems(entries)
    if is_delta(ledger.path):
        report.problems += [replace(p, rank=1) for p in _history_problems(ledger.path, entries)]
    if caps:
        cap_problems, cap_notes = _cap_problems(entries, caps)
        report.problems += [replace(p, rank=2) for p in cap_problems]
        report.notes += cap_notes
    if anchor and not any(e.entry_hash == anchor for e in entries):
        report.problems.append(Problem(f"anchor hash {anchor[:16]}... is no longer in the ledger "
                                       "(ledger truncated or rebuilt)", rank=2))

    by_release = entries_by_release(entries)
    dirs = {p.name: p for p in lake.releases.iterdir() if p.is_dir()} if lake.releases.is_dir() else {}
    for name in sorted(dirs):
        if name.startswith("."):
            report.notes.append(f"unfinished temporary directory {name} under releases/ (not a release)")
            continue
        report.releases += 1
        charge, publication = by_release.get(name, (None, None))
        for reason in release_dir_problems(dirs[name], charge, publication):
            report.problems.append(Problem(reason, charge.seq if charge else None, name, rank=3))
    for release_id, (charge, publication) in by_release.items():
        if publication is not None and release_id not in dirs:
            report.problems.append(Problem("published release directory is missing", publication.seq, release_id,
                                           rank=3))
        elif charge is not None and publication is None and release_id not in dirs:
            report.notes.append(f"release {release_id} (seq {charge.seq}) was charged but never published; "
                                "its budget stays spent")
    return report


def _budget_view(entries: list[LedgerEntry], agreement_id: str, cap: BudgetCaps | None) -> dict:
    mine = [e for e in entries if e.status == CHARGED and e.agreement_id == agreement_id]
    years = sorted({e.year for e in mine})

    def one(spent: float, cap_rho: float | None) -> dict:
        if cap is None or cap_rho is None:
            return {"spent_rho": spent}
        return accountant.remaining(cap_rho, spent, cap.delta).as_dict()

    return {"lifetime": one(accountant.compose(e.rho for e in mine), cap.rho_lifetime if cap else None),
            "years": {str(y): one(accountant.compose(e.rho for e in mine if e.year == y),
                                  cap.rho_per_year if cap else None) for y in years}}


def show(lake_root: str | os.PathLike, agreement_id: str | None = None,
         caps: BudgetCaps | Mapping[str, BudgetCaps] | None = None) -> dict:
    """Entries (optionally of one agreement) and the budget spent and left per agreement and calendar year."""
    ledger = Ledger.of_lake(lake_root)
    entries, version = ledger.read()
    if isinstance(caps, BudgetCaps):
        if agreement_id is None:
            raise ConfigError("caps for a single agreement need agreement_id",
                              hint="pass agreement_id, or a mapping agreement_id -> caps")
        caps = {agreement_id: caps}
    caps = caps or {}
    chosen = [e for e in entries if agreement_id is None or e.agreement_id == agreement_id]
    agreements = sorted({e.agreement_id for e in chosen} | ({agreement_id} if agreement_id else set()))
    return {"ledger": str(ledger.path), "delta_version": version,
            "entries": [e.record() for e in chosen],
            "budget": {a: _budget_view(entries, a, caps.get(a)) for a in agreements}}


def export(lake_root: str | os.PathLike, fmt: str = "csv") -> str:
    """All ledger entries in seq order as CSV or JSON text (every column, hashes included)."""
    frame = Ledger.of_lake(lake_root).entries()
    if fmt == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, columns=COLUMNS, lineterminator="\n", float_format=None)
        return buffer.getvalue()
    if fmt == "json":
        records = [LedgerEntry.from_record(r).record() for r in frame.to_dict("records")]
        return json.dumps(records, indent=2, sort_keys=True, allow_nan=False) + "\n"
    raise ConfigError(f"unknown export format {fmt!r}", hint="use 'csv' or 'json'")


__all__ = ["Problem", "VerifyReport", "export", "show", "verify"]
