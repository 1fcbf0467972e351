"""A kernel's interactive work as one run: each execution of a step cell is a task, run on the cluster.

``InteractiveSession`` holds what a kernel needs between cells: the store, the executor (connected
when a step first has to execute), the interactive run (created with the first step cell, kept
alive by a heartbeat, finished when the kernel exits), and which kernel names hold values that came
from the store, so that passing them to a later step sends their artifact reference, not the data.
It knows nothing of IPython: ``nbflow.magics`` is the thin layer on top.

The mutation rule: a task's inputs are private copies (unpickled or loaded from the store on the
worker), so a step that mutates one changes neither the stored artifact nor the kernel's value; the
change flows on only if the step binds the name. A kernel value that came from the store is passed
by reference only while it still has the content it was bound with: mutated in the kernel
(``df["x"] = 1`` in a plain cell), it is shipped by value, as the user sees it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import dask.utils

from nbflow import cache, config, environment
from nbflow.analyze import AnalysisError, analyze_cell, normalize_code
from nbflow.dispatch import LOG_TOPIC, RESULT_TOPIC, Dispatcher, LogHandler, StepState
from nbflow.execute import Executor
from nbflow.graph import Cell, FlowGraph, Node
from nbflow.handle import ArtifactHandle
from nbflow.model import RunStatus, TaskStatus
from nbflow.runner import new_run_id
from nbflow.scope import IGNORED_NAMES
from nbflow.store import Store, open_store
from nbflow.tokenize import value_info, value_token
from nbflow.worker import InputSpec


class StepFailed(Exception):
    """A step cell's task failed; rendered by IPython as the worker's traceback, nothing more."""

    def __init__(self, step: str, errors: list[str]) -> None:
        super().__init__(f"step {step!r} failed")
        self.step = step
        self.errors = errors

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of our frames
        return [line for e in self.errors for line in e.rstrip().splitlines()]


class StepInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a step cell ran; its task was stopped on the cluster."""

    def _render_traceback_(self) -> list[str]:
        return [f"nbflow: {self}"]


@dataclass
class _Bound:
    """A kernel name bound from the store: its reference, the value, and that value's token."""

    spec: InputSpec
    value: Any
    token: str | None
    step: str  # the step that made it


@dataclass
class StepOutcome:
    """What running a step cell did."""

    step: str
    statuses: list[TaskStatus]
    cached_from: list[str] = field(default_factory=list)  # run ids the cached outputs came from
    bound: list[str] = field(default_factory=list)
    handles: list[str] = field(default_factory=list)  # outputs left in the store (too big)
    display: dict[str, Any] | None = None  # the MIME bundle of the cell's last expression

    @property
    def cached(self) -> bool:
        return bool(self.statuses) and all(s == TaskStatus.CACHED for s in self.statuses)


class InteractiveSession:
    """Runs step cells for one kernel and records them in one interactive run."""

    def __init__(self, namespace: dict[str, Any], *, store: Store | None = None,
                 executor: Executor | None = None, notebook: str | None = None) -> None:
        self.namespace = namespace
        self._store = store
        self.executor = executor or Executor.connect()
        self.notebook = notebook or os.environ.get("JPY_SESSION_NAME") or None
        self.run_id: str | None = None
        self._bound: dict[str, _Bound] = {}
        self._saved_steps: dict[str, dict[str, Any]] = {}
        self._cache_memo: dict[str, list[dict[str, Any]]] = {}
        self._stop = threading.Event()

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store()
        return self._store

    @property
    def flow(self) -> str:
        return Path(self.notebook).stem if self.notebook else "interactive"

    # -- the interactive run -------------------------------------------------------------------
    def _ensure_run(self) -> str:
        if self.run_id is None:
            self.run_id = new_run_id()
            self.store.meta.create_run(
                id=self.run_id, flow=self.flow, kind="interactive",
                notebook_path=str(Path(self.notebook).resolve()) if self.notebook else None,
                params={}, environment=environment.capture([]), store_url=self.store.url,
                db_url=self.store.db_display,
                cluster=self.executor.describe() if self.executor.connected else None,
                driver={"host": socket.gethostname(), "pid": os.getpid()})
            self.executor.on_connect(self._connected)
            self._keep_subscribed(self.executor)
            threading.Thread(target=self._heartbeat, name="nbflow-heartbeat", daemon=True).start()
            atexit.register(self.close)
        return self.run_id

    def use_executor(self, executor: Executor) -> None:
        """Run later steps on ``executor``'s cluster (``%nbflow cluster ADDRESS``)."""
        self.executor.remove_hook(self._connected)
        self.executor = executor
        if self.run_id is not None:
            executor.on_connect(self._connected)
            self._keep_subscribed(executor)

    @staticmethod
    def _keep_subscribed(executor: Executor) -> None:
        """Stay subscribed to the workers' events between cells: each step cell then only adds
        its handler, instead of subscribing and unsubscribing with the scheduler every time."""
        for topic in (LOG_TOPIC, RESULT_TOPIC):
            executor.subscribe(topic, _ignore)

    def _connected(self, executor: Executor) -> None:
        if self.run_id is not None:
            with contextlib.suppress(Exception):
                self.store.meta.update_run(self.run_id, cluster=executor.describe())

    def _heartbeat(self) -> None:
        interval = float(config.get("heartbeat.interval") or 5)
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):
                self.store.meta.heartbeat(self.run_id or "")

    def close(self) -> None:
        """Finish the interactive run (at kernel exit)."""
        if self.run_id is not None and not self._stop.is_set():
            self._stop.set()
            with contextlib.suppress(Exception):
                self.store.meta.finish_run(self.run_id, RunStatus.SUCCEEDED)

    # -- one step cell -------------------------------------------------------------------------
    def _inputs(self, node: Node) -> tuple[dict[str, InputSpec], dict[str, str],
                                           dict[str, dict[str, str]]]:
        """What the step reads, as shipped; the tokens of by-value inputs; and their type and
        short repr (``value_info``)."""
        specs: dict[str, InputSpec] = {}
        tokens: dict[str, str] = {}
        info: dict[str, dict[str, str]] = {}
        for name in node.analysis.inputs:
            if name not in self.namespace:
                if name in IGNORED_NAMES:
                    continue
                raise AnalysisError(
                    f"{name!r} is read here but not defined in this kernel",
                    cell=node.cell.number, hint=f"run the cell that defines {name!r} first",
                )
            value = self.namespace[name]
            if isinstance(value, ArtifactHandle):
                specs[name] = value.spec  # left in the store: the worker reads it from there
                self._upstream.add(value.step)
                continue
            bound = self._bound.get(name)
            token: str | None = None
            if bound is not None and bound.value is value:
                token = _token(value)
                if token is not None and token == bound.token:
                    specs[name] = bound.spec  # from the store, unchanged: pass the reference
                    self._upstream.add(bound.step)
                    continue
            if type(value).__name__ == "module" and hasattr(value, "__name__"):
                specs[name] = ("module", value.__name__)
                tokens[name] = cache.hash_json(["module", value.__name__,
                                                environment.package_versions([value.__name__])])
                continue
            try:
                specs[name] = ("value", cloudpickle.dumps(value, protocol=5))
                tokens[name] = token or value_token(value)
                info[name] = value_info(value)
            except Exception as exc:
                raise AnalysisError(
                    f"{name!r}, a {type(value).__name__}, cannot be shipped to a worker: {exc}",
                    cell=node.cell.number,
                    hint=f"create {name!r} inside the step (or in an earlier step) instead",
                ) from None
        return specs, tokens, info

    def run_step(self, source: str, *, cell: int | None = None,
                 on_log: LogHandler | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> StepOutcome:
        """Analyse ``source`` (a whole step cell), run it on the cluster (or take it from the
        cache), record it, and bind its outputs into the namespace."""
        analysis = analyze_cell(source, cell=cell)
        opts = analysis.options
        if opts is None:
            raise AnalysisError("this cell has no %%step line", cell=cell,
                                hint="start the cell with `%%step NAME`")
        if not normalize_code(analysis.body).strip():
            raise AnalysisError(f"step {opts.name!r} has no code", cell=cell,
                                hint="write the step's code below its header lines")
        node = Node(Cell(number=cell or 0, source=source), analysis,
                    by_value=tuple(n for n in analysis.inputs if n not in IGNORED_NAMES
                                   or n in self.namespace))
        self._upstream: set[str] = set()
        specs, tokens, info = self._inputs(node)
        self.executor.ensure_alive()
        run_id = self._ensure_run()
        graph = FlowGraph((node,))
        dispatcher = Dispatcher(run_id, graph, self.store, self.executor,
                                folder=Path(os.getcwd()), force=opts.force, on_log=on_log,
                                on_event=on_event, all_outputs_required=True,
                                cache_memo=self._cache_memo)
        state = dispatcher.steps[opts.name]
        state.by_value, state.by_value_tokens = specs, tokens
        state.by_value_info = info
        record = {"name": opts.name, "cell": cell, "code": analysis.body, "options": opts.to_json(),
                  "inputs": list(analysis.inputs), "outputs": list(analysis.outputs),
                  # the steps whose stored outputs it takes: the interactive run's DAG edges
                  "upstream": sorted(self._upstream - {opts.name})}
        # Re-running the same code records nothing new (the step keeps the execution count of
        # the first run of this version of its code).
        if {**self._saved_steps.get(opts.name, {}), "cell": cell} != record:
            self.store.meta.save_step(run_id, record)
            self._saved_steps[opts.name] = record

        def check(executor: Executor) -> None:
            executor.check_store(self.store.url)
            executor.check_resources(opts.resources, f"step {opts.name!r}")

        self.executor.subscribe(LOG_TOPIC, dispatcher.relay_log)
        self.executor.subscribe(RESULT_TOPIC, dispatcher.relay_result)
        self.executor.expect([opts.resources])  # sizes a cluster made now (dask-gateway)
        self.executor.on_connect(check)
        try:
            dispatcher.dispatch_ready()
            dispatcher.pump(lambda: state.done)
        except KeyboardInterrupt:
            dispatcher.abandon("interrupted by the user")
            raise StepInterrupted(f"step {opts.name!r} interrupted; its task was stopped on the "
                                  "cluster and recorded as cancelled") from None
        except BaseException as exc:
            dispatcher.abandon(f"stopped: {exc}")
            raise
        finally:
            self.executor.unsubscribe(LOG_TOPIC, dispatcher.relay_log)
            self.executor.unsubscribe(RESULT_TOPIC, dispatcher.relay_result)
            self.executor.remove_hook(check)
        outcome = StepOutcome(opts.name, [t.status for t in state.tasks])
        if not state.ok:
            errors = [t["error"] or t["status"] for t in self.store.meta.tasks(run_id, opts.name)
                      if t["id"] in {x.task_id for x in state.tasks} and t["status"] != "cached"]
            raise StepFailed(opts.name, errors or [state.error or "failed"])
        outcome.cached_from = [t.cached_from_run for t in state.tasks
                               if t.status == TaskStatus.CACHED and t.cached_from_run]
        self._bind(state, dispatcher, outcome)
        return outcome

    def _bind(self, state: StepState, dispatcher: Dispatcher, outcome: StepOutcome) -> None:
        """Bind the step's outputs into the kernel (handles for the big ones) and fetch the
        display of its last expression."""
        limit = dask.utils.parse_bytes(config.get("interactive.max-bind-size") or "256MiB")
        for name, spec in state.outputs.items():
            kind, value = spec
            size = sum(r.size for r in value) if kind == "gather" else value.size
            outcome.bound.append(name)
            if size > limit:
                self.namespace[name] = ArtifactHandle(name, spec, self.store,
                                                      run_id=dispatcher.run_id, step=state.name)
                self._bound.pop(name, None)
                outcome.handles.append(name)
                continue
            loaded = dispatcher.load(spec)
            self.namespace[name] = loaded
            self._bound[name] = _Bound(spec, loaded, _token(loaded), state.name)
        if len(state.tasks) == 1 and state.tasks[0].display:
            with contextlib.suppress(Exception):  # a display that cannot be read is not an error
                outcome.display = self.store.artifacts.get(state.tasks[0].display["hash"])


def _ignore(_message: dict[str, Any]) -> None:
    pass


def _token(value: Any) -> str | None:
    try:
        return value_token(value)
    except Exception:
        return None
