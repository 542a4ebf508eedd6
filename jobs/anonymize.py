"""spark-submit entry point: operator-side anonymization.

spark-submit [--master URL] jobs/anonymize.py --agreement conf/agreements/ID.yaml --input DIR --lake LAKE [--run-id RUN]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _entry import main  # noqa: E402


def work() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agreement", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--run-id")
    args = parser.parse_args()
    from mobility.anonymize.job import run

    result = run(args.agreement, args.input, args.lake, run_id=args.run_id)
    return {"run_id": result.run_id, "totals": result.manifest["totals"], "manifest": str(result.manifest_path)}


if __name__ == "__main__":
    main("anonymize", work)
