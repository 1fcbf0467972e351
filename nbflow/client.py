"""Read-only access to past runs: ``Flow``, ``Run``, ``Step``, ``Task``, ``Artifact``.

    >>> import nbflow
    >>> run = nbflow.Flow("quickstart").latest_run
    >>> run["train"].task.outputs["model"].load()

Objects are views over the store's metadata, read when asked. ``to_json()`` on a run builds the
JSON wire model that ``nbflow show --json`` prints (and that other front ends reuse).
Reading also notices runs whose driver stopped heartbeating and marks them ``interrupted``.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from nbflow import config
from nbflow.model import ArtifactRef, DataFile, Resources, RunStatus, StepOptions, TaskStatus
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

    def __init__(self, store: Store, name: str, ref: ArtifactRef) -> None:
        self._store = store
        self.name = name
        self.ref = ref

    hash = property(lambda self: self.ref.hash)
    size = property(lambda self: self.ref.size)
    type = property(lambda self: self.ref.type)

    def load(self) -> Any:
        return self._store.artifacts.get(self.ref.hash)

    def __repr__(self) -> str:
        return f"<Artifact {self.name}: {self.type}, {self.size} bytes, {self.hash[:12]}>"


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
        return {n: Artifact(self._store, n, r) for n, r in self._row["outputs"].items()}

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

    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[Run]:
        return list_runs(self.name, store=self._store, status=status, limit=limit)

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
                 limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """One page of the run history as the sidebar shows it: runs newest first, each with its
    duration and task counts (two queries, whatever the page size)."""
    runs = list_runs(flow, store=store, status=status, limit=limit, offset=offset)
    counts = store.meta.task_counts([r.id for r in runs])
    return {"runs": [run_list_item(r, counts[r.id]) for r in runs], "offset": offset,
            "limit": limit, "store": store.url}


def list_runs(flow: str | None = None, *, store: Store | str | None = None,
              status: str | None = None, limit: int | None = None, offset: int = 0) -> list[Run]:
    st = get_store(store)
    _notice_interrupted(st)
    rows = st.meta.runs(flow=flow, status=status, limit=limit, offset=offset)
    return [Run(r["id"], st, row=r) for r in rows]


def _notice_interrupted(store: Store) -> None:
    store.meta.mark_interrupted(float(config.get("heartbeat.timeout") or 30))
