"""Load the Airflow DAG file without Airflow: a stand-in ``airflow`` package that records the DAG's
arguments, its tasks and their dependencies (the structural test runs wherever pytest does)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


class Recorder:
    def __init__(self):
        self.dag: dict = {}
        self.tasks: dict[str, dict] = {}
        self.edges: set[tuple[str, str]] = set()


class _Task:
    def __init__(self, rec: Recorder, **kwargs):
        self.rec, self.task_id = rec, kwargs["task_id"]
        rec.tasks[self.task_id] = {**rec.dag.get("default_args", {}), **kwargs}

    def __rshift__(self, other):
        for target in other if isinstance(other, list) else [other]:
            self.rec.edges.add((self.task_id, target.task_id))
        return other

    def __rrshift__(self, other):  # [a, b] >> c
        for source in other:
            self.rec.edges.add((source.task_id, self.task_id))
        return self


def load_dag_module(path: Path) -> tuple[types.ModuleType, Recorder]:
    rec = Recorder()

    class DAG:
        def __init__(self, **kwargs):
            rec.dag.update(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def bash_operator(**kwargs):
        return _Task(rec, **kwargs)

    fakes = {"airflow": types.ModuleType("airflow"), "airflow.sdk": types.ModuleType("airflow.sdk"),
             "airflow.providers": types.ModuleType("airflow.providers"),
             "airflow.providers.standard": types.ModuleType("airflow.providers.standard"),
             "airflow.providers.standard.operators": types.ModuleType("airflow.providers.standard.operators"),
             "airflow.providers.standard.operators.bash": types.ModuleType("bash")}
    fakes["airflow.sdk"].DAG = DAG
    fakes["airflow.providers.standard.operators.bash"].BashOperator = bash_operator
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        spec = importlib.util.spec_from_file_location("mobility_dag_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module, rec
