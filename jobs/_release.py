"""Arguments and summary shared by the release jobs (flows, remittances)."""

from __future__ import annotations

import argparse

from _entry import new_parser

PLAN = "plan"


def _rho(value: str):
    """A number, or "plan" (resolved under the agreement by ``planned_rho`` before the request is built)."""
    if value == PLAN:
        return PLAN
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor {PLAN!r}") from None


def planned_rho(args, kind: str):
    """(agreement, rho): with ``--rho plan`` the loaded agreement and the float the budget plan gives ``kind``
    (the release id derives from that float, so a retry finds the same release); else both as given."""
    if args.rho != PLAN:
        return args.agreement, args.rho
    from mobility.config import as_agreement
    from mobility.privacy_budget.plan import planned_rho as plan_rho

    agreement = as_agreement(args.agreement)
    return agreement, plan_rho(agreement, kind)


def release_parser(description: str):
    p = new_parser(description)
    p.add_argument("--agreement", required=True, help="agreement id or YAML file")
    p.add_argument("--lake", required=True, help="lake root")
    p.add_argument("--period", required=True, help="month released, YYYY-MM")
    p.add_argument("--by", help="comma list of breakdowns, e.g. sex,age_band")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--epsilon", type=float, help="pure epsilon-DP budget (discrete Laplace)")
    budget.add_argument("--rho", type=_rho, help="rho-zCDP budget (discrete Gaussian), or 'plan': the rho "
                                                  "`mobility budget plan` gives this release kind")
    p.add_argument("--purpose", required=True, help="one of the agreement's declared purpose ids")
    p.add_argument("--requested-by", required=True, help="who asked for the release (name or role)")
    return p


def release_summary(args, result) -> dict:
    """Only public facts: the release id, its cost and table sizes; never a count, noisy or exact."""
    m = result.manifest
    privacy = m.get("privacy", {})
    tables = m.get("tables", {})
    return {"lake": args.lake, "zone": "office", "release_id": result.release_id, "reused": result.reused,
            "mechanism": m.get("mechanism"), "rho": privacy.get("rho"), "epsilon": privacy.get("epsilon"),
            "budget_from": "plan" if getattr(args, "rho", None) == PLAN else "command line",
            "inputs": m.get("input_versions", {}),
            "outputs": [f"releases/{result.release_id}"],
            "counts": {"tables": {n: t.get("rows") for n, t in tables.items()}},
            "delta_versions": m.get("input_versions", {}),
            "stage_manifest": str(result.path / "manifest.json")}
