"""The register of processing (General Comment No. 16, para. 10): who controls which files, for what.

Everything comes from the agreement: controllers, purposes, data categories per zone, legal basis
and retention period. Nothing here needs a key, Spark or a lake.
"""

from __future__ import annotations

from pathlib import Path

from mobility.config import Agreement, DataZone, as_agreement
from mobility.rights import log

# UN Human Rights Committee, General Comment No. 16 (1988) on Article 17 ICCPR, paragraph 10.
LEGAL_REFERENCE = "UN Human Rights Committee, General Comment No. 16 (1988), paragraph 10"
# Which controller roles control (or may control) the files of each zone.
ZONE_ROLES: dict[DataZone, tuple[str, ...]] = {
    "operator_zone": ("operator", "joint_controller", "processor"),
    "office_zone": ("statistics_office", "joint_controller", "processor"),
    "releases": ("statistics_office", "joint_controller"),
}
ZONE_NAMES = {
    "operator_zone": "operator zone (on the operator's premises; raw numbers, the key)",
    "office_zone": "office zone (pseudonymized and minimized records at the statistics office)",
    "releases": "published releases (differentially private aggregates only, no individual record)",
}
RELEASES_STATEMENT = ("Published releases hold only differentially private aggregate counts: no individual "
                      "record, number or pseudonym is in them, and no person can be looked up in them.")


def controllers_of(agreement: Agreement, zone: DataZone) -> list[dict]:
    roles = ZONE_ROLES[zone]
    return [c.model_dump() for c in agreement.controllers if c.role in roles]


def auditors(agreement: Agreement) -> list[dict]:
    return [c.model_dump() for c in agreement.controllers if c.role == "auditor"]


def describe(agreement: Agreement) -> dict:
    return {
        "agreement_id": agreement.agreement_id,
        "reference": LEGAL_REFERENCE,
        "operator": agreement.operator,
        "controllers": [c.model_dump() for c in agreement.controllers],
        "purposes": [p.model_dump() for p in agreement.purposes],
        "legal_basis": agreement.legal_basis,
        "retention_days": agreement.retention_days,
        "zones": {zone: {"description": ZONE_NAMES[zone],
                         "data_categories": list(agreement.data_categories.get(zone, [])),
                         "controlled_by": controllers_of(agreement, zone),
                         "may_be_inspected_by": auditors(agreement)}
                  for zone in ZONE_ROLES},
        "releases": RELEASES_STATEMENT,
        "valid_from": agreement.valid_from.isoformat() if agreement.valid_from else None,
        "valid_to": agreement.valid_to.isoformat() if agreement.valid_to else None,
    }


def registry(agreement, lake_root: str | Path | None = None) -> dict:
    """The register as a JSON-ready dict; recorded in the lake's rights log when a lake is given."""
    agreement = as_agreement(agreement)
    view = describe(agreement)
    log.record(lake_root, "registry", agreement.agreement_id, "done")
    return view


def text(view: dict) -> str:
    lines = [f"Register of processing under agreement {view['agreement_id']} ({view['reference']})",
             f"Operator: {view['operator']}", "", "Who controls the files:"]
    lines += [f"  - {c['name']} ({c['role'].replace('_', ' ')}), contact {c['contact']}" for c in view["controllers"]]
    lines += ["", "Why the data is processed (declared purposes):"]
    lines += [f"  - {p['id']}: {p['description']}" for p in view["purposes"]]
    lines += ["", f"Legal basis: {view['legal_basis']}",
              f"Retention: personal data is deleted {view['retention_days']} days after the event it records.",
              "", "What is held where:"]
    for zone in view["zones"].values():
        who = ", ".join(c["name"] for c in zone["controlled_by"]) or "no controller declared"
        lines.append(f"  {zone['description']}")
        lines.append(f"    categories: {', '.join(zone['data_categories']) or 'none declared'}")
        lines.append(f"    controlled by: {who}")
        if zone["may_be_inspected_by"]:
            lines.append(f"    may be inspected by: {', '.join(c['name'] for c in zone['may_be_inspected_by'])}")
    lines += ["", view["releases"]]
    return "\n".join(lines)
