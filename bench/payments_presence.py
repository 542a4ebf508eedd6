"""Effect of ``payments_as_presence`` on residence inference, scored against the synthetic truth.

    .venv/bin/python -m bench.payments_presence [--subscribers 500] [--months 30] [--seed 11]
        [--events-per-day 1.0 6.0] [--shares migrant-rich|default] [--workdir DIR] [--keep] [--out FILE]

For each activity level: generate one synthetic operator extract, anonymize it once, copy the
lake, run the residence job on one copy with the flag off and on the other with it on (same
agreement id and key, so pseudonyms agree), and score both with ``mobility.residence.evaluate``.
One Spark session throughout. The key lives in a 0600 file under the work folder, as in the demo;
the pseudonym map used for scoring stays in this process.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from mobility.config import load_agreement
from mobility.reference import PACKAGE_DATA

START = "2023-01"
AGREEMENT_ID = "bench-payments"
# Same mix as tests/test_pipeline_e2e.py: enough migrants for a few thousand people to give
# changes worth scoring. "default" uses the generator's own shares (5 % long-term emigrants).
MIGRANT_RICH = {"stayer": 0.55, "short_trip": 0.08, "emigrant_long_term": 0.15, "temporary_worker": 0.08,
                "returning_migrant": 0.10, "immigrant": 0.02, "inbound_roamer": 0.02}


def write_agreements(folder: Path) -> tuple[Path, Path, bytes]:
    """Two copies of the demo agreement (flag off / on) sharing one id and one fresh key file."""
    key_file = folder / "operator-secrets" / "bench.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_text(secrets.token_hex(32) + "\n")
    key_file.chmod(0o600)
    base = yaml.safe_load((PACKAGE_DATA / "demo-phl-2026.yaml").read_text())
    base.update({"agreement_id": AGREEMENT_ID, "key": {"file": str(key_file.resolve()), "key_id": "bench-k1"},
                 "max_invalid_share": 0.2})
    paths = []
    for flag in (False, True):
        path = folder / f"conf-{'on' if flag else 'off'}" / "agreements" / f"{AGREEMENT_ID}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({**base, "payments_as_presence": flag}, sort_keys=False))
        paths.append(path)
    return paths[0], paths[1], bytes.fromhex(key_file.read_text().strip())


def outcome(spark, lake: Path, truth: pd.DataFrame, key: bytes, manifest: dict) -> tuple[dict, pd.DataFrame]:
    from mobility.residence.evaluate import score

    changes = spark.read.format("delta").load(str(lake / "office" / "residence_changes")).toPandas()
    presence = spark.read.format("delta").load(str(lake / "office" / "presence"))
    by_source = {r["source"]: r["count"] for r in presence.groupBy("source").count().collect()}
    accuracy = score(changes, truth, lambda m: hmac.new(key, m.encode(), hashlib.sha256).hexdigest(),
                     START + "-01")
    # counted here from the office tables: the residence manifest carries no counts of people or changes
    by_kind = (changes["direction"] + "_" + changes["kind"]).value_counts().to_dict()
    return {**accuracy.to_dict(), "changes_by_kind": {k: int(n) for k, n in sorted(by_kind.items())},
            "presence_days": sum(by_source.values()), "presence_days_by_source": by_source,
            "subjects": presence.select("pseudonym").distinct().count(), "residence_s": manifest["duration_s"]}, changes


def changed_subjects(off: pd.DataFrame, on: pd.DataFrame) -> dict:
    """Pseudonyms whose set of detected changes differs between the runs, split by what changed."""
    cols = ["crossing_date", "direction", "kind", "to_country", "in_initial_period"]
    sets = [{p: frozenset(map(tuple, g[cols].astype(str).to_numpy())) for p, g in d.groupby("pseudonym")}
            for d in (off, on)]
    differ = [p for p in set(sets[0]) | set(sets[1]) if sets[0].get(p) != sets[1].get(p)]
    long_term = lambda s: {c for c in s if c[2] == "long_term"}  # noqa: E731
    lt = [p for p in differ if long_term(sets[0].get(p, ())) != long_term(sets[1].get(p, ()))]
    return {"subjects_changed": len(differ), "subjects_long_term_changed": len(lt)}


def one_setting(spark, work: Path, args, events_per_day: float) -> dict:
    from mobility.anonymize.job import run as anonymize
    from mobility.residence.job import run as residence
    from mobility.synth import generate

    folder = work / f"epd-{events_per_day:g}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    off_path, on_path, key = write_agreements(folder)
    t = time.time()
    summary = generate(folder / "input", subscribers=args.subscribers, months=args.months, start=START,
                       home_country="PHL", seed=args.seed, fault_rate=0.02, events_per_day=events_per_day,
                       behaviours=MIGRANT_RICH if args.shares == "migrant-rich" else None)
    generate_s = time.time() - t
    t = time.time()
    anonymize(load_agreement(off_path), folder / "input", folder / "lake-off", spark=spark)
    anonymize_s = time.time() - t
    shutil.copytree(folder / "lake-off", folder / "lake-on")
    truth = pd.read_csv(folder / "input" / "truth" / "residence_changes.csv", dtype=str)
    runs, frames = {}, {}
    for name, path in (("off", off_path), ("on", on_path)):
        manifest = residence(load_agreement(path), folder / f"lake-{name}", spark=spark).manifest
        runs[name], frames[name] = outcome(spark, folder / f"lake-{name}", truth, key, manifest)
    payments = spark.read.format("delta").load(str(folder / "lake-off" / "office" / "payments"))
    located = payments.where(payments["location_country"].isNotNull()).count()
    result = {"events_per_day": events_per_day, "cdr_events": summary.events,
              "payments": summary.rows["payments"], "located_payments": located,
              "generate_s": round(generate_s, 1), "anonymize_s": round(anonymize_s, 1),
              "without_payments": runs["off"], "with_payments": runs["on"],
              "days_added": runs["on"]["presence_days"] - runs["off"]["presence_days"],
              **changed_subjects(frames["off"], frames["on"])}
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=500)
    ap.add_argument("--months", type=int, default=30)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--events-per-day", type=float, nargs="+", default=[1.0, 6.0])
    ap.add_argument("--shares", choices=["migrant-rich", "default"], default="migrant-rich")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the inputs and lakes")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = ap.parse_args()

    from mobility.spark import get_spark

    work = args.workdir or Path(tempfile.mkdtemp(prefix="payments-presence-"))
    started, load = time.time(), os.getloadavg()
    spark = get_spark("bench-payments-presence")
    settings = []
    for epd in args.events_per_day:
        settings.append(one_setting(spark, work, args, epd))
        report = summarise(args, load, started, settings)
        if args.out:  # after each setting, so a slow second setting does not lose the first
            args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    spark.stop()
    print(json.dumps(report, indent=2, default=str))


def summarise(args, load, started, settings) -> dict:
    from bench.machine import describe

    return {"machine": describe(), "load_average_start": [round(x, 2) for x in load],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "command": "python -m bench.payments_presence " + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items() if k not in ("workdir", "keep", "out") and v is not None),
            "subscribers": args.subscribers, "months": args.months, "start": START, "seed": args.seed,
            "shares": args.shares, "seconds": round(time.time() - started, 1), "settings": settings}


if __name__ == "__main__":
    main()
