"""spark-submit entry point: publish the migration flows of one crossing month.

spark-submit [--master URL] jobs/release_flows.py --agreement ID --lake LAKE --period YYYY-MM
    [--by sex,age_band] (--epsilon E | --rho R) --purpose TEXT --requested-by NAME [--release-id ID]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _entry import main  # noqa: E402


def work() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agreement", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--period", required=True)
    parser.add_argument("--by")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--epsilon", type=float)
    budget.add_argument("--rho", type=float)
    parser.add_argument("--purpose", required=True)
    parser.add_argument("--requested-by", required=True)
    parser.add_argument("--release-id")
    args = parser.parse_args()
    from mobility.release_job import release_flows

    result = release_flows(args.agreement, args.lake, args.period, purpose=args.purpose,
                           requested_by=args.requested_by, epsilon=args.epsilon, rho=args.rho, by=args.by,
                           release_id=args.release_id)
    privacy = result.manifest["privacy"]
    return {"release_id": result.release_id, "path": str(result.path), "reused": result.reused,
            "mechanism": result.manifest["mechanism"], "rho": privacy["rho"], "epsilon": privacy["epsilon"],
            "error_bound_95": {n: t["error_bound_95"] for n, t in result.manifest["tables"].items()}}


if __name__ == "__main__":
    main("release-flows", work)
