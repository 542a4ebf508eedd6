"""``mobility export``: a release (or derived annual table) as SDMX-CSV, tidy CSV or tidy Parquet.

Exports are post-processing of published values: they read only ``releases/`` or ``derived/``
(checked against the ledger or their manifest first), never the office zone, and charge nothing.
Each export writes ``RELEASE_ID.export.json`` beside its files: what was exported, from which
manifest (SHA-256), and the files written, so a reader can check and read them back.

A release of format 2 exports every table it publishes, each row named by ``VALUE_KIND``: the
national totals and the consistent tables (``CONSISTENT``: the values to add up and show) and the
noisy measurements (``NOISY_MEASUREMENT``: unbiased, may be negative), each with its 95% interval
(``LOWER_95``, ``UPPER_95``). A format-1 release exports its clamped counts as ``CLAMPED``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mobility import faults
from mobility.errors import InputContractError, StorageError
from mobility.privacy_budget.ledger import sha256_file
from mobility.publish import structure as S
from mobility.publish import tidy as T
from mobility.publish.sources import Source, locate

SDMX_CSV, CSV, PARQUET = "sdmx-csv", "csv", "parquet"
FORMATS = (SDMX_CSV, CSV, PARQUET)
EXPORT_FORMAT = "mobility-export/2"  # 2: value kinds, intervals and totals (structure 2.0)


@dataclass(frozen=True)
class ExportResult:
    release_id: str
    fmt: str
    out_dir: Path
    files: list[Path]  # data files, then the structure (SDMX-CSV only), then the export record
    rows: dict[str, int]

    @property
    def record(self) -> Path:
        return self.out_dir / f"{self.release_id}.export.json"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def _check_codes(release_id: str, tidy: dict[str, pd.DataFrame]) -> None:
    """Refuse before writing anything when a value has no code in the shipped code lists."""
    shipped = S.shipped_codes()
    for name, frame in tidy.items():
        for component, codes in shipped.items():
            unknown = sorted(set(frame[component].astype(str)) - codes)
            if unknown:
                raise InputContractError(
                    f"release {release_id!r}, table {name!r}: {component} value(s) {unknown[:5]} are not in the "
                    f"shipped code list of {S.STRUCTURE_ID}", where=str(S.shipped_structure_path()),
                    hint="add the codes in mobility.publish.structure (and codes.py), regenerate the structure "
                         "with `python -m mobility.publish.structure` and raise its version")


def _check_series_keys(release_id: str, tidy: dict[str, pd.DataFrame]) -> None:
    """Refuse before writing anything when two rows would share a series key (SDMX needs them unique)."""
    combined = pd.concat([frame.assign(_table=name) for name, frame in tidy.items()], ignore_index=True)
    repeated = combined[combined.duplicated(list(S.DIMENSIONS), keep=False)]
    if len(repeated):
        tables = sorted(set(repeated["_table"]))
        raise InputContractError(
            f"release {release_id!r}: {len(repeated)} rows of table(s) {tables} share series keys "
            f"({', '.join(S.DIMENSIONS)}); nothing was exported",
            hint="a table whose rows cannot be told apart by the dimensions of "
                 f"{S.STRUCTURE_ID} cannot be exported; use the release's own CSV or Parquet files")


def _order(source: Source, name: str) -> tuple[int, bool]:
    """Totals, then the consistent (or format-1) tables, then the measurements; country tables before
    the tables by H3 cell within each: readers meet the headline figures first."""
    kind = T.kind_of(source, name).value_kind
    rank = 0 if T.is_totals(source, name) else 2 if kind == S.NOISY_MEASUREMENT else 1
    return rank, any(k.endswith("h3_cell") for k in source.key_columns(name))


def _table_info(source: Source, name: str, rows: int, home: str, freq: str, period: str) -> dict:
    """What the export record says of one table: its release columns and how its rows are found."""
    kind = T.kind_of(source, name)
    info = {"key_columns": source.key_columns(name), "value_column": kind.value_column,
            "interval_columns": list(kind.interval_columns), "value_kind": kind.value_kind,
            "source_file": f"{name}.csv", "rows": rows}
    base = {S.FREQ: freq, S.REF_AREA: home, S.MEASURE: kind.measure, S.TIME_PERIOD: period,
            S.VALUE_KIND: kind.value_kind}
    if T.is_totals(source, name):
        placed = T.total_dimensions(source, home)
        return {**info, "fixed_dimensions": base, "varied_dimensions": [], "total_dimensions": placed}
    keys = source.key_columns(name)
    return {**info, "fixed_dimensions": {**T.fixed_dimensions(keys, home, freq, period), **base},
            "varied_dimensions": T.varied_dimensions(keys)}


def export_release(lake_root: str | os.PathLike, release_id: str, fmt: str,
                   out_dir: str | os.PathLike) -> ExportResult:
    """Write release ``release_id`` to ``out_dir`` in ``fmt`` (sdmx-csv, csv or parquet)."""
    if fmt not in FORMATS:
        raise InputContractError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if str(out_dir).startswith(("s3:", "s3a:")):  # the lake may be on object storage, an export is not
        raise StorageError("an export is written to a folder, not to object storage", where=str(out_dir),
                           hint="give --out a local (or mounted) folder; copy the files from there to the bucket "
                                "that publishes them, the export record last")
    source = locate(lake_root, release_id)
    tables = dict(sorted(source.tables.items(), key=lambda item: _order(source, item[0])))
    tidy = {name: T.to_tidy(source, name, frame) for name, frame in tables.items()}
    _check_codes(release_id, tidy)
    _check_series_keys(release_id, tidy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    home, freq, period = T.describe_source(source)
    files: list[Path] = []
    info = {name: _table_info(source, name, len(frame), home, freq, period) for name, frame in tidy.items()}
    if fmt == SDMX_CSV:
        from pysdmx.io import write_sdmx
        from pysdmx.io.format import Format
        from pysdmx.io.pd import PandasDataset

        path = out / f"{release_id}.sdmx.csv"
        combined = pd.concat(list(tidy.values()), ignore_index=True)
        write_sdmx([PandasDataset(structure=S.data_schema(), data=combined)], Format.DATA_SDMX_CSV_2_0_0,
                   output_path=str(path))
        files.append(path)
        for name in info:
            info[name]["file"] = path.name
        structure = out / S.STRUCTURE_FILE
        shutil.copyfile(S.shipped_structure_path(), structure)  # the consumer needs the codes to read it
        files.append(structure)
    else:
        for name, frame in tidy.items():
            path = out / f"{release_id}.{name}.{fmt}"
            if fmt == CSV:
                _write_csv(frame, path)
            else:
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
            files.append(path)
            info[name]["file"] = path.name
    record = {"format": EXPORT_FORMAT, "release_id": release_id, "kind": source.kind, "export_format": fmt,
              "source_manifest_sha256": source.manifest_sha256, "agreement_id": source.manifest.get("agreement_id"),
              "period": period, "structure": S.STRUCTURE_ID, "structure_file": S.STRUCTURE_FILE,
              "tables": info, "files": {p.name: sha256_file(p) for p in files},
              "value_kinds": {k: S.VALUE_KINDS[k] for k in sorted({i["value_kind"] for i in info.values()})}}
    record_path = out / f"{release_id}.export.json"
    # the record last, whole or not at all: until it is in place (or while it names other bytes) read_tidy
    # refuses the files, and running the same export again rewrites them all
    faults.point("export:before-record")
    tmp = out / f".{record_path.name}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, record_path)
    return ExportResult(release_id, fmt, out, [*files, record_path], {n: len(frame) for n, frame in tidy.items()})


def read_tidy(out_dir: str | os.PathLike, release_id: str) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The export record and each table's tidy rows, files checked against the record's SHA-256."""
    out = Path(out_dir)
    record_path = out / f"{release_id}.export.json"
    if not record_path.is_file():
        raise InputContractError(f"no export of {release_id!r}", where=str(record_path),
                                 hint="run `mobility export` first")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("format") != EXPORT_FORMAT:
        raise InputContractError(f"export record is of format {record.get('format')!r}, this version reads "
                                 f"{EXPORT_FORMAT}", where=str(record_path),
                                 hint="export the release again with this version")
    for name, digest in record["files"].items():
        if sha256_file(out / name) != digest:
            raise InputContractError(f"exported file {name} differs from its export record", where=str(out / name))
    fmt = record["export_format"]
    if fmt == SDMX_CSV:
        from pysdmx.io import get_datasets

        file_name = next(iter(record["tables"].values()))["file"]
        combined = get_datasets(out / file_name, out / record["structure_file"])[0].data
        combined = _typed(pd.DataFrame({c: combined[c] for c in S.COLUMNS}))
        tables, taken = {}, pd.Series(0, index=combined.index)
        for name, info in record["tables"].items():
            one_of = list(info["total_dimensions"].values()) if "total_dimensions" in info else None
            mask = T.select(combined, info["fixed_dimensions"], info["varied_dimensions"], one_of)
            taken += mask.astype(int)
            tables[name] = combined[mask].reset_index(drop=True)
        if (taken != 1).any():
            raise InputContractError(f"{int((taken != 1).sum())} SDMX-CSV rows do not belong to exactly one table",
                                     where=str(out / file_name))
        return record, tables
    text = {c: str for c in S.COLUMNS if c not in S.NUMERIC}
    readers = {CSV: lambda p: pd.read_csv(p, dtype=text, keep_default_na=False,
                                          na_values={S.ERROR_BOUND_95: [""]}),
               PARQUET: lambda p: pq.ParquetFile(p).read().to_pandas()}
    return record, {name: _typed(readers[fmt](out / info["file"])) for name, info in record["tables"].items()}


def _typed(tidy: pd.DataFrame) -> pd.DataFrame:
    """Text components as str, counts and interval ends as int64, ERROR_BOUND_95 as float (NaN when empty)."""
    out = tidy.copy()
    for column in out.columns:
        if column == S.ERROR_BOUND_95:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
        elif column in S.NUMERIC:
            out[column] = out[column].astype("int64")
        else:
            out[column] = out[column].astype(str)
    return out


def read_export(out_dir: str | os.PathLike, release_id: str) -> dict[str, pd.DataFrame]:
    """An export read back into the release's own columns: key columns, the value column (``count`` or
    ``noisy_count``), then ``low_95`` and ``high_95`` (tables of format-1 releases have neither)."""
    record, tables = read_tidy(out_dir, release_id)
    return {name: T.from_tidy(tables[name], info["key_columns"], info["value_column"], info["interval_columns"],
                              info.get("total_dimensions"))
            for name, info in record["tables"].items()}


def describe(result: ExportResult, rows: int = 3) -> str:
    """Files written, rows per table and, for SDMX-CSV, the validation verdict and the first rows."""
    kinds = json.loads(result.record.read_text(encoding="utf-8"))["tables"]
    lines = [f"export of {result.release_id} as {result.fmt}: "
             + ", ".join(f"{n} {r} rows ({kinds[n]['value_kind']})" for n, r in result.rows.items())]
    lines += [f"  {path}" for path in result.files]
    if result.fmt == SDMX_CSV:
        from mobility.publish.validate import validate_sdmx_csv

        data = result.files[0]
        problems = validate_sdmx_csv(data, result.out_dir / S.STRUCTURE_FILE)
        lines.append(f"  valid against {S.STRUCTURE_ID}" if not problems
                     else "  NOT valid: " + "; ".join(problems))
        with open(data, encoding="utf-8") as handle:
            lines += ["  " + next(handle).rstrip("\n") for _ in range(rows + 1)]
    return "\n".join(lines)
