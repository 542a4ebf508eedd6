"""Read-only checks and views of the ledger for auditors and the CLI (verify, show, export).

``verify`` checks, without trusting anything the ledger code wrote beyond the files themselves: the
hash chain and each entry's fields (ledger formats 1 and 2), the Delta history (one single-row
append per entry), the data files of the table against every commit (a data file no commit
references is what deleting the newest commits leaves behind), the caps replayed from the ledger's
own ``policy`` entries, the ledger against a witness kept outside the lake, and every release
directory against its entries. See docs/auditor-guide.md.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Union
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq

from mobility import storage
from mobility.config import Agreement, BudgetCaps
from mobility.errors import ConfigError, LedgerIntegrityError
from mobility.lake import Lake, is_delta
from mobility.privacy_budget import accountant, accounts, blocks
from mobility.privacy_budget.accounts import POLICY
from mobility.privacy_budget.ledger import (
    CHARGED,
    COLUMNS,
    FORMAT2_COLUMNS,
    GENESIS_HASH,
    LEGACY_COLUMNS,
    PUBLISHED,
    TABLE_PROPERTIES,
    Ledger,
    LedgerEntry,
    canonical_json,
    chain_problems,
    entries_by_release,
    release_dir_problems,
)
from mobility.privacy_budget.witness import SUFFIX, Witness, parse_witness

# what verify compares an agreement with: its caps, or the agreement itself (caps and file digest)
CapsSource = Union[BudgetCaps, Agreement]
WitnessPath = Union[str, os.PathLike]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHOWN = 3  # problems of one kind listed one by one before the rest are counted


@dataclass(frozen=True)
class Problem:
    reason: str
    seq: int | None = None
    release_id: str | None = None
    # 0 entry chain and fields, 1 Delta history, data files and witness, 2 caps and anchor, 3 release directories
    rank: int = 0

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
    ledger_id: str | None = None  # the Delta table's id, which names the ledger in a witness
    formats: list[int] = field(default_factory=list)  # ledger entry formats present (1 before data months)
    data_files: int = 0  # Parquet files in the ledger table directory
    unreferenced_files: list[str] = field(default_factory=list)  # of them, those no commit adds
    witnesses: list[dict] = field(default_factory=list)  # per witness file: path, lines, last witnessed seq/hash
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

    @property
    def witnessed_seq(self) -> int | None:
        """The highest seq a witness recorded (None when no witness was checked or it recorded none)."""
        seqs = [w["witnessed_seq"] for w in self.witnesses if w.get("witnessed_seq") is not None]
        return max(seqs) if seqs else None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "ledger": self.ledger, "ledger_id": self.ledger_id, "entries": self.entries,
                "releases": self.releases, "delta_version": self.delta_version, "tail_hash": self.tail_hash,
                "formats": self.formats, "data_files": self.data_files,
                "unreferenced_files": self.unreferenced_files, "witnessed_seq": self.witnessed_seq,
                "witnesses": self.witnesses,
                "first_bad_seq": self.first_bad_seq, "first_bad_release_id": self.first_bad_release_id,
                "reason": self.reason, "problems": [str(p) for p in self.problems], "notes": self.notes}

    def summary(self) -> str:
        head = (f"ledger {self.ledger}: {self.entries} entries, {self.releases} release directories, "
                f"Delta version {self.delta_version}, tail hash {self.tail_hash}")
        details = [f"  data files: {self.data_files}, referenced by no commit: {len(self.unreferenced_files)}"]
        if not self.witnesses:
            details.append("  witness: none checked (pass --witness; only a witness outside the lake shows "
                           "a rollback that also removed the data files)")
        for w in self.witnesses:
            seen = (f"witnessed through seq {w['witnessed_seq']} ({(w['witnessed_hash'] or '')[:16]}...)"
                    if w.get("witnessed_seq") is not None else "nothing witnessed")
            details.append(f"  witness {w['file'] or w['path']}: {w['lines']} lines, {seen}")
        if self.ok:
            return "\n".join([f"OK {head}", *details] + [f"  note: {n}" for n in self.notes])
        lines = [f"FAILED {head}", *details, f"  first bad: {self.first}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def raise_if_failed(self) -> "VerifyReport":
        if not self.ok:
            raise LedgerIntegrityError(f"verification failed at {self.first}", where=self.ledger,
                                       hint="restore the ledger and releases from a trusted copy and report it")
        return self


def _open_table(path: Path) -> Any:
    from deltalake import DeltaTable

    return DeltaTable(storage.uri(path), storage_options=storage.delta_options(path))


def _history_problems(path: Path, entries: list[LedgerEntry]) -> list[Problem]:
    """The Delta log must show one single-row append per entry, in order, and nothing else."""
    table = _open_table(path)
    problems = []
    config = table.metadata().configuration
    if config.get("delta.appendOnly") != TABLE_PROPERTIES["delta.appendOnly"]:
        problems.append(Problem("table property delta.appendOnly is not 'true' (it was changed)"))
    names = [f.name for f in table.schema().fields]
    if names not in (COLUMNS, LEGACY_COLUMNS):  # format 2, or a format-1 ledger not yet extended
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


# ---- data files against commits --------------------------------------------------------------------
def _relative(table: Path, raw: str) -> str:
    """An ``add`` action's path as a path relative to the table (actions hold URL-encoded paths)."""
    parsed = urlparse(raw)
    if parsed.scheme in ("file", "") and parsed.path.startswith("/"):
        absolute = Path(unquote(parsed.path))
        try:
            return absolute.resolve().relative_to(table.resolve()).as_posix()
        except ValueError:
            return absolute.as_posix()
    return unquote(raw) if not parsed.scheme else raw


def _referenced(table: Path) -> tuple[set[str], list[str]]:
    """Every data file an ``add`` action names, in any commit or checkpoint of ``_delta_log``, and the
    log files that could not be read. Commits are JSON lines read here, not through delta-rs: a file
    of a commit that was later deleted is then referenced by none."""
    log = table / "_delta_log"
    found: set[str] = set()
    unreadable: list[str] = []
    # commits (NNN.json), JSON checkpoints (NNN.checkpoint.UUID.json) and compacted logs
    for path in sorted(log.glob("*.json")):
        try:
            for raw in path.read_text(encoding="utf-8").splitlines():
                if not raw.strip():
                    continue
                action = json.loads(raw)
                add = action.get("add") if isinstance(action, dict) else None
                if isinstance(add, dict) and isinstance(add.get("path"), str):
                    found.add(_relative(table, add["path"]))
        except (OSError, ValueError) as exc:
            unreadable.append(f"{path.name}: {exc}")
    # Parquet checkpoints (single, multi-part, v2) and v2 sidecars: adds kept only there count too
    parquet = [p for p in log.glob("*.parquet") if ".checkpoint" in p.name]
    parquet += sorted((log / "_sidecars").glob("*.parquet")) if (log / "_sidecars").is_dir() else []
    for path in parquet:
        try:
            with storage.open_binary(path) as stream:  # a local file, or an object on object storage
                handle = pq.ParquetFile(stream)
                if "add" not in handle.schema_arrow.names:
                    continue
                adds = handle.read(columns=["add"]).column("add").to_pylist()
            for add in adds:
                if isinstance(add, dict) and isinstance(add.get("path"), str):
                    found.add(_relative(table, add["path"]))
        except (OSError, ValueError, KeyError) as exc:
            unreadable.append(f"{path.name}: {exc}")
    return found, unreadable


def _data_files(table: Path) -> list[str]:
    """The Parquet files of the ledger table (not its log), relative to the table directory."""
    return sorted(p.relative_to(table).as_posix() for p in table.rglob("*.parquet")
                  if p.is_file() and "_delta_log" not in p.relative_to(table).parts)


def _orphan(table: Path, name: str, by_seq: dict[int, LedgerEntry], last_seq: int) -> tuple[Problem | None, str]:
    """Why a data file no commit references is there: a problem (rollback) or a note (lost commit race)."""
    try:
        with storage.open_binary(table / name) as stream:  # a local file, or an object on object storage
            rows = pq.ParquetFile(stream).read().to_pylist()
        entry = LedgerEntry.from_record(rows[0]) if len(rows) == 1 else None
    except (OSError, ValueError, KeyError, TypeError):
        entry = None
    if entry is None or entry.seq < 1 or entry.computed_hash() != entry.entry_hash:
        return Problem(f"data file {name} is referenced by no commit and holds no valid ledger entry: "
                       "a file was put into the ledger table, or commits were deleted (rollback)"), ""
    if entry.seq > last_seq:
        return Problem(f"data file {name} is referenced by no commit: it holds entry seq {entry.seq} "
                       f"({entry.entry_hash[:16]}...), beyond the ledger's last seq {last_seq}: commits were "
                       "deleted (rollback)", entry.seq, entry.release_id or None), ""
    before = by_seq.get(entry.seq - 1)
    linked = entry.prev_hash == (before.entry_hash if before is not None else GENESIS_HASH)
    if not linked:
        return Problem(f"data file {name} is referenced by no commit: it holds an entry seq {entry.seq} that "
                       f"links to another seq {entry.seq - 1} than the ledger's: commits were deleted "
                       "(rollback) and others appended in their place", entry.seq, entry.release_id or None), ""
    same = by_seq.get(entry.seq)
    what = "a copy of the committed entry" if same is not None and same.entry_hash == entry.entry_hash \
        else "an entry that another writer's commit of that seq replaced"
    return None, (f"data file {name} is referenced by no commit: it holds {what} seq {entry.seq}, so it was "
                  "left by an append that lost a commit race (or by a rollback followed by a new append: "
                  "a witness tells which)")


def _file_problems(table: Path, entries: list[LedgerEntry], report: VerifyReport) -> None:
    referenced, unreadable = _referenced(table)
    for what in unreadable:
        report.problems.append(Problem(f"Delta log file {what} cannot be read", rank=1))
    files = _data_files(table)
    report.data_files = len(files)
    report.unreferenced_files = [f for f in files if f not in referenced]
    by_seq = {e.seq: e for e in entries}
    last_seq = max(by_seq, default=0)
    for name in report.unreferenced_files:
        problem, note = _orphan(table, name, by_seq, last_seq)
        if problem is not None:
            report.problems.append(replace(problem, rank=1))
        else:
            report.notes.append(note)


# ---- entries ----------------------------------------------------------------------------------------
def _format(e: LedgerEntry) -> int:
    return 1 if all(getattr(e, c) is None for c in FORMAT2_COLUMNS) else 2


def _caps_defect(text: str | None, population: str | None) -> str | None:
    """Why a policy entry's caps are not valid caps (None when they are)."""
    if not text:
        return "a policy entry must record caps"
    try:
        recorded = json.loads(text)
    except ValueError:
        return "its caps are not valid JSON"
    if not isinstance(recorded, dict) or set(recorded) != {"population", "rho_per_data_month", "rho_lifetime",
                                                           "delta"}:
        return "its caps must name exactly population, rho_per_data_month, rho_lifetime and delta"
    try:
        caps = BudgetCaps.model_validate(recorded)
    except ValueError as exc:
        return f"its caps are not valid caps ({str(exc).splitlines()[-1].strip()})"
    if caps.population != population:
        return f"its caps name population {caps.population!r} but the entry names {population!r}"
    return None


def _months_defect(text: str | None) -> str | None:
    """Why a format-2 charge's data_months is not a non-empty JSON list of YYYY-MM (None when it is)."""
    try:
        months = json.loads(text or "")
    except ValueError:
        return "data_months is not valid JSON"
    if not isinstance(months, list) or not months:
        return "data_months must be a non-empty JSON list of the months of data the charge read"
    for month in months:
        try:
            blocks.check_month(month)
        except ValueError as exc:
            return f"data_months: {exc}"
    return None


def _entry_problems(entries: list[LedgerEntry]) -> tuple[list[Problem], list[str]]:
    problems = [Problem(reason, e.seq, e.release_id) for e, reason in chain_problems(entries)]
    notes: list[str] = []
    charged: dict[str, LedgerEntry] = {}
    published: set[str] = set()
    first_format2: LedgerEntry | None = None
    for e in entries:
        def bad(reason: str, e: LedgerEntry = e) -> None:
            problems.append(Problem(reason, e.seq, e.release_id or None))
        fmt = _format(e)
        if fmt == 2 and first_format2 is None:
            first_format2 = e
        elif fmt == 1 and first_format2 is not None:
            notes.append(f"seq {e.seq} is a format-1 entry after format-2 entries (from seq {first_format2.seq}): "
                         "written by an older version of the ledger code; its data months are inferred")
        if e.status == CHARGED:
            if e.release_id in charged:
                bad(f"release_id charged twice (first at seq {charged[e.release_id].seq})")
            charged.setdefault(e.release_id, e)
            defect = accountant.loss_defect(e.mechanism, e.epsilon, e.delta, e.rho)
            if defect:
                bad(defect)
            if fmt == 2:
                defect = _months_defect(e.data_months)
                if defect:
                    bad(defect)
                if not e.population:
                    bad("a format-2 charge must name the population it is charged to")
        elif e.status == PUBLISHED:
            if e.release_id not in charged:
                bad("published entry without an earlier charge entry")
            elif e.release_id in published:
                bad("release published twice")
            published.add(e.release_id)
            if e.rho != 0 or e.epsilon != 0 or len(e.release_digest) != 64:
                bad("a published entry must carry zero budget and a 64-hex manifest digest")
        elif e.status == POLICY:
            if e.rho != 0 or e.epsilon != 0:
                bad("a policy entry must carry zero budget")
            if e.release_id or e.period:
                bad("a policy entry names no release and no period")
            if not e.agreement_id:
                bad("a policy entry must name its agreement")
            if not _HEX64.match(e.agreement_sha256 or ""):
                bad("a policy entry must carry the agreement file's SHA-256 (64 hex)")
            defect = _caps_defect(e.caps, e.population)
            if defect:
                bad(defect)
            continue  # a policy has no period
        else:
            bad(f"unknown status {e.status!r}")
        try:
            accountant.year_of(e.period)
        except ValueError:
            bad(f"period {e.period!r} is not YYYY-MM")
    return problems, notes


# ---- caps, replayed from the ledger's own policy entries ---------------------------------------------
def _valid_caps(e: LedgerEntry) -> dict | None:
    return accounts.recorded_caps(e) if _caps_defect(e.caps, e.population) is None else None


def _months_read(e: LedgerEntry) -> list[str] | None:
    if e.data_months is not None and _months_defect(e.data_months) is not None:
        return None  # reported as an entry problem
    try:
        return accounts.data_months_of(e)
    except ValueError:
        return None


class _Totals:
    """Running rho per population: lifetime and per data month (sums as the ledger makes them)."""

    def __init__(self) -> None:
        self.lifetime: dict[str, list[float]] = {}
        self.months: dict[str, dict[str, list[float]]] = {}

    def add(self, population: str, rho: float, months: Sequence[str]) -> None:
        self.lifetime.setdefault(population, []).append(rho)
        mine = self.months.setdefault(population, {})
        for m in months:
            mine.setdefault(m, []).append(rho)

    def spent(self, population: str, months: Sequence[str] | None = None) -> accounts.Spent:
        mine = self.months.get(population, {})
        chosen = mine if months is None else {m: mine[m] for m in months if m in mine}
        rhos = self.lifetime.get(population, [])
        return accounts.Spent(population, accountant.compose(rhos),
                              {m: accountant.compose(v) for m, v in chosen.items()}, len(rhos))


def _over_text(over: list[accounts.Overrun]) -> str:
    first = over[0]
    more = f" (and {len(over) - 1} more cap(s): {', '.join(o.cap for o in over[1:4])})" if len(over) > 1 else ""
    return (f"the {first.cap} cap: spent rho={first.spent_rho:.6g} + this charge rho={first.asked_rho:.6g} "
            f"> cap rho={first.cap_rho:.6g}{more}")


def _cap_replay(entries: list[LedgerEntry]) -> tuple[list[Problem], list[str]]:
    """Walk the entries in seq order and check each charge against the latest caps its population had
    recorded before it, per data month and lifetime; name the first charge of each population that
    passed a cap. Format-1 charges of an agreement join its population at its first policy entry."""
    problems: list[Problem] = []
    notes: list[str] = []
    population_of: dict[str, str] = {}  # agreement -> population of its first policy entry
    policy_of: dict[str, LedgerEntry] = {}  # population -> latest policy entry
    pending: dict[str, list[LedgerEntry]] = {}  # agreement -> its format-1 charges before its first policy
    totals = _Totals()
    flagged: set[str] = set()
    for e in entries:
        if e.status == POLICY:
            caps = _valid_caps(e)
            if caps is None or not e.population:
                continue  # an entry problem already
            policy_of[e.population] = e
            if e.agreement_id not in population_of:
                population_of[e.agreement_id] = e.population
                earlier = pending.pop(e.agreement_id, [])
                for c in earlier:
                    totals.add(e.population, c.rho, _months_read(c) or [])
                over = accounts.overruns(totals.spent(e.population), 0.0,
                                         sorted(totals.months.get(e.population, {})), caps) if earlier else []
                if over:
                    notes.append(f"the {len(earlier)} format-1 charge(s) of agreement {e.agreement_id} joined "
                                 f"population {e.population} at policy seq {e.seq} already over {_over_text(over)}; "
                                 "they were made under the earlier caps, later charges are held to these")
            continue
        if e.status != CHARGED or not (math.isfinite(e.rho) and e.rho > 0):
            continue
        months = _months_read(e)
        if months is None:
            continue  # an entry problem already
        population = e.population or population_of.get(e.agreement_id)
        if population is None:
            pending.setdefault(e.agreement_id, []).append(e)
            continue
        policy = policy_of.get(population)
        if policy is None:
            if e.population is not None:
                problems.append(Problem(f"charge to population {population} precedes any policy entry recording "
                                        "its caps", e.seq, e.release_id or None))
        elif population not in flagged:
            over = accounts.overruns(totals.spent(population, months), e.rho, months,
                                     accounts.recorded_caps(policy))
            if over:
                flagged.add(population)
                problems.append(Problem(f"charge of population {population} passes {_over_text(over)} "
                                        f"(caps recorded at seq {policy.seq})", e.seq, e.release_id or None))
        totals.add(population, e.rho, months)
    for agreement_id, charges in pending.items():
        notes.append(f"{len(charges)} format-1 charge(s) of agreement {agreement_id} (seq {charges[0].seq}.."
                     f"{charges[-1].seq}, rho {accountant.compose(c.rho for c in charges):.6g}) belong to no "
                     "population yet: no policy entry records the agreement's caps, so they were not checked "
                     "against caps; its next charge records them and counts these")
    return problems, notes


def _compare_caps(entries: list[LedgerEntry], given: Mapping[str, CapsSource]) -> tuple[list[Problem], list[str]]:
    """The caps of agreement files given on the command line against those the ledger records."""
    problems: list[Problem] = []
    notes: list[str] = []
    for agreement_id, source in sorted(given.items()):
        caps = source.budget if isinstance(source, Agreement) else source
        mine = accounts.latest_policy(entries, agreement_id=agreement_id)
        if mine is None:
            held = sum(1 for e in entries if e.agreement_id == agreement_id)
            notes.append(f"agreement {agreement_id}: the ledger records no policy for it "
                         f"({held} entries of it, none under recorded caps); its file's caps "
                         f"{canonical_json(caps.recorded())} were compared with nothing")
            continue
        if mine.population != caps.population:
            problems.append(Problem(f"agreement {agreement_id}: its file names population {caps.population!r} but "
                                    f"the ledger records it under {mine.population!r} (seq {mine.seq})",
                                    mine.seq, rank=2))
            continue
        theirs = accounts.latest_policy(entries, population=caps.population) or mine
        recorded, wanted = accounts.recorded_caps(theirs), caps.recorded()
        if recorded != wanted:
            looser = [k for k in ("rho_per_data_month", "rho_lifetime", "delta")
                      if isinstance(recorded.get(k), (int, float)) and recorded[k] > wanted[k]]
            where = f"recorded for population {caps.population} at seq {theirs.seq}"
            if looser:
                problems.append(Problem(
                    f"agreement {agreement_id}: the ledger holds charges to caps looser than its file's: "
                    + ", ".join(f"{k} {recorded[k]:g} {where} > {wanted[k]:g} in the file" for k in looser)
                    + "; charges were checked against the recorded caps", theirs.seq, rank=2))
            else:
                notes.append(f"agreement {agreement_id}: its file's caps {canonical_json(wanted)} differ from "
                             f"those {where} ({theirs.caps}) but are not tighter; releases under the file are "
                             "refused until the change is recorded as a policy entry")
        if isinstance(source, Agreement):
            signed = [e for e in entries if e.agreement_id == agreement_id and e.agreement_sha256]
            if signed and signed[-1].agreement_sha256 != source.sha256:
                notes.append(f"agreement {agreement_id}: the file's SHA-256 {source.sha256[:16]}... differs from "
                             f"the one its latest entry (seq {signed[-1].seq}) names "
                             f"({(signed[-1].agreement_sha256 or '')[:16]}...): the file changed since")
    return problems, notes


# ---- the witness ------------------------------------------------------------------------------------
def _witness_file(path: Path, ledger_id: str | None) -> tuple[Path | None, str | None]:
    """The witness file for this ledger in ``path`` (a directory or a .jsonl file), or why there is none."""
    if path.is_dir():
        if ledger_id is None:
            return None, f"witness {path}: there is no readable ledger table whose file to look up in it"
        found = Witness(path).path_for(ledger_id)
        if found.is_file():
            return found, None
        others = sorted(p.name for p in path.glob(f"*{SUFFIX}"))
        why = (f"it holds {', '.join(others[:_SHOWN])}{' ...' if len(others) > _SHOWN else ''}: the ledger "
               "table was recreated (its Delta id changed) or is not the ledger witnessed there"
               if others else "the ledger was never witnessed there")
        return None, f"witness directory {path} has no file for this ledger ({found.name}): {why}"
    if path.is_file():
        if ledger_id is not None and _UUID.match(path.stem) and path.stem != ledger_id:
            return None, (f"witness file {path.name} witnesses ledger {path.stem}, not this one ({ledger_id}): "
                          "the ledger table was recreated, or this is another lake's witness")
        return path, None
    return None, f"witness {path} does not exist"


def _witness_problems(path: Path, entries: list[LedgerEntry], ledger_id: str | None,
                      report: VerifyReport) -> None:
    info: dict[str, Any] = {"path": str(path), "file": None, "lines": 0, "witnessed_seq": None,
                            "witnessed_hash": None}
    report.witnesses.append(info)

    def problem(reason: str, seq: int | None = None) -> None:
        report.problems.append(Problem(reason, seq, rank=1))

    found, why = _witness_file(path, ledger_id)
    if found is None:
        problem(why or f"witness {path} not found")
        return
    info["file"] = str(found)
    if path.is_file() and ledger_id is not None and path.stem != ledger_id:
        report.notes.append(f"witness file {found.name} is not named after this ledger ({ledger_id}): matched "
                            "by its contents only")
    try:
        parsed = parse_witness(found)
    except OSError as exc:
        problem(f"witness file {found} cannot be read: {exc}")
        return
    info["lines"] = len(parsed.lines) + len(parsed.malformed)
    last_number = max([line.number for line in parsed.lines] + [n for n, _ in parsed.malformed], default=0)
    for number, text in parsed.malformed:
        if parsed.unterminated and number == last_number:
            report.notes.append(f"witness file {found.name}: its last line is incomplete ({text!r}): an append "
                                "to the witness was interrupted; it is ignored")
        else:
            problem(f"witness file {found.name}: line {number} is not a witness record (edited or torn): {text!r}")
    if not parsed.lines:
        problem(f"witness file {found} witnesses no entry")
        return
    newest = parsed.last
    assert newest is not None
    info["witnessed_seq"], info["witnessed_hash"] = newest.seq, newest.entry_hash
    by_seq = {e.seq: e for e in entries}
    last_seq = max(by_seq, default=0)
    witnessed = parsed.by_seq()
    for seq, lines in sorted(witnessed.items()):
        hashes = sorted({line.entry_hash for line in lines})
        if len(hashes) > 1:
            problem(f"witness records {len(hashes)} different hashes for seq {seq} (lines "
                    f"{', '.join(str(line.number) for line in lines)}): the ledger was rolled back and appended "
                    "again between two appends to the witness", seq)
    beyond = sorted(s for s in witnessed if s > last_seq)
    if beyond:
        line = witnessed[beyond[-1]][-1]
        problem(f"ledger is shorter than its witness: the ledger ends at seq {last_seq} but the witness recorded "
                f"seq {beyond[0]}..{beyond[-1]} (the last at {line.time}): witnessed entries were removed "
                "(rollback)", beyond[0])
    differing = [s for s in sorted(witnessed) if s <= last_seq
                 and (s not in by_seq or by_seq[s].entry_hash not in {line.entry_hash for line in witnessed[s]})]
    for seq in differing[:_SHOWN]:
        line = witnessed[seq][0]
        now = by_seq[seq].entry_hash[:16] + "..." if seq in by_seq else "no entry"
        problem(f"ledger diverges from its witness at seq {seq}: witnessed {line.entry_hash[:16]}... at "
                f"{line.time}, the ledger has {now}: the entry was replaced after it was witnessed", seq)
    if len(differing) > _SHOWN:
        problem(f"{len(differing) - _SHOWN} more witnessed entries differ from the ledger", differing[_SHOWN])
    gaps = [s for s in range(1, min(newest.seq, last_seq) + 1) if s not in witnessed]
    if gaps:
        report.notes.append(f"witness file {found.name} has no line for {len(gaps)} seq(s) ({gaps[0]}"
                            f"{'...' if len(gaps) > 1 else ''}): lines were removed from it, or it started late; "
                            "those entries are not witnessed")
    if last_seq > newest.seq:
        report.notes.append(f"entries seq {newest.seq + 1}..{last_seq} are not witnessed yet (appended without "
                            f"the witness, or its append failed): {found.name} proves nothing about them")


def _witness_paths(witness_arg: WitnessPath | Sequence[WitnessPath] | None) -> list[Path]:
    if witness_arg is None:
        return []
    if isinstance(witness_arg, (str, os.PathLike)):
        return [Path(witness_arg)]
    return [Path(w) for w in witness_arg]


def verify(lake_root: str | os.PathLike, caps: Mapping[str, CapsSource] | None = None,
           anchor: str | None = None,
           witness: WitnessPath | Sequence[WitnessPath] | None = None) -> VerifyReport:
    """Check the ledger's chain and fields, its Delta history and data files, its caps, a witness (if
    given) and every release directory.

    Caps are replayed from the ledger's own ``policy`` entries; ``caps`` (agreement id -> caps or the
    agreement) are compared with what the ledger records. ``anchor`` is an entry hash the auditor
    recorded earlier; it must still be in the chain. ``witness`` is a witness directory (the
    agreement's ``ledger_witness``) or a witness ``.jsonl`` file, or several: the ledger must hold
    every entry they recorded, unchanged.
    """
    lake = Lake(lake_root)
    ledger = Ledger(lake.ledger)
    report = VerifyReport(ledger=str(ledger.path))
    witnesses = _witness_paths(witness)
    readable = True
    try:
        entries, version = ledger.read()
        report.ledger_id = ledger.ledger_id()
    except Exception as exc:  # noqa: BLE001 - a ledger that cannot be read is a finding, not a crash
        report.problems.append(Problem(f"the ledger table cannot be read ({type(exc).__name__}: {exc}): "
                                       "its log or data files were removed or damaged"))
        entries, version, readable = [], None, False
    report.entries, report.delta_version = len(entries), version
    report.tail_hash = entries[-1].entry_hash if entries else None
    report.formats = sorted({_format(e) for e in entries})
    entry_problems, entry_notes = _entry_problems(entries)
    report.problems += entry_problems
    report.notes += entry_notes
    for path in witnesses:  # before the data files: a witnessed rollback is named by the witness first
        _witness_problems(path, entries, report.ledger_id, report)
    if ledger.path.is_dir():
        _file_problems(ledger.path, entries, report)
    if readable and is_delta(ledger.path):
        report.problems += [replace(p, rank=1) for p in _history_problems(ledger.path, entries)]
    cap_problems, cap_notes = _cap_replay(entries)
    report.problems += [replace(p, rank=2) for p in cap_problems]
    report.notes += cap_notes
    if caps:
        given_problems, given_notes = _compare_caps(entries, caps)
        report.problems += given_problems
        report.notes += given_notes
    if anchor and not any(e.entry_hash == anchor for e in entries):
        report.problems.append(Problem(f"anchor hash {anchor[:16]}... is no longer in the ledger "
                                       "(ledger truncated or rebuilt)", rank=2))

    by_release = entries_by_release(entries)
    dirs = {p.name: p for p in lake.releases.iterdir() if p.is_dir()} if lake.releases.is_dir() else {}
    for name in sorted(dirs):
        if name.startswith(".stage-") and "@" not in name:
            report.notes.append(f"{name} under releases/: noisy measurements staged under a charge, kept until "
                                "the release is published (run the same request again); do not delete them")
            continue
        if name.startswith("."):
            report.notes.append(f"unfinished temporary directory {name} under releases/ (not a release)")
            continue
        report.releases += 1
        charge, publication = by_release.get(name, (None, None))
        for reason in release_dir_problems(dirs[name], charge, publication):
            report.problems.append(Problem(reason, charge.seq if charge else None, name, rank=3))
    for release_id, (charge, publication) in by_release.items():
        if not release_id:
            continue  # policy entries name no release
        if publication is not None and release_id not in dirs:
            report.problems.append(Problem("published release directory is missing", publication.seq, release_id,
                                           rank=3))
        elif charge is not None and publication is None and release_id not in dirs:
            staged = lake.release_stage(release_id).is_dir()
            report.notes.append(f"release {release_id} (seq {charge.seq}) was charged but never published; "
                                "its budget stays spent; running the same request again completes it "
                                + ("from the noisy measurements it staged (no new noise)" if staged
                                   else "under the same charge"))
    return report


# ---- show: budget per population --------------------------------------------------------------------
def _budget_view(entries: list[LedgerEntry], population: str, cap: BudgetCaps | None = None) -> dict:
    """What ``population`` has spent and has left, over its lifetime and per data month, under the caps
    the ledger records for it (``cap``, from an agreement file, only when the ledger records none)."""
    spent = accounts.spent(entries, population)
    policy = accounts.latest_policy(entries, population=population)
    recorded = accounts.recorded_caps(policy) if policy is not None else (cap.recorded() if cap else None)
    agreements = accounts.populations(entries)
    members = sorted({a for a, p in agreements.items() if p == population}
                     | {e.agreement_id for e in entries if e.population == population})

    def one(rho: float, cap_key: str) -> dict:
        if recorded is None:
            return {"spent_rho": rho}
        return accountant.remaining(float(recorded[cap_key]), rho, float(recorded["delta"])).as_dict()

    return {"population": population, "caps": recorded,
            "caps_source": "ledger" if policy is not None else ("agreement file" if cap else None),
            "caps_seq": policy.seq if policy is not None else None, "agreements": members,
            "charges": spent.charges, "lifetime": one(spent.lifetime, "rho_lifetime"),
            "data_months": {m: one(rho, "rho_per_data_month") for m, rho in spent.by_month.items()}}


def show(lake_root: str | os.PathLike, agreement_id: str | None = None,
         caps: BudgetCaps | Mapping[str, BudgetCaps] | None = None) -> dict:
    """Entries (optionally of one agreement) and the budget spent and left per data population: over its
    lifetime and per data month, under the caps the ledger records. ``caps`` (from agreement files)
    name the population of an agreement the ledger has no policy for yet and stand in for its caps.
    Format-1 charges that belong to no population yet are listed per agreement under ``unassigned``."""
    ledger = Ledger.of_lake(lake_root)
    entries, version = ledger.read()
    if isinstance(caps, BudgetCaps):
        if agreement_id is None:
            raise ConfigError("caps for a single agreement need agreement_id",
                              hint="pass agreement_id, or a mapping agreement_id -> caps")
        caps = {agreement_id: caps}
    caps = caps or {}
    chosen = [e for e in entries if agreement_id is None or e.agreement_id == agreement_id]
    mapping = accounts.populations(entries)
    wanted = {agreement_id} if agreement_id else {e.agreement_id for e in entries} | set(caps)
    populations: dict[str, BudgetCaps | None] = {}
    for e in entries:
        if e.population and (agreement_id is None or e.agreement_id == agreement_id):
            populations.setdefault(e.population, None)
    for a in sorted(wanted):
        if a in mapping:
            populations.setdefault(mapping[a], None)
        elif a in caps:  # nothing recorded yet: the agreement file says which population
            populations[caps[a].population] = populations.get(caps[a].population) or caps[a]
    unassigned: dict[str, list[accounts.Entry]] = {}
    for e in accounts.unassigned(entries):
        if agreement_id is None or e.agreement_id == agreement_id:
            unassigned.setdefault(e.agreement_id, []).append(e)
    return {"ledger": str(ledger.path), "delta_version": version,
            "entries": [e.record() for e in chosen],
            "budget": {p: _budget_view(entries, p, populations[p]) for p in sorted(populations)},
            "unassigned": {a: {"charges": len(es), "spent_rho": accountant.compose(e.rho for e in es),
                               "data_months": sorted({m for e in es for m in accounts.data_months_of(e)}),
                               "note": "format-1 charges: no policy entry records this agreement's caps yet"}
                           for a, es in sorted(unassigned.items())}}


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
