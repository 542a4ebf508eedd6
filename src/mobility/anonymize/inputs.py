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

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mobility.errors import InputContractError
from mobility.schemas import INPUTS, InputContract

ID_KIND = "numbers"  # the subscriber columns hold phone numbers (mobility.anonymize.formats)
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
    fingerprint: str  # name, size, first and last 64 KiB: the file's identity in manifests since the start
    name: str  # path relative to the input folder: how manifests and quarantine name the file
    content: str = ""  # SHA-256 of the bytes alone: the same delivery under another name
    types: tuple[str, ...] = ()  # Parquet: each column's Arrow type (files of one schema are read together)


def _fmt(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _unreadable_hint(exc: BaseException, default: str) -> str:
    if isinstance(exc, PermissionError):
        return "make the file readable by the user that runs the job (and its folders searchable)"
    return default


def _csv_header(path: Path) -> tuple[str, ...]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:  # the header line alone: a bad byte in a data row is that row's problem (invalid_encoding)
        with opener(path, "rb") as fh:
            line = fh.readline().decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputContractError(f"cannot read the file: {exc}", where=str(path),
                                 hint=_unreadable_hint(exc, "check that it is UTF-8 CSV (gzip allowed) and not "
                                                            "truncated")) from exc
    if not line.strip():
        raise InputContractError("the file is empty or has no header row", where=str(path),
                                 hint="the first line must name the columns")
    return tuple(c.strip().strip('"').lstrip("\ufeff") for c in line.rstrip("\r\n").split(","))


# what Spark's (Hadoop's) codecs say when a compressed input ends early or is not what its name says
_CORRUPT_STREAM = ("Unexpected end of input stream", "ZipException", "Not in GZIP format", "invalid block type",
                   "invalid distance", "incorrect header check", "Corrupt GZIP trailer")


# ... and when a Parquet file's pages do not decode (its footer was readable: discover checked it)
_CORRUPT_PARQUET = ("FAILED_READ_FILE", "ParquetDecodingException", "can not read class org.apache.parquet",
                    "CANNOT_READ_FILE_FOOTER", "is not a Parquet file", "Could not read footer")


def is_corrupt_stream_error(exc: BaseException) -> bool:
    """True when a Spark failure reads like a truncated or corrupt input file (gzip or Parquet)."""
    return any(marker in str(exc) for marker in _CORRUPT_STREAM + _CORRUPT_PARQUET)


def _parquet_problem(path: Path) -> str | None:
    """Why a Parquet file cannot be read to its end, or None. Reads every page once, a batch at a time."""
    try:
        for _ in pq.ParquetFile(path).iter_batches(batch_size=65536):
            pass
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"its data pages do not decode ({type(exc).__name__}); the file is damaged or was cut off"
    return None


def corrupt_files(files: list[InputFile]) -> list[tuple[InputFile, str]]:
    """The gzip and Parquet files among ``files`` that cannot be read to their end, with the reason. Only
    called after Spark failed on one (it reads every byte once more), so a good delivery costs nothing."""
    bad = []
    for f in files:
        if f.fmt == "parquet":
            problem = _parquet_problem(f.path)
            if problem:
                bad.append((f, problem))
            continue
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


corrupt_gzip = corrupt_files  # the name before Parquet files were checked too


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


def _content_fingerprint(path: Path) -> str:
    """SHA-256 of every byte of the file, without its name: the same delivery under another name has
    the same one. Reading the file once more costs about a second per 1.5 GB (SHA-256 on one core)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def make_input_file(root: Path, dataset: str, path: Path, fmt: str, columns: tuple[str, ...],
                    types: tuple[str, ...] = ()) -> InputFile:
    """An ``InputFile`` for ``path`` under the input folder ``root``, with both its fingerprints."""
    return InputFile(dataset, path.resolve(), fmt, columns, _fingerprint(path), path.relative_to(root).as_posix(),
                     _content_fingerprint(path), types)


_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}

# Parquet columns whose type decides whether their values survive the cast to text.
_NUMBERS = ("msisdn", "counterpart_msisdn", "sender_msisdn", "receiver_msisdn")
_TIMES = ("event_time", "txn_time")
_WHOLE = ("duration_s", "birth_year")


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputContractError(
            f"not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]})", where=str(path),
            hint=_unreadable_hint(exc, "ask for the file again: it was cut off in transfer, damaged, or is not "
                                       "Parquet (a Parquet file ends with its footer and the bytes 'PAR1')")) from exc


def _check_parquet_types(contract: InputContract, path: Path, schema: pa.Schema) -> None:
    """Refuse column types whose values would not survive the cast to text (every value is read as text)."""
    problems = []
    for name in (c for c in contract.columns if c in schema.names):
        t = schema.field(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t) \
                or pa.types.is_binary(t) or pa.types.is_large_binary(t):  # text without the UTF8 annotation
            continue
        if pa.types.is_nested(t):
            problems.append(f"'{name}' is {t}, a nested type; give it as a plain column")
        elif name in _NUMBERS:
            problems.append(f"'{name}' is {t}: subscriber numbers must be strings (as a number the leading "
                            "'+' or '0' is lost and a foreign number cannot be told from a national one)")
        elif name in _TIMES and not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            problems.append(f"'{name}' is {t}: times must be ISO 8601 strings or a Parquet TIMESTAMP "
                            "(epoch numbers are not accepted)")
        elif name in _WHOLE and not pa.types.is_integer(t):
            problems.append(f"'{name}' is {t}: it must be a whole number, as an integer or a string")
    if problems:
        raise InputContractError(
            f"column type(s) of {contract.name} the contract cannot read: {'; '.join(problems)}", where=str(path),
            hint="write these columns with the types given in docs/contracts.md (strings for numbers and times) "
                 "and deliver the file again")


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
        raise InputContractError(f"duplicate column(s) {dupes}", where=str(path),
                                 hint="name each column once (which of the two holds the values is not guessed); "
                                      "see docs/contracts.md")


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
                f"CSV header or Parquet schema; {contract_hint}")
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
            types: tuple[str, ...] = ()
            if fmt == "csv":
                cols = _csv_header(path)
            else:
                schema = _parquet_schema(path)
                cols = tuple(schema.names)
                types = tuple(str(t) for t in schema.types)
            _check_columns(contract, path, cols)
            if fmt == "parquet":
                _check_parquet_types(contract, path, schema)
            found[name].append(make_input_file(root, name, path, fmt, cols, types))
    if not found.get("cdr") and not found.get("payments"):
        raise InputContractError("no CDR or payment files found", where=str(root),
                                 hint="put CDR files under cdr/ and payment files under payments/; if the operator "
                                      "delivers another format (multimno, FlowDB), name it in the agreement's "
                                      "input_format (docs/contracts.md, 'Operators' formats')")
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


def attach_source(df: DataFrame, names: DataFrame) -> DataFrame:
    """``df`` (read with its ``_metadata`` column) with ``SOURCE_FILE``, from ``names``, the broadcast
    ``source_names`` of the files it was read from. A row no file claims fails the job: never dropped."""
    df = df.withColumn("_uri", F.col("_metadata.file_path")).join(names, "_uri", "left")
    # Every row must be attributed to its file (per-file reconciliation): fail, never drop.
    return df.withColumn(SOURCE_FILE, F.coalesce(F.col(SOURCE_FILE), F.raise_error(F.concat(
        F.lit("cannot attribute a row to one of the listed input files: "), F.col("_uri")))))


def source_names(spark: SparkSession, files: list[InputFile]) -> DataFrame:
    """File URI -> the file's position in ``file_names(files)``, broadcast: for ``attach_source``."""
    return F.broadcast(_source_names(spark, files))


def read(spark: SparkSession, files: list[InputFile], contract: InputContract) -> DataFrame:
    """All files of one dataset as one DataFrame of strings with the contract's columns,
    the source file (its position in ``file_names(files)``), and ``_corrupt_record`` for rows
    that do not parse as CSV."""
    frames = []
    names = source_names(spark, files)
    by_header: dict[tuple, list[InputFile]] = defaultdict(list)
    for f in files:  # Parquet files of one schema: Spark reads a group with the schema of one of its files
        by_header[(f.fmt, f.columns, f.types)].append(f)
    for (fmt, columns, _), group in by_header.items():
        paths = [str(f.path) for f in group]
        if fmt == "csv":
            schema = ", ".join(f"`{c}` STRING" for c in columns) + f", `{CORRUPT}` STRING"
            df = (spark.read.schema(schema)
                  .option("header", True).option("enforceSchema", True)
                  .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
                  .option("multiLine", False).option("escape", '"')
                  # every field parsed, also of the columns the contract ignores: with pruning, a line with a
                  # field too many or too few is read as a sound row when the file has extra columns
                  .option("columnPruning", False)
                  .csv(paths))
        else:
            df = spark.read.parquet(*paths)
            df = df.select(*[_as_text(df, c) for c in columns], "_metadata")
            df = df.withColumn(CORRUPT, F.lit(None).cast("string"))
        df = attach_source(df, names)
        for c in contract.columns:
            if c not in columns:
                df = df.withColumn(c, F.lit(None).cast("string"))
        frames.append(df.select(*contract.columns, CORRUPT, SOURCE_FILE))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out
