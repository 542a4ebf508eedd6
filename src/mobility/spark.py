"""The one place a SparkSession is built: Delta on, quiet, local by default, cluster-aware.

Under ``spark-submit`` the master, packages and settings come from the submitter and are
left alone; run as a plain Python program the session is ``local[*]`` with the Delta JVM
package resolved from Maven Central on first use (then cached by Ivy).

Once a lake on object storage has been opened in the process (``mobility.storage``), the session
also gets Hadoop's S3A (``hadoop-aws`` of the Hadoop version Spark bundles, with its AWS SDK), serving
``s3://`` addresses, with the endpoint and region of the AWS_* environment (ADR 0014).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import SparkSession

from mobility import storage
from mobility.errors import StorageError

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
LOG4J_QUIET = Path(__file__).parent / "data" / "log4j2-quiet.properties"
# The throughput collector: a batch job wants the most work per CPU, not short pauses. With G1 the
# anonymization job spent about a quarter more CPU on 2 cores (BENCHMARKS.md). Local runs only:
# the executors run inside this JVM.
LOCAL_JAVA_OPTIONS = ["-XX:+UseParallelGC"]

# Defaults sized for one machine; a cluster overrides them in spark-defaults.conf.
LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": str(max(4, 2 * (os.cpu_count() or 2))),
    # Spark packs small files into read tasks by their size on disk, aiming at one task per core.
    # Gzip files cannot be split and hold about three times their size in text, so 24 monthly CDR
    # files became 3 tasks on 2 cores, one core idle for a third of the read (BENCHMARKS.md).
    # Four tasks per core keep both busy; tiny inputs are still packed (openCostInBytes).
    "spark.sql.files.minPartitionNum": str(4 * (os.cpu_count() or 2)),
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    # Delta replays its log with this many tasks (default 50): tiny tasks dominate on one machine.
    "spark.databricks.delta.snapshotPartitions": str(max(2, os.cpu_count() or 2)),
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": os.environ.get("MOBILITY_DRIVER_MEMORY", "4g"),
}


def _submitted() -> bool:
    """True when launched by spark-submit (which puts the master into the JVM's conf)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or SparkConf().contains("spark.master")


def hadoop_aws_package() -> str:
    """``hadoop-aws`` of the Hadoop version bundled with pyspark (S3A must match Hadoop exactly)."""
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    version = jars[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar") if jars else "3.4.2"
    return f"org.apache.hadoop:hadoop-aws:{version}"


def require_object_store(spark: SparkSession, where: str) -> None:
    """Refuse a lake on object storage in a session built without S3A (built before the lake was opened)."""
    if spark.sparkContext.getConf().get("spark.hadoop.fs.s3.impl", "") != storage.S3A:
        raise StorageError("this Spark session was started without S3A, so it cannot reach a lake on object storage",
                           where=where, hint="open the lake (mobility.lake.Lake) before the first Spark session of "
                                             "the process, or start Spark with the settings of "
                                             "mobility.storage.S3Settings.hadoop_conf() and "
                                             f"--packages {hadoop_aws_package()}")


def get_spark(app_name: str = "mobility", conf: dict[str, str] | None = None) -> SparkSession:
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    object_store = storage.object_store_used()
    submitted = _submitted()
    builder = SparkSession.builder.appName(app_name)
    builder = builder.config("spark.sql.extensions", DELTA_EXTENSION)
    builder = builder.config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    if not submitted:
        # Python workers must import mobility: run them on this interpreter (the project's venv).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(os.environ.get("MOBILITY_SPARK_MASTER", "local[*]"))
        for key, value in LOCAL_DEFAULTS.items():
            builder = builder.config(key, value)
        java_opts = list(LOCAL_JAVA_OPTIONS)
        if not os.environ.get("MOBILITY_SPARK_VERBOSE"):
            java_opts.append(f"-Dlog4j2.configurationFile={LOG4J_QUIET.as_uri()}")
        builder = builder.config("spark.driver.extraJavaOptions", " ".join(java_opts))
        jars = _cached_delta_jars(object_store)
        if jars:  # resolved before: skip Ivy (no network, no resolution chatter)
            builder = builder.config("spark.jars", ",".join(jars))
        else:
            from delta import configure_spark_with_delta_pip

            builder = configure_spark_with_delta_pip(
                builder, extra_packages=[hadoop_aws_package()] if object_store else None)
    else:
        # Session time zone matters for every timestamp we write: pin it unless the submitter did.
        if not SparkConf().contains("spark.sql.session.timeZone"):
            builder = builder.config("spark.sql.session.timeZone", "UTC")
    if object_store:  # under spark-submit the submitter passes hadoop-aws (--packages); the settings are ours
        for key, value in storage.S3Settings.from_env().hadoop_conf().items():
            builder = builder.config(key, value)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("MOBILITY_SPARK_LOG_LEVEL", "ERROR"))
    if object_store and not submitted and not _cached_delta_jars(True):
        _remember_delta_jars(spark, True)  # hadoop-aws and the AWS SDK bundle resolved once
    return spark


@contextmanager
def session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """Set one SQL setting for the frames built (or persisted) inside the block, then restore it."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


@contextmanager
def session_time_zone(spark: SparkSession, zone: str) -> Iterator[None]:
    """Build DataFrames whose time expressions work in ``zone`` (parsing naive text, dates, truncation).

    Spark fixes each expression's zone when the DataFrame is built, so frames built inside the block
    keep ``zone`` after it restores the session's own; this replaces per-row zone conversions.
    """
    with session_conf(spark, "spark.sql.session.timeZone", zone):
        yield


def _jar_cache_file(object_store: bool = False) -> Path:
    from importlib.metadata import version

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mobility"
    with_s3 = "-" + "-".join(hadoop_aws_package().split(":")[1:]) if object_store else ""  # -hadoop-aws-3.4.2
    return cache / f"delta-spark-{version('delta-spark')}{with_s3}-jars.txt"


def _cached_delta_jars(object_store: bool = False) -> list[str]:
    listing = _jar_cache_file(object_store)
    if not listing.is_file():
        return []
    jars = [line for line in listing.read_text().splitlines() if line]
    return jars if jars and all(Path(j).is_file() for j in jars) else []


def _remember_delta_jars(spark: SparkSession, object_store: bool = False) -> None:
    listed = spark.conf.get("spark.jars", "") or ""
    jars = [j.removeprefix("file://").removeprefix("file:") for j in listed.split(",") if j]
    if jars and all(Path(j).is_file() for j in jars):
        _jar_cache_file(object_store).parent.mkdir(parents=True, exist_ok=True)
        _jar_cache_file(object_store).write_text("\n".join(jars) + "\n")


def _warm(object_store: bool = False) -> int:
    """Resolve the Delta JVM package once so later runs work from the Ivy cache (with ``object_store``:
    hadoop-aws and the AWS SDK bundle too, for lakes on object storage; no store is contacted)."""
    if object_store:
        storage.expect_object_store()
    spark = get_spark("mobility-warm")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spark.range(1).write.format("delta").save(tmp + "/t")
        assert spark.read.format("delta").load(tmp + "/t").count() == 1
    _remember_delta_jars(spark, object_store)
    spark.stop()
    print("Spark", spark.version, "with Delta Lake" + (" and S3A" if object_store else ""), "is ready.")
    return 0


if __name__ == "__main__":
    if "--warm" in sys.argv:
        raise SystemExit(_warm())
    if "--warm-object-store" in sys.argv:
        raise SystemExit(_warm(object_store=True))
