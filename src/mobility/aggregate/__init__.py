"""Aggregation: exact counts on public domains, handed only to the release boundary.

``domains`` builds the public domains (no data read); ``flows`` counts long-term residence
changes per crossing month in Spark. The release orchestration is ``mobility.release.flows``.
"""
