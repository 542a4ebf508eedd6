"""Run one measurement in a fresh Python process and sample memory and CPU of its process tree.

The child (driver Python, its Spark JVM and Python workers, or a DuckDB process) writes its
timings to a JSON file; the parent adds wall time, CPU seconds and peak resident memory.

Peak memory is the largest sum of RSS over the tree seen at one sampling instant (every
0.25 s): a spike between samples can be missed, and pages shared by forked Python workers are
counted once per worker, so the sum overstates what the tree really holds. CPU seconds
(user + system, all processes of the tree) matter on a shared machine: wall time grows with
other people's load, CPU time much less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_S = 0.25
PARTS = ("driver", "jvm", "workers")  # the child itself, Java processes, everything else


def _tree_psutil(root_pid: int) -> list[tuple[int, str, int, float]]:
    """(pid, name, rss bytes, cpu seconds) for the process and its descendants."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                out.append((p.pid, p.name(), p.memory_info().rss, t.user + t.system))
        except psutil.NoSuchProcess:
            continue
    return out


def _tree_proc(root_pid: int) -> list[tuple[int, str, int, float]]:
    """The same from /proc, for a Linux machine without psutil."""
    info: dict[int, tuple[str, int, float]] = {}
    children: dict[int, list[int]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state) of proc(5)
        children.setdefault(int(fields[1]), []).append(int(entry))
        info[int(entry)] = (name, int(fields[21]) * os.sysconf("SC_PAGE_SIZE"),
                            (int(fields[11]) + int(fields[12])) / tick)
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid in info:
            out.append((pid, *info[pid]))
    return out


try:
    import psutil  # noqa: F401

    process_tree, SAMPLER = _tree_psutil, "psutil"
except ImportError:
    process_tree, SAMPLER = _tree_proc, "/proc"


def run_child(module: str, args: list[str], result_file: Path, log_file: Path, env: dict | None = None) -> dict:
    """Run ``python -m module args --result FILE``; return its JSON plus wall, CPU, peak memory, load."""
    result_file.unlink(missing_ok=True)
    peak = dict.fromkeys(("total", *PARTS), 0)
    cpu_seen: dict[int, float] = {}  # last CPU time seen per pid: a process that ended still counts
    done = threading.Event()
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args, "--result", str(result_file)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=Path(__file__).parents[1])

        def sample() -> None:
            while not done.is_set():
                rss = dict.fromkeys(PARTS, 0)
                for pid, name, used, cpu in process_tree(proc.pid):
                    rss["driver" if pid == proc.pid else "jvm" if name == "java" else "workers"] += used
                    cpu_seen[pid] = max(cpu_seen.get(pid, 0.0), cpu)
                for part, value in [*rss.items(), ("total", sum(rss.values()))]:
                    peak[part] = max(peak[part], value)
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    if code != 0 or not result_file.is_file():
        tail = log_file.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{module} failed (exit {code}); last lines of {log_file}:\n" + "\n".join(tail))
    result = json.loads(result_file.read_text())
    result.update({"process_wall_s": round(wall, 2), "cpu_s": round(sum(cpu_seen.values()), 1),
                   "peak_rss_mb": {k: round(v / 2**20) for k, v in peak.items()}, "memory_sampler": SAMPLER,
                   "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]})
    return result


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and its live descendants (JVM, Python workers):
    a child calls it before and after the timed part. A descendant that exits in between loses
    its share, so this slightly understates; Spark's JVM and reused Python workers live on."""
    return sum(cpu for _, _, _, cpu in process_tree(os.getpid()))
