"""spark-submit entry point: operator-side anonymization (runs where the key is).

spark-submit [--master URL] [--packages io.delta:delta-spark_4.1_2.13:4.4.0] jobs/anonymize.py \\
    --agreement conf/agreements/ID.yaml --input DIR --lake LAKE [--run-id RUN] [--log-format json]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _entry import main, new_parser  # noqa: E402

STAGE = "anonymize"


def parser():
    p = new_parser(__doc__)
    p.add_argument("--agreement", required=True, help="agreement id or YAML file")
    p.add_argument("--input", required=True, help="operator extract folder (cdr/, cells/, subscribers/, payments/)")
    p.add_argument("--lake", required=True, help="lake root")
    p.add_argument("--run-id", help="default: derived from the agreement and the input files' fingerprints")
    return p


def work(args) -> dict:
    from mobility.anonymize.job import run

    result = run(args.agreement, args.input, args.lake, run_id=args.run_id)
    m = result.manifest
    return {"lake": args.lake, "zone": "operator", "run_id": result.run_id, "already_done": result.already_done,
            "inputs": {"folder": str(args.input), "files": len(m.get("files", [])),
                       "skipped_files": len(m.get("skipped_files", []))},
            "outputs": ["office/events", "office/subscribers", "office/payments", "operator/quarantine"],
            "counts": m.get("totals", {}), "delta_versions": m.get("office_versions", {}),
            "stage_manifest": str(result.manifest_path)}


if __name__ == "__main__":
    main(STAGE, parser(), work)
