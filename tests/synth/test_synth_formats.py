"""`synth --format`: the same population written as FlowDB tables or multimno bronze data is read by
`mobility anonymize` (with the matching input_format) into the office zone the native contract gives,
up to what each format cannot say: FlowDB has no events abroad, multimno no service type, no
counterpart, no subscribers nor payments, and its ids are the operator's pseudonyms."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agreement_helpers import make_agreement
from mobility.anonymize.job import run
from mobility.anonymize.pseudonymize import load_key
from mobility.config import load_agreement
from mobility.synth.formats import USER_ID_SALT
from synth_helpers import HOME, to_e164

pytestmark = pytest.mark.spark

MOBILITY = Path(sys.executable).with_name("mobility")
SMALL = dict(subscribers=40, months=2, start="2024-01", home_country=HOME, seed=5, events_per_day=3.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, spark):
    """Each format written by the command (`mobility synth --format`) and anonymized into a lake of its own."""
    root = tmp_path_factory.mktemp("formats")
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBILITY_KEY_TEST", secrets.token_hex(32))
    out = {}
    for fmt in ("native", "flowdb", "multimno"):
        inputs = root / fmt / "input"
        args = [str(MOBILITY), "synth", "--out", str(inputs), "--format", fmt,
                *[x for k, v in SMALL.items() for x in (f"--{k.replace('_', '-')}", str(v))]]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        agreement = load_agreement(make_agreement(root / fmt / "conf", input_format=fmt))
        result = run(agreement, inputs, root / fmt / "lake", spark=spark)
        out[fmt] = {"inputs": inputs, "lake": root / fmt / "lake", "manifest": result.manifest,
                    "agreement": agreement}
    yield out
    mp.undo()


def _office(spark, lake: Path, table: str) -> pd.DataFrame:
    path = lake / "office" / table
    if not path.exists():
        return pd.DataFrame()
    return spark.read.format("delta").load(str(path)).drop("run_id").toPandas()


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    columns = sorted(df.columns)
    return df[columns].sort_values(columns).reset_index(drop=True)


def test_every_file_of_every_format_reconciles(runs):
    for fmt, r in runs.items():
        files = r["manifest"]["files"]
        assert files, fmt
        for f in files:
            assert f["read"] == f["accepted"] + f["quarantined"] + f["duplicates"] + f["suppressed"], (fmt, f)
        assert r["manifest"]["totals"]["cdr"]["accepted"] > 1000, fmt


def test_flowdb_gives_the_native_office_zone_less_the_events_served_abroad(runs, spark):
    native, flowdb = (runs[f]["lake"] for f in ("native", "flowdb"))
    events = _office(spark, native, "events")
    home = events[events["h3_cell"].notna()]
    assert 0 < len(home) < len(events)  # the population does travel: FlowDB cannot say where
    assert _sorted(home).equals(_sorted(_office(spark, flowdb, "events")))
    for table in ("subscribers", "payments"):  # delivered alongside in the native contract
        assert _sorted(_office(spark, native, table)).equals(_sorted(_office(spark, flowdb, table))), table


def test_multimno_gives_the_native_office_zone_up_to_its_pseudonyms_and_event_types(runs, spark):
    native, multimno = runs["native"], runs["multimno"]
    key = load_key(native["agreement"].key)  # the same key: the agreements differ in input_format only
    numbers = set()
    for path in sorted((native["inputs"] / "cdr").glob("*.csv.gz")):
        numbers |= {to_e164(n) for n in pd.read_csv(path, dtype=str, usecols=["msisdn"])["msisdn"].dropna()}
    numbers.discard(None)
    # the operator's id of a number (what multimno's user_id holds), keyed as multimno's reader keys it
    renamed = {key.pseudonym(n): key.pseudonym(hashlib.sha256(USER_ID_SALT + n.encode()).hexdigest())
               for n in numbers}
    events = _office(spark, native["lake"], "events")
    assert events["pseudonym"].isin(list(renamed)).all()
    events = events.assign(pseudonym=events["pseudonym"].map(renamed), event_type="signal")
    theirs = _office(spark, multimno["lake"], "events")
    assert set(theirs["event_type"]) == {"signal"} and theirs["counterpart_pseudonym"].isna().all()
    assert (theirs["h3_cell"].isna()).any()  # events abroad, placed in the visited country
    assert _sorted(events).equals(_sorted(theirs))
    assert _office(spark, multimno["lake"], "subscribers").empty and _office(spark, multimno["lake"], "payments").empty
