"""Release values -> SDMX codes, and back (one mapping per dimension, both directions from one table).

Release tables keep the pipeline's own labels (``OTHER``, ``UNKNOWN``, ``15-24``, ``U``); exports use
standard codes: ISO 3166-1 alpha-3 areas, SDMX cross-domain sex codes and SDMX-style age groups.
The ``_T``/``_U``/``_O`` codes are SDMX generic codes (total, unknown, other; SDMX Content-Oriented
Guidelines, "Generic codes").
"""

from __future__ import annotations

import re

from mobility.aggregate import domains as D

TOTAL = "_T"
UNKNOWN_CODE = "_U"
OTHER_CODE = "_O"

NOT_APPLICABLE = "_Z"  # SDMX generic code: not applicable (a departure has no arrival type)
# A release's arrival types -> CL_ARRIVAL_TYPE ids
ARRIVAL_CODES = {D.RETURNING: "RET", D.FIRST_ARRIVAL: "FIRST", D.NOT_ARRIVAL: NOT_APPLICABLE}
ARRIVAL_NAMES = {"RET": "Returning residents (a long-term departure from the reporting country seen before)",
                 "FIRST": "First arrivals (no earlier long-term departure from the reporting country in the data)",
                 NOT_APPLICABLE: "Not applicable (a departure)", TOTAL: "Total"}

# A release's sex values -> SDMX CL_SEX ids; X (non-binary or indeterminate on the document) is "other".
SEX_CODES = {"F": "F", "M": "M", "X": OTHER_CODE, D.UNKNOWN_SEX: UNKNOWN_CODE}
SEX_NAMES = {"F": "Female", "M": "Male", OTHER_CODE: "Other (X on the identity document)",
             TOTAL: "Total", UNKNOWN_CODE: "Unknown"}


def age_group_code(lo: int, hi: int | None) -> str:
    # SDMX age-group style: Y15T24 is 15 to 24 years, Y_GE65 is 65 years or over
    return f"Y{lo}T{hi}" if hi is not None else f"Y_GE{lo}"


def age_group_name(lo: int, hi: int | None) -> str:
    return f"{lo} to {hi} years" if hi is not None else f"{lo} years or over"


_BAND_LABEL = re.compile(r"^(\d{1,3})-(\d{1,3})$|^(\d{1,3})\+$")
_AGE_CODE = re.compile(r"^Y(\d{1,3})T(\d{1,3})$|^Y_GE(\d{1,3})$")


def age_code(label: str) -> str:
    """A release's age band label (``15-24``, ``65+``, ``unknown``) as an SDMX age group code."""
    if label == D.UNKNOWN_AGE:
        return UNKNOWN_CODE
    match = _BAND_LABEL.match(str(label))
    if not match:
        raise KeyError(label)
    return age_group_code(int(match[1]), int(match[2])) if match[1] else age_group_code(int(match[3]), None)


def age_value(code: str) -> str:
    if code == UNKNOWN_CODE:
        return D.UNKNOWN_AGE
    match = _AGE_CODE.match(str(code))
    if not match:
        raise KeyError(code)
    return f"{int(match[1])}-{int(match[2])}" if match[1] else f"{int(match[3])}+"


def age_groups() -> dict[str, str]:
    """CL_AGE: the default bands, 5- and 10-year groups, open-ended groups from 5 to 100, common extras.

    Agreements may choose other band bounds (domains.bands_from); a band outside this list is
    refused at export with the code it would need.
    """
    groups = list(D.AGE_BANDS)
    groups += [(lo, lo + 4) for lo in range(0, 100, 5)] + [(lo, lo + 9) for lo in range(0, 100, 10)]
    groups += [(lo, None) for lo in range(5, 101, 5)] + [(0, 17), (18, 24), (15, 64), (18, None)]
    ordered = sorted(set(groups), key=lambda g: (g[0], g[1] is None, g[1] or 0))
    return {**{age_group_code(lo, hi): age_group_name(lo, hi) for lo, hi in ordered},
            TOTAL: "All ages", UNKNOWN_CODE: "Unknown (no birth year, implausible, or below the first band)"}


# special values of the country and H3 columns
AREA_SPECIAL = {D.OTHER: OTHER_CODE}
CELL_SPECIAL = {D.UNKNOWN: UNKNOWN_CODE}


def invert(mapping: dict[str, str]) -> dict[str, str]:
    inverse = {v: k for k, v in mapping.items()}
    if len(inverse) != len(mapping):
        raise ValueError(f"mapping is not one-to-one: {mapping}")
    return inverse


def area_code(value: str) -> str:
    """ISO3 stays as it is; OTHER (a country outside the agreement's list) becomes _O."""
    return AREA_SPECIAL.get(value, value)


def area_value(code: str) -> str:
    return invert(AREA_SPECIAL).get(code, code)


def cell_code(value: str) -> str:
    """H3 indexes stay as they are; UNKNOWN (no usable cell) becomes _U."""
    return CELL_SPECIAL.get(value, value)


def cell_value(code: str) -> str:
    return invert(CELL_SPECIAL).get(code, code)
