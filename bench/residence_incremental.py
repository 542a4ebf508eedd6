"""Incremental residence run against a rebuild, for three history lengths (issue #20, second target).

``python -m bench.residence_incremental [--out DIR] [--histories 12,24,36] [--subscribers 2400]
[--events-per-day 6] [--repeats 2]``

Target: a monthly incremental run on 24 months of history costs at most 1/6 of a rebuild's CPU at
10m rows, and its cost stays flat as the history grows from 12 to 36 months.

Inputs: one synthetic extract of ``max(histories)`` months (``mobility.synth.generate``, the
harness's seed, fault rate and start; 2,400 subscribers at 6 events a day is the ``10m`` size of
``bench/data.py``: about 10 million CDR rows in 24 months), generated once and kept under
``OUT/data``. A history of H months is the **last** H months of that extract, so every history
receives the very same new month (the extract's last file) and only the length of the history
differs between them. Per H, in a lake of its own under ``OUT/work/lake-H``:

1. a first delivery (anonymization run) of the H - 1 older months, with the cell list and the
   subscriber register, and a residence run on it (a rebuild: the state a monthly run continues);
2. a second delivery of the newest month (CDRs and the cell list), as an operator sends it;
3. the lake is copied aside; then, ``--repeats`` times, it is restored from the copy and the
   **incremental residence run** is measured in a fresh child process;
4. then a **rebuild** (``rebuild=True``) on the same lake, ``--repeats`` times, each in a fresh
   child process;
5. the steady state: one child with one Spark session runs an unmeasured rebuild on a copy of the
   lake (it compiles the JVM's hot code), then an incremental run and a rebuild, each on a fresh
   copy at a path of its own. A fresh process pays 40-60 CPU-s of JIT compilation and planning
   whatever the data size; the steady state is the part that grows with the data;
6. a last child compares the rebuild's tables with the last incremental run's versions row for
   row (``EXCEPT ALL`` both ways), outside any timed part.

Steps 1-2 are cached (``OUT/work/lake-H.prepared.json``): a rerun measures again without
anonymizing again. Every measured child is ``mobility.residence.job.run`` unchanged, in a fresh
Python process (``python -m bench.residence_incremental --child residence ...``), measured by
``bench.monitor.run_child`` (wall, CPU seconds and peak RSS of the whole process tree: driver,
JVM, Python workers); the child also times its job alone (tree CPU before and after, session
start excluded) and splits it into phases at the job's own progress lines and at the end of each
Delta write (``Lake.overwrite``/``Lake.replace_months`` wrapped, the job's code unchanged): plan
(manifests and Delta logs), presence (events -> daily presence, written), home cells (written),
selecting the pseudonyms to re-run (reads the whole presence table), and the rule (12/16 rule over
the full presence history of the re-run pseudonyms, origin/destination cells, the changes table
rewritten). Each phase's CPU is split into driver Python, JVM and Python workers.

Results: ``OUT/results-<UTC>.json`` and ``OUT/latest.json``; the table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import secrets
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("/work/bench-incremental")
DATA = {"start": "2025-01", "home_country": "PHL", "seed": 20260101, "fault_rate": 0.02}
DONE = "bench-data.json"
SOURCES = ("src/mobility/residence/job.py", "src/mobility/residence/presence.py",
           "src/mobility/residence/rules.py", "src/mobility/lake.py")


# ---------------------------------------------------------------- inputs (parent)

def month_name(start: str, i: int) -> str:
    """The i-th month (0-based) from ``start`` (YYYY-MM)."""
    y, m = int(start[:4]), int(start[5:7]) - 1 + i
    return f"{y + m // 12}-{m % 12 + 1:02d}"


def ensure_extract(out: Path, subscribers: int, months: int, events_per_day: float) -> dict:
    """Generate (or reuse) the extract; returns its description with CDR rows per monthly file."""
    params = {**DATA, "subscribers": subscribers, "months": months, "events_per_day": events_per_day}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    folder = (out / "data" / f"extract-{months}m-{subscribers}s-{digest}").resolve()
    marker = folder / DONE
    if marker.is_file():
        return json.loads(marker.read_text())
    from mobility.synth import generate

    print(f"[bench] generating {months} months x {subscribers:,} subscribers under {folder}", flush=True)
    started = time.perf_counter()
    summary = generate(folder / "synth", **params)
    generate_s = time.perf_counter() - started
    per_month = {}
    for i in range(months):
        name = month_name(DATA["start"], i)
        with gzip.open(folder / "synth" / "cdr" / f"part-{name}.csv.gz", "rt") as f:
            per_month[name] = sum(1 for _ in f) - 1  # less the header
    info = {"parameters": params, "folder": str(folder), "cdr_rows": summary.rows["cdr"],
            "cdr_rows_per_month": per_month, "generate_s": round(generate_s, 1)}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return info


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def delivery(extract: dict, target: Path, months: list[str], registers: bool) -> Path:
    """An operator delivery folder: the CDR files of ``months``, the cell list and (first delivery
    only) the subscriber register; hard links into the extract (copies across file systems)."""
    shutil.rmtree(target, ignore_errors=True)
    synth = Path(extract["folder"]) / "synth"
    for month in months:
        _link(synth / "cdr" / f"part-{month}.csv.gz", target / "cdr" / f"part-{month}.csv.gz")
    for folder in ("cells", "subscribers") if registers else ("cells",):
        for f in sorted((synth / folder).iterdir()):
            _link(f, target / folder / f.name)
    return target


def window(extract: dict, history: int) -> list[str]:
    """The last ``history`` months of the extract, oldest first."""
    names = sorted(extract["cdr_rows_per_month"])
    if history > len(names):
        raise SystemExit(f"history {history} is longer than the extract ({len(names)} months)")
    return names[-history:]


# ---------------------------------------------------------------- per history (parent)

def prepare(out: Path, extract: dict, history: int, agreement: Path, env: dict) -> dict:
    """Lake with H - 1 months delivered and a residence run on them, then the newest month delivered."""
    from bench.monitor import run_child

    lake, snap, marker = (out / "work" / f"lake-{history}", out / "work" / f"lake-{history}.before-incremental",
                          out / "work" / f"lake-{history}.prepared.json")
    months = window(extract, history)
    if marker.is_file() and snap.is_dir():
        found = json.loads(marker.read_text())
        if found.get("months") == months and found.get("extract") == extract["folder"]:
            return found
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(snap, ignore_errors=True)
    marker.unlink(missing_ok=True)
    first = delivery(extract, out / "deliveries" / f"h{history}-1", months[:-1], registers=True)
    second = delivery(extract, out / "deliveries" / f"h{history}-2", months[-1:], registers=False)
    rows = extract["cdr_rows_per_month"]
    steps = {}
    print(f"[bench] H={history}: anonymizing {months[0]}..{months[-2]} "
          f"({sum(rows[m] for m in months[:-1]):,} CDR rows)", flush=True)
    steps["anonymize_history"] = run_child(
        "bench.spark_ingest", ["--agreement", str(agreement), "--input", str(first), "--lake", str(lake)],
        out / "work" / f"anonymize-{history}-1.json", logs / f"anonymize-{history}-1.log", env)
    print(f"[bench] H={history}: residence run on the history (a rebuild)", flush=True)
    steps["residence_history"] = child_residence(out, history, agreement, "initial", rebuild=False)
    print(f"[bench] H={history}: anonymizing the new month {months[-1]} ({rows[months[-1]]:,} CDR rows)",
          flush=True)
    steps["anonymize_new_month"] = run_child(
        "bench.spark_ingest", ["--agreement", str(agreement), "--input", str(second), "--lake", str(lake)],
        out / "work" / f"anonymize-{history}-2.json", logs / f"anonymize-{history}-2.log", env)
    shutil.copytree(lake, snap, symlinks=True)
    found = {"history": history, "months": months, "extract": extract["folder"],
             "cdr_rows_history": sum(rows[m] for m in months),
             "cdr_rows_new_month": rows[months[-1]],
             "steps": {k: _brief(v) for k, v in steps.items()},
             "prepared": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    marker.write_text(json.dumps(found, indent=2) + "\n")
    return found


def _brief(run: dict) -> dict:
    keep = ("job_s", "job_cpu_s", "cpu_s", "process_wall_s", "mode", "recomputed_months", "cdr_read",
            "cdr_accepted", "load_before", "load_after")
    return {k: run[k] for k in keep if k in run}


def restore(out: Path, history: int) -> None:
    lake, snap = out / "work" / f"lake-{history}", out / "work" / f"lake-{history}.before-incremental"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(snap, lake, symlinks=True)


def child_residence(out: Path, history: int, agreement: Path, tag: str, rebuild: bool) -> dict:
    from bench.monitor import run_child

    args = ["--child", "residence", "--agreement", str(agreement), "--lake", str(out / "work" / f"lake-{history}")]
    return run_child("bench.residence_incremental", args + (["--rebuild"] if rebuild else []),
                     out / "work" / f"residence-{history}-{tag}.json", out / "logs" / f"residence-{history}-{tag}.log")


def measure(out: Path, extract: dict, history: int, agreement: Path, env: dict, repeats: int) -> dict:
    from bench.monitor import run_child

    began = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    prepared = prepare(out, extract, history, agreement, env)
    incremental, rebuild = [], []
    for i in range(1, repeats + 1):
        restore(out, history)  # the same state each time: history processed, the new month delivered
        print(f"[bench] H={history}: incremental residence run ({i} of {repeats})", flush=True)
        incremental.append(child_residence(out, history, agreement, f"incremental-{i}", rebuild=False))
        print(f"[bench] H={history}: incremental {incremental[-1]['job_s']} s, "
              f"{incremental[-1]['job_cpu_s']} CPU-s", flush=True)
    versions = incremental[-1]["office_versions"]  # the lake now holds the last incremental run's tables
    for i in range(1, repeats + 1):
        print(f"[bench] H={history}: rebuild ({i} of {repeats})", flush=True)
        rebuild.append(child_residence(out, history, agreement, f"rebuild-{i}", rebuild=True))
        print(f"[bench] H={history}: rebuild {rebuild[-1]['job_s']} s, {rebuild[-1]['job_cpu_s']} CPU-s",
              flush=True)
    print(f"[bench] H={history}: steady state (one session: warm-up rebuild, incremental, rebuild)", flush=True)
    snap = out / "work" / f"lake-{history}.before-incremental"
    warm = run_child("bench.residence_incremental",
                     ["--child", "warm", "--agreement", str(agreement), "--lake", str(out / "work" / f"lake-{history}"),
                      "--snapshot", str(snap)],
                     out / "work" / f"residence-{history}-warm.json", out / "logs" / f"residence-{history}-warm.log")
    print(f"[bench] H={history}: warm incremental {warm['incremental']['job_cpu_s']} CPU-s, "
          f"warm rebuild {warm['rebuild']['job_cpu_s']} CPU-s", flush=True)
    print(f"[bench] H={history}: comparing the rebuild's tables with the incremental run's", flush=True)
    same = run_child("bench.residence_incremental",
                     ["--child", "compare", "--lake", str(out / "work" / f"lake-{history}"),
                      "--versions", json.dumps(versions)],
                     out / "work" / f"compare-{history}.json", out / "logs" / f"compare-{history}.log")
    best_i = min(incremental, key=lambda r: r["job_cpu_s"])
    best_r = min(rebuild, key=lambda r: r["job_cpu_s"])
    return {
        "history_months": history, "months": [prepared["months"][0], prepared["months"][-1]],
        "started": began, "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cdr_rows_history": prepared["cdr_rows_history"], "cdr_rows_new_month": prepared["cdr_rows_new_month"],
        "prepare": prepared["steps"], "incremental": incremental, "rebuild": rebuild, "compare": same,
        "cpu_incremental": best_i["job_cpu_s"], "cpu_rebuild": best_r["job_cpu_s"],
        "cpu_incremental_median": statistics.median(r["job_cpu_s"] for r in incremental),
        "cpu_rebuild_median": statistics.median(r["job_cpu_s"] for r in rebuild),
        "ratio_cpu": round(best_i["job_cpu_s"] / best_r["job_cpu_s"], 3),
        "ratio_cpu_process": round(best_i["cpu_s"] / best_r["cpu_s"], 3),
        "recomputed_months": best_i["recomputed_months"],
        "warm": {k: warm[k] for k in ("incremental", "rebuild")},
        "cpu_incremental_warm": warm["incremental"]["job_cpu_s"], "cpu_rebuild_warm": warm["rebuild"]["job_cpu_s"],
        "ratio_cpu_warm": round(warm["incremental"]["job_cpu_s"] / max(warm["rebuild"]["job_cpu_s"], 0.1), 3),
    }


# ---------------------------------------------------------------- report (parent)

PARTS = ("plan", "presence", "home_cells", "select", "rule", "finish")


def _fmt_parts(run: dict) -> str:
    p = run["parts"]
    return " / ".join(f"{p[k]['cpu_s']:.1f}" if k in p else "-" for k in PARTS)


def markdown(results: dict) -> str:
    lines = ["| H (months) | CDR rows in history | CDR rows, new month | months recomputed | incremental: job CPU s "
             "(runs) | rebuild: job CPU s (runs) | **ratio** (best/best) | incremental process CPU s / wall s / "
             "peak RSS MB | rebuild process CPU s / wall s / peak RSS MB | load 1-min before runs |",
             "|---:|---:|---:|---|---|---|---:|---|---|---|"]
    for h in results["histories"]:
        bi = min(h["incremental"], key=lambda r: r["job_cpu_s"])
        br = min(h["rebuild"], key=lambda r: r["job_cpu_s"])
        months = h["recomputed_months"]
        loads = ", ".join(f"{r['load_before'][0]:.1f}" for r in h["incremental"] + h["rebuild"])
        lines.append(
            f"| {h['history_months']} | {h['cdr_rows_history']:,} | {h['cdr_rows_new_month']:,} | "
            f"{len(months)} ({', '.join(months)}) | "
            f"**{h['cpu_incremental']}** ({', '.join(str(r['job_cpu_s']) for r in h['incremental'])}) | "
            f"**{h['cpu_rebuild']}** ({', '.join(str(r['job_cpu_s']) for r in h['rebuild'])}) | "
            f"**{h['ratio_cpu']:.3f}** (1/{1 / h['ratio_cpu']:.1f}) | "
            f"{bi['cpu_s']} / {bi['process_wall_s']} / {bi['peak_rss_mb']['total']:,} | "
            f"{br['cpu_s']} / {br['process_wall_s']} / {br['peak_rss_mb']['total']:,} | {loads} |")
    lines += ["", "CPU seconds per phase of the best run (" + " / ".join(PARTS) + "), with the rule "
              "phase's split into driver / JVM / Python workers and the rule's input:", "",
              "| H | run | phases CPU s | rule phase: driver / JVM / workers CPU s | pseudonyms re-run | "
              "their presence rows (rule input) | events read |", "|---:|---|---|---|---:|---:|---:|"]
    for h in results["histories"]:
        for kind in ("incremental", "rebuild"):
            r = min(h[kind], key=lambda x: x["job_cpu_s"])
            rule = r["parts"].get("rule", {}).get("by_process", {})
            c = r["counts"]
            lines.append(f"| {h['history_months']} | {kind} | {_fmt_parts(r)} | "
                         f"{rule.get('driver', 0):.1f} / {rule.get('jvm', 0):.1f} / {rule.get('workers', 0):.1f} | "
                         f"{c['rerun_pseudonyms']:,} | {c['rerun_presence_rows']:,} | {c['events_read']:,} |")
    lines += ["", "Steady state (one Spark session per history: an unmeasured rebuild first, then each run on a "
              "fresh copy of the same lake); job CPU s and phases (" + " / ".join(PARTS) + "):", "",
              "| H | incremental CPU s | incremental phases | rebuild CPU s | rebuild phases | **ratio** |",
              "|---:|---:|---|---:|---|---:|"]
    for h in results["histories"]:
        if "warm" not in h:
            continue
        wi, wr = h["warm"]["incremental"], h["warm"]["rebuild"]
        lines.append(f"| {h['history_months']} | {wi['job_cpu_s']} | {_fmt_parts(wi)} | {wr['job_cpu_s']} | "
                     f"{_fmt_parts(wr)} | **{h['ratio_cpu_warm']:.3f}** (1/{1 / h['ratio_cpu_warm']:.1f}) |")
    lines += ["", "Rebuild = incremental, row for row (rows only in the rebuild / only in the incremental run):", ""]
    for h in results["histories"]:
        cmp_ = h["compare"]["tables"]
        lines.append(f"- H={h['history_months']}: " + "; ".join(
            f"{name} {t['rows']:,} rows, {t['only_rebuild']} / {t['only_incremental']}" for name, t in cmp_.items()))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- children

def _cpu_parts() -> dict:
    """CPU seconds so far of this process tree, by part (driver Python, JVM, Python workers)."""
    from bench.monitor import process_tree

    parts = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
    me = os.getpid()
    for pid, name, _, cpu in process_tree(me):
        parts["driver" if pid == me else "jvm" if name == "java" else "workers"] += cpu
    return parts


def _instrument(marks: list, start: list[float]) -> None:
    """Timestamp the job's progress lines and the end of each Delta write; the job runs unchanged."""
    from mobility import progress
    from mobility.lake import Lake
    from mobility.schemas import TableSpec

    def mark(label: str) -> None:
        marks.append((time.perf_counter() - start[0], _cpu_parts(), label))

    say = progress.say

    def timed_say(stage: str, message: str, *args, **kwargs) -> None:
        mark(message)
        say(stage, message, *args, **kwargs)

    progress.say = timed_say
    for method in ("overwrite", "replace_months"):
        original = getattr(Lake, method)

        def wrapped(self, *args, _original=original, **kwargs):
            spec = next(a for a in (*args, *kwargs.values()) if isinstance(a, TableSpec))
            result = _original(self, *args, **kwargs)
            mark(f"wrote {spec.name}")
            return result

        setattr(Lake, method, wrapped)


def _counts(spark, lake_root: Path, manifest: dict) -> dict:
    """Sizes of the work, read after the timed part: events read, pseudonyms re-run and their presence."""
    from pyspark.sql import functions as F

    from mobility.lake import Lake
    from mobility.privacy_budget.blocks import shift_month
    from mobility.schemas import CHANGES_TABLE, EVENTS_TABLE, PRESENCE_TABLE

    lake = Lake(lake_root)
    months = manifest["recomputed_months"]
    read = sorted(set(months) | {shift_month(m, 1) for m in months})
    events = lake.read(spark, EVENTS_TABLE)
    presence = lake.read(spark, PRESENCE_TABLE)
    who = presence.where(F.col("month").isin(months)).select("pseudonym").distinct()
    if manifest["mode"] == "rebuild":
        who = presence.select("pseudonym").distinct()
    return {"events_total": events.count(), "events_read": events.where(F.col("month").isin(read)).count(),
            "presence_rows": presence.count(), "pseudonyms": presence.select("pseudonym").distinct().count(),
            "rerun_pseudonyms": who.count(),  # with presence in a recomputed month (open records aside)
            "rerun_presence_rows": presence.join(who, "pseudonym", "left_semi").count(),
            "changes_rows": lake.read(spark, CHANGES_TABLE).count()}


def _timed_run(spark, job, agreement: Path, lake: Path, rebuild: bool, marks: list, start: list[float]) -> dict:
    """One ``job.run`` with its job CPU and phases (``_instrument`` already applied)."""
    from bench.monitor import tree_cpu_s

    marks.clear()
    cpu0, parts0 = tree_cpu_s(), _cpu_parts()
    start[0] = time.perf_counter()
    marks.append((0.0, parts0, "start"))
    result = job.run(agreement, lake, spark=spark, rebuild=rebuild)
    job_s, cpu_end, parts_end = time.perf_counter() - start[0], tree_cpu_s(), _cpu_parts()
    m = result.manifest
    return {"stage": "residence", "rebuild_flag": rebuild, "mode": m["mode"], "reason": m["reason"],
            "recomputed_months": m["recomputed_months"], "data_end": m["data_end"],
            "office_versions": m["office_versions"], "job_s": round(job_s, 2), "job_cpu_s": round(cpu_end - cpu0, 1),
            "job_cpu_by_process": {k: round(parts_end[k] - parts0[k], 1) for k in parts0},
            "marks": [{"s": round(s, 2), "cpu_s": round(sum(c.values()) - sum(parts0.values()), 1), "label": lb}
                      for s, c, lb in marks],
            "parts": _parts_from(marks, job_s, parts_end)}


def child_residence_main(args) -> None:
    from mobility.spark import get_spark

    sources = {s: hashlib.sha256((ROOT / s).read_bytes()).hexdigest()[:12] for s in SOURCES}
    t = time.perf_counter()
    spark = get_spark("bench-residence-incremental")
    session_s = time.perf_counter() - t
    from mobility.residence import job

    marks: list = []
    start = [time.perf_counter()]
    _instrument(marks, start)
    out = _timed_run(spark, job, args.agreement, args.lake, args.rebuild, marks, start)
    out.update({"spark_version": spark.version, "session_start_s": round(session_s, 2), "sources": sources,
                "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
                "cores": spark.sparkContext.defaultParallelism})
    out["counts"] = _counts(spark, args.lake, out)
    spark.stop()
    args.result.write_text(json.dumps(out, indent=2))


def child_warm_main(args) -> None:
    """Steady state: in one Spark session, a rebuild on a copy of the snapshot (unmeasured: it
    compiles the JVM's hot code), then the incremental run and a rebuild, each on a fresh copy at a
    path of its own (so no cached Delta snapshot is reused). What is left is the cost that grows
    with the data: what a long-lived cluster session, or a national volume, pays per run."""
    from mobility.spark import get_spark

    spark = get_spark("bench-residence-incremental-warm")
    from mobility.residence import job

    marks: list = []
    start = [time.perf_counter()]
    _instrument(marks, start)
    work = args.lake.parent / (args.lake.name + ".warm")
    shutil.rmtree(work, ignore_errors=True)
    out: dict = {}
    for name, rebuild in (("warmup", True), ("incremental", False), ("rebuild", True)):
        lake = work / name
        shutil.copytree(args.snapshot, lake, symlinks=True)
        out[name] = _timed_run(spark, job, args.agreement, lake, rebuild, marks, start)
        print(f"[warm] {name}: {out[name]['job_s']} s, {out[name]['job_cpu_s']} CPU-s", flush=True)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    args.result.write_text(json.dumps(out, indent=2))


def _parts_from(marks: list, job_s: float, parts_end: dict) -> dict:
    """``marks`` starts with (0, cpu at start, "start"); the end point is appended here."""
    points = marks + [(job_s, parts_end, "end")]

    def at(pred) -> int | None:
        return next((i for i, p in enumerate(points) if pred(p[2])), None)

    daily = at(lambda s: s.startswith("daily presence"))
    bounds = {
        "plan": (0, daily if daily is not None else at(lambda s: s.startswith("12/16"))),
        "presence": (daily, at(lambda s: s == "wrote presence")),
        "home_cells": (at(lambda s: s == "wrote presence"), at(lambda s: s == "wrote home_cells")),
        "select": (at(lambda s: s == "wrote home_cells"), at(lambda s: s.startswith("12/16"))),
        "rule": (at(lambda s: s.startswith("12/16")), at(lambda s: s == "wrote residence_changes")),
        "finish": (at(lambda s: s == "wrote residence_changes"), len(points) - 1),
    }
    out = {}
    for name, (a, b) in bounds.items():
        if a is None or b is None:
            continue
        (ta, ca, _), (tb, cb, _) = points[a], points[b]
        out[name] = {"seconds": round(tb - ta, 2), "cpu_s": round(sum(cb.values()) - sum(ca.values()), 1),
                     "by_process": {k: round(cb[k] - ca[k], 1) for k in cb}}
    return out


def child_compare_main(args) -> None:
    """The lake's current tables (the rebuild's) against the incremental run's versions, row for row."""
    from mobility.lake import Lake
    from mobility.schemas import CHANGES_TABLE, HOME_CELLS_TABLE, PRESENCE_TABLE
    from mobility.spark import get_spark

    spark = get_spark("bench-residence-compare")
    lake, versions = Lake(args.lake), json.loads(args.versions)
    tables = {}
    for spec in (PRESENCE_TABLE, HOME_CELLS_TABLE, CHANGES_TABLE):
        now, then = lake.read(spark, spec), lake.read(spark, spec, int(versions[spec.name]))
        cols = sorted(now.columns)
        now, then = now.select(*cols), then.select(*cols)
        tables[spec.name] = {"rows": now.count(), "incremental_rows": then.count(),
                             "only_rebuild": now.exceptAll(then).count(),
                             "only_incremental": then.exceptAll(now).count()}
    spark.stop()
    args.result.write_text(json.dumps({"tables": tables}, indent=2))


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.residence_incremental", description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("residence", "compare", "warm"), help=argparse.SUPPRESS)
    ap.add_argument("--snapshot", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--agreement", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rebuild", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--versions", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"outside the repository (default {DEFAULT_OUT})")
    ap.add_argument("--histories", default="12,24,36", help="history lengths in months (default 12,24,36)")
    ap.add_argument("--subscribers", type=int, default=2400, help="default 2400: ~10M CDR rows in 24 months")
    ap.add_argument("--events-per-day", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=2, help="measured runs of each kind per history (default 2)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the histories already measured in OUT/latest.json; measure only the others")
    args = ap.parse_args(argv)
    if args.child == "residence":
        return child_residence_main(args)
    if args.child == "compare":
        return child_compare_main(args)
    if args.child == "warm":
        return child_warm_main(args)

    from bench import machine
    from bench.run import KEY_ENV, write_agreement

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    histories = sorted(int(h) for h in args.histories.split(","))
    started = dt.datetime.now(dt.UTC)
    results: dict = {"started": started.isoformat(timespec="seconds"), "machine": machine.describe(),
                     "parameters": {"subscribers": args.subscribers, "events_per_day": args.events_per_day,
                                    "repeats": args.repeats, **DATA}, "histories": []}
    extract = ensure_extract(out, args.subscribers, max(histories), args.events_per_day)
    results["extract"] = {k: extract[k] for k in ("folder", "cdr_rows", "generate_s")}
    print(f"[bench] extract: {extract['cdr_rows']:,} CDR rows in {len(extract['cdr_rows_per_month'])} months",
          flush=True)
    agreement = write_agreement(out)
    # one random key per harness run: synthetic data, and no key is written anywhere; a lake prepared
    # by an earlier run keeps its own pseudonyms (only residence runs are measured on it)
    env = {KEY_ENV: os.environ.get(KEY_ENV) or secrets.token_hex(32)}
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    if args.resume and (out / "latest.json").is_file():
        earlier = json.loads((out / "latest.json").read_text())
        results["histories"] = [h for h in earlier.get("histories", []) if h["history_months"] in histories]
        results["resumed_from"] = earlier.get("started")
    for h in histories:
        if any(r["history_months"] == h for r in results["histories"]):
            print(f"[bench] H={h}: kept from the earlier run (--resume)", flush=True)
            continue
        results["histories"].append(measure(out, extract, h, agreement, env, args.repeats))
        results["histories"].sort(key=lambda r: r["history_months"])
        results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        for name in (f"results-{stamp}.json", "latest.json"):  # kept after every history
            (out / name).write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = markdown(results)
    (out / "results.md").write_text(text)
    print(text)
    return None


if __name__ == "__main__":
    main()
