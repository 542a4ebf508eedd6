"""Keyed pseudonyms: Spark's HMAC equals the standard library's; E.164 normalization."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.anonymize.pseudonymize import (
    PseudonymKey,
    drop_key_pads,
    e164_column,
    hmac_sha256,
    to_e164,
    with_key_pads,
)


@pytest.mark.spark
@pytest.mark.parametrize("key_len", [32, 64, 65, 100])  # around the 64-byte HMAC block size
def test_spark_hmac_matches_python_hmac(spark, key_len):
    secret = secrets.token_bytes(key_len)
    key = PseudonymKey("k", secret)
    values = ["+639171234567", "", "é漢字", "x" * 300] + [secrets.token_hex(8) for _ in range(50)]
    df = spark.createDataFrame([(v,) for v in values], "v STRING")
    out = drop_key_pads(with_key_pads(spark, df, key).withColumn("h", hmac_sha256(df["v"]))).collect()
    for row in out:
        assert row["h"] == hmac.new(secret, row["v"].encode(), hashlib.sha256).hexdigest()
    plan = drop_key_pads(with_key_pads(spark, df, key).withColumn("h", hmac_sha256(df["v"])))._jdf \
        .queryExecution().toString()
    assert secret.hex() not in plan.lower() and key.pads()[0].hex() not in plan.lower()


def test_key_is_never_shown():
    key = PseudonymKey("k1", b"\x01" * 32)
    assert "0101" not in repr(key) and "0101" not in str(key) and "k1" in repr(key)


@pytest.mark.parametrize("raw", ["+639171234567", "09171234567", "0917 123 4567", "0917-123-4567",
                                 "(0917) 123 4567", "00639171234567", " +63 917 123 4567 "])
def test_formats_of_one_number_normalize_to_one_e164(raw):
    assert to_e164(raw, "PH") == "+639171234567"


@pytest.mark.parametrize("raw", ["", "   ", "12345", "+63917", "not a number", "+999123456789", None])
def test_invalid_numbers_are_rejected(raw):
    assert to_e164(raw, "PH") is None


def test_foreign_numbers_keep_their_country():
    assert to_e164("+974 5512 3456", "PH") == "+97455123456"


@pytest.mark.spark
def test_spark_column_equals_the_python_function_row_by_row(spark):
    """The Arrow UDF maps each row through its batch's distinct values: order, repeats, nulls and
    invalid text must come back exactly as ``to_e164`` gives them, also in a batch with no number."""
    values = ["0917 123 4567", None, "+974 5512 3456", "garbage", "09171234567", "", None, "+639171234567",
              "00639221234567", "garbage"] * 7
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i INT, v STRING")
    got = {r["i"]: r["e"] for r in df.select("i", e164_column(df["v"], "PH").alias("e")).collect()}
    assert got == {i: to_e164(v, "PH") for i, v in enumerate(values)}
    nothing = spark.createDataFrame([(None,), (None,)], "v STRING")
    assert [r["e"] for r in nothing.select(e164_column(nothing["v"], "PH").alias("e")).collect()] == [None, None]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_normalization_is_idempotent(raw):
    e164 = to_e164(raw, "PH")
    if e164 is not None:
        assert e164.startswith("+") and e164[1:].isdigit()
        assert to_e164(e164, "PH") == e164


@pytest.mark.spark
@pytest.mark.parametrize("text, utc", [
    ("2025-01-05T21:13:00", "2025-01-05 13:13:00"),  # naive: Asia/Manila, UTC+8
    ("2025-01-05 21:13", "2025-01-05 13:13:00"),
    ("2025-01-05T21:13:00+08:00", "2025-01-05 13:13:00"),
    ("2025-01-05T13:13:00Z", "2025-01-05 13:13:00"),
    ("2025-01-05T15:13:00+0200", "2025-01-05 13:13:00"),
    ("2025-01-05", "2025-01-04 16:00:00"),  # a bare date is local midnight, not an offset of -05
    ("2025-13-45T99:00:00", None),
    ("05/01/2025 21:13", None),
])
def test_times_parse_to_the_right_instant(spark, text, utc):
    from pyspark.sql import functions as F

    from mobility.anonymize.validate import parse_time
    from mobility.spark import session_time_zone

    with session_time_zone(spark, "Asia/Manila"):
        instant = spark.createDataFrame([(text,)], "t STRING").select(parse_time(F.col("t")).alias("i"))
    row = instant.select(F.date_format("i", "yyyy-MM-dd HH:mm:ss").alias("u")).collect()[0]  # UTC again
    assert row["u"] == utc
