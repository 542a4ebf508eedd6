"""Looking for a person in every byte under a lake: raw bytes, gunzipped text and Parquet values.

A byte grep alone misses strings Parquet stores dictionary-encoded or compressed, so Parquet files
(data files and Delta checkpoints) are also read with pyarrow and every value is searched as text.
A plain module with a unique name so other test folders can import it.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pyarrow.parquet as pq

SEPARATORS = r"[\s\-().]?"


def number_pattern(national_number: str) -> re.Pattern:
    """The national significant number as written in any form (+63 917..., 0917-..., 63917...)."""
    return re.compile(SEPARATORS.join(re.escape(d) for d in national_number))


def texts(path: Path):
    """Yield every textual view of a file: its bytes, its gunzipped bytes, its Parquet values."""
    data = path.read_bytes()
    yield data.decode("latin-1")
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data).decode("latin-1")
    if data[:4] == b"PAR1":
        table = pq.read_table(path)
        for column in table.columns:
            yield "\n".join(map(str, column.to_pylist()))


def find(root: Path, needles: dict[str, re.Pattern]) -> list[tuple[str, str]]:
    """(relative path, needle name) for every file under ``root`` in which a needle occurs."""
    hits = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        for text in texts(path):
            hits += [(path.relative_to(root).as_posix(), name) for name, pattern in needles.items()
                     if pattern.search(text)]
    return sorted(set(hits))


def with_old_and_new_keys():
    """A MonkeyPatch (undo it at the end) holding a fresh agreement key (MOBILITY_KEY_TEST) and a fresh key
    to rotate to (MOBILITY_NEW_KEY): what a module's lake under rotation needs."""
    from agreement_helpers import with_test_key

    return with_test_key("MOBILITY_NEW_KEY")[0]
