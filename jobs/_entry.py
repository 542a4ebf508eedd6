"""What every spark-submit entry point shares: arguments, exit codes, log lines, the job-run record.

A job module defines ``parser()`` (its arguments) and ``work(args) -> dict`` (call the library,
return a summary with ``lake``, ``zone``, ``inputs``, ``outputs``, ``delta_versions``,
``stage_manifest`` and, where the stage has them, ``counts``), then calls ``main(STAGE, parser(), work)``.
``counts`` are row accounting only (rows read, accepted, quarantined, files removed, release table
sizes): never a count of people (subscribers, pseudonyms, senders) or of residence changes, which
stay in the office zone's Delta tables. A stage without such counts leaves the key out.

Exit codes (schedulers decide on retries from them):
  0  success
  1  unexpected failure (lost executor, full disk, ...): a retry may succeed
  2  bad command line
  3  the pipeline refused (configuration, input contract, key, quality gate, budget, release
     refused): a retry with the same inputs fails the same way; fix the cause first

Each run that got as far as knowing its lake leaves one JSON record, whatever the outcome, in
``LAKE/<zone>/job_runs/`` (zone ``operator`` for anonymization, ``office`` otherwise). The record
points at the stage's own manifest rather than copying it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
RECORD_FORMAT = "mobility-job-run/1"
# Anything that could be a phone number, an IMSI/IMEI, a pseudonym or hex key material.
_DIGIT_RUN = re.compile(r"\+\d[\d ()-]{5,}\d|\d{7,}")
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_MAX_REASON = 400


class UsageError(Exception):
    """The command line does not parse."""


class JobParser(argparse.ArgumentParser):
    """An argparse parser that reports a bad command line as one line instead of usage text."""

    def error(self, message):
        raise UsageError(message)


def new_parser(description: str | None) -> JobParser:
    parser = JobParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-format", choices=("text", "json"),
                        default="json" if os.environ.get("MOBILITY_JSON_LOGS") else "text",
                        help="json: one JSON object per line on stdout, for log collectors")
    return parser


def scrub(text: str) -> str:
    """One line, bounded, with digit runs and long hex strings masked: never a number or key byte."""
    line = " ".join(str(text).split())
    line = _LONG_HEX.sub("<hex>", line)
    line = _DIGIT_RUN.sub("<digits>", line)
    return line[:_MAX_REASON]


def reason_of(exc: BaseException) -> str:
    text = str(exc).strip()
    return scrub(text) if text else type(exc).__name__


def _explained(exc: Exception) -> BaseException:
    """A Spark failure caused by a lost executor becomes one line saying so (exit 1: rerun)."""
    from mobility.cluster_errors import translate

    return translate(exc)


def exit_code_of(exc: BaseException) -> int:
    from mobility.errors import MobilityError

    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_REFUSED if isinstance(exc, MobilityError) else EXIT_FAILED


class Logger:
    def __init__(self, stage: str, job_run_id: str, fmt: str):
        self.stage, self.job_run_id, self.fmt = stage, job_run_id, fmt

    def event(self, status: str, **fields) -> None:
        if self.fmt == "json":
            line = {"ts": _now(), "stage": self.stage, "job_run_id": self.job_run_id, "status": status, **fields}
            print(json.dumps(line, default=str, sort_keys=True), flush=True)
        else:
            extra = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
            print(f"{self.stage} {status} {extra}".rstrip(), flush=True)


def main(stage: str, parser: argparse.ArgumentParser, work: Callable[[argparse.Namespace], dict],
         argv: list[str] | None = None) -> None:
    """Parse, run, log, record, exit. Never returns."""
    started = time.time()
    job_run_id = f"{stage}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{stage} failed: bad command line: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    log = Logger(stage, job_run_id, args.log_format)
    log.event("started", args=public_args(args))
    record = {"format": RECORD_FORMAT, "job_run_id": job_run_id, "stage": stage, "args": public_args(args),
              "started": _iso(started)}
    try:
        summary = work(args)
    except Exception as failure:  # the scheduler needs one line and a non-zero exit, whatever failed
        exc = _explained(failure)
        code = exit_code_of(exc)
        reason = reason_of(exc)
        record.update(status="failed", exit_code=code, error=type(exc).__name__, reason=reason,
                      spark=_spark_facts())  # the application id leads to the executor logs
        _finish(record, started, _lake_of(args), "operator" if stage == "anonymize" else "office", log)
        log.event("failed", error=type(exc).__name__, exit_code=code, reason=reason,
                  duration_s=record["duration_s"])
        print(f"{stage} failed: {reason}", file=sys.stderr)
        sys.exit(code)
    record.update(status="succeeded", exit_code=EXIT_OK, spark=_spark_facts(),
                  **{k: summary.get(k) for k in ("inputs", "outputs", "delta_versions", "stage_manifest")},
                  **({"counts": summary["counts"]} if summary.get("counts") is not None else {}),
                  result={k: v for k, v in summary.items() if k not in ("lake", "zone", "inputs", "outputs",
                                                                        "counts", "delta_versions",
                                                                        "stage_manifest")})
    path = _finish(record, started, summary.get("lake") or _lake_of(args), summary.get("zone", "office"), log)
    log.event("succeeded", duration_s=record["duration_s"], record=str(path) if path else None,
              **{k: record[k] for k in ("counts", "delta_versions") if k in record})
    sys.exit(EXIT_OK)


def public_args(args: argparse.Namespace) -> dict:
    """The command line as recorded: paths and request fields only (no argument carries a secret)."""
    return {k: v for k, v in sorted(vars(args).items()) if k != "log_format" and v is not None}


def lake_versions(lake: str, zones: tuple[str, ...] = ("operator", "office")) -> dict[str, int]:
    """Current version of every Delta table under the given zones (for stages without a manifest)."""
    from mobility.lake import delta_version, is_delta

    root = Path(lake).resolve()
    found = {}
    for zone in zones:
        for table in sorted((root / zone).iterdir()) if (root / zone).is_dir() else []:
            if is_delta(table):
                found[f"{zone}/{table.name}"] = delta_version(table)
    return found


def _finish(record: dict, started: float, lake: str | None, zone: str, log: Logger) -> Path | None:
    finished = time.time()
    record.update(finished=_iso(finished), duration_s=round(finished - started, 1))
    if not lake:
        return None
    try:
        from mobility.lake import Lake, write_json_atomic

        path = Lake(lake).job_runs(zone) / f"{record['job_run_id']}.json"
        write_json_atomic(path, record)  # a collector never reads half a record (a rename, or one PUT)
        return path
    except OSError as exc:  # a record that cannot be written must not hide the job's own outcome
        log.event("record_not_written", reason=scrub(str(exc)))
        return None


def _lake_of(args: argparse.Namespace) -> str | None:
    return getattr(args, "lake", None)


def _spark_facts() -> dict:
    """Where the job ran: master, application id, Spark version (only if a session was started)."""
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            return {}
        sc = spark.sparkContext
        return {"master": sc.master, "app_id": sc.applicationId, "version": spark.version}
    except Exception:  # facts for the record only: never fail a finished job over them
        return {}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _now() -> str:
    return _iso(time.time())


def _short(value) -> str:
    return json.dumps(value, default=str, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
