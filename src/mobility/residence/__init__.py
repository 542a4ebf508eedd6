"""Residence: daily presence smoothing and changes of country of usual residence (12/16 rule)."""

from mobility.residence.presence_rules import smooth_presence
from mobility.residence.rules import ResidenceParams, detect_changes

__all__ = ["ResidenceParams", "detect_changes", "smooth_presence"]
