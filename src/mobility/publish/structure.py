"""The SDMX structure of exported flows: code lists, concepts, the data structure and its dataflow.

Built with pysdmx (the BIS-maintained SDMX library) and shipped as SDMX-ML 2.1 in
``mobility/data/sdmx/``; ``mobility.publish.structure`` regenerates the file
(``python -m mobility.publish.structure``) and a test keeps the two identical.

Version 2.0 (releases of format ``mobility-release-manifest/2``): a release publishes, for each
table, its noisy measurement (as OpenDP drew it, negatives included) and a consistent table
(non-negative integers that add up), plus national totals. The dimension ``VALUE_KIND`` says
which a row is (a consistent value and its measurement share every other dimension, so it has
to be a dimension for series keys to stay unique); ``LOWER_95``/``UPPER_95`` give every row's
95% interval. Totals use the generic total code ``_T``: national emigration is ``ORIGIN`` = the
home country, ``DESTINATION`` = ``_T``; immigration the other way round.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import pycountry
from pysdmx.io import read_sdmx, write_sdmx
from pysdmx.io.format import Format
from pysdmx.model import Code, Codelist, Concept, ConceptScheme, DataType, Facets, Hierarchy, Organisation
from pysdmx.model.dataflow import Component, Components, Dataflow, DataStructureDefinition, Role, Schema
from pysdmx.model.message import Header

from mobility.publish import codes as C

AGENCY = "MOBILITY"
VERSION = "2.1"  # 2.0: VALUE_KIND, LOWER_95 and UPPER_95; OBS_VALUE of a noisy measurement may be negative;
# 2.1: population estimates (MEASURE LT_MIGR_POP, VALUE_KIND POP_ESTIMATE), subscriptions counted in SUBS,
# ARRIVAL_TYPE (returning residents, first arrivals)
DSD_ID = "DSD_MIGR_FLOWS"
DATAFLOW_ID = "DF_MIGR_FLOWS"
CONCEPTS_ID = "CS_MIGR_FLOWS"
STRUCTURE_FILE = f"MOBILITY_MIGR_FLOWS-{VERSION}.xml"
STRUCTURE_ID = f"{AGENCY}:{DATAFLOW_ID}({VERSION})"  # the SDMX-CSV STRUCTURE_ID of every export

# component ids, in the data structure's order
FREQ, REF_AREA, ORIGIN, DESTINATION = "FREQ", "REF_AREA", "ORIGIN", "DESTINATION"
ORIGIN_H3, DESTINATION_H3, SEX, AGE, MEASURE, VALUE_KIND, TIME_PERIOD = (
    "ORIGIN_H3", "DESTINATION_H3", "SEX", "AGE", "MEASURE", "VALUE_KIND", "TIME_PERIOD")
ARRIVAL_TYPE = "ARRIVAL_TYPE"
OBS_VALUE = "OBS_VALUE"
UNIT_MEASURE, LOWER_95, UPPER_95, ERROR_BOUND_95, CONF_STATUS, DP_METHOD, RELEASE_ID = (
    "UNIT_MEASURE", "LOWER_95", "UPPER_95", "ERROR_BOUND_95", "CONF_STATUS", "DP_METHOD", "RELEASE_ID")
DIMENSIONS = (FREQ, REF_AREA, ORIGIN, DESTINATION, ORIGIN_H3, DESTINATION_H3, SEX, AGE, ARRIVAL_TYPE, MEASURE,
              VALUE_KIND, TIME_PERIOD)
ATTRIBUTES = (UNIT_MEASURE, LOWER_95, UPPER_95, ERROR_BOUND_95, CONF_STATUS, DP_METHOD, RELEASE_ID)
COLUMNS = DIMENSIONS + (OBS_VALUE,) + ATTRIBUTES
NUMERIC = (OBS_VALUE, LOWER_95, UPPER_95, ERROR_BOUND_95)  # every other component is text

MONTHLY, ANNUAL = "M", "A"
LONG_TERM_MIGRANTS = "LT_MIGR"
LONG_TERM_MIGRANTS_POPULATION = "LT_MIGR_POP"
PERSONS, SUBSCRIPTIONS = "PS", "SUBS"
FREE = "F"
# what a row's value is (VALUE_KIND)
CONSISTENT, NOISY_MEASUREMENT, CLAMPED = "CONSISTENT", "NOISY_MEASUREMENT", "CLAMPED"
POPULATION_ESTIMATE = "POP_ESTIMATE"
VALUE_KINDS = {
    CONSISTENT: "Consistent value: post-processing of the noisy measurements into non-negative integers that add "
                "up (breakdowns to their margins, subnational cells to the national totals); the one to add up "
                "and to show. Its 95% interval (LOWER_95, UPPER_95) comes from the noisy measurements",
    NOISY_MEASUREMENT: "Noisy measurement as OpenDP drew it (or a sum of such measurements): unbiased, may be "
                       "negative; LOWER_95 and UPPER_95 are OBS_VALUE -/+ ERROR_BOUND_95, the lower end at least 0",
    CLAMPED: "Noisy value with negative values set to 0 (releases published before measurements were kept, "
             "manifest format 1, and annual sums of them): each value's interval holds, but sums of such values "
             "are biased upwards and their intervals ignore that",
    POPULATION_ESTIMATE: "Estimate of people: a consistent value divided by the operator's multi-SIM factor and by its "
                         "share of the resident population of the value's stratum (public factors named in the "
                         "release manifest); its 95% interval is the consistent value's, scaled the same way, "
                         "under the factors' model",
}
DP_METHODS = {
    "DGAUSS": "Discrete Gaussian noise (OpenDP), rho-zCDP; VALUE_KIND says what was done after the noise",
    "DLAPLACE": "Discrete Laplace noise (OpenDP), pure epsilon-DP; VALUE_KIND says what was done after the noise",
    "DGAUSS_SUM": "Sum of published discrete-Gaussian-noised values (post-processing, no new privacy loss)",
    "DLAPLACE_SUM": "Sum of published discrete-Laplace-noised values (post-processing, no new privacy loss)",
    "MIXED_SUM": "Sum of published values noised by both mechanisms (post-processing, no new privacy loss)",
}
# H3 indexes are 15 lower-case hex digits starting with 8 (cell mode); _T: not broken down; _U: unknown cell
H3_PATTERN = "8[0-9a-f]{14}|_T|_U"
# fixed so the shipped file is byte-for-byte reproducible
_PREPARED = datetime(2026, 11, 1, tzinfo=timezone.utc)
_TOTALS = ("National totals (the release's totals table) are rows whose other side is _T: emigration has ORIGIN "
           "= the reporting country and DESTINATION = _T, immigration ORIGIN = _T and DESTINATION = the "
           "reporting country, every other breakdown _T")


def _codelist(cl_id: str, name: str, items: dict[str, str], description: str | None = None) -> Codelist:
    return Codelist(id=cl_id, agency=AGENCY, version=VERSION, name=name, description=description,
                    items=[Code(id=k, name=v) for k, v in items.items()])


def codelists() -> dict[str, Codelist]:
    """Every code list the export uses, keyed by the component that uses it (areas serve three)."""
    countries = {c.alpha_3: c.name for c in sorted(pycountry.countries, key=lambda c: c.alpha_3)}
    area = _codelist("CL_AREA", "Areas (ISO 3166-1 alpha-3)", {
        **countries, C.OTHER_CODE: "Other countries (outside the agreement's public country list)",
        C.TOTAL: "All countries"}, description="ISO 3166-1 alpha-3 country codes (from pycountry), plus _O and _T. "
                                              + _TOTALS)
    return {
        FREQ: _codelist("CL_FREQ", "Frequency", {ANNUAL: "Annual", MONTHLY: "Monthly"}),
        REF_AREA: area, ORIGIN: area, DESTINATION: area,
        SEX: _codelist("CL_SEX", "Sex (SDMX cross-domain codes)", C.SEX_NAMES),
        ARRIVAL_TYPE: _codelist("CL_ARRIVAL_TYPE", "Arrival type", C.ARRIVAL_NAMES),
        AGE: _codelist("CL_AGE", "Age group (SDMX style: Y15T24 is 15 to 24 years, Y_GE65 65 years or over)",
                       C.age_groups()),
        MEASURE: _codelist("CL_MIGR_MEASURE", "Measure", {
            LONG_TERM_MIGRANTS: "Long-term residence changes (12/16-month rule, UN Recommendations on "
                                "Statistics of International Migration, Rev. 1, 1998) of one operator's mobile "
                                "subscriptions",
            LONG_TERM_MIGRANTS_POPULATION: "Long-term residence changes (12/16-month rule) of people: the "
                                           "subscriptions expanded to the resident population with public factors"}),
        UNIT_MEASURE: _codelist("CL_UNIT_MEASURE", "Unit of measure", {
            PERSONS: "Persons", SUBSCRIPTIONS: "Mobile subscriptions (one pseudonymous SIM each)"}),
        CONF_STATUS: _codelist("CL_CONF_STATUS", "Confidentiality status", {
            FREE: "Free (differentially private; no further disclosure control needed)"}),
        DP_METHOD: _codelist("CL_DP_METHOD", "Differential-privacy method", DP_METHODS),
        VALUE_KIND: _codelist("CL_VALUE_KIND", "Kind of published value", VALUE_KINDS,
                              description="Every consistent value has a noisy measurement with the same other "
                                          "dimensions; add up CONSISTENT rows, or NOISY_MEASUREMENT rows for an "
                                          "unbiased sum, never both"),
    }


_CONCEPTS = {
    FREQ: "Frequency", REF_AREA: "Reporting country (home country of the operator)",
    ORIGIN: "Country of previous usual residence", DESTINATION: "Country of next usual residence",
    ORIGIN_H3: "H3 cell of previous residence in the reporting country",
    DESTINATION_H3: "H3 cell of next residence in the reporting country", SEX: "Sex", AGE: "Age group at crossing",
    ARRIVAL_TYPE: "Arrival type (returning residents, first arrivals)",
    MEASURE: "Measure", VALUE_KIND: "Kind of published value (consistent, noisy measurement, clamped)",
    TIME_PERIOD: "Time period of the crossing (YYYY-MM monthly, YYYY annual)",
    OBS_VALUE: "Observation value (differentially private count)", UNIT_MEASURE: "Unit of measure",
    LOWER_95: "Lower end of the 95% interval of the exact value", UPPER_95: "Upper end of the 95% interval of the "
                                                                            "exact value",
    ERROR_BOUND_95: "Half-width of the 95% error bound of the noise in OBS_VALUE",
    CONF_STATUS: "Confidentiality status", DP_METHOD: "Differential-privacy method",
    RELEASE_ID: "Release (or derived table) the value comes from",
}
_DESCRIPTIONS = {
    ORIGIN: "_T: every country of origin (with DESTINATION = the reporting country: national immigration). "
            + _TOTALS,
    DESTINATION: "_T: every country of destination (with ORIGIN = the reporting country: national emigration). "
                 + _TOTALS,
    VALUE_KIND: "A consistent value and its noisy measurement have the same other dimensions; VALUE_KIND keeps "
                "their series keys apart (CL_VALUE_KIND)",
    OBS_VALUE: "An integer; negative only in NOISY_MEASUREMENT rows (the noise as drawn, nothing clamped)",
    LOWER_95: "The interval [LOWER_95, UPPER_95] holds the exact value with probability at least 95%: for a noisy "
              "measurement, OBS_VALUE -/+ the exact 95% half-width of its noise (lower end at least 0); for a "
              "consistent cell, its measurement's interval widened to include OBS_VALUE; for a national total, the "
              "exact interval of its weighted least-squares estimate from the measurements, widened likewise; for "
              "CLAMPED rows, OBS_VALUE -/+ ERROR_BOUND_95, lower end at least 0",
    UPPER_95: "See LOWER_95",
    ERROR_BOUND_95: "Exact 95% half-width of the noise of one measurement of this row (NOISY_MEASUREMENT and "
                    "CLAMPED rows; for an annual sum, of the sum of the monthly noise); empty for CONSISTENT rows, "
                    "whose interval is LOWER_95..UPPER_95",
}


def _concept_urn(concept_id: str) -> str:
    return f"urn:sdmx:org.sdmx.infomodel.conceptscheme.Concept={AGENCY}:{CONCEPTS_ID}({VERSION}).{concept_id}"


def concept_scheme() -> ConceptScheme:
    return ConceptScheme(id=CONCEPTS_ID, agency=AGENCY, version=VERSION, name="Concepts of migration flows",
                         items=[Concept(id=k, name=v, urn=_concept_urn(k), description=_DESCRIPTIONS.get(k))
                                for k, v in _CONCEPTS.items()])


def components() -> Components:
    lists = codelists()
    concepts = {c.id: c for c in concept_scheme().items}
    text = DataType.STRING

    def dim(cid, dtype=text, facets=None):
        return Component(id=cid, required=True, role=Role.DIMENSION, concept=concepts[cid],
                         local_dtype=dtype, local_codes=lists.get(cid), local_facets=facets)

    def attr(cid, dtype=text, facets=None, required=True):
        return Component(id=cid, required=required, role=Role.ATTRIBUTE, concept=concepts[cid], local_dtype=dtype,
                         local_codes=lists.get(cid), local_facets=facets, attachment_level="O")

    h3 = Facets(pattern=H3_PATTERN, max_length=15)
    at_least_0 = Facets(min_value=0)
    return Components([
        dim(FREQ), dim(REF_AREA), dim(ORIGIN), dim(DESTINATION), dim(ORIGIN_H3, facets=h3),
        dim(DESTINATION_H3, facets=h3), dim(SEX), dim(AGE), dim(ARRIVAL_TYPE), dim(MEASURE), dim(VALUE_KIND),
        dim(TIME_PERIOD, DataType.GREGORIAN_TIME_PERIOD),
        Component(id=OBS_VALUE, required=True, role=Role.MEASURE, concept=concepts[OBS_VALUE],
                  local_dtype=DataType.INTEGER),
        attr(UNIT_MEASURE), attr(LOWER_95, DataType.INTEGER, at_least_0), attr(UPPER_95, DataType.INTEGER, at_least_0),
        attr(ERROR_BOUND_95, DataType.DOUBLE, at_least_0, required=False), attr(CONF_STATUS),
        attr(DP_METHOD), attr(RELEASE_ID, facets=Facets(max_length=128)),
    ])


def artefacts() -> list:
    dsd = DataStructureDefinition(id=DSD_ID, agency=AGENCY, version=VERSION, components=components(),
                                  name="Differentially private migration flows")
    dataflow = Dataflow(id=DATAFLOW_ID, agency=AGENCY, version=VERSION, structure=dsd.short_urn,
                        name="Differentially private migration flows from mobile network data")
    unique = {cl.id: cl for cl in codelists().values()}
    return [*unique.values(), concept_scheme(), dsd, dataflow]


def structure_xml() -> str:
    header = Header(id=f"MOBILITY_MIGR_FLOWS_{VERSION.replace('.', '_')}", prepared=_PREPARED,
                    sender=Organisation(id=AGENCY))
    text = write_sdmx(artefacts(), Format.STRUCTURE_SDMX_ML_2_1, header=header)
    assert text is not None  # without an output path, write_sdmx returns the message
    return text


def shipped_structure_path() -> Path:
    return Path(str(resources.files("mobility") / "data" / "sdmx" / STRUCTURE_FILE))


def data_schema() -> Schema:
    """The schema SDMX-CSV exports refer to (the dataflow, so STRUCTURE is ``dataflow``)."""
    return Schema(context="dataflow", agency=AGENCY, id=DATAFLOW_ID, version=VERSION, components=components(),
                  name="Differentially private migration flows")


@functools.lru_cache(maxsize=4)
def shipped_codes(path: str | None = None) -> dict[str, frozenset[str]]:
    """Code ids per coded component, as read back from the shipped SDMX-ML by pysdmx (XSD-validated)."""
    message = read_sdmx(Path(path) if path else shipped_structure_path(), validate=True)
    structures = message.structures
    assert structures is not None  # a structure file (a data message would have none)
    dsd = next(s for s in structures if isinstance(s, DataStructureDefinition))
    lists = {(cl.agency, cl.id): cl for cl in structures if isinstance(cl, Codelist)}
    found = {}
    for comp in dsd.components:
        cl = comp.local_codes
        assert not isinstance(cl, Hierarchy)  # read from SDMX-ML, local codes are a code list
        if cl is None and comp.local_enum_ref:
            ref = comp.local_enum_ref.split("=", 1)[-1]
            agency, rest = ref.split(":", 1)
            cl = lists.get((agency, rest.split("(", 1)[0]))
        if cl is not None:
            found[comp.id] = frozenset(code.id for code in cl.items)
    return found


if __name__ == "__main__":  # regenerate the shipped file after changing this module
    target = Path(__file__).resolve().parents[1] / "data" / "sdmx" / STRUCTURE_FILE
    target.write_text(structure_xml(), encoding="utf-8")
    print(target)
