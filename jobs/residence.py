"""spark-submit entry point: residence inference on the office zone.

spark-submit [--master URL] [--packages io.delta:delta-spark_4.1_2.13:4.4.0] jobs/residence.py \\
    --agreement ID --lake LAKE [--through YYYY-MM] [--rebuild] [--log-format json]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _entry import main, new_parser  # noqa: E402

STAGE = "residence"


def parser():
    p = new_parser(__doc__)
    p.add_argument("--agreement", required=True, help="agreement id or YAML file")
    p.add_argument("--lake", required=True, help="lake root")
    p.add_argument("--through", help="last month of events to use, YYYY-MM (default: all completed runs)")
    p.add_argument("--rebuild", action="store_true",
                   help="recompute every month from the events (default: only months delivered since the last run)")
    return p


def work(args) -> dict:
    from mobility.residence.job import run

    result = run(args.agreement, args.lake, through=args.through, rebuild=bool(getattr(args, "rebuild", False)))
    m = result.manifest
    versions = m.get("office_versions", {})
    return {"lake": args.lake, "zone": "office", "run_id": result.run_id, "data_end": m.get("data_end"),
            "mode": m.get("mode"), "recomputed_months": m.get("recomputed_months"),
            "inputs": {"office/events": versions.get("events")},
            "outputs": ["office/presence", "office/home_cells", "office/residence_changes"],
            # no counts: how many people or changes stays in the office tables (docs/auditor-guide.md)
            "delta_versions": versions, "stage_manifest": str(result.manifest_path)}


if __name__ == "__main__":
    main(STAGE, parser(), work)
