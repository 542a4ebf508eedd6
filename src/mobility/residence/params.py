"""The parameters of daily presence and residence detection (``ResidenceParams``).

A module of its own so that presence smoothing (``presence_rules``) and the residence rules
(``rules``, which re-exports it as ``mobility.residence.rules.ResidenceParams``) both import it
without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ResidenceParams(BaseModel):
    """Every parameter of daily presence and residence detection, in one place, with its source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Stats NZ outcomes-based migration measure ("12/16-month rule", 2017-) and ABS net overseas
    # migration (12/16-month rule, since 2006): 16 months = 487 days.
    window_days: int = Field(default=487, ge=2, description="window after a crossing, crossing day included")
    # UN Recommendations on Statistics of International Migration Rev.1 (1998), long-term migrant:
    # a change of usual residence for at least a year; UN 2021 conceptual framework keeps 12 months.
    migration_days: int = Field(default=365, ge=1, description="days on the other side that make a migration")
    # Stats NZ complement of the window (16 - 12 months): more days not on the other side and the
    # window can no longer reach migration_days, so the crossing is decided as no migration.
    non_migration_days: int = Field(default=122, ge=0)
    # UN Principles and Recommendations for Population and Housing Censuses (Rev.3, 2017): usual
    # residence is where a person lived for most of the last 12 months.
    initial_days: int = Field(default=365, ge=1, description="days at the data start used for the initial status")
    initial_resident_nights: int = Field(default=183, ge=1, description="home nights that make a home resident")
    # UN 1998 Rev.1 short-term migrant: at least 3 months but less than a year away.
    temporary_min_days: int = Field(default=90, ge=1)
    # Project choice (data quality): sparse roaming records leave short holes inside a stay.
    max_gap_days: int = Field(default=7, ge=0, description="carry a country across gaps up to this many days")
    # Project choice: border cells serve across the line; one night there is not a trip.
    min_crossing_nights: int = Field(default=2, ge=1)
    # Project choice, in line with night-time home-detection criteria (Vanhoof et al. 2018,
    # Journal of Official Statistics): local hours; the Spark job reads them from here.
    night_start: int = Field(default=19, ge=0, le=23)
    night_end: int = Field(default=7, ge=0, le=23)
    # Project choice: H3 resolution 5 (~250 km2 cells) for the modal night cell per month.
    home_cell_resolution: int = Field(default=5, ge=0, le=15)

    @model_validator(mode="after")
    def _consistent(self) -> "ResidenceParams":
        if self.migration_days > self.window_days:
            raise ValueError("migration_days cannot exceed window_days")
        if self.non_migration_days != self.window_days - self.migration_days:
            raise ValueError(
                f"non_migration_days must be window_days - migration_days "
                f"({self.window_days - self.migration_days}), got {self.non_migration_days}")
        if self.temporary_min_days >= self.migration_days:
            raise ValueError("temporary_min_days must be below migration_days")
        if self.initial_resident_nights > self.initial_days:
            raise ValueError("initial_resident_nights cannot exceed initial_days")
        if self.night_start == self.night_end:
            raise ValueError("night_start and night_end must differ")
        return self
