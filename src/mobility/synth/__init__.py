"""Synthetic operator extracts (CDR, cells, subscribers, payments) with their ground truth.

``generate`` writes a reproducible population of stayers, migrants, travellers, immigrants and
inbound roamers, with injected data faults, under one folder: one operator's delivery, or (``operators``)
a delivery per operator with each its market share, plus the people's truth; see docs/synthetic.md.
"""

from mobility.synth.generator import SynthSummary, generate

__all__ = ["SynthSummary", "generate"]
