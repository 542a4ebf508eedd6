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
    for s in sizes:
        if s.get("pairs"):
            lines += ["", f"{s['size']}: Spark and DuckDB run alternately {len(s['pairs'])} times; the row above "
                          f"takes each engine's fastest run. Median of the pairs' ratios: {s['ratio_median_pair']}.",
                      "", "| pair | Spark job s | Spark CPU s | DuckDB s | DuckDB CPU s | ratio (wall) | ratio (CPU) "
                          "| load 1-min before |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {i} | {r['spark_s']} | {r['spark_cpu_s']} | {r['duckdb_s']} | {r['duckdb_cpu_s']} | "
                      f"{r['ratio']} | {r['ratio_cpu']} | {r['load_before']:.1f} |"
                      for i, r in enumerate(s["pairs"], 1)]
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


def _scaling_table(sc: dict, rows: list[tuple[str, str, str]]) -> list[str]:
    if not sc:
        return []
    lines = ["", f"Scaling exponent b = log(t2/t1) / log(n2/n1) from {sc['from']} to {sc['to']} "
                 "(1 = linear; below 1 = fixed costs still weigh):", "",
             "| part | b (wall) | b (CPU) |", "|---|---:|---:|"]
    for label, wall, cpu in rows:
        if wall in sc:
            lines.append(f"| {label} | {sc[wall]} | {sc.get(cpu, '')} |")
    return lines


def _phase_cell(entry: dict, prefix: str) -> str:
    hit = [p for p in entry["phases"] if p["phase"].startswith(prefix)]
    return f"{hit[0]['seconds']} ({hit[0].get('cpu_s', '')})" if hit else ""


def residence_stage_lines(st: dict) -> list[str]:
    sizes = st.get("sizes") or []
    if not sizes:
        return []
    lines = ["| size | CDR rows | subjects | presence rows | changes | Spark session start s | Spark job s "
             "| Spark events/s | Spark job CPU s "
             "| phases s (CPU s): read and data end / presence / home cells / rule + write "
             "| Spark peak RSS MB (driver / JVM / workers) | load 1-min before → after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for s in sizes:
        sp = s["spark"]
        phases = " / ".join(_phase_cell(sp, p) for p in ("before", "daily presence", "monthly home cells", "12/16"))
        lines.append(f"| {s['size']} | {s['cdr_rows']:,} | {sp['subjects']:,} | {sp['presence_rows']:,} | "
                     f"{sp['changes_rows']:,} | {sp['session_start_s']} | {sp['job_s']} | "
                     f"{s['spark_events_per_s']:,} | {sp['job_cpu_s']} | {phases} | {_mem(sp)} | {_load(sp)} |")
    lines += ["", "Daily presence alone: the job's presence phase (build and Delta write of `office/presence`) "
                  "against the DuckDB floor on the same office-zone events (read the Delta files, same "
                  "definition, write Parquet), compared row for row on (pseudonym, date, country, source, "
                  "night_events):", "",
              "| size | Spark presence s | Spark presence CPU s | Spark events/s | DuckDB s | DuckDB CPU s "
              "| DuckDB events/s | DuckDB peak RSS MB | ratio Spark/DuckDB (wall) | ratio (CPU) "
              "| rows Spark = DuckDB | only Spark | only DuckDB | load 1-min before → after DuckDB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in sizes:
        dk, c = s["duckdb"], s["duckdb"]["check"]
        same = f"{c['spark_rows']:,}" if c["spark_rows"] == c["duckdb_rows"] else \
            f"{c['spark_rows']:,} ≠ {c['duckdb_rows']:,}"
        lines.append(f"| {s['size']} | {s['presence_s']} | {s['presence_cpu_s']} | {s['presence_events_per_s']:,} | "
                     f"{dk['total_s']} | {dk['job_cpu_s']} | {s['duckdb_events_per_s']:,} | "
                     f"{dk['peak_rss_mb']['total']:,} | {s['ratio_presence']} | {s['ratio_presence_cpu']} | {same} | "
                     f"{c['only_spark_rows']:,} | {c['only_duckdb_rows']:,} | {_load(dk)} |")
    return lines + _scaling_table(st.get("scaling") or {}, [
        ("Spark residence job", "spark_job", "spark_cpu"), ("Spark presence phase", "spark_presence",
                                                             "spark_presence_cpu"),
        ("DuckDB presence", "duckdb", "duckdb_cpu")])


def release_stage_lines(st: dict) -> list[str]:
    sizes = st.get("sizes") or []
    if not sizes:
        return []
    lines = ["| size | CDR rows | period | budget | cells (international / emigrants / immigrants) "
             "| Spark session start s | release s | events/s | CPU s | peak RSS MB (driver / JVM / workers) "
             "| load 1-min before → after |",
             "|---|---:|---|---|---|---:|---:|---:|---:|---|---|"]
    for s in sizes:
        sp = s["spark"]
        cells = " / ".join(f"{v:,}" for v in sp["cells"].values())
        lines.append(f"| {s['size']} | {s['cdr_rows']:,} | {sp['period']} | epsilon = {sp['epsilon']} | {cells} | "
                     f"{sp['session_start_s']} | {sp['job_s']} | {s['spark_events_per_s']:,} | {sp['job_cpu_s']} | "
                     f"{_mem(sp)} | {_load(sp)} |")
    return lines + _scaling_table(st.get("scaling") or {}, [("flows release", "spark_job", "spark_cpu")])


def anonymize_stage_lines(st: dict) -> list[str]:
    return anonymize_lines(st)


def peer_stage_lines(st: dict) -> list[str]:
    from bench.peer_accuracy import markdown as peer_markdown

    return peer_markdown(st)


SECTIONS = {  # stage -> (heading of results.md, renderer)
    "anonymize": ("Anonymization (CDR ingest): Spark job and DuckDB floor", anonymize_stage_lines),
    "residence": ("Residence (daily presence, home cells, 12/16-month rule): Spark job and DuckDB presence floor",
                  residence_stage_lines),
    "release": ("Flows release (exact counts, ledger charge, OpenDP noise, files)", release_stage_lines),
    "rule_scale": ("The 12/16 rule on a synthetic presence table", lambda st: residence_lines(st)),
    "peer": ("Accuracy against Tumult Analytics", peer_stage_lines),
}


def stage_block(stage: str, st: dict) -> list[str]:
    """One stage's generated text: when and on what it was measured, then its tables."""
    m = st["machine"]
    head = [*machine_lines(m), "",
            f"Measured {st['started']} → {st['finished']} UTC, code {m.get('commit', 'unknown')}; load average "
            f"(1/5/15 min) {' / '.join(str(x) for x in m['load_average'])} at the start of the run and "
            f"{' / '.join(str(x) for x in st['load_at_end'])} at the end of this stage.", ""]
    return head + SECTIONS[stage][1](st)


def markdown(latest: dict) -> str:
    stages = latest.get("stages") or {}
    lines = []
    for stage, (title, _) in SECTIONS.items():
        if stage in stages:
            lines += [f"## {title}", "", *stage_block(stage, stages[stage]), ""]
    return "\n".join(lines)


def write_benchmarks(path: Path, latest: dict) -> list[str]:
    """Replace the text between ``<!-- bench:STAGE -->`` and ``<!-- /bench:STAGE -->`` for every measured
    stage; prose outside the markers (analysis, other people's sections) is left as it is."""
    text = path.read_text()
    changed = []
    for stage, st in (latest.get("stages") or {}).items():
        begin, end = f"<!-- bench:{stage} -->", f"<!-- /bench:{stage} -->"
        if begin not in text or end not in text:
            continue
        a, b = text.index(begin) + len(begin), text.index(end)
        text = text[:a] + "\n" + "\n".join(stage_block(stage, st)) + "\n" + text[b:]
        changed.append(stage)
    path.write_text(text)
    return changed


def machine_block(latest: dict) -> list[str]:
    first = next(iter((latest.get("stages") or {}).values()), None)
    return machine_lines(first["machine"]) if first else []


if __name__ == "__main__":  # python -m bench.report bench/out/latest.json (or a results-*.json)
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
