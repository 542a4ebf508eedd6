"""Check an SDMX-CSV file against the shipped structure, as a data consumer would.

pysdmx parses the structure (SDMX-ML, XSD-validated) and the data into a dataset with that
structure; the checks pysdmx leaves to the user are done here from the parsed structure: every
component present and nothing else, codes in their code lists, text facets (H3 pattern), required
values, integer counts (non-negative except in noisy measurements), 95% intervals that are ordered
and hold consistent values, error bounds where a row's kind has one, time periods of the stated
frequency, unique series keys.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pandas as pd

from mobility.publish import structure as S

_PERIOD = {S.MONTHLY: re.compile(r"^\d{4}-(0[1-9]|1[0-2])$"), S.ANNUAL: re.compile(r"^\d{4}$")}
_CSV_FIXED = ("STRUCTURE", "STRUCTURE_ID", "ACTION")


def _codes(component) -> frozenset[str] | None:
    codes = getattr(component, "local_codes", None)
    if codes is None and component.concept is not None and getattr(component.concept, "codes", None):
        codes = component.concept.codes
    return frozenset(c.id for c in codes.items) if codes is not None else None


def _value_problems(raw: pd.DataFrame) -> list[str]:
    """Counts, intervals and error bounds, by VALUE_KIND: only a noisy measurement may be negative, a
    consistent or clamped value lies in its interval, and only consistent values have no error bound."""
    problems = []
    kind = raw[S.VALUE_KIND]
    counts = pd.to_numeric(raw[S.OBS_VALUE], errors="coerce")
    if counts.isna().any() or (counts != counts.round()).any():
        problems.append(f"{S.OBS_VALUE}: every value must be an integer")
    elif (counts[kind != S.NOISY_MEASUREMENT] < 0).any():
        problems.append(f"{S.OBS_VALUE}: only {S.NOISY_MEASUREMENT} rows may be negative")
    low, high = (pd.to_numeric(raw[c], errors="coerce") for c in (S.LOWER_95, S.UPPER_95))
    if low.isna().any() or high.isna().any() or (low < 0).any() or (low > high).any() \
            or (low != low.round()).any() or (high != high.round()).any():
        problems.append(f"{S.LOWER_95}, {S.UPPER_95}: every row needs integers 0 <= {S.LOWER_95} <= {S.UPPER_95}")
    elif ((kind != S.NOISY_MEASUREMENT) & ((counts < low) | (counts > high))).any():
        problems.append(f"{S.OBS_VALUE}: {S.CONSISTENT} and {S.CLAMPED} values must lie in [{S.LOWER_95}, "
                        f"{S.UPPER_95}]")
    bounds = pd.to_numeric(raw[S.ERROR_BOUND_95], errors="coerce")
    if (bounds < 0).any() or (bounds.isna() & (kind != S.CONSISTENT)).any():
        problems.append(f"{S.ERROR_BOUND_95}: every {S.NOISY_MEASUREMENT} and {S.CLAMPED} row needs a non-negative "
                        "number")
    return problems


def validate_sdmx_csv(path: str | os.PathLike, structure: str | os.PathLike | None = None,
                      max_problems: int = 20) -> list[str]:
    """Problems found in the SDMX-CSV file at ``path`` ([] when it conforms to the structure)."""
    from pysdmx.errors import PysdmxError
    from pysdmx.io import get_datasets
    from pysdmx.model import Schema

    path = Path(path)
    structure = Path(structure) if structure else S.shipped_structure_path()
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    problems: list[str] = []
    if tuple(header[:3]) != _CSV_FIXED:
        return [f"not SDMX-CSV 2.0: the first columns are {header[:3]}, expected {list(_CSV_FIXED)}"]
    try:
        datasets = get_datasets(path, structure)
    except PysdmxError as exc:
        return [f"pysdmx could not read it against {structure.name}: {exc}"]
    if len(datasets) != 1:
        return [f"expected one dataset, found {len(datasets)}"]
    dataset = datasets[0]
    schema = dataset.structure
    assert isinstance(schema, Schema)  # given a structure message, get_datasets assigns the schema or raises
    if f"{schema.agency}:{schema.id}({schema.version})" != S.STRUCTURE_ID:
        problems.append(f"refers to {schema.agency}:{schema.id}({schema.version}), expected {S.STRUCTURE_ID}")
    shipped = S.shipped_codes(str(structure))
    data = dataset.data
    expected = [c.id for c in schema.components]
    columns = [c for c in header if c not in _CSV_FIXED]
    if sorted(columns) != sorted(expected):
        problems.append(f"columns {columns} differ from the structure's components {expected}")
        return problems
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    for component in schema.components:
        values = raw[component.id]
        empty = values == ""
        if component.required and empty.any():
            problems.append(f"{component.id}: {int(empty.sum())} empty values in a required component")
        codes = _codes(component) or shipped.get(component.id)
        if codes is not None:
            bad = sorted(set(values[~empty]) - codes)
            if bad:
                problems.append(f"{component.id}: values {bad[:5]} are not in its code list")
        facets = component.local_facets
        if facets is not None and facets.pattern:
            pattern = re.compile(facets.pattern)
            bad = sorted({v for v in values[~empty] if not pattern.fullmatch(v)})
            if bad:
                problems.append(f"{component.id}: values {bad[:5]} do not match pattern {facets.pattern}")
    problems += _value_problems(raw)
    for freq, pattern in _PERIOD.items():
        wrong = raw[(raw[S.FREQ] == freq) & ~raw[S.TIME_PERIOD].str.match(pattern)]
        if len(wrong):
            problems.append(f"{S.TIME_PERIOD}: {len(wrong)} rows with FREQ {freq} have periods like "
                            f"{wrong[S.TIME_PERIOD].iloc[0]!r}")
    dims = [c.id for c in schema.components if c.role.name == "DIMENSION"]
    duplicated = raw.duplicated(dims)
    if duplicated.any():
        problems.append(f"{int(duplicated.sum())} rows repeat a series key ({', '.join(dims)})")
    if len(data) != len(raw):
        problems.append(f"pysdmx read {len(data)} rows but the file has {len(raw)}")
    return problems[:max_problems]
