"""Separate processes racing to charge one ledger: who won, how often a commit lost, whether a cap held.

Each round starts ``--workers`` processes together (a barrier) on a fresh ledger whose year cap fits
only ``--fits`` of their charges. With ``--shared`` (the default) they run as writers on different
hosts would: ``MOBILITY_SHARED_LAKE=1``, no file lock between them, so only the ledger's commit
against the version its cap check read keeps the cap. ``--host-lock`` runs the same race with the
host lock for comparison.

    python -m bench.ledger_race [--workers 6] [--rounds 30] [--fits 3] [--host-lock] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

CAP_RHO = 0.3


def _worker(root: str, worker: int, rounds: int, fits: int, barrier, results) -> None:
    from mobility.config import BudgetCaps
    from mobility.errors import BudgetExceededError
    from mobility.privacy_budget import ledger as L

    conflicts = [0]
    append = L.Ledger._append

    def counted(self, entries, version, draft):  # count the commits this process lost
        try:
            return append(self, entries, version, draft)
        except L._Conflict:
            conflicts[0] += 1
            raise

    L.Ledger._append = counted
    caps = L.Policy("RACE", BudgetCaps(population="race", rho_per_data_month=CAP_RHO, rho_lifetime=CAP_RHO,
                                       delta=1e-7), "0" * 64)
    rho = CAP_RHO / fits
    for r in range(rounds):
        request = L.ChargeRequest(
            release_id=f"w{worker}-r{r}", agreement_id="RACE", period="2026-01", purpose="bench",
            requested_by=f"worker {worker}", query={"round": r}, privacy_unit="subscription",
            mechanism="discrete_gaussian", epsilon=1.0, delta=1e-7, rho=rho, input_versions={},
            data_months=("2026-01",))
        conflicts[0] = 0
        barrier.wait()
        started = time.perf_counter()
        try:
            entry = L.Ledger(Path(root) / f"round-{r}" / "ledger").charge(request, caps)
            outcome, seq = "won", entry.seq
        except BudgetExceededError:
            outcome, seq = "refused", None
        except Exception as exc:  # reported, never hidden
            outcome, seq = f"error: {exc!r}", None
        results.put({"round": r, "worker": worker, "outcome": outcome, "seq": seq, "conflicts": conflicts[0],
                     "seconds": time.perf_counter() - started})


def race(workers: int, rounds: int, fits: int, shared: bool) -> dict:
    from mobility.config import BudgetCaps
    from mobility.privacy_budget import Ledger, verify

    if shared:
        os.environ["MOBILITY_SHARED_LAKE"] = "1"
    else:
        os.environ.pop("MOBILITY_SHARED_LAKE", None)
    root = tempfile.mkdtemp(prefix="ledger-race-")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(root, w, rounds, fits, barrier, results)) for w in range(workers)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=600) for _ in range(workers * rounds)]
    for p in procs:
        p.join(timeout=60)
    caps = {"RACE": BudgetCaps(population="race", rho_per_data_month=CAP_RHO, rho_lifetime=CAP_RHO, delta=1e-7)}
    per_round = []
    for r in range(rounds):
        mine = [row for row in rows if row["round"] == r]
        ledger = Ledger(Path(root) / f"round-{r}" / "ledger")
        entries, _ = ledger.read()
        per_round.append({"round": r, "won": sum(row["outcome"] == "won" for row in mine),
                          "seqs": sorted(row["seq"] for row in mine if row["seq"] is not None),
                          "spent": ledger.spent("RACE"), "verified": verify(Path(root) / f"round-{r}", caps).ok,
                          "entries": len(entries)})
    wins = Counter(row["worker"] for row in rows if row["outcome"] == "won")
    return {
        "mode": "shared lake, no lock" if shared else "host lock", "workers": workers, "rounds": rounds,
        "fits": fits, "cap_rho": CAP_RHO,
        "wins_per_worker": {w: wins.get(w, 0) for w in range(workers)},
        "errors": [row for row in rows if row["outcome"].startswith("error")],
        "lost_commits": sum(row["conflicts"] for row in rows),
        "most_lost_commits_in_one_charge": max(row["conflicts"] for row in rows),
        "rounds_with_exactly_fits_charges": sum(pr["won"] == fits for pr in per_round),
        "rounds_with_seqs_1_to_fits": sum(pr["seqs"] == list(range(1, fits + 1)) for pr in per_round),
        "max_spent_rho": max(pr["spent"] for pr in per_round),
        "rounds_verified": sum(pr["verified"] for pr in per_round),
        "median_charge_s": sorted(row["seconds"] for row in rows)[len(rows) // 2],
        "slowest_charge_s": max(row["seconds"] for row in rows),
    }


def markdown(result: dict) -> str:
    lines = [f"| mode | workers x rounds | fit per round | rounds with exactly that many charges | "
             f"rounds with seq 1..n, no seq twice | max spent (cap {result['cap_rho']}) | rounds verified | "
             f"lost commits (re-read, re-checked) | wins per worker | median / slowest charge s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    lines.append(f"| {result['mode']} | {result['workers']} x {result['rounds']} | {result['fits']} | "
                 f"{result['rounds_with_exactly_fits_charges']} | {result['rounds_with_seqs_1_to_fits']} | "
                 f"{result['max_spent_rho']:.6g} | {result['rounds_verified']} | {result['lost_commits']} "
                 f"(at most {result['most_lost_commits_in_one_charge']} in one charge) | "
                 f"{', '.join(f'{w}: {n}' for w, n in result['wins_per_worker'].items())} | "
                 f"{result['median_charge_s']:.2f} / {result['slowest_charge_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--fits", type=int, default=3, help="charges that fit the cap each round")
    ap.add_argument("--host-lock", action="store_true", help="share a host lock instead of MOBILITY_SHARED_LAKE=1")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = race(args.workers, args.rounds, args.fits, shared=not args.host_lock)
    print(json.dumps(result, indent=2, default=str) if args.json else markdown(result))


if __name__ == "__main__":
    main()
