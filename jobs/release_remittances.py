"""spark-submit entry point: publish the remittance tables of one month.

spark-submit [--master URL] [--packages io.delta:delta-spark_4.1_2.13:4.4.0] jobs/release_remittances.py \\
    --agreement ID --lake LAKE --period YYYY-MM [--by ...] (--epsilon E | --rho R | --rho plan) \\
    --purpose TEXT --requested-by NAME [--log-format json]

The release id is derived from the request, so a retried run returns the stored release
instead of drawing new noise or charging the budget again.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _entry import main  # noqa: E402
from _release import planned_rho, release_parser, release_summary  # noqa: E402

STAGE = "release-remittances"


def parser():
    return release_parser(__doc__)


def work(args) -> dict:
    # imported here: the job must parse its arguments even where the library is older
    from mobility.release.remittances import release_remittances

    agreement, rho = planned_rho(args, "remittances")
    result = release_remittances(agreement, args.lake, args.period, purpose=args.purpose,
                                 requested_by=args.requested_by, epsilon=args.epsilon, rho=rho, by=args.by)
    return release_summary(args, result)


if __name__ == "__main__":
    main(STAGE, parser(), work)
