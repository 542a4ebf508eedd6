"""Markdown tables from a results dictionary of ``bench.run`` (also used to refresh BENCHMARKS.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(r: dict) -> str:
    return f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}"


def _mem(r: dict) -> str:
    m = r["peak_rss_mb"]
    return f"{m['total']:,} ({m['driver']:,} / {m['jvm']:,} / {m['workers']:,})"


def machine_lines(m: dict) -> list[str]:
    return [
        f"- Date: {m['date']}; load average (1/5/15 min) at start: {' / '.join(str(x) for x in m['load_average'])}",
        f"- CPU: {m['cpu']}, {m['cores']} cores{' (virtual machine)' if m.get('virtualized') else ''}; "
        f"RAM {m['memory_gb']} GB; {m['os']}",
        f"- Python {m['python']}, {m['java']}, PySpark {m['pyspark']}, delta-spark {m['delta_spark']}, "
        f"DuckDB {m['duckdb']}, pandas {m['pandas']}, pyarrow {m['pyarrow']}",
        *([f"- Code: commit {m['commit']}"] if m.get("commit") else []),
    ]


def anonymize_lines(results: dict) -> list[str]:
    sizes = results.get("sizes") or []
    if not sizes:
        return []
    lines = [
        "| size | CDR rows | Spark session start s | Spark job s | Spark events/s | Spark job CPU s | "
        "Spark peak RSS MB (driver / JVM / workers) | DuckDB s | DuckDB events/s | DuckDB CPU s | DuckDB peak RSS MB "
        "| ratio Spark/DuckDB (wall) | ratio (CPU) | load 1-min before → after Spark |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in sizes:
        sp, dk = s["spark"], s["duckdb"]
        lines.append(
            f"| {s['size']} | {s['cdr_rows']:,} | {sp['session_start_s']} | {sp['job_s']} | "
            f"{s['spark_events_per_s']:,} | {sp['job_cpu_s']} | {_mem(sp)} | {dk['total_s']} | "
            f"{s['duckdb_events_per_s']:,} | {dk['job_cpu_s']} | {dk['peak_rss_mb']['total']:,} | "
            f"{s['ratio_spark_duckdb']} | {s['ratio_cpu']} | {_load(sp)} |")
    sc = results.get("scaling") or {}
    if sc:
        lines += ["", f"Scaling exponent b = log(t2/t1) / log(n2/n1) from {sc['from']} to {sc['to']} "
                      "(1 = linear; below 1 = fixed costs still weigh):", "",
                  "| engine | b (wall) | b (CPU) |", "|---|---:|---:|",
                  f"| Spark job | {sc['spark_job']} | {sc['spark_cpu']} |",
                  f"| DuckDB | {sc['duckdb']} | {sc['duckdb_cpu']} |"]
    lines += ["", "Spark job phases (seconds, from the job's own progress marks):", ""]
    names = []
    for s in sizes:
        for p in s["spark"]["phases"]:
            if p["phase"].split(":")[0] not in names:
                names.append(p["phase"].split(":")[0])
    lines += ["| phase | " + " | ".join(s["size"] for s in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]
    for name in names:
        cells = []
        for s in sizes:
            hit = [p["seconds"] for p in s["spark"]["phases"] if p["phase"].split(":")[0] == name]
            cells.append(str(hit[0]) if hit else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for s in sizes:
        prof = s["spark"].get("profile")
        if prof:
            lines += ["", f"Parts of the CDR pipeline alone on {s['size']} (a separate Spark process; each part "
                          "evaluated into Spark's noop sink after a warm-up run of the E.164 step; "
                          "best of two runs):", "",
                      "| step | seconds | CPU s |", "|---|---:|---:|"]
            lines += [f"| {p['step']} | {p['seconds']} | {p.get('cpu_s', '')} |" for p in prof]
    lines += ["", "Both engines' outputs, compared row for row on (pseudonym, event_hour, event_type, h3_cell, "
                  "country):", "",
              "| size | Spark rows | DuckDB rows | rows only in Spark | rows only in DuckDB "
              "| pseudonyms (Spark / DuckDB) | HMAC checked against Python hmac |",
              "|---|---:|---:|---:|---:|---|---|"]
    for s in sizes:
        o, c = s["outputs"], s["duckdb"]["check"]
        lines.append(f"| {s['size']} | {o['spark_rows']:,} | {o['duckdb_rows']:,} | {o['only_spark_rows']:,} | "
                     f"{o['only_duckdb_rows']:,} | {o['spark_pseudonyms']:,} / {o['duckdb_pseudonyms']:,} | "
                     f"{c['hmac_checked']} numbers, all equal |")
    return lines


def residence_lines(res: dict | None) -> list[str]:
    if not res:
        return []
    lines = ["| subjects | months | presence rows | build + persist s | detect + write s | subjects/s | "
             "changes found | rule alone, ms per subject (driver) | detect CPU s | peak RSS MB "
             "| load 1-min before → after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["runs"]:
        lines.append(f"| {r['subjects']:,} | {r['months']} | {r['presence_rows']:,} | {r['build_persist_s']} | "
                     f"{r['detect_write_s']} | {r['subjects_per_s']} | {r['changes_rows']:,} | "
                     f"{r['pure_function']['ms_per_subject']} | {r['detect_cpu_s']} | {r['peak_rss_mb']['total']:,} | "
                     f"{_load(r)} |")
    if not res.get("ran_target"):
        lines += ["", f"The {res['target_subjects']:,}-subject run was not made: at the measured rate it would take "
                      f"about {res['projected_target_s']:,} s, over the {res['budget_s']:.0f} s budget."]
    return lines


def markdown(results: dict) -> str:
    lines = ["## Machine", "", *machine_lines(results["machine"]),
             f"- Harness run {results['started']} → {results['finished']}; load average at the end: "
             f"{' / '.join(str(x) for x in results['load_at_end'])}", ""]
    anon = anonymize_lines(results)
    if anon:
        lines += ["## Anonymization (CDR ingest): Spark job and DuckDB floor", "", *anon, ""]
    res = residence_lines(results.get("residence"))
    if res:
        lines += ["## Residence inference (12/16-month rule per pseudonym)", "", *res, ""]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m bench.report bench/out/results-....json
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
