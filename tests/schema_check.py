"""Validate generated scheduler manifests against the real upstream schemas, for the tests.

Each checker takes a manifest as loaded from YAML (``yaml.safe_load``) and returns a list of
problems, sorted, one readable string per problem that starts with the key path, e.g.
``spec.workflowSpec.templates[1].containr: unknown key`` or ``spec.schedule: expected str, got int``;
an empty list means the manifest is valid.

Argo ``CronWorkflow`` (``argoproj.io/v1alpha1``): ``hera`` >= 7 (tested with 7.1.0). Its
``hera.workflows.models`` are pydantic v2 models generated from Argo Workflows' OpenAPI spec
(hera 7.x: ``argo-workflows-4.0.5.json``; hera 6.x was Argo 3.7.3), with the YAML (camelCase)
names as field aliases. The models ignore unknown keys and also accept the Python (snake_case)
names, so they are validated with pydantic's per-call options (pydantic >= 2.12):
``extra="forbid"`` reports an unknown key at any depth, ``by_alias=True, by_name=False`` accepts
only the YAML names (``concurrency_policy:`` is an unknown key), and ``strict=True`` rejects what
Go's JSON decoding rejects (``suspend: "true"``, ``startingDeadlineSeconds: "10"``). In the Argo
v4 schema ``spec.schedules`` (a list, Argo >= 3.6) is required and ``spec.schedule`` (one string,
deprecated in 3.6) no longer exists; the time zone key is ``spec.timezone`` (Kubernetes:
``spec.timeZone``). Argo's spec types resource quantities as strings, so write ``cpu: "1"``: the
Argo check reports ``cpu: 1``, which Kubernetes itself accepts.

Kubernetes ``CronJob`` (``batch/v1``): ``kubernetes-validate`` (tested with 1.37.0). It ships the
JSON schemas converted from the Kubernetes OpenAPI spec for Kubernetes 1.25 to 1.37, including
"strict" variants with ``additionalProperties: false`` on every object, and is validated here with
``jsonschema`` so that every error is reported, not just the first. It was preferred to the
official ``kubernetes`` client, whose models are pydantic models since 37.0 (plain classes with
``openapi_types``/``attribute_map`` before) and could be checked like hera's: that client weighs
more (126 MB plus aiohttp, websocket-client, requests-oauthlib; it needs pydantic >= 2.14.2),
knows one Kubernetes version, and types resource quantities as strings, so it rejects ``cpu: 1``,
which Kubernetes accepts.

Beyond the schemas, the checkers report what the servers reject although the OpenAPI schemas mark
it optional: a container without an image (Argo: unless ``templateDefaults`` gives one), an empty
``schedules``, a wrong ``apiVersion``/``kind`` for Argo, and DAG references (entrypoint, task
templates, dependencies) that name nothing.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import jsonschema
import pydantic
from hera.workflows.models import CronWorkflow
from referencing import Registry, Resource

ARGO_API_VERSION = "argoproj.io/v1alpha1"
KUBERNETES_SCHEMA_PACKAGE = "kubernetes_validate"

Path = Sequence[str | int]

# pydantic error type -> the Python type it expected.
_PYDANTIC_EXPECTED = {
    "string_type": "str", "int_type": "int", "int_from_float": "int", "float_type": "float",
    "bool_type": "bool", "list_type": "list", "dict_type": "dict", "model_type": "dict",
    "model_attributes_type": "dict", "bytes_type": "bytes",
}
# JSON schema type -> Python type.
_JSON_TYPES = {"string": "str", "integer": "int", "number": "number", "boolean": "bool", "array": "list",
               "object": "dict", "null": "null"}


def format_path(path: Path) -> str:
    """``('spec', 'templates', 0, 'name')`` -> ``spec.templates[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][\w$-]*", part):
            out += f".{part}" if out else part
        else:  # e.g. a label key such as app.kubernetes.io/name
            out += f"[{json.dumps(part)}]"
    return out or "<document>"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expected(types: Iterable[str]) -> str:
    return " or ".join(dict.fromkeys(types))


def _sorted(problems: Iterable[str]) -> list[str]:
    """Each problem once, in path order."""
    return sorted(set(problems))


# -- Argo CronWorkflow --------------------------------------------------------------------------------
def argo_cron_workflow_problems(doc: Any) -> list[str]:
    """Problems in an Argo ``CronWorkflow`` manifest (a dict as loaded from YAML); [] when valid."""
    if not isinstance(doc, dict):
        return [f"<document>: expected dict, got {_type_name(doc)}"]
    problems = []
    for key, want in (("apiVersion", ARGO_API_VERSION), ("kind", "CronWorkflow")):
        if key in doc and doc[key] != want:
            problems.append(f"{key}: expected {want!r}, got {doc[key]!r}")
        elif key not in doc:
            problems.append(f"{key}: required key missing")
    try:
        CronWorkflow.model_validate(doc, strict=True, extra="forbid", by_alias=True, by_name=False)
    except pydantic.ValidationError as e:
        problems += _pydantic_problems(doc, e.errors(include_url=False))
    problems += _argo_semantic_problems(doc)
    return _sorted(problems)


def _resolve_loc(doc: Any, loc: Sequence[str | int], missing: bool) -> tuple[str | int, ...]:
    """The document path of a pydantic error location, without the union tags pydantic inserts
    (``limit.str`` / ``limit.int`` for an int-or-string). A missing key ends the path."""
    node, path = doc, []
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        elif missing and i == len(loc) - 1:
            pass  # the key that is missing
        else:
            continue  # a union member's tag, not a key
        path.append(part)
    return tuple(path)


def _pydantic_problems(doc: Any, errors: Sequence[Any]) -> list[str]:
    located = [(err, _resolve_loc(doc, err["loc"], missing=err["type"] == "missing")) for err in errors]
    # A union (int or string) fails once per member: one line per key, naming every member.
    expected: dict[tuple[str | int, ...], list[str]] = {}
    for err, path in located:
        if err["type"] in _PYDANTIC_EXPECTED:
            expected.setdefault(path, []).append(_PYDANTIC_EXPECTED[err["type"]])
    problems = []
    for err, path in located:
        where = format_path(path)
        if err["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key")
        elif err["type"] == "missing":
            problems.append(f"{where}: required key missing")
        elif path in expected and err["type"] in _PYDANTIC_EXPECTED:
            got = _type_name(err.get("input"))
            problems.append(f"{where}: expected {_expected(expected[path])}, got {got}")
        else:
            problems.append(f"{where}: {err['msg']}")
    return problems


def _argo_semantic_problems(doc: dict[str, Any]) -> list[str]:
    """What Argo's controller rejects though the OpenAPI schema allows it; skips parts that are
    not of the right shape (the schema check reports those)."""
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return []
    problems = []
    if spec.get("schedules") == []:
        problems.append("spec.schedules: must hold at least one cron schedule")
    wf = spec.get("workflowSpec")
    if not isinstance(wf, dict) or not isinstance(wf.get("templates"), list):
        return problems
    base: tuple[str | int, ...] = ("spec", "workflowSpec")
    defaults = wf.get("templateDefaults") if isinstance(wf.get("templateDefaults"), dict) else {}
    templates = [t for t in wf["templates"] if isinstance(t, dict)]
    names = [t.get("name") for t in templates]
    for name in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1}):
        problems.append(f"{format_path((*base, 'templates'))}: template name {name!r} is used twice")
    entry = wf.get("entrypoint")
    if isinstance(entry, str) and entry not in names:
        problems.append(f"{format_path((*base, 'entrypoint'))}: no template named {entry!r}")
    for i, t in enumerate(wf["templates"]):
        if not isinstance(t, dict):
            continue
        at = (*base, "templates", i)
        for kind in ("container", "script"):
            default = defaults.get(kind) if isinstance(defaults, dict) else None
            has_default = isinstance(default, dict) and bool(default.get("image"))
            if isinstance(t.get(kind), dict) and not t[kind].get("image") and not has_default:
                problems.append(f"{format_path((*at, kind, 'image'))}: required key missing")
        container_set = t.get("containerSet")
        if isinstance(container_set, dict) and isinstance(container_set.get("containers"), list):
            for j, c in enumerate(container_set["containers"]):
                if isinstance(c, dict) and not c.get("image"):
                    where = format_path((*at, "containerSet", "containers", j, "image"))
                    problems.append(f"{where}: required key missing")
        dag = t.get("dag")
        if isinstance(dag, dict) and isinstance(dag.get("tasks"), list):
            problems += _dag_problems((*at, "dag", "tasks"), dag["tasks"], names)
    return problems


def _dag_problems(at: tuple[str | int, ...], tasks: list[Any], templates: list[Any]) -> list[str]:
    problems = []
    task_names = [t.get("name") for t in tasks if isinstance(t, dict)]
    for name in sorted({n for n in task_names if isinstance(n, str) and task_names.count(n) > 1}):
        problems.append(f"{format_path(at)}: task name {name!r} is used twice")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            continue
        template = task.get("template")
        if isinstance(template, str) and template not in templates:
            problems.append(f"{format_path((*at, i, 'template'))}: no template named {template!r}")
        deps = task.get("dependencies")
        for j, dep in enumerate(deps if isinstance(deps, list) else []):
            if isinstance(dep, str) and (dep not in task_names or dep == task.get("name")):
                problems.append(f"{format_path((*at, i, 'dependencies', j))}: no other task named {dep!r}")
    return problems


# -- Kubernetes CronJob -------------------------------------------------------------------------------
def kubernetes_versions() -> list[str]:
    """The Kubernetes versions (``1.25`` ...) whose strict schemas kubernetes-validate ships, oldest first."""
    root = resources.files(KUBERNETES_SCHEMA_PACKAGE).joinpath("kubernetes-json-schema")
    found = {m.group(1) for p in root.iterdir()
             if (m := re.fullmatch(r"v(\d+\.\d+)\.0-local-strict", p.name))}
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


@functools.cache
def _kubernetes_validator(kind: str, group_version: str, version: str) -> jsonschema.protocols.Validator:
    folder = resources.files(KUBERNETES_SCHEMA_PACKAGE).joinpath(
        "kubernetes-json-schema", f"v{version}.0-local-strict")
    schema = json.loads(folder.joinpath(f"{kind}-{group_version}.json").read_text())
    definitions = json.loads(folder.joinpath("_definitions.json").read_text())
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kubernetes_cronjob_problems(doc: Any, kubernetes_version: str | None = None) -> list[str]:
    """Problems in a Kubernetes ``batch/v1`` ``CronJob`` manifest (a dict as loaded from YAML)
    against the schema of ``kubernetes_version`` (``"1.30"``; the newest shipped when None)."""
    versions = kubernetes_versions()
    version = kubernetes_version or versions[-1]
    if version not in versions:
        raise ValueError(f"kubernetes-validate has no schema for Kubernetes {version}; it has {versions}")
    if not isinstance(doc, dict):
        return [f"<document>: expected dict, got {_type_name(doc)}"]
    validator = _kubernetes_validator("cronjob", "batch-v1", version)
    # The schema has apiVersion and kind optional (the API takes them from the URL); kubectl needs them.
    problems = [f"{key}: required key missing" for key in ("apiVersion", "kind") if key not in doc]
    for err in validator.iter_errors(doc):
        problems += _jsonschema_problems(err)
    spec = doc.get("spec")
    job = spec.get("jobTemplate") if isinstance(spec, dict) else None
    job_spec = job.get("spec") if isinstance(job, dict) else None
    template = job_spec.get("template") if isinstance(job_spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    if isinstance(pod, dict):
        # The API server requires an image in a pod template; the OpenAPI schema has it optional
        # for workload controllers that fill it in.
        at = ("spec", "jobTemplate", "spec", "template", "spec")
        for key in ("initContainers", "containers"):
            containers = pod.get(key)
            for i, c in enumerate(containers if isinstance(containers, list) else []):
                if isinstance(c, dict) and not c.get("image"):
                    problems.append(f"{format_path((*at, key, i, 'image'))}: required key missing")
    return _sorted(problems)


def _json_types(schema: Any) -> list[str]:
    types = schema.get("type", []) if isinstance(schema, Mapping) else []
    return [_JSON_TYPES.get(t, t) for t in ([types] if isinstance(types, str) else types) if t != "null"]


def _jsonschema_problems(err: jsonschema.ValidationError) -> list[str]:
    path = list(err.absolute_path)
    where = format_path(path)
    value = err.validator_value if isinstance(err.validator_value, list) else []
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        known = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        return [f"{format_path([*path, key])}: unknown key" for key in err.instance
                if key not in known and not any(re.search(p, key) for p in patterns)]
    if err.validator == "required" and isinstance(err.instance, dict):
        return [f"{format_path([*path, key])}: required key missing"
                for key in value if key not in err.instance]
    if err.validator == "type":
        return [f"{where}: expected {_expected(_json_types(err.schema))}, got {_type_name(err.instance)}"]
    if err.validator in ("oneOf", "anyOf") and err.context and all(c.validator == "type"
                                                                   for c in err.context):
        expected = [t for c in err.context for t in _json_types(c.schema)]
        return [f"{where}: expected {_expected(expected)}, got {_type_name(err.instance)}"]
    if err.validator == "enum":
        want = repr(value[0]) if len(value) == 1 else f"one of {value!r}"
        return [f"{where}: expected {want}, got {err.instance!r}"]
    return [f"{where}: {err.message}"]
