"""Read-only access to past runs: ``Flow``, ``Run``, ``Step``, ``Task``, ``Artifact``.

    >>> import nbflow
    >>> run = nbflow.Flow("quickstart").latest_run
    >>> run["train"].task.outputs["model"].load()
    >>> run["train"].task.outputs["model"].lineage()     # where it came from
    >>> nbflow.Flow("quickstart").runs(tag="baseline")  # runs tagged `nbflow tag RUN baseline`

Objects are views over the store's metadata, read when asked. ``to_json()`` on a run builds the
JSON wire model that ``nbflow show --json`` prints (and that other front ends reuse).
Reading also notices runs whose driver stopped heartbeating and marks them ``interrupted``.
The only writes are a run's tags and note (``Run.add_tags``, ``remove_tags``, ``set_note``).
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from nbflow import config
from nbflow.model import (
    ArtifactRef,
    DataFile,
    Resources,
    RunStatus,
    StepOptions,
    TaskStatus,
    check_tag,
)
from nbflow.store import LIVE_LOG, Store, open_store

_stores: dict[tuple[str | None, str | None], Store] = {}


def get_store(store: Store | str | None = None, db: str | None = None) -> Store:
    """A store by object, URL or config default (opened once per process)."""
    if isinstance(store, Store):
        return store
    key = (store, db)
    if key not in _stores:
        _stores[key] = open_store(store, db, writable=False)
    return _stores[key]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Artifact:
    """One stored output value; ``load()`` reads and verifies it."""

    def __init__(self, store: Store, name: str, ref: ArtifactRef,
                 task: Task | None = None) -> None:
        self._store = store
        self.name = name
        self.ref = ref
        self.task = task  # the task whose output it is

    hash = property(lambda self: self.ref.hash)
    size = property(lambda self: self.ref.size)
    type = property(lambda self: self.ref.type)

    def load(self) -> Any:
        return self._store.artifacts.get(self.ref.hash)

    def lineage(self) -> Lineage:
        """Where this value came from: the task that made it, its code, parameters,
        environment, inputs and data files, and the same for every task upstream of it."""
        from nbflow.lineage import lineage

        task = self.task
        if task is None:
            found = self._store.meta.artifact(self.ref.hash)
            if found is None:
                raise KeyError(f"no task in {self._store.url} made artifact {self.hash}")
            row = self._store.meta.task(found["task_id"])
            assert row is not None
            task = Task(self._store, row)
        return Lineage(lineage(self._store, task.run_id, task.step, self.name, task.index,
                               task=task.id))

    def __repr__(self) -> str:
        return f"<Artifact {self.name}: {self.type}, {self.size} bytes, {self.hash[:12]}>"


class Lineage:
    """An artifact's lineage (``Artifact.lineage()``): ``to_json()`` is the model that
    ``nbflow lineage --json`` prints; ``str()`` the text; in a notebook it shows as text."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The producing task first, then every task upstream of it."""
        return list(self.data["tasks"])

    @property
    def files(self) -> list[dict[str, Any]]:
        """Every data file read along the way: path, size, hash and the reading task."""
        return list(self.data["files"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.data["params"])

    def to_json(self) -> dict[str, Any]:
        return self.data

    def __str__(self) -> str:
        from nbflow.lineage import render_text

        return render_text(self.data)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class Task:
    """One execution of a step in a run (one per foreach item)."""

    def __init__(self, store: Store, row: dict[str, Any]) -> None:
        self._store = store
        self._row = row

    id = property(lambda self: self._row["id"])
    run_id = property(lambda self: self._row["run_id"])
    step = property(lambda self: self._row["step"])
    index = property(lambda self: self._row["idx"])
    item = property(lambda self: self._row["item"])
    error = property(lambda self: self._row["error"])
    error_type = property(lambda self: self._row["error_type"])
    started_at = property(lambda self: self._row["started_at"])
    finished_at = property(lambda self: self._row["finished_at"])
    worker = property(lambda self: self._row["worker"])
    cache_key = property(lambda self: self._row["cache_key"])
    cached_from = property(lambda self: self._row["cached_from"])

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self._row["status"])

    @property
    def resources(self) -> Resources:
        return Resources.from_json(self._row["resources"])

    @property
    def inputs(self) -> dict[str, Any]:
        """Name -> how the input was supplied (an artifact, a gathered list, a value, a module)."""
        return dict(self._row["inputs"] or {})

    @property
    def outputs(self) -> dict[str, Artifact]:
        return {n: Artifact(self._store, n, r, self) for n, r in self._row["outputs"].items()}

    @property
    def code(self) -> str:
        """The step body this task ran (a cached task: the body of the one it was cached from,
        which had the same cache key)."""
        found = self._store.meta.codes([self._row.get("code_hash")])
        if found:
            return next(iter(found.values()))
        for s in self._store.meta.steps(self.run_id):  # recorded before tasks kept their code
            if s["name"] == self.step:
                return str(s["code"])
        return ""

    @property
    def environment(self) -> dict[str, Any]:
        """What of the environment the task's cache key took: Python, the versions of the
        packages the step imports, hashes of the local modules it imports."""
        return dict(self._row.get("environment") or {})

    @property
    def files(self) -> list[DataFile]:
        return [DataFile.from_json(f) for f in self._row["files"] or []]

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return self._store.meta.attempts(self.id)

    def _log(self, which: str) -> str:
        path = self._row[f"{which}_path"]
        if not path and self.status == TaskStatus.RUNNING:
            # Still running: the lines so far, as its run's driver relays them (once a second).
            path = LIVE_LOG.format(run=self.run_id, task=self.id,
                                   attempt=self._row["attempts"], stream=which)
        if not path:
            return ""
        try:
            return self._store.artifacts.read_text(path)
        except FileNotFoundError:
            return ""

    @property
    def stdout(self) -> str:
        return self._log("stdout")

    @property
    def stderr(self) -> str:
        return self._log("stderr")

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return float((self.finished_at - self.started_at).total_seconds())
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "index": self.index,
            "item": self.item,
            "status": self.status.value,
            "attempts": self._row["attempts"],
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": self.duration,
            "worker": self.worker,
            "resources": self._row["resources"] or {},
            "cache_key": self.cache_key,
            "cached_from": self.cached_from,
            "inputs": self.inputs,
            "outputs": {n: r.hash for n, r in self._row["outputs"].items()},
            "output_details": {n: r.to_json() for n, r in self._row["outputs"].items()},
            "files": self._row["files"] or [],
            "error": self.error,
            "error_type": self.error_type,
        }

    def __repr__(self) -> str:
        idx = "" if self.index is None else f"[{self.index}]"
        return f"<Task {self.step}{idx} {self.status.value} in run {self.run_id}>"


class Step:
    """A step of a run: its code, options and tasks."""

    def __init__(self, run: Run, row: dict[str, Any]) -> None:
        self.run = run
        self._row = row

    name = property(lambda self: self._row["name"])
    cell = property(lambda self: self._row["cell"])
    code = property(lambda self: self._row["code"])
    inputs = property(lambda self: list(self._row["inputs"]))
    outputs = property(lambda self: list(self._row["outputs"]))
    upstream = property(lambda self: list(self._row["upstream"]))

    @property
    def options(self) -> StepOptions:
        return StepOptions.from_json(self._row["options"])

    @property
    def tasks(self) -> list[Task]:
        return [t for t in self.run.tasks if t.step == self.name]

    @property
    def task(self) -> Task:
        """The step's only task (steps without --foreach have one)."""
        tasks = self.tasks
        if len(tasks) != 1:
            raise ValueError(f"step {self.name!r} has {len(tasks)} tasks; use .tasks")
        return tasks[0]

    def __repr__(self) -> str:
        return f"<Step {self.name} of run {self.run.id}: {len(self.tasks)} task(s)>"


class Run:
    """One execution of a flow."""

    def __init__(self, run_id: str, store: Store | str | None = None,
                 row: dict[str, Any] | None = None) -> None:
        self._store = get_store(store)
        if row is None:
            _notice_interrupted(self._store)
            row = self._store.meta.run(run_id)
            if row is None:
                raise KeyError(f"no run {run_id!r} in {self._store.url}")
        self._row = row

    id = property(lambda self: self._row["id"])
    flow = property(lambda self: self._row["flow"])
    kind = property(lambda self: self._row["kind"])
    params = property(lambda self: dict(self._row["params"] or {}))
    environment = property(lambda self: dict(self._row["environment"] or {}))
    started_at = property(lambda self: self._row["started_at"])
    finished_at = property(lambda self: self._row["finished_at"])
    error = property(lambda self: self._row["error"])
    notebook_path = property(lambda self: self._row["notebook_path"])
    resumed_from = property(lambda self: self._row["resumed_from"])

    @property
    def status(self) -> RunStatus:
        return RunStatus(self._row["status"])

    @property
    def note(self) -> str | None:
        return self._row.get("note")

    @property
    def tags(self) -> list[str]:
        if "tags" not in self._row:
            self._row["tags"] = self._store.meta.tags([self.id])[self.id]
        return list(self._row["tags"])

    def add_tags(self, *names: str) -> None:
        """Tag the run (``nbflow tag RUN NAME...``); a tag it has already is kept."""
        for name in names:
            check_tag(name)
        if names:
            self._store.meta.add_tags(self.id, names)
        self._row.pop("tags", None)

    def remove_tags(self, *names: str) -> None:
        self._store.meta.remove_tags(self.id, names)
        self._row.pop("tags", None)

    def set_note(self, note: str | None) -> None:
        """Set (or with None or "", clear) the run's free-text note."""
        self._store.meta.set_note(self.id, note)
        self._row["note"] = note or None

    def diff(self, other: Run | str) -> dict[str, Any]:
        """How ``other`` differs from this run: the model ``nbflow diff THIS OTHER --json``
        prints (see ``nbflow.compare``)."""
        from nbflow.compare import diff_runs

        return diff_runs(self._store, self.id, other if isinstance(other, str) else other.id)

    @cached_property
    def _steps(self) -> list[dict[str, Any]]:
        return self._store.meta.steps(self.id)

    @property
    def steps(self) -> list[Step]:
        return [Step(self, r) for r in self._steps]

    @cached_property
    def tasks(self) -> list[Task]:
        return [Task(self._store, r) for r in self._store.meta.tasks(self.id)]

    def __getitem__(self, step: str) -> Step:
        for s in self.steps:
            if s.name == step:
                return s
        raise KeyError(f"run {self.id} has no step {step!r}; it has "
                       f"{', '.join(s.name for s in self.steps)}")

    def summary_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": self.flow,
            "status": self.status.value,
            "kind": self.kind,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "params": self.params,
            "resumed_from": self.resumed_from,
            "notebook_path": self.notebook_path,
            "tags": self.tags,
            "note": self.note,
        }

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.tasks:
            counts[t.status.value] = counts.get(t.status.value, 0) + 1
        return {
            **self.summary_json(),
            "error": self.error,
            "environment": self.environment,
            "cluster": self._row["cluster"],
            "store": self._row["store_url"],
            "db": self._row.get("db_url"),
            "counts": counts,
            "steps": [
                {"name": s.name, "cell": s.cell, "inputs": s.inputs, "outputs": s.outputs,
                 "upstream": s.upstream, "options": s._row["options"]}
                for s in self.steps
            ],
            "tasks": [t.to_json() for t in self.tasks],
        }

    def __repr__(self) -> str:
        return f"<Run {self.id} of {self.flow}: {self.status.value}>"


class Flow:
    """A notebook's history: its runs, newest first."""

    def __init__(self, name: str, store: Store | str | None = None) -> None:
        self.name = name
        self._store = get_store(store)

    def runs(self, *, status: str | None = None, tag: str | None = None,
             limit: int | None = None) -> list[Run]:
        return list_runs(self.name, store=self._store, status=status, tag=tag, limit=limit)

    @property
    def latest_run(self) -> Run | None:
        runs = self.runs(limit=1)
        return runs[0] if runs else None

    @property
    def latest_successful_run(self) -> Run | None:
        runs = self.runs(status=RunStatus.SUCCEEDED.value, limit=1)
        return runs[0] if runs else None

    def __repr__(self) -> str:
        return f"<Flow {self.name}>"


def run_list_item(run: Run, counts: dict[str, int]) -> dict[str, Any]:
    """A run as one row of the history (the sidebar's list): its summary, duration and task
    counts per status."""
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = (run.finished_at - run.started_at).total_seconds()
    return {**run.summary_json(), "duration": duration, "counts": counts}


def history_page(store: Store, *, flow: str | None = None, status: str | None = None,
                 tag: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """One page of the run history as the sidebar shows it: runs newest first, each with its
    duration, task counts and tags (three queries, whatever the page size)."""
    runs = list_runs(flow, store=store, status=status, tag=tag, limit=limit, offset=offset)
    counts = store.meta.task_counts([r.id for r in runs])
    return {"runs": [run_list_item(r, counts[r.id]) for r in runs], "offset": offset,
            "limit": limit, "store": store.url}


def list_runs(flow: str | None = None, *, store: Store | str | None = None,
              status: str | None = None, tag: str | None = None, limit: int | None = None,
              offset: int = 0) -> list[Run]:
    """Runs, newest first; only ``flow``'s, only in ``status``, only tagged ``tag``."""
    st = get_store(store)
    _notice_interrupted(st)
    rows = st.meta.runs(flow=flow, status=status, tag=tag, limit=limit, offset=offset)
    tags = st.meta.tags([r["id"] for r in rows])
    return [Run(r["id"], st, row={**r, "tags": tags[r["id"]]}) for r in rows]


def _notice_interrupted(store: Store) -> None:
    store.meta.mark_interrupted(float(config.get("heartbeat.timeout") or 30))
