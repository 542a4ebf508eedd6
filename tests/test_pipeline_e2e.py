"""The whole pipeline on a seeded synthetic population: accuracy against truth, release, audit."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import io
import json
import re
import secrets
import sys
from pathlib import Path

import pandas as pd
import pytest

from agreement_helpers import make_agreement

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# A migrant-rich population so that a few hundred people give enough changes to score.
SHARES = {"stayer": 0.55, "short_trip": 0.08, "emigrant_long_term": 0.15, "temporary_worker": 0.08,
          "returning_migrant": 0.10, "immigrant": 0.02, "inbound_roamer": 0.02}
START = "2023-01"
JOBS = Path(__file__).resolve().parents[1] / "jobs"


def load_job(name: str):
    """A jobs/*.py entry point as a module (they import _entry as a sibling)."""
    if str(JOBS) not in sys.path:
        sys.path.insert(0, str(JOBS))
    spec = importlib.util.spec_from_file_location(f"mobility_job_{name}", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, spark):
    from mobility.anonymize.job import run as anonymize
    from mobility.config import load_agreement
    from mobility.synth import generate

    root = tmp_path_factory.mktemp("e2e")
    key = secrets.token_hex(32)
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBILITY_KEY_TEST", key)
    generate(root / "input", subscribers=300, months=30, start=START, home_country="PHL", seed=11,
             fault_rate=0.02, events_per_day=6.0, behaviours=SHARES)
    agreement_path = make_agreement(root, max_invalid_share=0.2)
    agreement = load_agreement(agreement_path)
    anonymize(agreement, root / "input", root / "lake", spark=spark)
    # Residence through its spark-submit entry point, in this process (same session): the run also
    # leaves its job-run record, JSON log lines and progress lines for the counts test to scan.
    job = load_job("residence")
    mp.setenv("MOBILITY_PROGRESS", "1")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        job.main(job.STAGE, job.parser(), job.work,
                 ["--agreement", str(agreement_path), "--lake", str(root / "lake"), "--log-format", "json"])
    mp.delenv("MOBILITY_PROGRESS")
    assert done.value.code == 0, err.getvalue()
    yield {"root": root, "key": bytes.fromhex(key), "agreement": agreement, "lake": root / "lake", "spark": spark,
           "residence_stdout": out.getvalue(), "residence_stderr": err.getvalue()}
    mp.undo()


def test_long_term_changes_match_the_truth(pipeline):
    from mobility.residence.evaluate import score

    detected = pipeline["spark"].read.format("delta").load(
        str(pipeline["lake"] / "office" / "residence_changes")).toPandas()
    truth = pd.read_csv(pipeline["root"] / "input" / "truth" / "residence_changes.csv", dtype=str)
    key = pipeline["key"]
    accuracy = score(detected, truth, lambda m: hmac.new(key, m.encode(), hashlib.sha256).hexdigest(), START + "-01")
    assert accuracy.truth >= 15, accuracy  # enough changes for the score to mean something
    assert accuracy.f1 >= 0.95, accuracy
    assert accuracy.crossing_mae_days <= 3, accuracy
    # unresolved crossings are never reported as migrations
    assert not detected[(detected["kind"] == "unresolved") & detected["resolved_date"].notna()].shape[0]


def test_release_and_audit_of_a_final_month(pipeline):
    from mobility.privacy_budget import verify
    from mobility.release.flows import release_flows

    result = release_flows(pipeline["agreement"], pipeline["lake"], "2024-01", purpose="migration-statistics",
                           requested_by="test", rho=0.5, by="sex,age_band", spark=pipeline["spark"])
    again = release_flows(pipeline["agreement"], pipeline["lake"], "2024-01", purpose="migration-statistics",
                          requested_by="test", rho=0.5, by="sex,age_band", spark=pipeline["spark"])
    assert again.reused and again.release_id == result.release_id
    pseudonyms = set(pipeline["spark"].read.format("delta").load(
        str(pipeline["lake"] / "office" / "residence_changes")).toPandas()["pseudonym"])
    for path in Path(result.path).iterdir():
        text = path.read_bytes().decode("utf-8", "ignore")
        assert not any(p in text for p in pseudonyms), path
    international = pd.read_csv(Path(result.path) / "international.csv")
    assert pd.api.types.is_integer_dtype(international["count"]) and (international["count"] >= 0).all()
    report = verify(pipeline["lake"], caps={pipeline["agreement"].agreement_id: pipeline["agreement"].budget})
    assert report.ok, report.summary()
    manifest = json.loads((Path(result.path) / "manifest.json").read_text())
    assert manifest["release_id"] == result.release_id


# ---- counts stay inside (issue #19): nothing outside the office tables carries a count of people ----

PEOPLE_KEYS = {"subjects", "pseudonyms", "subscribers", "people", "persons", "senders", "presence_days",
               "changes", "counts"}
NOT_COUNTS = {"params", "duration_s"}  # configuration and wall time: numbers that are not counts


def _walk(node, key=None):
    """(key, value) of every scalar in a JSON value, skipping configuration and durations."""
    if key in NOT_COUNTS:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, None
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
    else:
        yield key, node


def _mentions(text: str, n: int) -> bool:
    """``n`` as a number of its own in ``text`` (plain or with thousands separators): not part of a
    word, path, date, time or decimal."""
    return any(re.search(rf"(?<![\w.,:/-]){re.escape(form)}(?![\w.,:/-])", text) for form in {str(n), f"{n:,}"})


def test_no_count_of_people_or_changes_leaves_the_office_tables(pipeline):
    """The residence manifest, its job-run record, the job's log and progress lines and the summary a
    terminal shows carry no exact count of pseudonyms, presence days or residence changes (issue #19)."""
    from mobility.lake import Lake
    from mobility.residence.job import ResidenceResult

    spark, lake = pipeline["spark"], Lake(pipeline["lake"])
    read = lambda name: spark.read.format("delta").load(str(lake.office_table(name)))  # noqa: E731
    presence, changes = read("presence"), read("residence_changes")
    exact = {
        "pseudonyms with presence": presence.select("pseudonym").distinct().count(),
        "pseudonyms with events": read("events").select("pseudonym").distinct().count(),
        "presence days": presence.count(),
        "residence changes": changes.count(),
        "pseudonyms with a change": changes.select("pseudonym").distinct().count(),
        "long-term changes": changes.where("kind = 'long_term'").count(),
    }
    assert min(exact.values()) >= 20, exact  # large enough not to meet a version number by chance

    (manifest_path,) = lake.residence_manifests.glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    (record_path,) = lake.job_runs("office").glob("residence-*.json")
    record = json.loads(record_path.read_text())
    lines = [json.loads(line) for line in pipeline["residence_stdout"].splitlines()]
    assert [e["status"] for e in lines] == ["started", "succeeded"]
    # what the flows release and the operators still need is there
    assert {"run_id", "agreement_id", "data_end", "params", "office_versions"} <= set(manifest)
    assert record["status"] == "succeeded" and record["stage_manifest"] == str(manifest_path)
    assert record["result"]["data_end"] == manifest["data_end"] and record["delta_versions"]

    def leaks(text: str) -> dict:
        return {what: n for what, n in exact.items() if _mentions(text, n)}

    for where, doc in [("manifest", manifest), ("job-run record", record)] + [("log", e) for e in lines]:
        scalars = list(_walk(doc))
        keys = {k for k, _ in scalars}
        assert not keys & PEOPLE_KEYS, (where, keys & PEOPLE_KEYS)
        numbers = {v for _, v in scalars if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert not numbers & set(exact.values()), (where, {w: n for w, n in exact.items() if n in numbers})
        for key, value in scalars:
            assert not (isinstance(value, str) and leaks(value)), (where, key, value, leaks(value))

    progress = [ln for ln in pipeline["residence_stderr"].splitlines() if "s] residence: " in ln]
    assert any("12/16-month rule" in ln for ln in progress), pipeline["residence_stderr"]
    summary = ResidenceResult(manifest["run_id"], manifest, manifest_path).summary()
    for where, text in [("summary", summary)] + [("progress", ln) for ln in progress]:
        assert not leaks(text), (where, leaks(text), text)
