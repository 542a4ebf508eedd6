"""spark-submit entry point: publish the migration flows of one crossing month.

spark-submit [--master URL] [--packages io.delta:delta-spark_4.1_2.13:4.4.0] jobs/release_flows.py \\
    --agreement ID --lake LAKE --period YYYY-MM [--by sex,age_band] (--epsilon E | --rho R | --rho plan) \\
    --purpose TEXT --requested-by NAME [--release-id ID] [--log-format json]

Without --release-id the id is derived from the request, so a retried run returns the stored
release instead of drawing new noise or charging the budget again.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _entry import main  # noqa: E402
from _release import planned_rho, release_parser, release_summary  # noqa: E402

STAGE = "release-flows"


def parser():
    p = release_parser(__doc__)
    p.add_argument("--release-id", help="default: derived from agreement, period, purpose, --by and budget")
    return p


def work(args) -> dict:
    from mobility.release.flows import release_flows

    agreement, rho = planned_rho(args, "flows")
    result = release_flows(agreement, args.lake, args.period, purpose=args.purpose,
                           requested_by=args.requested_by, epsilon=args.epsilon, rho=rho, by=args.by,
                           release_id=args.release_id)
    return release_summary(args, result)


if __name__ == "__main__":
    main(STAGE, parser(), work)
