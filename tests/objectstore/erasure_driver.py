"""Run by test_erasure_s3.py in a fresh interpreter (its own Spark JVM, built with S3A): anonymize and residence
on a lake on S3 and a local lake, erase one person on both, copy every object of the S3 lake to a local folder
(for the test to scan), then retention on both; a digest of every table of both lakes after each step.

    python erasure_driver.py AGREEMENT INPUT S3_LAKE LOCAL_LAKE OUT_DIR TODAY

Writes OUT_DIR/result.json (the erased person's number and pseudonym included: test data) and OUT_DIR/after-erase/.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import sys
from pathlib import Path

from pipeline_driver import command

TABLES = ("office/events", "office/subscribers", "office/payments", "office/presence", "office/home_cells",
          "office/residence_changes", "operator/quarantine", "operator/suppression")


def digest(spark, uri: str) -> dict:
    frame = spark.read.format("delta").load(uri).toPandas()
    frame = frame.sort_values(list(frame.columns)).reset_index(drop=True).astype(str)
    return {"rows": len(frame), "sha256": hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()}


def person(agreement_path: str, input_dir: str) -> tuple[str, str, str]:
    """The first subscriber of the input with a valid number: (number as delivered, E.164, pseudonym)."""
    import pandas as pd

    from mobility.anonymize.pseudonymize import to_e164
    from mobility.config import load_agreement
    from mobility.rights.subject import resolve

    frames = []
    for path in sorted((Path(input_dir) / "subscribers").glob("*.csv*")):
        with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as fh:
            frames.append(pd.read_csv(fh, dtype=str, keep_default_na=False))
    number = next(m for m in pd.concat(frames)["msisdn"] if to_e164(m, "PH"))
    return number, str(to_e164(number, "PH")), resolve(load_agreement(agreement_path), msisdn=number).pseudonym


def main() -> None:
    agreement, input_dir, s3_lake, local_lake, out, today = sys.argv[1:7]
    out_dir = Path(out)
    lakes = (s3_lake, local_lake)
    codes: dict[str, int] = {}
    for lake in lakes:  # the S3 lake first: the Spark session is then built with S3A
        common = ["--agreement", agreement, "--lake", lake]
        codes[f"anonymize {lake}"] = command(["anonymize", *common, "--input", input_dir])
        codes[f"residence {lake}"] = command(["residence", *common])
    number, e164, pseudonym = person(agreement, input_dir)
    from mobility.spark import get_spark

    spark = get_spark()

    def tables() -> dict:
        return {t: {lake: digest(spark, f"{lake}/{t}") for lake in lakes} for t in TABLES}

    def rows_of_person() -> dict:
        from pyspark.sql import functions as F

        return {lake: spark.read.format("delta").load(f"{lake}/office/events")
                .where(F.col("pseudonym") == pseudonym).count() for lake in lakes}

    before = rows_of_person()
    for lake in lakes:
        codes[f"erase {lake}"] = command(["rights", "erase", "--agreement", agreement, "--lake", lake,
                                          "--msisdn", number, "--json"])
    after_erase = tables()
    from mobility.lake import Lake

    root = Lake(s3_lake).root
    root.fs.get(root.path + "/", str(out_dir / "after-erase") + "/", recursive=True)  # type: ignore[attr-defined]
    for lake in lakes:
        codes[f"retention {lake}"] = command(["retention", "enforce", "--agreement", agreement, "--lake", lake,
                                              "--today", today])
    result = {"codes": codes, "number": number, "e164": e164, "pseudonym": pseudonym, "before": before,
              "after_erase": after_erase, "after_retention": tables(), "today": today,
              "finished": dt.datetime.now().isoformat()}
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
