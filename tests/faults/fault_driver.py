"""The crash tests' child process: run one stage here, to be SIGKILLed at ``MOBILITY_FAULT``.

``python fault_driver.py STAGE ARGS_JSON``. Spark stages get a session sized for tiny inputs (two
shuffle partitions, a small heap, a JIT that starts fast): the child is started once per cell and
killed, so its start-up is most of its cost. Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPARK_STAGES = ("anonymize", "residence", "flows", "erase", "retention")


def small_spark():
    from mobility.spark import LOCAL_JAVA_OPTIONS, LOG4J_QUIET, get_spark

    java = [*LOCAL_JAVA_OPTIONS, "-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={LOG4J_QUIET.as_uri()}"]
    return get_spark("mobility-fault", {
        "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
        "spark.sql.files.minPartitionNum": "2", "spark.databricks.delta.snapshotPartitions": "1",
        "spark.driver.memory": "1g", "spark.driver.extraJavaOptions": " ".join(java)})


def main(stage: str, args: dict) -> None:
    spark = small_spark() if stage in SPARK_STAGES else None
    if stage == "anonymize":
        from mobility.anonymize.job import run

        run(args["agreement"], args["input"], args["lake"], spark=spark)
    elif stage == "residence":
        from mobility.residence.job import run as residence

        residence(args["agreement"], args["lake"], spark=spark)
    elif stage == "flows":  # the real command, as an operator types it
        from mobility.cli import main as cli

        cli(["release", "flows", "--agreement", args["agreement"], "--lake", args["lake"], "--period", args["period"],
             "--rho", str(args["rho"]), "--purpose", "migration-statistics", "--requested-by", "fault tests"],
            standalone_mode=False)
    elif stage == "annual":
        from mobility.publish.annual import build_annual

        build_annual(args["lake"], args["year"], args["agreement"])
    elif stage == "export":
        from mobility.publish.export import export_release

        export_release(args["lake"], args["release_id"], args["format"], args["out"])
    elif stage == "erase":
        from mobility.rights.erase import erase

        erase(args["agreement"], args["lake"], msisdn=args["msisdn"], spark=spark)
    elif stage == "retention":
        from mobility.rights.retention import enforce

        enforce(args["agreement"], args["lake"], today=dt.date.fromisoformat(args["today"]), spark=spark)
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
