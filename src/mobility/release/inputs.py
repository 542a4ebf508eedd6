"""What a release reads from the office zone: each table at a pinned Delta version, recorded for the
manifest and the ledger (``input_versions``), so the release can be traced to exactly what it counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

from mobility.aggregate.flows import subscriber_profile
from mobility.errors import InputContractError
from mobility.lake import Lake
from mobility.schemas import SUBSCRIBERS_TABLE, TableSpec


def pin(lake: Lake, spec: TableSpec, versions: dict[str, int], missing: str, hint: str) -> int:
    """The table's current version, recorded in ``versions``; a clear refusal when the table is not there."""
    version = lake.version(spec)
    if version is None:
        raise InputContractError(missing, where=str(lake.table(spec)), hint=hint)
    versions[spec.label] = version
    return version


def breakdown_profile(spark: SparkSession, lake: Lake, agreement_id: str, by: Sequence[str],
                      versions: dict[str, int]) -> DataFrame | None:
    """Sex and birth year per pseudonym for ``--by`` breakdowns (None without them), at a pinned version."""
    if not by:
        return None
    version = pin(lake, SUBSCRIBERS_TABLE, versions,
                  "a breakdown by sex or age_band needs the office subscribers table",
                  "anonymize a subscribers file, or release without --by")
    return subscriber_profile(lake.read(spark, SUBSCRIBERS_TABLE, version), agreement_id)
