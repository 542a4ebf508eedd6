"""Releases: read the office zone, count exactly on public domains, hand over to the release boundary.

``request`` checks what every release shares (period, purpose, budget, breakdowns, release id);
``flows`` and ``remittances`` are the two kinds of release. Each ends in
``mobility.privacy_budget.boundary.publish``, the only code that charges the ledger and draws noise.
"""

from mobility.release.flows import release_flows
from mobility.release.remittances import release_remittances

__all__ = ["release_flows", "release_remittances"]
