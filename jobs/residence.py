"""spark-submit entry point: residence inference on the office zone.

spark-submit [--master URL] jobs/residence.py --agreement ID --lake LAKE [--through YYYY-MM]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _entry import main  # noqa: E402


def work() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agreement", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--through")
    args = parser.parse_args()
    from mobility.residence.job import run

    result = run(args.agreement, args.lake, through=args.through)
    return {"run_id": result.run_id, "changes": result.manifest["changes"], "manifest": str(result.manifest_path)}


if __name__ == "__main__":
    main("residence", work)
