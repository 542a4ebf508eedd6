"""Keyed pseudonyms: E.164 normalization and HMAC-SHA256 computed by Spark expressions.

The key is read once on the driver from the agreement's environment variable or 0600 key
file. It reaches Spark only as the two HMAC pads in a one-row broadcast table, so it never
appears in a query plan, a log line or an output file (tests scan for it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from mobility.config import KeySource
from mobility.errors import KeyMaterialError

MIN_KEY_BYTES = 32
_BLOCK = 64  # SHA-256 block size (RFC 2104)
IPAD, OPAD = "_hmac_ipad", "_hmac_opad"


@dataclass(frozen=True)
class PseudonymKey:
    key_id: str
    _secret: bytes = field(repr=False)

    def __repr__(self) -> str:  # never show the key, even in tracebacks
        return f"PseudonymKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def pads(self) -> tuple[bytes, bytes]:
        k = hashlib.sha256(self._secret).digest() if len(self._secret) > _BLOCK else self._secret
        k = k.ljust(_BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)

    def pseudonym(self, e164: str) -> str:
        """Reference implementation (Python stdlib) for one number, used by rights requests and tests."""
        return hmac.new(self._secret, e164.encode("utf-8"), hashlib.sha256).hexdigest()


def _decode(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyMaterialError("the key must be hex-encoded (for example from `openssl rand -hex 32`)",
                               where=where) from None
    if len(raw) < MIN_KEY_BYTES:
        raise KeyMaterialError(f"the key is {len(raw)} bytes; at least {MIN_KEY_BYTES} random bytes are required",
                               where=where, hint="generate one with `openssl rand -hex 32`")
    return raw


def load_key(source: KeySource) -> PseudonymKey:
    """Read the agreement key from its environment variable or 0600 file; never log it."""
    if source.env:
        value = os.environ.get(source.env)
        if not value:
            raise KeyMaterialError(f"environment variable {source.env} is not set",
                                   where="pseudonymization key",
                                   hint=f"export {source.env}=<64 hex digits> on the operator's side; "
                                        "the office side never needs the key")
        return PseudonymKey(source.key_id, _decode(value, f"${source.env}"))
    path = source.file
    assert path is not None  # KeySource holds exactly one of env and file
    if not path.is_file():
        raise KeyMaterialError("key file not found", where=str(path),
                               hint="create it with `openssl rand -hex 32 > FILE && chmod 600 FILE`")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyMaterialError(f"key file permissions are {mode:04o}; they must be 0600 (owner only)",
                               where=str(path), hint=f"run `chmod 600 {path}`")
    return PseudonymKey(source.key_id, _decode(path.read_text(encoding="ascii", errors="replace"), str(path)))


def with_key_pads(spark: SparkSession, df: DataFrame, key: PseudonymKey) -> DataFrame:
    """Attach the HMAC pads as two columns from a broadcast one-row table."""
    ipad, opad = key.pads()
    pads = spark.createDataFrame([(bytearray(ipad), bytearray(opad))],
                                 StructType([StructField(IPAD, BinaryType(), False),
                                             StructField(OPAD, BinaryType(), False)]))
    return df.crossJoin(F.broadcast(pads))


def hmac_sha256(value: Column) -> Column:
    """HMAC-SHA256 (RFC 2104) of a string column as lowercase hex; needs ``with_key_pads``."""
    inner = F.unhex(F.sha2(F.concat(F.col(IPAD), value.cast("binary")), 256))
    return F.when(value.isNotNull(), F.sha2(F.concat(F.col(OPAD), inner), 256))


def drop_key_pads(df: DataFrame) -> DataFrame:
    return df.drop(IPAD, OPAD)


# ---- E.164 normalization ---------------------------------------------------------------

@lru_cache(maxsize=1_000_000)
def to_e164(raw: str | None, region: str) -> str | None:
    """E.164 form of a subscriber number, or None when it is not a valid number (phonenumbers)."""
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def e164_column(value: Column, region: str) -> Column:
    """Vectorised (Arrow) normalization: each batch parses each distinct number once, and the
    numbers never become Python objects row by row (dictionary-encode, map the few distinct values,
    take back): about half the cost of the pandas version it replaced (BENCHMARKS.md)."""

    # pyspark's stubs lack the decorator form whose UDF type comes from the function's type hints
    @F.arrow_udf(StringType())  # type: ignore[call-overload]
    def _normalize(numbers: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(numbers)  # nulls stay null indices, and take() keeps them null
        distinct = [to_e164(u, region) for u in encoded.dictionary.to_pylist()]
        return pa.array(distinct, type=pa.string()).take(encoded.indices)

    return _normalize(value)
