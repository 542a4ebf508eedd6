"""spark-submit entry point: delete personal data older than the agreement's retention period.

spark-submit [--master URL] [--packages io.delta:delta-spark_4.1_2.13:4.4.0] jobs/retention.py \\
    --agreement ID --lake LAKE [--today YYYY-MM-DD] [--side operator|office] [--log-format json]

Each party runs it on its own lake; the operator passes --side operator so that its record stays
in the operator zone rather than in the office/ folder it hands over.
"""

import datetime as dt
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _entry import lake_versions, main, new_parser  # noqa: E402

STAGE = "retention"


def parser():
    p = new_parser(__doc__)
    p.add_argument("--agreement", required=True, help="agreement id or YAML file")
    p.add_argument("--lake", required=True, help="lake root")
    p.add_argument("--today", type=dt.date.fromisoformat,
                   help="reference date, YYYY-MM-DD (default: today); a scheduler passes its logical date")
    p.add_argument("--side", choices=("operator", "office"), default="office",
                   help="which party runs it: its job-run record goes to LAKE/SIDE/job_runs")
    return p


def work(args) -> dict:
    # imported here: the job must parse its arguments even where the library is older
    from mobility.rights.retention import enforce

    report = enforce(args.agreement, args.lake, today=args.today) or {}
    tables = report.get("tables") or {}
    return {"lake": args.lake, "zone": args.side, "cutoff": report.get("cutoff"),
            "inputs": {"today": str(args.today or dt.date.today()), "cutoff": report.get("cutoff")},
            "outputs": sorted(tables),
            # whether each table lost rows, never how many (rights/retention.py); files are not people
            "deleted": {name: t.get("deleted") for name, t in tables.items()},
            "counts": {"files_removed": report.get("files_removed"),
                       "tables": {name: t.get("files_removed") for name, t in tables.items()}},
            "delta_versions": lake_versions(args.lake), "stage_manifest": None}


if __name__ == "__main__":
    main(STAGE, parser(), work)
