#!/usr/bin/env bash
# Container entry point for Spark on Kubernetes (the Spark operator starts the driver pod with
# "driver ARGS" and Spark starts executor pods with "executor"); anything else runs as given,
# e.g. `docker run IMAGE spark-submit --master local[2] jobs/residence.py ...`.
set -euo pipefail

case "${1:-}" in
  driver)
    shift
    # The driver binds to its pod address; Kubernetes passes it in SPARK_DRIVER_BIND_ADDRESS.
    exec "${SPARK_HOME}/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # Options Spark hands over as SPARK_JAVA_OPT_0, _1, ... in order.
    java_opts=()
    while IFS='=' read -r name _; do
      java_opts+=("${!name}")
    done < <(env | grep -E '^SPARK_JAVA_OPT_[0-9]+=' | sort -t_ -k4 -n)
    exec "${JAVA_HOME}/bin/java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
      -cp "${SPARK_HOME}/conf:${SPARK_HOME}/jars/*:/opt/mobility/jars/*" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
