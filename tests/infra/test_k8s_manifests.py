"""Kubernetes manifests: valid YAML, the Spark operator's required fields, a job that exists with
arguments its own parser accepts, and the key secret only on the operator side's driver."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infra_helpers import JOBS, REPO, parse_job_args

K8S = REPO / "infra" / "k8s"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
# Sample values for the ${...} placeholders a scheduler fills with envsubst.
PLACEHOLDERS = {"RUN_MONTH": "2026-02", "PERIOD": "2024-09", "TODAY": "2026-03-05"}
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label


def documents(path: Path) -> list[dict]:
    text = path.read_text()
    for name, value in PLACEHOLDERS.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, f"{path}: a placeholder with no sample value"
    return [d for d in yaml.safe_load_all(text) if d is not None]


def spark_apps() -> list[tuple[Path, dict]]:
    return [(p, d) for p in MANIFESTS for d in documents(p) if d.get("kind") == "SparkApplication"]


def test_every_stage_has_a_manifest():
    stages = {Path(d["spec"]["mainApplicationFile"]).stem for _, d in spark_apps()}
    jobs = {p.stem for p in JOBS.glob("*.py") if not p.stem.startswith("_")}
    assert stages == jobs


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_parses_with_api_version_kind_and_name(path):
    docs = documents(path)
    assert docs
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), path
        assert NAME.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63, doc["metadata"]


@pytest.mark.parametrize("path,app", spark_apps(), ids=lambda x: x.name if isinstance(x, Path) else "")
def test_spark_application_is_complete_and_its_arguments_parse(path, app):
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    spec = app["spec"]
    for field in ("type", "mode", "image", "mainApplicationFile", "sparkVersion", "arguments", "driver",
                  "executor", "restartPolicy"):
        assert field in spec, (path, field)
    assert spec["type"] == "Python" and spec["mode"] == "cluster"
    job = Path(spec["mainApplicationFile"].removeprefix("local://")).stem
    assert spec["mainApplicationFile"] == f"local:///opt/mobility/jobs/{job}.py"
    assert (JOBS / f"{job}.py").is_file()
    args = parse_job_args(job, [str(a) for a in spec["arguments"]])  # raises on an argument the job does not take
    if job == "retention":  # its job-run record stays with the party that ran it
        assert args.side == path.parent.name
    for role in ("driver", "executor"):
        assert spec[role]["cores"] >= 1 and re.fullmatch(r"\d+[mg]", spec[role]["memory"]), (path, role)
    assert spec["driver"]["serviceAccount"]
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for role in ("driver", "executor"):  # the lake at the same path on driver and executors
        mounts = {m["name"]: m["mountPath"] for m in spec[role].get("volumeMounts", [])}
        assert set(mounts) <= volumes and mounts.get("lake") == "/data/lake", (path, role)


def secret_refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["secretKeyRef"]["name"]] if "secretKeyRef" in node else []
        return found + [s for v in node.values() for s in secret_refs(v)]
    if isinstance(node, list):
        return [s for v in node for s in secret_refs(v)]
    return []


def test_the_key_reaches_only_the_operator_side_anonymization_driver():
    for path, app in spark_apps():
        namespace = app["metadata"]["namespace"]
        job = Path(app["spec"]["mainApplicationFile"]).stem
        assert namespace == ("mobility-operator" if path.parent.name == "operator" else "mobility-office"), path
        assert not secret_refs(app["spec"]["executor"]), path
        expected = ["mobility-key"] if job == "anonymize" else []
        assert secret_refs(app["spec"]["driver"]) == expected, path
    office = [d for p in (K8S / "office").glob("*.yaml") for d in documents(p)]
    assert not any(d.get("kind") == "Secret" for d in office)
    assert not any("secrets" in str(rule.get("resources")) for d in office if d.get("kind") == "Role"
                   for rule in d.get("rules", []))
