"""Run by test_pipeline_s3.py in a fresh interpreter: the `mobility` commands against a lake on S3 and a
local lake, in one process (one Spark JVM), then a digest of every office table of both lakes.

    python pipeline_driver.py AGREEMENT INPUT S3_LAKE LOCAL_LAKE RESULT_JSON

The S3 lake goes first: the Spark session is built after a lake on object storage was opened, so it
has S3A. Prints nothing of its own; writes RESULT_JSON.
"""

from __future__ import annotations

import hashlib
import json
import sys

RELEASE = ["--period", "2023-01", "--rho", "0.5", "--by", "sex,age_band", "--purpose", "migration-statistics",
           "--requested-by", "objectstore-test"]
OFFICE_TABLES = ("events", "subscribers", "payments", "presence", "home_cells", "residence_changes")
OPERATOR_TABLES = ("quarantine",)


def command(args: list[str]) -> int:
    from mobility.cli import main

    try:
        main(args, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def digest(spark, uri: str) -> dict:
    frame = spark.read.format("delta").load(uri).toPandas()
    frame = frame.sort_values(list(frame.columns)).reset_index(drop=True).astype(str)
    return {"rows": len(frame), "sha256": hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()}


def main() -> None:
    agreement, input_dir, s3_lake, local_lake, out = sys.argv[1:6]
    codes: dict[str, int] = {}
    for lake in (s3_lake, local_lake):
        common = ["--agreement", agreement, "--lake", lake]
        codes[f"anonymize {lake}"] = command(["anonymize", *common, "--input", input_dir])
        codes[f"residence {lake}"] = command(["residence", *common])
    common = ["--agreement", agreement, "--lake", s3_lake]
    codes["release flows"] = command(["release", "flows", *common, *RELEASE])
    codes["release flows again"] = command(["release", "flows", *common, *RELEASE])  # returns the stored one
    from mobility.spark import get_spark

    spark = get_spark()
    tables = {f"{zone}/{name}": {lake: digest(spark, f"{lake}/{zone}/{name}") for lake in (s3_lake, local_lake)}
              for zone, names in (("office", OFFICE_TABLES), ("operator", OPERATOR_TABLES)) for name in names}
    conf = spark.sparkContext.getConf()
    result = {"codes": codes, "tables": tables, "s3a": conf.get("spark.hadoop.fs.s3.impl", ""),
              "jars": [j for j in conf.get("spark.jars", "").split(",") if "hadoop-aws" in j]}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
