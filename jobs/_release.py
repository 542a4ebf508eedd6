"""Arguments and summary shared by the release jobs (flows, remittances)."""

from __future__ import annotations

from _entry import new_parser


def release_parser(description: str):
    p = new_parser(description)
    p.add_argument("--agreement", required=True, help="agreement id or YAML file")
    p.add_argument("--lake", required=True, help="lake root")
    p.add_argument("--period", required=True, help="month released, YYYY-MM")
    p.add_argument("--by", help="comma list of breakdowns, e.g. sex,age_band")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--epsilon", type=float, help="pure epsilon-DP budget (discrete Laplace)")
    budget.add_argument("--rho", type=float, help="rho-zCDP budget (discrete Gaussian)")
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
            "inputs": m.get("input_versions", {}),
            "outputs": [f"releases/{result.release_id}"],
            "counts": {"tables": {n: t.get("rows") for n, t in tables.items()}},
            "delta_versions": m.get("input_versions", {}),
            "stage_manifest": str(result.path / "manifest.json")}
