"""Find and read the operator's input files, checking each file's header against its contract.

Layout under the input folder: one sub-folder per dataset (``cdr/``, ``cells/``,
``subscribers/``, ``payments/``) holding CSV (optionally gzip) or Parquet files, or a single
file named after the dataset (``cells.csv``). Every column is read as a string; parsing and
checking happen in ``validate`` so a bad value becomes a quarantined row with a reason.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility.errors import InputContractError
from mobility.schemas import INPUTS, InputContract

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)
SOURCE_FILE = "_source_file"  # the file's position in ``file_names``: a number costs less to carry than its name
CORRUPT = "_corrupt_record"


@dataclass(frozen=True)
class InputFile:
    dataset: str
    path: Path
    fmt: str  # csv | parquet
    columns: tuple[str, ...]
    fingerprint: str  # content fingerprint: name, size, first and last 64 KiB
    name: str  # path relative to the input folder: how manifests and quarantine name the file


def _fmt(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _csv_header(path: Path) -> tuple[str, ...]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputContractError(f"cannot read the file: {exc}", where=str(path),
                                 hint="check that it is UTF-8 CSV (gzip allowed) and not truncated") from exc
    if not line.strip():
        raise InputContractError("the file is empty or has no header row", where=str(path),
                                 hint="the first line must name the columns")
    return tuple(c.strip().strip('"').lstrip("\ufeff") for c in line.rstrip("\r\n").split(","))


# what Spark's (Hadoop's) codecs say when a compressed input ends early or is not what its name says
_CORRUPT_STREAM = ("Unexpected end of input stream", "ZipException", "Not in GZIP format", "invalid block type",
                   "invalid distance", "incorrect header check", "Corrupt GZIP trailer")


def is_corrupt_stream_error(exc: BaseException) -> bool:
    """True when a Spark failure reads like a truncated or corrupt compressed input file."""
    return any(marker in str(exc) for marker in _CORRUPT_STREAM)


def corrupt_gzip(files: list[InputFile]) -> list[tuple[InputFile, str]]:
    """The gzip files among ``files`` that do not decompress to their end, with the reason. Only called
    after Spark failed on one (it reads every byte once more), so a good delivery costs nothing."""
    bad = []
    for f in files:
        if not f.path.name.lower().endswith(".gz"):
            continue
        try:
            with gzip.open(f.path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            bad.append((f, "it ends before the end of its compressed data (a delivery cut off in transfer)"
                        if isinstance(exc, EOFError) else f"it is not valid gzip ({exc})"))
    return bad


def derive_run_id(agreement_id: str, fingerprints: list[str]) -> str:
    """The same agreement and the same files give the same run id: a rerun resumes that run (ADR 0003)."""
    digest = hashlib.sha256("\n".join([agreement_id, *sorted(fingerprints)]).encode()).hexdigest()
    return f"run-{digest[:16]}"


def _fingerprint(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(65536))
        if size > 65536:
            fh.seek(max(65536, size - 65536))
            h.update(fh.read(65536))
    return h.hexdigest()


_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


def _check_columns(contract: InputContract, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in contract.required if c not in columns]
    if missing:
        raise InputContractError(
            f"missing required column(s) {missing} for {contract.name} ({contract.description}); "
            f"found {list(columns)}",
            where=str(path),
            hint=_columns_hint(contract, columns, missing),
        )
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputContractError(f"duplicate column(s) {dupes}", where=str(path))


def _columns_hint(contract: InputContract, columns: tuple[str, ...], missing: list[str]) -> str:
    """What most likely went wrong with a header: another delimiter, or names in another case."""
    contract_hint = (f"the {contract.name} contract needs {list(contract.required)} and accepts "
                     f"{list(contract.optional)}; see docs/contracts.md")
    if len(columns) == 1:
        for delimiter, name in _OTHER_DELIMITERS.items():
            if delimiter in columns[0]:
                return (f"the header is separated by {name}, not commas: write the file as comma-separated CSV "
                        f"(RFC 4180); {contract_hint}")
    by_case = {c.lower().replace(" ", "_"): c for c in columns}
    near = [f"{by_case[m]!r} for {m!r}" for m in missing if m in by_case]
    if near:
        return (f"column names are lower case with underscores; found {', '.join(near)}: rename them in the "
                f"header; {contract_hint}")
    return contract_hint


def discover(input_dir: str | Path) -> dict[str, list[InputFile]]:
    """Files per dataset, headers checked. Raises if the folder or the CDRs are missing."""
    root = Path(input_dir)
    if not root.is_dir():
        raise InputContractError("input folder not found", where=str(root),
                                 hint="pass --input the folder holding cdr/, cells/ "
                                      "(and optionally subscribers/, payments/)")
    found: dict[str, list[InputFile]] = defaultdict(list)
    for name, contract in INPUTS.items():
        candidates = []
        sub = root / name
        if sub.is_dir():
            candidates = sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        candidates += sorted(p for p in root.glob(f"{name}.*") if p.is_file())
        for path in candidates:
            fmt = _fmt(path)
            if fmt is None:
                raise InputContractError(f"unsupported file type in {name}/", where=str(path),
                                         hint="use .csv, .csv.gz or .parquet")
            cols = _csv_header(path) if fmt == "csv" else tuple(pq.read_schema(path).names)
            _check_columns(contract, path, cols)
            found[name].append(InputFile(name, path.resolve(), fmt, cols, _fingerprint(path),
                                         path.relative_to(root).as_posix()))
    if not found.get("cdr") and not found.get("payments"):
        raise InputContractError("no CDR or payment files found", where=str(root),
                                 hint="put CDR files under cdr/ and payment files under payments/")
    if found.get("cdr") and not found.get("cells"):
        raise InputContractError("CDR files found but no cell table", where=str(root),
                                 hint="put the operator's cell list under cells/ (cell_id, latitude, longitude)")
    return dict(found)


def _as_text(df: DataFrame, column: str):
    """A Parquet column as text; timestamps keep their instant (written with an explicit offset)."""
    kind = df.schema[column].dataType.typeName()
    col = F.col(f"`{column}`")
    if kind in ("timestamp", "timestamp_ntz"):
        fmt = "yyyy-MM-dd'T'HH:mm:ssXXX" if kind == "timestamp" else "yyyy-MM-dd'T'HH:mm:ss"
        return F.date_format(col, fmt).alias(column)
    return col.cast("string").alias(column)


def _spark_uris(spark: SparkSession, path: Path) -> set[str]:
    """The forms in which Spark's ``_metadata.file_path`` may name a local or cluster file: the
    qualified Hadoop URI, percent-encoded, with ``file:/`` or ``file:///`` for the local file system."""
    jvm = spark._jvm
    assert jvm is not None  # set on every classic (JVM-backed) session
    jvm_path = jvm.org.apache.hadoop.fs.Path(str(path))
    fs = jvm_path.getFileSystem(spark._jsc.hadoopConfiguration())
    uri = str(fs.makeQualified(jvm_path).toUri().toString())
    forms = {uri}
    if uri.startswith("file:///"):
        forms.add("file:/" + uri[len("file:///"):])
    elif uri.startswith("file:/"):
        forms.add("file:///" + uri[len("file:/"):])
    return forms


def file_names(files: list[InputFile]) -> list[str]:
    """The files' names under the input folder, sorted: ``SOURCE_FILE`` holds a position in this list,
    so ordering by it orders by name."""
    return sorted(f.name for f in files)


def name_of_file(column, files: list[InputFile]):
    """The Spark column naming the source file of a ``SOURCE_FILE`` position (for the few rows shown)."""
    return F.element_at(F.array(*[F.lit(n) for n in file_names(files)]), column + 1)


def _source_names(spark: SparkSession, files: list[InputFile]) -> DataFrame:
    """File URI -> the file's position in ``file_names``, as a small table to broadcast.

    Joining on Spark's own URI string costs one hash lookup per row; decoding each row's URI
    first (the obvious way) was half the cost of reading the CSVs (BENCHMARKS.md).
    """
    position = {name: i for i, name in enumerate(file_names(files))}
    rows = [(uri, position[f.name]) for f in files for uri in sorted(_spark_uris(spark, f.path))]
    return spark.createDataFrame(rows, f"_uri STRING, {SOURCE_FILE} INT")


def read(spark: SparkSession, files: list[InputFile], contract: InputContract) -> DataFrame:
    """All files of one dataset as one DataFrame of strings with the contract's columns,
    the source file (its position in ``file_names(files)``), and ``_corrupt_record`` for rows
    that do not parse as CSV."""
    frames = []
    names = F.broadcast(_source_names(spark, files))
    by_header: dict[tuple, list[InputFile]] = defaultdict(list)
    for f in files:
        by_header[(f.fmt, f.columns)].append(f)
    for (fmt, columns), group in by_header.items():
        paths = [str(f.path) for f in group]
        if fmt == "csv":
            schema = ", ".join(f"`{c}` STRING" for c in columns) + f", `{CORRUPT}` STRING"
            df = (spark.read.schema(schema)
                  .option("header", True).option("enforceSchema", True)
                  .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
                  .option("multiLine", False).option("escape", '"')
                  .csv(paths))
        else:
            df = spark.read.parquet(*paths)
            df = df.select(*[_as_text(df, c) for c in columns], "_metadata")
            df = df.withColumn(CORRUPT, F.lit(None).cast("string"))
        df = df.withColumn("_uri", F.col("_metadata.file_path")).join(names, "_uri", "left")
        # Every row must be attributed to its file (per-file reconciliation): fail, never drop.
        df = df.withColumn(SOURCE_FILE, F.coalesce(F.col(SOURCE_FILE), F.raise_error(F.concat(
            F.lit("cannot attribute a row to one of the listed input files: "), F.col("_uri")))))
        for c in contract.columns:
            if c not in columns:
                df = df.withColumn(c, F.lit(None).cast("string"))
        frames.append(df.select(*contract.columns, CORRUPT, SOURCE_FILE))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out
