"""Runs inside the Tumult Analytics virtual environment (``.venv-tumult``), never in ``.venv``.

``.venv-tumult/bin/python -m bench.tumult_worker --in DIR --out FILE``

Reads ``DIR/changes.parquet`` (one row per residence change, keys already mapped onto the public
domains), ``DIR/domain-<table>.parquet`` and ``DIR/params.json``, answers the flow query of
``bench.peer_accuracy`` with Tumult Analytics and writes every noisy answer to ``FILE`` (Parquet:
budget, rep, table, key columns, count). Imports nothing from ``mobility``: this environment
has pyspark 3.5 and pandas 1.5, which the pipeline does not support.

The privacy unit is the pseudonym: ``AddRowsWithID(id_column="pseudonym")``, and each table's
query enforces ``MaxRowsPerID(1)``, the same bound as the pipeline's one change per pseudonym and
month. Repetitions (``mode``):

* ``separate``: one ``Session.evaluate`` per repetition and table: the plain way, slow (one
  Spark job each).
* ``replicated``: the data copied R times with the pseudonym suffixed by the repetition and the
  repetition added to the group-by keys, one ``evaluate`` per table. Each copy's identifiers are
  distinct, so after ``MaxRowsPerID(1)`` one identifier still moves one cell by at most 1 and
  Tumult calibrates exactly the same per-cell noise as for one copy; the R groups of a cell are
  R independent draws. ``bench.peer_accuracy`` checks this against a few ``separate`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# Java 17 and Spark 3.5: the module openings Spark's own launcher adds, plus Netty's reflection
# flag that Tumult Core's Java 11 config sets (Tumult Analytics installation docs).
JAVA_OPENS = " ".join(
    ["-Dio.netty.tryReflectionSetAccessible=true"]
    + [f"--add-opens=java.base/{m}=ALL-UNNAMED" for m in (
        "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net", "java.nio", "java.util",
        "java.util.concurrent", "java.util.concurrent.atomic", "sun.nio.ch", "sun.nio.cs", "sun.security.action",
        "sun.util.calendar")])


def spark_session():
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]").appName("bench-tumult")
            .config("spark.driver.extraJavaOptions", JAVA_OPENS)
            .config("spark.executor.extraJavaOptions", JAVA_OPENS)
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "3g")
            .config("spark.ui.enabled", "false")
            .getOrCreate())


def budget_of(kind: str, value: float):
    from tmlt.analytics import PureDPBudget, RhoZCDPBudget

    return PureDPBudget(value) if kind == "epsilon" else RhoZCDPBudget(value)


def table_query(source: str, spec: dict, keys, rows_per_id: int):
    from tmlt.analytics import MaxRowsPerID, QueryBuilder

    q = QueryBuilder(source)
    if spec.get("filter"):
        q = q.filter(spec["filter"])
    return q.enforce(MaxRowsPerID(rows_per_id)).groupby(keys).count()


def run(folder: Path, out: Path) -> dict:
    import pandas as pd
    from pyspark.sql import functions as F
    from tmlt.analytics import AddRowsWithID, KeySet, Session

    params = json.loads((folder / "params.json").read_text())
    spark = spark_session()
    spark.sparkContext.setLogLevel("ERROR")
    changes = spark.read.parquet(str(folder / "changes.parquet")).cache()
    changes.count()
    domains = {t: spark.read.parquet(str(folder / f"domain-{t}.parquet")).cache() for t in params["tables"]}
    reps, mode = int(params["repeats"]), params["mode"]
    frames, timings = [], []
    for budget in params["budgets"]:
        # An infinite session budget: the noise depends only on each query's own budget, and the
        # repetitions measure its error distribution (nothing here is a release).
        session_budget = budget_of(budget["kind"], float("inf"))
        per_table = {t: budget["value"] * share for t, share in params["shares"].items()}
        started = time.perf_counter()
        if mode == "replicated":
            copies = spark.range(reps).withColumnRenamed("id", "rep").withColumn("rep", F.col("rep").cast("int"))
            data = (changes.crossJoin(copies)
                    .withColumn("pseudonym", F.concat_ws("#", F.col("pseudonym"), F.col("rep").cast("string"))))
            session = Session.from_dataframe(session_budget, "changes", data,
                                             protected_change=AddRowsWithID(id_column="pseudonym"))
            rep_keys = KeySet.from_dict({"rep": list(range(reps))})
            for table, spec in params["tables"].items():
                keys = KeySet.from_dataframe(domains[table]) * rep_keys
                answer = session.evaluate(table_query("changes", spec, keys, params["rows_per_id"]),
                                          budget_of(budget["kind"], per_table[table])).toPandas()
                frames.append(answer.assign(budget=budget["label"], table=table))
        else:
            session = Session.from_dataframe(session_budget, "changes", changes,
                                             protected_change=AddRowsWithID(id_column="pseudonym"))
            keysets = {t: KeySet.from_dataframe(domains[t]) for t in params["tables"]}
            for rep in range(reps):
                for table, spec in params["tables"].items():
                    answer = session.evaluate(table_query("changes", spec, keysets[table], params["rows_per_id"]),
                                              budget_of(budget["kind"], per_table[table])).toPandas()
                    frames.append(answer.assign(budget=budget["label"], table=table, rep=rep))
        timings.append({"budget": budget["label"], "seconds": round(time.perf_counter() - started, 1)})
    result = pd.concat(frames, ignore_index=True)
    result.to_parquet(out, index=False)
    import pyspark
    import tmlt.analytics

    info = {"tmlt_analytics": tmlt.analytics.__version__, "pyspark": pyspark.__version__, "pandas": pd.__version__,
            "mode": mode, "repeats": reps, "timings": timings, "rows": len(result)}
    spark.stop()
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="folder", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # workers in this venv, not .venv's
    info = run(args.folder, args.out)
    (args.out.with_suffix(".json")).write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
