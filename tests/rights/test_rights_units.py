"""Rights pieces on their own: input checks, raw-row matching, the log scrub on tiny Delta tables, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agreement_helpers import make_agreement
from rights_scan import find, number_pattern

NUMBER = "+639171234567"


@pytest.fixture
def agreement(tmp_path, monkeypatch):
    from mobility.config import load_agreement

    monkeypatch.setenv("MOBILITY_KEY_TEST", secrets.token_hex(32))
    return load_agreement(make_agreement(tmp_path))


# ---- rectification values ------------------------------------------------------------------------

@given(st.text(min_size=1, max_size=12).filter(lambda s: "=" not in s and s.strip() not in ("sex", "birth_year")))
@settings(max_examples=60, deadline=None)
def test_only_sex_and_birth_year_can_be_rectified(field):
    from mobility.rights.rectify import parse_changes
    from mobility.rights.subject import RightsRequestError

    with pytest.raises(RightsRequestError, match="cannot be rectified"):
        parse_changes([f"{field}=1"])


@given(st.sampled_from(["F", "M", "X", "f", " m "]), st.integers(1900, dt.date.today().year))
@settings(max_examples=40, deadline=None)
def test_valid_values_are_normalized(sex, year):
    from mobility.rights.rectify import parse_changes

    assert parse_changes([f"sex={sex}", f"birth_year={year}"]) == {"sex": sex.strip().upper(), "birth_year": year}


@pytest.mark.parametrize("assignment", ["sex=U", "sex=", "birth_year=1899", f"birth_year={dt.date.today().year + 1}",
                                        "birth_year=19x0", "sex"])
def test_invalid_values_are_refused(assignment):
    from mobility.rights.rectify import parse_changes
    from mobility.rights.subject import RightsRequestError

    with pytest.raises(RightsRequestError, match="nothing was changed"):
        parse_changes([assignment])


# ---- subjects and raw rows --------------------------------------------------------------------------

def test_subject_from_a_number_matches_the_keyed_hmac_and_is_never_shown(agreement):
    import hashlib
    import hmac
    import os

    from mobility.rights.subject import from_msisdn

    subject = from_msisdn(agreement, "0917 123 4567")
    key = bytes.fromhex(os.environ["MOBILITY_KEY_TEST"])
    assert subject.pseudonym == hmac.new(key, NUMBER.encode(), hashlib.sha256).hexdigest()
    assert from_msisdn(agreement, "+63-917-123-4567") == subject
    for shown in (subject.masked, repr(subject)):
        assert "9171234567" not in re.sub(r"\D", "", shown)


@pytest.mark.parametrize("record, mentions", [
    ({"msisdn": "+639171234567", "event_time": "x"}, True),
    ({"msisdn": "0917 123 4567"}, True),
    ({"msisdn": "00639171234567"}, True),
    ({"msisdn": "+639181234567", "counterpart_msisdn": "(0917) 123-4567"}, True),
    ({"_corrupt_record": "+639171234567,2025-01-01T00:00:00,call_out"}, True),
    ({"msisdn": "+6391712345678"}, False),  # one digit longer: another number
    ({"msisdn": "+639181234567", "imei": "356938035643809"}, False),
])
def test_raw_rows_are_matched_on_whole_numbers_in_any_written_form(agreement, record, mentions):
    from mobility.rights.matching import record_mentions
    from mobility.rights.subject import from_msisdn

    forms = frozenset(from_msisdn(agreement, NUMBER).number_forms())
    assert record_mentions(json.dumps(record), forms) is mentions


# ---- purging history on tiny tables ------------------------------------------------------------------

@pytest.mark.spark
@pytest.mark.parametrize("properties", [{"delta.checkpointInterval": "2"},
                                        {"delta.enableDeletionVectors": "true"}])
def test_purge_removes_a_pseudonym_from_data_files_checkpoints_and_log(spark, tmp_path, properties):
    from delta.tables import DeltaTable

    from mobility.rights.catalog import Table
    from mobility.rights.history import RETENTION_CHECK, purge

    gone, kept = "a" * 64, "b" * 64
    path = tmp_path / "events"
    spark.createDataFrame([(gone, 1), (kept, 2)], "pseudonym STRING, n INT").write.format("delta").save(str(path))
    for key, value in properties.items():
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{key}' = '{value}')")
    for n in range(3):  # enough commits for a checkpoint
        spark.createDataFrame([(gone, n), (kept, n)], "pseudonym STRING, n INT").write.format("delta") \
            .mode("append").save(str(path))
    needles = {"gone": re.compile(gone[:16]), "kept": re.compile(kept[:16])}
    assert {n for _, n in find(path, needles)} == {"gone", "kept"}
    source = spark.createDataFrame([(gone,)], "_subject STRING")
    DeltaTable.forPath(spark, str(path)).alias("t").merge(source.alias("s"), "t.pseudonym = s._subject") \
        .whenMatchedDelete().execute()
    before = spark.conf.get(RETENTION_CHECK, None)

    purge(spark, [Table("office", "events", path, ("pseudonym", "n"))])

    assert spark.conf.get(RETENTION_CHECK, None) == before
    assert [p for p, n in find(path, needles) if n == "gone"] == []
    # the table still reads, keeps everyone else, and takes new writes
    assert spark.read.format("delta").load(str(path)).where("pseudonym = '%s'" % kept).count() == 4
    spark.createDataFrame([(kept, 9)], "pseudonym STRING, n INT").write.format("delta").mode("append").save(str(path))
    assert spark.read.format("delta").load(str(path)).count() == 5


# ---- CLI ------------------------------------------------------------------------------------------------

def test_cli_registry_prints_plain_language_and_json(agreement, tmp_path):
    from mobility.cli import main

    path = tmp_path / "agreements" / "test-phl.yaml"
    plain = CliRunner().invoke(main, ["rights", "registry", "--agreement", str(path)])
    assert plain.exit_code == 0 and "Who controls the files" in plain.output
    as_json = CliRunner().invoke(main, ["rights", "registry", "--agreement", str(path), "--json"])
    assert json.loads(as_json.output)["retention_days"] == agreement.retention_days


def test_cli_refuses_a_malformed_number_in_one_line_without_touching_the_lake(agreement, tmp_path):
    from mobility.cli import main

    lake = tmp_path / "lake"
    lake.mkdir()
    result = CliRunner().invoke(main, ["rights", "erase", "--agreement", str(tmp_path / "agreements" / "test-phl.yaml"),
                                       "--lake", str(lake), "--msisdn", "12345"])
    assert result.exit_code == 2 and "--msisdn" in result.output and "Traceback" not in result.output
    # the refusal is logged, without the number
    assert not find(lake, {"number": number_pattern("12345")})
    from mobility.rights.log import read

    assert [(e["request"], e["outcome"]) for e in read(lake)] == [("erase", "refused")]
