"""The whole pipeline on a seeded synthetic population: accuracy against truth, release, audit."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

import pandas as pd
import pytest

from agreement_helpers import make_agreement

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# A migrant-rich population so that a few hundred people give enough changes to score.
SHARES = {"stayer": 0.55, "short_trip": 0.08, "emigrant_long_term": 0.15, "temporary_worker": 0.08,
          "returning_migrant": 0.10, "immigrant": 0.02, "inbound_roamer": 0.02}
START = "2023-01"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, spark):
    from mobility.anonymize.job import run as anonymize
    from mobility.config import load_agreement
    from mobility.residence.job import run as residence
    from mobility.synth import generate

    root = tmp_path_factory.mktemp("e2e")
    key = secrets.token_hex(32)
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBILITY_KEY_TEST", key)
    generate(root / "input", subscribers=300, months=30, start=START, home_country="PHL", seed=11,
             fault_rate=0.02, events_per_day=6.0, behaviours=SHARES)
    agreement = load_agreement(make_agreement(root, max_invalid_share=0.2))
    anonymize(agreement, root / "input", root / "lake", spark=spark)
    residence(agreement, root / "lake", spark=spark)
    yield {"root": root, "key": bytes.fromhex(key), "agreement": agreement, "lake": root / "lake", "spark": spark}
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
