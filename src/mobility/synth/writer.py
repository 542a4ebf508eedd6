"""Byte-for-byte reproducible writers: CSV (plain or gzip with mtime 0) and Parquet."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

GZIP_LEVEL = 1  # speed over size: these are test extracts, rewritten often


def _csv_bytes(table: pa.Table) -> bytes:
    # Values are written bare: no generated value holds a comma, quote or line break.
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return buffer.getvalue()


class CsvWriter:
    """A CSV file written in pieces; gzip (no name, mtime 0) when the path ends in .gz."""

    def __init__(self, path: Path, columns: tuple[str, ...] | list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = tuple(columns)
        self.rows = 0
        self._raw = open(self.path, "wb")
        self._out = (gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=GZIP_LEVEL)
                     if self.path.suffix == ".gz" else self._raw)
        self._out.write((",".join(self.columns) + "\n").encode("ascii"))

    def write(self, table: pa.Table) -> None:
        if table.column_names != list(self.columns):
            raise ValueError(f"{self.path}: columns {table.column_names} != {list(self.columns)}")
        if table.num_rows:
            self._out.write(_csv_bytes(table))
            self.rows += table.num_rows

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()

    def __enter__(self) -> "CsvWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_csv(path: Path, table: pa.Table) -> int:
    with CsvWriter(path, table.column_names) as out:
        out.write(table)
    return table.num_rows


def write_parquet(path: Path, table: pa.Table) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", store_schema=False)
    return table.num_rows
