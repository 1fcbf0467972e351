"""Where an artifact came from: the task that made it and, back through the graph, every task it
depends on, with the code, parameters, environment, inputs and data files of each.

``lineage(store, run_id, step, name)`` builds the JSON model (``nbflow lineage --json``, the REST
API, the sidebar); ``render_text`` prints it for the terminal. Reading only: nothing here writes.

An input artifact is traced to the task that bound it: first among the tasks of the same run
(an interactive run may have several tasks of one step: the newest one before the reader with
that output hash wins), then anywhere in the store (a handle taken from another run). A cached
task is shown as itself, with ``cached_from`` naming the task that really executed; the code,
environment and files it records are that execution's (equal cache keys).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from nbflow.model import ArtifactRef

if TYPE_CHECKING:
    from nbflow.store import Store

Row = dict[str, Any]


class LineageError(KeyError):
    """The run, step, task or output asked for does not exist."""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _pick_task(tasks: list[Row], run_id: str, step: str, name: str, index: int | None) -> Row:
    of_step = [t for t in tasks if t["step"] == step]
    if not of_step:
        steps = sorted({t["step"] for t in tasks})
        raise LineageError(f"run {run_id} has no task of step {step!r}; its steps are "
                           f"{', '.join(steps) or 'none'}")
    if index is not None:
        of_step = [t for t in of_step if t["idx"] == index]
        if not of_step:
            raise LineageError(f"step {step!r} of run {run_id} has no foreach item {index}")
    with_output = [t for t in of_step if name in t["outputs"]]
    if not with_output:
        names = sorted({n for t in of_step for n in t["outputs"]})
        raise LineageError(f"step {step!r} of run {run_id} has no output {name!r}; its outputs "
                           f"are {', '.join(names) or 'none (it did not succeed)'}")
    indexes = {t["idx"] for t in with_output}
    if len(indexes) > 1:
        raise LineageError(f"step {step!r} of run {run_id} is a foreach with {len(indexes)} "
                           f"tasks: choose one with --index (0 to {max(indexes)})")
    return with_output[-1]  # an interactive run's newest execution of the step


class _Tracer:
    """Follows inputs back to the tasks that produced them, reading the store as needed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.run_tasks: dict[str, list[Row]] = {}
        self.run_rows: dict[str, Row | None] = {}
        self.step_rows: dict[tuple[str, str], Row] = {}

    def tasks_of(self, run_id: str) -> list[Row]:
        if run_id not in self.run_tasks:
            self.run_tasks[run_id] = self.store.meta.tasks(run_id)
            for s in self.store.meta.steps(run_id):
                self.step_rows[(run_id, s["name"])] = s
        return self.run_tasks[run_id]

    def run(self, run_id: str) -> Row | None:
        if run_id not in self.run_rows:
            self.run_rows[run_id] = self.store.meta.run(run_id)
        return self.run_rows[run_id]

    def producer(self, reader: Row, name: str, ref: ArtifactRef | dict[str, Any],
                 index: int | None = None) -> Row | None:
        """The task that bound ``name`` with this artifact: in the reader's run, else anywhere.
        ``index``: the item's place in a gathered list, which is its foreach task's index (two
        items can be equal, so the hash alone does not tell their tasks apart)."""
        key = ref.hash if isinstance(ref, ArtifactRef) else ref["hash"]
        same_run = [t for t in self.tasks_of(reader["run_id"])
                    if t["id"] != reader["id"] and name in t["outputs"]
                    and t["outputs"][name].hash == key]
        if index is not None and any(t["idx"] == index for t in same_run):
            same_run = [t for t in same_run if t["idx"] == index]
        before = [t for t in same_run if t["id"] < reader["id"]]
        if before or same_run:
            return (before or same_run)[-1]
        found = self.store.meta.artifact(key)
        if found is None:
            return None
        for t in self.tasks_of(found["run_id"]):
            if t["id"] == found["task_id"]:
                return t
        return None


def lineage(store: Store, run_id: str, step: str, name: str, index: int | None = None, *,
            task: int | None = None) -> dict[str, Any]:
    """The lineage of output ``name`` of ``step`` in run ``run_id`` (see the module docstring):
    of its foreach item ``index``, and of task id ``task`` when given (an earlier execution of
    the step in a kernel session; by default the newest)."""
    tracer = _Tracer(store)
    run = tracer.run(run_id)
    if run is None:
        raise LineageError(f"no run {run_id!r} in {store.url}; `nbflow runs` lists them")
    tasks = tracer.tasks_of(run_id)
    if task is not None:
        tasks = [t for t in tasks if t["id"] == task]
    root = _pick_task(tasks, run_id, step, name, index)
    ref: ArtifactRef = root["outputs"][name]
    order: list[Row] = []
    edges: dict[int, list[dict[str, Any]]] = {}
    seen = {root["id"]}
    queue = deque([root])
    while queue:
        reader = queue.popleft()
        order.append(reader)
        edges[reader["id"]] = []
        for input_name, spec in (reader["inputs"] or {}).items():
            kind = spec.get("kind")
            if kind not in ("artifact", "gather"):
                continue
            refs = [spec] if kind == "artifact" else list(spec.get("items") or [])
            sources: list[int] = []
            for position, item in enumerate(refs):
                producer = tracer.producer(reader, input_name, item,
                                           position if kind == "gather" else None)
                if producer is None:
                    continue
                if producer["id"] not in sources:
                    sources.append(producer["id"])
                if producer["id"] not in seen:
                    seen.add(producer["id"])
                    queue.append(producer)
            edges[reader["id"]].append({
                "name": input_name, "kind": kind,
                "artifacts": [{"hash": r["hash"], "size": r["size"], "type": r["type"]}
                              for r in refs],
                "from": sources})
    codes = store.meta.codes(t.get("code_hash") for t in order)
    params = dict(run.get("params") or {})
    nodes = [_node(tracer, t, codes, params if t["run_id"] == run_id else
                   dict((tracer.run(t["run_id"]) or {}).get("params") or {}), edges[t["id"]])
             for t in order]
    files = [{**f, "task": n["id"]} for n in nodes for f in n["files"]]
    return {
        "artifact": {"run": run_id, "step": step, "name": name, "index": root["idx"],
                     **ref.to_json()},
        "root": root["id"],
        "params": params,
        "tasks": nodes,
        "files": files,
    }


def _node(tracer: _Tracer, task: Row, codes: dict[str, str], params: dict[str, Any],
          inputs: list[dict[str, Any]]) -> dict[str, Any]:
    tracer.tasks_of(task["run_id"])
    step = tracer.step_rows.get((task["run_id"], task["step"])) or {}
    code = codes.get(task.get("code_hash") or "")
    if code is None:  # recorded before tasks kept their code: the step's (latest) code
        code = step.get("code") or ""
    cached_from = None
    if task.get("cached_from") is not None:
        original = tracer.store.meta.task(int(task["cached_from"]))
        cached_from = {"run": original["run_id"] if original else None,
                       "task": int(task["cached_from"])}
    options = step.get("options") or {}
    env = task.get("environment") or {}
    values, modules = [], []
    for name, spec in sorted((task["inputs"] or {}).items()):
        if spec.get("kind") == "value":
            values.append({"name": name, "hash": spec.get("hash"), "size": spec.get("size"),
                           "type": spec.get("type"), "repr": spec.get("repr"),
                           "parameter": name in params})
        elif spec.get("kind") == "module":
            modules.append({"name": name, "module": spec.get("module")})
    return {
        "id": task["id"], "run": task["run_id"], "step": task["step"], "index": task["idx"],
        "item": task["item"], "status": task["status"], "cached_from": cached_from,
        "code": code, "options": options, "worker": task["worker"],
        "started_at": _iso(task["started_at"]), "finished_at": _iso(task["finished_at"]),
        "environment": {"python": env.get("python"), "packages": env.get("packages") or {},
                        "sources": env.get("sources") or {}},
        "values": values, "modules": modules,
        "files": [{"path": f["path"], "size": f["size"], "hash": f["hash"]}
                  for f in task["files"] or []],
        "inputs": inputs,
        "outputs": {n: r.to_json() for n, r in task["outputs"].items()},
    }


def render_text(data: dict[str, Any]) -> str:
    """The lineage as the terminal shows it: the artifact, the run's parameters, then each task."""
    from dask.utils import format_bytes

    a = data["artifact"]
    index = "" if a["index"] is None else f"[{a['index']}]"
    lines = [f"{a['name']} of step {a['step']}{index} in run {a['run']}: {a['type']}, "
             f"{format_bytes(a['size'])}, {a['hash'][:12]}"]
    if data["params"]:
        lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in data["params"].items()))
    label = {n["id"]: _label(n) for n in data["tasks"]}
    shown: dict[tuple[str, str], str] = {}  # (run, code) -> the task whose code was printed
    for n in data["tasks"]:
        lines.append("")
        head = f"{_label(n)}  task {n['id']}  {n['status']}"
        if n["run"] != a["run"]:
            head += f"  (run {n['run']})"
        if n["cached_from"]:
            origin = n["cached_from"]
            head += (f"  cached from task {origin['task']} of run {origin['run']}"
                     if origin["run"] else f"  cached from task {origin['task']} (deleted)")
        lines.append(head)
        if n["item"] is not None:
            lines.append(f"  foreach item: {n['item']}")
        env = n["environment"]
        packages = ", ".join(f"{k}=={v}" for k, v in sorted(env["packages"].items()))
        lines.append(f"  environment: python {env['python'] or '?'}"
                     + (f"; {packages}" if packages else ""))
        for v in n["values"]:
            kind = "parameter" if v["parameter"] else "value"
            lines.append(f"  {kind}: {v['name']} = {v['repr'] or '?'}"
                         + (f" ({v['type']})" if v["type"] else ""))
        for m in n["modules"]:
            lines.append(f"  module: {m['name']} = {m['module']}")
        for f in n["files"]:
            lines.append(f"  file read: {f['path']} ({format_bytes(f['size'])}, {f['hash'][:12]})")
        for i in n["inputs"]:
            origin = ", ".join(label.get(t, f"task {t}") for t in i["from"]) or "unknown"
            lines.append(f"  input: {i['name']} <- {origin}")
        same = shown.get((n["step"], n["code"]))
        if same is not None:
            lines.append(f"  code: as {same}")
            continue
        shown[(n["step"], n["code"])] = _label(n)
        lines.append("  code:")
        lines.extend(f"    | {line}" for line in (n["code"] or "").rstrip().splitlines())
    return "\n".join(lines)


def _label(node: dict[str, Any]) -> str:
    return str(node["step"]) + ("" if node["index"] is None else f"[{node['index']}]")
