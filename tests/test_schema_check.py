"""The manifest checkers in schema_check pass valid manifests and name each problem in broken ones."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from schema_check import argo_cron_workflow_problems, kubernetes_cronjob_problems, kubernetes_versions

Mutation = Callable[[dict[str, Any]], None]


def _container(step: str) -> dict[str, Any]:
    return {"image": "ghcr.io/example/project:1.0", "workingDir": "/app",
            "command": ["python", "flows/quickstart.py"], "args": ["run", "--until", step],
            "env": [{"name": "NBFLOW_LOG", "value": "info"}],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}


def argo_doc() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "nbflow-quickstart", "labels": {"app.kubernetes.io/name": "nbflow"}},
        "spec": {
            "schedules": ["0 2 * * *"],
            "timezone": "Europe/Paris",
            "concurrencyPolicy": "Forbid",
            "workflowSpec": {
                "entrypoint": "flow",
                "templates": [
                    {"name": "flow", "dag": {"tasks": [
                        {"name": "load", "template": "load"},
                        {"name": "train", "template": "train", "dependencies": ["load"]},
                    ]}},
                    {"name": "load", "container": _container("load")},
                    {"name": "train", "container": _container("train"), "retryStrategy": {"limit": "2"},
                     "activeDeadlineSeconds": 600},
                ],
            },
        },
    }


def kubernetes_doc() -> dict[str, Any]:
    container = {"name": "flow", **_container("train")}
    container["resources"] = {"limits": {"cpu": 1, "memory": "2Gi"}}  # a number is a valid quantity
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nbflow-quickstart", "labels": {"app.kubernetes.io/name": "nbflow"}},
        "spec": {
            "schedule": "0 2 * * *",
            "timeZone": "Europe/Paris",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [container]}}}},
        },
    }


def _walk(doc: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parents:
        doc = doc[part]
    return doc, last


def put(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        parent, key = _walk(doc, path)
        parent[key] = value
    return mutate


def drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        parent, key = _walk(doc, path)
        del parent[key]
    return mutate


def rename(path: str, new: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        parent, key = _walk(doc, path)
        parent[new] = parent.pop(key)
    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        for m in mutations:
            m(doc)
    return mutate


def mutated(doc: dict[str, Any], mutation: Mutation) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    mutation(doc)
    return doc


# -- Argo -----------------------------------------------------------------------------------------------
WF = "spec.workflowSpec"
TEMPLATES = f"{WF}.templates"
TASKS = f"{TEMPLATES}.0.dag.tasks"


def test_valid_argo_cron_workflow_passes() -> None:
    doc = argo_doc()
    assert argo_cron_workflow_problems(doc) == []
    assert argo_cron_workflow_problems(yaml.safe_load(yaml.safe_dump(doc))) == []


def test_argo_image_may_come_from_template_defaults() -> None:
    doc = mutated(argo_doc(), both(drop(f"{TEMPLATES}.1.container.image"),
                                   put(f"{WF}.templateDefaults", {"container": {"image": "python:3.11"}})))
    assert argo_cron_workflow_problems(doc) == []


@pytest.mark.parametrize(("mutation", "expected"), [
    # misspelled keys, at every depth
    pytest.param(rename("metadata", "metdata"), ["metdata: unknown key", "metadata: required key missing"],
                 id="top"),
    pytest.param(put("spec.schedual", "0 3 * * *"), ["spec.schedual: unknown key"], id="spec"),
    pytest.param(rename(f"{TEMPLATES}.1.container", "containr"),
                 [f"{TEMPLATES}[1].containr: unknown key"], id="template"),
    pytest.param(rename(f"{TASKS}.1.dependencies", "dependecies"),
                 [f"{TEMPLATES}[0].dag.tasks[1].dependecies: unknown key"], id="dag-task"),
    pytest.param(put(f"{TEMPLATES}.2.container.env.0.valeu", "x"),
                 [f"{TEMPLATES}[2].container.env[0].valeu: unknown key"], id="container-env"),
    # the Python names of the fields are not YAML keys
    pytest.param(rename("spec.concurrencyPolicy", "concurrency_policy"),
                 ["spec.concurrency_policy: unknown key"], id="snake-case"),
    # Argo v4 has only `schedules`
    pytest.param(rename("spec.schedules", "schedule"),
                 ["spec.schedules: required key missing", "spec.schedule: unknown key"],
                 id="legacy-schedule"),
    pytest.param(put("spec.schedules", []), ["spec.schedules: must hold at least one cron schedule"],
                 id="no-schedule"),
    # wrong types
    pytest.param(put("spec.schedules", "0 2 * * *"), ["spec.schedules: expected list, got str"],
                 id="schedules-str"),
    pytest.param(put("spec.timezone", 1), ["spec.timezone: expected str, got int"], id="timezone-int"),
    pytest.param(put("spec.suspend", "true"), ["spec.suspend: expected bool, got str"], id="bool-str"),
    pytest.param(put(f"{TASKS}.1.dependencies", "load"),
                 [f"{TEMPLATES}[0].dag.tasks[1].dependencies: expected list, got str"], id="deps-str"),
    pytest.param(put(f"{TEMPLATES}.2.retryStrategy.limit", [2]),
                 [f"{TEMPLATES}[2].retryStrategy.limit: expected str or int, got list"], id="int-or-string"),
    pytest.param(put(f"{TEMPLATES}.1.container", ["python"]),
                 [f"{TEMPLATES}[1].container: expected dict, got list"], id="container-list"),
    # missing required values
    pytest.param(drop(f"{TEMPLATES}.1.container.image"),
                 [f"{TEMPLATES}[1].container.image: required key missing"], id="no-image"),
    pytest.param(drop(WF), [f"{WF}: required key missing"], id="no-workflow-spec"),
    pytest.param(drop(f"{TASKS}.1.name"), [f"{TEMPLATES}[0].dag.tasks[1].name: required key missing"],
                 id="no-task-name"),
    pytest.param(put("kind", "Workflow"), ["kind: expected 'CronWorkflow', got 'Workflow'"], id="kind"),
    # references the controller resolves
    pytest.param(put(f"{WF}.entrypoint", "main"), [f"{WF}.entrypoint: no template named 'main'"],
                 id="entrypoint"),
    pytest.param(put(f"{TASKS}.1.dependencies", ["lode"]),
                 [f"{TEMPLATES}[0].dag.tasks[1].dependencies[0]: no other task named 'lode'"],
                 id="dependency"),
    pytest.param(put(f"{TASKS}.1.template", "trian"),
                 [f"{TEMPLATES}[0].dag.tasks[1].template: no template named 'trian'"], id="task-template"),
])
def test_broken_argo_cron_workflow_is_reported(mutation: Mutation, expected: list[str]) -> None:
    assert argo_cron_workflow_problems(mutated(argo_doc(), mutation)) == sorted(expected)


def test_argo_problems_are_all_reported_with_quoted_dotted_keys() -> None:
    doc = argo_doc()
    doc["metadata"]["labels"]["app.kubernetes.io/name"] = 1
    doc["spec"]["startingDeadlineSeconds"] = "60"
    doc["spec"]["workflowSpec"]["templates"][1]["container"]["imagePullPolcy"] = "Always"
    assert argo_cron_workflow_problems(doc) == sorted([
        'metadata.labels["app.kubernetes.io/name"]: expected str, got int',
        "spec.startingDeadlineSeconds: expected int, got str",
        f"{TEMPLATES}[1].container.imagePullPolcy: unknown key",
    ])


def test_not_a_mapping() -> None:
    assert argo_cron_workflow_problems(["a"]) == ["<document>: expected dict, got list"]
    assert kubernetes_cronjob_problems(None) == ["<document>: expected dict, got null"]


# -- Kubernetes -----------------------------------------------------------------------------------------
POD = "spec.jobTemplate.spec.template.spec"
CONTAINER = f"{POD}.containers.0"
CONTAINER_PATH = f"{POD}.containers[0]"


@pytest.mark.parametrize("version", [None, kubernetes_versions()[0]])
def test_valid_kubernetes_cronjob_passes(version: str | None) -> None:
    doc = kubernetes_doc()
    assert kubernetes_cronjob_problems(doc, version) == []
    assert kubernetes_cronjob_problems(yaml.safe_load(yaml.safe_dump(doc)), version) == []


@pytest.mark.parametrize(("mutation", "expected"), [
    pytest.param(rename("spec.schedule", "schedual"),
                 ["spec.schedule: required key missing", "spec.schedual: unknown key"], id="spec"),
    pytest.param(rename("spec.timeZone", "time_zone"), ["spec.time_zone: unknown key"], id="snake-case"),
    pytest.param(rename("spec.timeZone", "timezone"), ["spec.timezone: unknown key"], id="argo-spelling"),
    pytest.param(rename(f"{POD}.containers", "container"),
                 [f"{POD}.container: unknown key", f"{POD}.containers: required key missing"], id="pod"),
    pytest.param(put(f"{CONTAINER}.imagePullPolcy", "Always"),
                 [f"{CONTAINER_PATH}.imagePullPolcy: unknown key"], id="container"),
    pytest.param(put(f"{CONTAINER}.env.0.valeu", "x"), [f"{CONTAINER_PATH}.env[0].valeu: unknown key"],
                 id="container-env"),
    pytest.param(put("spec.schedule", 5), ["spec.schedule: expected str, got int"], id="schedule-int"),
    pytest.param(put("spec.jobTemplate.spec.backoffLimit", "0"),
                 ["spec.jobTemplate.spec.backoffLimit: expected int, got str"], id="int-str"),
    pytest.param(put(f"{POD}.containers", {"name": "flow"}), [f"{POD}.containers: expected list, got dict"],
                 id="containers-dict"),
    pytest.param(put(f"{CONTAINER}.resources.limits.cpu", [1]),
                 [f"{CONTAINER_PATH}.resources.limits.cpu: expected str or number, got list"], id="quantity"),
    # the API server requires it in a pod template, though the OpenAPI schema has it optional
    pytest.param(drop(f"{CONTAINER}.image"), [f"{CONTAINER_PATH}.image: required key missing"],
                 id="no-image"),
    pytest.param(drop(f"{CONTAINER}.name"), [f"{CONTAINER_PATH}.name: required key missing"], id="no-name"),
    pytest.param(put("kind", "Job"), ["kind: expected 'CronJob', got 'Job'"], id="kind"),
    pytest.param(drop("apiVersion"), ["apiVersion: required key missing"], id="no-api-version"),
])
def test_broken_kubernetes_cronjob_is_reported(mutation: Mutation, expected: list[str]) -> None:
    assert kubernetes_cronjob_problems(mutated(kubernetes_doc(), mutation)) == sorted(expected)


def test_kubernetes_label_values_are_strings() -> None:
    doc = kubernetes_doc()
    doc["metadata"]["labels"]["app.kubernetes.io/name"] = 1
    assert kubernetes_cronjob_problems(doc) == [
        'metadata.labels["app.kubernetes.io/name"]: expected str, got int']


def test_unknown_kubernetes_version() -> None:
    with pytest.raises(ValueError, match=r"no schema for Kubernetes 1\.2;"):
        kubernetes_cronjob_problems(kubernetes_doc(), "1.2")
