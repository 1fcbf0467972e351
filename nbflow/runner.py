"""A run of a whole notebook: plain cells in the driver, steps on the cluster, cache, resume, heartbeat.

The driver walks the notebook top to bottom, with the notebook's folder as working directory and on
``sys.path`` (as Jupyter runs a kernel). A plain cell runs in the driver's namespace, on a thread of
its own, once the steps it reads from have finished; meanwhile the driver keeps dispatching steps and
handling their results. A step cell takes a snapshot of its by-value inputs at its place in the
notebook and is dispatched as soon as its upstream steps have finished, so independent steps run at
the same time (``nbflow.dispatch`` does the dispatching, caching and bookkeeping of steps). The
driver is the only writer of metadata; workers write artifacts and logs themselves and publish a
small result as a Dask event.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import linecache
import os
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from nbflow import cache, config, environment
from nbflow import notebook as nbmod
from nbflow.analyze import AnalysisError
from nbflow.dispatch import (
    LOG_TOPIC,
    RESULT_TOPIC,
    Dispatcher,
    EventHandler,
    LogHandler,
    Row,
    StepState,
)
from nbflow.execute import ClusterError, Executor
from nbflow.graph import FlowGraph, GraphError, Node, build_graph, cells_until
from nbflow.model import RunStatus, TaskStatus
from nbflow.store import Store
from nbflow.tokenize import value_info, value_token
from nbflow.worker import InputSpec


class RunError(Exception):
    """The run cannot start, or stopped because of an error outside a step's own code."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value``; the value is a Python literal if it parses as one, else a string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise RunError(f"--param {text!r}: expected NAME=VALUE, e.g. --param alpha=0.5")
    try:
        return name, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return name, raw


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    return repr(value)


class _CellFailed(Exception):
    """A plain cell raised, or reads a step that failed: the run cannot go on."""


_MISSING = object()


class Runner:
    """Runs one notebook once, as a new run in ``store`` on ``executor``'s cluster."""

    def __init__(
        self,
        notebook: nbmod.Notebook,
        store: Store,
        executor: Executor,
        *,
        params: dict[str, Any] | None = None,
        param_args: Sequence[str] = (),
        force: bool = False,
        force_steps: Iterable[str] = (),
        resumed_from: str | None = None,
        reuse: dict[str, list[Row]] | None = None,
        on_log: LogHandler | None = None,
        on_event: EventHandler | None = None,
        graph: FlowGraph | None = None,
    ) -> None:
        self.notebook = notebook
        self.store = store
        self.executor = executor
        self.param_args = list(param_args)
        self.overrides = dict(parse_param(p) for p in self.param_args)
        self.overrides.update(params or {})
        self.resumed_from = resumed_from
        self.on_event: EventHandler = on_event or (lambda _kind, _data: None)
        self.graph = graph if graph is not None else build_graph(notebook.cells)
        # A cluster made for this run (dask-gateway) is sized for its biggest step.
        executor.expect(n.options.resources for n in self.graph.nodes if n.options is not None)
        self.run_id = new_run_id()
        self.dispatch = Dispatcher(
            self.run_id, self.graph, store, executor, folder=notebook.folder, force=force,
            force_steps=set(force_steps), reuse=reuse, on_log=on_log, on_event=self.on_event)
        self.dispatch.busy = lambda: self._cell_thread is not None and self._cell_thread.is_alive()
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self._cell_thread: threading.Thread | None = None
        self._stop_heartbeat = threading.Event()
        self._sources = {n.cell.number: nbmod.headless_source(n.cell, n.analysis.magic_lines)
                         for n in self.graph.nodes if not n.is_step}
        self._check_params()
        self._imports = sorted({m for n in self.graph.nodes for m in n.analysis.imports})

    @property
    def steps(self) -> dict[str, StepState]:
        return self.dispatch.steps

    def _check_params(self) -> None:
        if not self.overrides:
            return
        known = self.graph.parameters
        if not known:
            raise RunError(
                f"--param {', '.join(self.overrides)}: this notebook has no parameters cell. Tag "
                "the cell that sets the parameters with `parameters` (View > Cell Toolbar > Tags "
                "in Jupyter), as with papermill."
            )
        unknown = [p for p in self.overrides if p not in known]
        if unknown:
            raise RunError(
                f"unknown parameter {', '.join(map(repr, unknown))}; the parameters cell defines "
                f"{', '.join(known)}"
            )

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        """Execute the notebook; returns the run id. Step failures are recorded, not raised."""
        meta = self.store.meta
        with _notebook_dir(self.notebook.folder):
            meta.create_run(
                id=self.run_id,
                flow=self.notebook.flow_name,
                kind="resume" if self.resumed_from else "headless",
                notebook_path=str(self.notebook.path),
                notebook_hash=self.notebook.content_hash,
                params={k: _jsonable(v) for k, v in self.overrides.items()},
                environment=environment.capture(self._imports, self.notebook.content_hash),
                resumed_from=self.resumed_from,
                cluster=self.executor.describe(),
                store_url=self.store.url,
                db_url=self.store.db_display,
                driver={"host": socket.gethostname(), "pid": os.getpid(),
                        "param_args": self.param_args, "params": {
                            k: _jsonable(v) for k, v in self.overrides.items()
                            if k not in dict(parse_param(p) for p in self.param_args)}},
            )
            meta.record_steps(self.run_id, [
                {"name": s.name, "cell": s.node.cell.number, "code": s.node.analysis.body,
                 "options": s.node.options.to_json() if s.node.options else {},
                 "inputs": list(s.node.inputs), "outputs": list(s.node.outputs),
                 "upstream": list(s.node.upstream_steps)}
                for s in self.steps.values()
            ])
            self.on_event("run-started", {"run": self.run_id})
            threading.Thread(target=self._heartbeat, name="nbflow-heartbeat", daemon=True).start()
            error: str | None = None
            status = RunStatus.FAILED
            try:
                self.executor.subscribe(LOG_TOPIC, self.dispatch.relay_log)
                self.executor.subscribe(RESULT_TOPIC, self.dispatch.relay_result)
                self.executor.on_connect(self._connected)
                self._walk_cells()
                self.dispatch.pump(lambda: all(s.done for s in self.steps.values()))
                status = RunStatus.FAILED if self.dispatch.failed else RunStatus.SUCCEEDED
            except _CellFailed as exc:
                error = str(exc)
                self.dispatch.abandon("the run stopped: " + str(exc).splitlines()[0])
            except KeyboardInterrupt:
                error = "interrupted by the user"
                status = RunStatus.INTERRUPTED
                self.dispatch.abandon(error)
                raise
            except ClusterError as exc:
                error = str(exc)
                self.dispatch.abandon(f"the cluster failed: {exc}")
                raise
            except BaseException as exc:
                error = "".join(traceback.format_exception(exc))
                self.dispatch.abandon(f"the driver failed: {exc}")
                raise
            finally:
                self._stop_heartbeat.set()
                self.executor.unsubscribe(LOG_TOPIC, self.dispatch.relay_log)
                self.executor.unsubscribe(RESULT_TOPIC, self.dispatch.relay_result)
                self.executor.remove_hook(self._connected)
                meta.finish_run(self.run_id, status, error)
                self.on_event("run-finished", {"run": self.run_id, "status": status.value,
                                               "error": error})
        return self.run_id

    def _connected(self, executor: Executor) -> None:
        """First contact with the cluster: refuse what it cannot do, and record it."""
        executor.check_store(self.store.url)
        # What the steps import themselves; a module a plain cell imported is checked as it ships.
        executor.check_versions(m for s in self.steps.values() for m in s.node.analysis.imports)
        for state in self.steps.values():
            opts = state.node.options
            assert opts is not None
            executor.check_resources(
                opts.resources, f"step {state.name!r} (cell {state.node.cell.number})")
        self.store.meta.update_run(self.run_id, cluster=executor.describe())

    def _heartbeat(self) -> None:
        interval = float(config.get("heartbeat.interval") or 5)
        while not self._stop_heartbeat.wait(interval):
            with contextlib.suppress(Exception):
                self.store.meta.heartbeat(self.run_id)

    # Called on the Dask client's event-loop thread: hand over to the driver thread.
    def _walk_cells(self) -> None:
        for node in self.graph.nodes:
            if node.is_step:
                self._capture_by_value(self.steps[node.name])
                self.dispatch.dispatch_ready()
            else:
                self._run_plain_cell(node)
                if node.is_parameters:
                    self.namespace.update(self.overrides)
                    self.store.meta.update_run(self.run_id, params={
                        k: _jsonable(self.namespace.get(k)) for k in self.graph.parameters})

    # -- plain cells in the driver ---------------------------------------------------------------
    def _run_plain_cell(self, node: Node) -> None:
        needed = node.upstream_steps
        self.dispatch.pump(lambda: all(self.steps[s].done for s in needed))
        for name, step in node.upstream.items():
            state = self.steps[step]
            if not state.ok:
                raise _CellFailed(
                    f"cell {node.cell.number} reads {name!r} from step {step!r}, which did not "
                    f"succeed ({state.error or 'failed'})"
                )
            if name in state.outputs:
                self.namespace[name] = self.dispatch.load(state.outputs[name])
        filename = f"<cell {node.cell.number}>"
        source = self._sources[node.cell.number]
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self.on_event("cell-started", {"cell": node.cell.number})
        failure: list[BaseException] = []

        def execute() -> None:
            try:
                exec(compile(source, filename, "exec"), self.namespace)
            except BaseException as exc:  # SystemExit too: it ends the cell, not the driver
                failure.append(exc)
            finally:
                self.dispatch.events.put(("cell", None))

        # On a thread of its own, so that steps keep being dispatched while the cell runs.
        self._cell_thread = threading.Thread(target=execute, name=filename, daemon=True)
        self._cell_thread.start()
        self.dispatch.pump(lambda: self._cell_thread is None or not self._cell_thread.is_alive())
        self._cell_thread = None
        if failure:
            exc = failure[0]
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != filename:
                tb = tb.tb_next
            raise _CellFailed(
                f"plain cell {node.cell.number} raised {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exception(type(exc), exc, tb))
            ) from exc

    def _capture_by_value(self, state: StepState) -> None:
        """Snapshot the plain-cell values the step reads, as they are at the step's cell."""
        specs: dict[str, InputSpec] = {}
        tokens: dict[str, str] = {}
        for name in state.node.by_value:
            value = self.namespace.get(name, _MISSING)
            if value is _MISSING:
                self.dispatch.fail_step(state, f"{name!r} was not defined when the driver reached cell "
                                       f"{state.node.cell.number} (a plain cell above did not bind "
                                       "it: a branch not taken?)")
                return
            if type(value).__name__ == "module" and hasattr(value, "__name__"):
                mod = value.__name__
                specs[name] = ("module", mod)
                tokens[name] = cache.hash_json(["module", mod, environment.package_versions([mod]),
                                                environment.local_sources([mod])])
                continue
            try:
                specs[name] = ("value", cloudpickle.dumps(value, protocol=5))
                tokens[name] = value_token(value)
                state.by_value_info[name] = value_info(value)
            except Exception as exc:
                self.dispatch.fail_step(state, (
                    f"step {state.name!r} (cell {state.node.cell.number}) reads {name!r}, a "
                    f"{type(value).__name__} defined in a plain cell, which cannot be shipped to "
                    f"a worker: {exc}. Fix: create {name!r} inside the step (or in an upstream "
                    "step) instead of in a plain cell."
                ))
                return
        state.by_value = specs
        state.by_value_tokens = tokens


@contextlib.contextmanager
def _notebook_dir(folder: Path) -> Iterator[None]:
    """Work in the notebook's folder, with it on ``sys.path``, as a Jupyter kernel does."""
    before = os.getcwd()
    entry = str(folder)
    os.chdir(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        os.chdir(before)
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


# -- entry points ------------------------------------------------------------------------------
def run_notebook(
    path: str | os.PathLike[str],
    *,
    store: Store,
    executor: Executor,
    params: dict[str, Any] | None = None,
    param_args: Sequence[str] = (),
    force: bool = False,
    until: str | None = None,
    on_log: LogHandler | None = None,
    on_event: EventHandler | None = None,
) -> str:
    """Run the notebook at ``path`` as a new run; returns its id.

    Parameters come as ``param_args`` (``NAME=VALUE`` strings, as on the command line) and/or as
    ``params`` (Python values, which win). With ``until``, only that step and what it needs run
    (``graph.cells_until``)."""
    nb = nbmod.load(os.fspath(path))
    if until is not None:
        nb = dataclasses.replace(nb, cells=cells_until(nb.cells, until))
    runner = Runner(nb, store, executor, params=params, param_args=param_args, force=force,
                    on_log=on_log, on_event=on_event)
    return runner.run()


def resume_run(
    run_id: str,
    *,
    store: Store,
    executor: Executor,
    from_steps: Iterable[str] = (),
    on_log: LogHandler | None = None,
    on_event: EventHandler | None = None,
) -> str:
    """A new run of ``run_id``'s notebook with its parameters that takes every step that succeeded
    there as it is, and runs the rest (and ``from_steps`` with everything downstream of them)."""
    original = store.meta.run(run_id)
    if original is None:
        raise RunError(f"no run {run_id!r} in {store.url}; `nbflow runs` lists them")
    path = original.get("notebook_path")
    if not path or not os.path.exists(path):
        raise RunError(f"run {run_id} was made from {path!r}, which no longer exists")
    nb = nbmod.load(path)
    graph = build_graph(nb.cells)
    unknown = [s for s in from_steps if s not in graph.steps]
    if unknown:
        raise RunError(f"--from {', '.join(unknown)}: no such step; the notebook has "
                       f"{', '.join(graph.steps)}")
    by_step: dict[str, list[Row]] = {}
    for task in store.meta.tasks(run_id):
        by_step.setdefault(task["step"], []).append(task)
    reuse = {step: sorted(tasks, key=lambda t: (t["idx"] is not None, t["idx"] or 0))
             for step, tasks in by_step.items()
             if step in graph.steps and all(TaskStatus(t["status"]).ok for t in tasks)}
    driver = original.get("driver") or {}
    runner = Runner(nb, store, executor, param_args=driver.get("param_args") or (),
                    params=driver.get("params") or None,
                    force_steps=graph.descendants(from_steps), resumed_from=run_id, reuse=reuse,
                    on_log=on_log, on_event=on_event, graph=graph)
    return runner.run()


__all__ = [
    "AnalysisError",
    "GraphError",
    "RunError",
    "Runner",
    "parse_param",
    "resume_run",
    "run_notebook",
]

