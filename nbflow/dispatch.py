"""The steps of one run on the cluster: when each is ready, cache hits, submitting, completions.

``Dispatcher`` owns the state of every step and task of a run. It dispatches a step as soon as its
upstream steps have finished and the driver has captured its by-value inputs; records cache hits
(or, on resume, the original run's tasks) without executing; submits the rest through the
``Executor``; and handles what comes back — result events published by workers, futures that end
without one (a dead worker), timeouts counted from a task's start, retries, ``--catch`` — all on the
driver thread, in ``pump()``. Every metadata write goes through ``store.meta``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import datetime as dt
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import xxhash

from nbflow import cache, config
from nbflow.analyze import normalize_code
from nbflow.execute import Attempt, Executor
from nbflow.graph import FlowGraph, Node
from nbflow.model import ArtifactRef, TaskStatus
from nbflow.store import LIVE_LOG, Store
from nbflow.tokenize import value_token
from nbflow.worker import InputSpec, TaskSpec

LogHandler = Callable[[dict[str, Any]], None]
EventHandler = Callable[[str, dict[str, Any]], None]
Row = dict[str, Any]

LOG_TOPIC = "nbflow-logs"
RESULT_TOPIC = "nbflow-results"


class InternalError(RuntimeError):
    """A state nbflow should never reach; please report it."""


@dataclass
class TaskState:
    task_id: int
    index: int | None
    item: bytes | None
    cache_key: str
    attempt: int = 0
    handle: Attempt | None = None
    status: TaskStatus = TaskStatus.PENDING
    outputs: dict[str, ArtifactRef] = field(default_factory=dict)
    display: dict[str, Any] | None = None  # the stored display of the last expression (a ref)
    cached_from_run: str | None = None  # for a cache hit: the run that made the outputs


@dataclass
class StepState:
    node: Node
    by_value: dict[str, InputSpec] | None = None  # captured when the driver reaches the cell
    by_value_tokens: dict[str, str] = field(default_factory=dict)
    by_value_info: dict[str, dict[str, str]] = field(default_factory=dict)  # type, short repr
    tasks: list[TaskState] = field(default_factory=list)
    inputs: dict[str, InputSpec] = field(default_factory=dict)  # as shipped to every task
    running: int = 0  # tasks with an attempt under way
    dispatched: bool = False
    done: bool = False
    ok: bool = False
    error: str | None = None
    outputs: dict[str, InputSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.node.name


class Dispatcher:
    """Dispatches, caches, submits and completes the steps of run ``run_id``."""

    def __init__(
        self,
        run_id: str,
        graph: FlowGraph,
        store: Store,
        executor: Executor,
        *,
        folder: Path,
        force: bool = False,
        force_steps: set[str] | None = None,
        reuse: dict[str, list[Row]] | None = None,
        on_log: LogHandler | None = None,
        on_event: EventHandler | None = None,
        all_outputs_required: bool = False,
        cache_memo: dict[str, list[Row]] | None = None,
    ) -> None:
        self.run_id = run_id
        # Cache candidates already looked up, by key (a kernel session keeps one across cells:
        # finished tasks never change, so a repeated cell needs no query to find its hit).
        self.cache_memo = cache_memo if cache_memo is not None else {}
        self.graph = graph
        self.store = store
        self.executor = executor
        self.folder = folder
        self.force = force
        self.force_steps = force_steps or set()
        self.reuse = reuse or {}
        self.on_log = on_log
        self.on_event: EventHandler = on_event or (lambda _kind, _data: None)
        self.steps = {name: StepState(node) for name, node in graph.steps.items()}
        self.failed = False
        # True while the driver is busy elsewhere (a plain cell on its thread): waiting is fine.
        self.busy: Callable[[], bool] = lambda: False
        # Handled in order by the driver thread: ("result", msg), ("started", msg) and ("log", msg)
        # published by workers, ("done", Attempt) from a future's callback, ("cell", None) when a
        # plain cell ends.
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._live_logs: dict[tuple[int, int], dict[str, list[str]]] = {}
        # Attempts with lines not yet written to their live log file (LIVE_LOG), for readers of
        # the store (the JupyterLab sidebar) while the task runs; written at most once a second.
        self._live_dirty: set[tuple[int, int]] = set()
        self._live_flushed = 0.0
        self._live_lock = threading.Lock()
        self._code = {name: normalize_code(s.node.analysis.body) for name, s in self.steps.items()}
        # Outputs that must be saved (None: all of them, as in a kernel, where any later cell may
        # read them); any other that cannot be pickled is skipped with a warning.
        self._required: dict[str, tuple[str, ...] | None] = {
            name: None if all_outputs_required else tuple(sorted(graph.consumed(name)))
            for name in self.steps}
        # The tasks with an attempt under way, by task id: looked up once per event, so a
        # foreach of many items costs no scan of all its tasks per completion.
        self._active: dict[int, tuple[StepState, TaskState]] = {}

    def relay_result(self, msg: dict[str, Any]) -> None:
        if msg.get("run") == self.run_id:
            self.events.put((msg.get("kind", "result"), msg))

    def relay_log(self, msg: dict[str, Any]) -> None:
        if msg.get("run") != self.run_id:
            return
        with self._live_lock:
            key = (msg["task"], msg.get("attempt", 0))
            streams = self._live_logs.setdefault(key, {})
            streams.setdefault(msg["stream"], []).extend(msg["lines"])
            self._live_dirty.add(key)
        if self.on_log is not None:  # echoed by the driver thread (a kernel's output goes to
            self.events.put(("log", msg))  # the cell of the thread that writes it)

    def load(self, spec: InputSpec) -> Any:
        kind, value = spec
        if kind == "artifact":
            return self.store.artifacts.get(value.hash)
        if kind == "gather":
            return [self.store.artifacts.get(r.hash) for r in value]
        if kind == "value":
            return cloudpickle.loads(value)
        return __import__(value)

    # -- steps -----------------------------------------------------------------------------------
    def _record_failure(self, state: StepState, status: TaskStatus, error: str) -> None:
        tid = self.store.meta.create_task(run_id=self.run_id, step=state.name,
                                          status=status.value)
        self.store.meta.finish_task(tid, status, error=error,
                                    error_type="nbflow" if status == TaskStatus.FAILED else None)
        self.on_event("task-finished", {"step": state.name, "status": status.value,
                                        "error": error})

    def fail_step(self, state: StepState, error: str) -> None:
        state.done, state.ok, state.error = True, False, error
        state.by_value = state.by_value if state.by_value is not None else {}
        self.failed = True
        self._record_failure(state, TaskStatus.FAILED, error)

    def _cancel_step(self, state: StepState, reason: str) -> None:
        state.done, state.ok, state.error = True, False, reason
        self._record_failure(state, TaskStatus.CANCELLED, reason)

    def dispatch_ready(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for state in self.steps.values():
                if state.dispatched or state.done or state.by_value is None:
                    continue
                ups = [self.steps[u] for u in state.node.upstream_steps]
                if not all(u.done for u in ups):
                    continue
                state.dispatched = True
                progressed = True
                bad = [u for u in ups if not u.ok]
                if bad:
                    self._cancel_step(state, f"upstream step {bad[0].name!r} did not succeed")
                elif (state.name in self.reuse and state.name not in self.force_steps
                      and self._claim(self.reuse[state.name])):
                    self._reuse(state, self.reuse[state.name])
                else:
                    self._dispatch(state)

    def _inputs(self, state: StepState) -> dict[str, InputSpec] | str:
        inputs: dict[str, InputSpec] = {}
        for name, step in state.node.upstream.items():
            up = self.steps[step]
            if name not in up.outputs:
                return (f"step {state.name!r} reads {name!r} from step {step!r}, which finished "
                        f"without binding it")
            inputs[name] = up.outputs[name]
        assert state.by_value is not None
        inputs.update(state.by_value)
        return inputs

    def _items(self, state: StepState, inputs: dict[str, InputSpec]) -> list[Any] | str:
        """The foreach items, from the step's own snapshot of its inputs (not the live driver)."""
        opts = state.node.options
        assert opts is not None and opts.foreach is not None
        expr = opts.foreach.expr
        reads = {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
        scope: dict[str, Any] = {"__builtins__": builtins}
        try:
            for name in reads & set(inputs):
                scope[name] = self.load(inputs[name])
            return list(eval(expr, scope))
        except Exception as exc:
            return (f"--foreach {opts.foreach.var} in {expr}: evaluating {expr!r} raised "
                    f"{type(exc).__name__}: {exc}")

    def _dispatch(self, state: StepState) -> None:
        opts = state.node.options
        assert opts is not None
        inputs = self._inputs(state)
        if isinstance(inputs, str):
            self.fail_step(state, inputs)
            return
        items: list[Any] | None = None
        if opts.foreach is not None:
            got = self._items(state, inputs)
            if isinstance(got, str):
                self.fail_step(state, f"cell {state.node.cell.number}: {got}")
                return
            items = got
        state.inputs = inputs
        try:
            payloads: list[tuple[int | None, Any, bytes | None, str | None]] = (
                [(None, None, None, None)] if items is None
                else [(i, v, cloudpickle.dumps(v, protocol=5), value_token(v))
                      for i, v in enumerate(items)])
        except Exception as exc:
            self.fail_step(state, f"cell {state.node.cell.number}: a --foreach item cannot be "
                                   f"shipped to a worker: {exc}. Fix: iterate over picklable "
                                   "values (names, paths, numbers) and build the rest in the step.")
            return
        force = self.force or opts.force or state.name in self.force_steps
        self.on_event("step-started", {"step": state.name, "tasks": len(payloads)})
        described = _describe_inputs(inputs, state.by_value_info)
        hashes = cache.input_hashes(inputs, state.by_value_tokens)
        modules = [*state.node.analysis.imports, *(s[1] for s in inputs.values() if s[0] == "module")]
        env = cache.step_environment(modules)
        keys = [cache.task_key(step=state.name, code=self._code[state.name],
                               options=opts.to_json(), inputs=hashes, item_token=token,
                               outputs=state.node.outputs, env=env)
                for _, _, _, token in payloads]
        candidates = {} if force else self._candidates(keys)
        cached: list[tuple[Row, Row]] = []
        started: list[Row] = []
        for (index, value, blob, _), key in zip(payloads, keys, strict=True):
            row: Row = {"run_id": self.run_id, "step": state.name, "idx": index,
                        "item": None if index is None else repr(value)[:200], "cache_key": key,
                        "resources": opts.resources.to_json(), "inputs": described,
                        "environment": env}
            hit = cache.usable(self.store, candidates.get(key, []))
            task = TaskState(-1, index, blob, key)
            if hit is None:
                self.cache_memo.pop(key, None)  # look again next time: this run's task will do
                started.append(row)
            else:
                cached.append((row, hit))
                task.status, task.outputs = TaskStatus.CACHED, dict(hit["outputs"])
                task.display = hit.get("display")
                task.cached_from_run = hit["run_id"]
            state.tasks.append(task)
        if started:
            # Connect (its checks run then) and check what this step ships, before any task of
            # it is recorded: a refusal leaves no task behind.
            self.executor.client  # noqa: B018 - connects on first use
            self.executor.check_versions(modules)
        self._record_and_submit(state, cached, started)

    def _candidates(self, keys: list[str]) -> dict[str, list[Row]]:
        missing = [k for k in keys if k not in self.cache_memo]
        if missing:
            found = self.store.meta.cache_candidates(missing)
            self.cache_memo.update({k: v for k, v in found.items() if v})
        return {k: self.cache_memo[k] for k in keys if k in self.cache_memo}

    def _claim(self, originals: list[Row]) -> bool:
        """Whether the original run's outputs and logs of a step are all still there (claimed,
        so that a concurrent gc keeps them); if not, resume runs the step again."""
        return all(cache.claim_task(self.store, orig) for orig in originals)

    def _reuse(self, state: StepState, originals: list[Row]) -> None:
        """On resume: take the original run's tasks of this step as they are."""
        self.on_event("step-started", {"step": state.name, "tasks": len(originals)})
        cached = []
        for orig in originals:
            row = {k: orig.get(k) for k in ("step", "idx", "item", "cache_key", "resources",
                                             "inputs", "code_hash", "environment")}
            cached.append(({**row, "run_id": self.run_id}, orig))
            state.tasks.append(TaskState(-1, orig["idx"], None, orig["cache_key"],
                                         status=TaskStatus.CACHED, outputs=dict(orig["outputs"]),
                                         display=orig.get("display"),
                                         cached_from_run=orig["run_id"]))
        self._record_and_submit(state, cached, [])

    def _record_and_submit(self, state: StepState, cached: list[tuple[Row, Row]],
                           started: list[Row]) -> None:
        # One transaction each for all the step's tasks, and every id assigned before the first
        # submit, so that an error while submitting leaves nothing unaccounted for.
        code = state.node.analysis.body
        cached_ids = iter(self.store.meta.record_cached_tasks(cached, code=code))
        started_ids = iter(self.store.meta.create_tasks(started, start=True, code=code))
        hits = iter(hit for _, hit in cached)
        for task in state.tasks:
            if task.status == TaskStatus.CACHED:
                task.task_id = next(cached_ids)
                self.on_event("task-finished", {"step": state.name, "index": task.index,
                                                "status": "cached", "from": next(hits)["run_id"]})
            else:
                task.task_id = next(started_ids)
                task.attempt = 1
        for task in state.tasks:
            if task.status == TaskStatus.PENDING:
                self._submit(state, task)
        self._maybe_finish_step(state)

    def _submit(self, state: StepState, task: TaskState) -> None:
        """Submit the task's current attempt (already recorded as started in the database)."""
        opts = state.node.options
        assert opts is not None
        spec = TaskSpec(
            run_id=self.run_id, task_id=task.task_id, attempt=task.attempt, step=state.name,
            cell=state.node.cell.number, code=state.node.analysis.body,
            body_line=state.node.analysis.body_line, cell_source=state.node.cell.source,
            outputs=state.node.outputs, store_url=self.store.url, inputs=state.inputs,
            required=self._required[state.name],
            foreach_var=opts.foreach.var if opts.foreach else None, item=task.item,
            catch=opts.catch, fsync=bool(config.get("fsync", True)),
            log_topic=LOG_TOPIC, result_topic=RESULT_TOPIC,
            tail_lines=int(config.get("logs.tail-lines") or 50),
            cwd=str(self.folder), report_start=bool(opts.timeout), display=opts.foreach is None,
        )
        task.status = TaskStatus.RUNNING
        if task.task_id not in self._active:
            self._active[task.task_id] = (state, task)
            state.running += 1
        task.handle = self.executor.submit(spec, opts.resources,
                                           lambda a: self.events.put(("done", a)))
        self.on_event("task-started", {"step": state.name, "index": task.index,
                                       "attempt": task.attempt})

    # -- completions -----------------------------------------------------------------------------
    def _running(self) -> list[tuple[StepState, TaskState]]:
        return list(self._active.values())

    def _finished(self, state: StepState, task: TaskState, status: TaskStatus,
                  outputs: dict[str, ArtifactRef]) -> None:
        task.status, task.outputs, task.handle = status, outputs, None
        if self._active.pop(task.task_id, None) is not None:
            state.running -= 1

    def pump(self, until: Callable[[], bool]) -> None:
        """Handle worker events, finished attempts and deadlines until ``until()`` holds."""
        while not until():
            running = self._running()
            cell_busy = self.busy()
            if not running and not cell_busy:
                self.dispatch_ready()
                if until():
                    return
                if not self._running():
                    raise InternalError("waiting with nothing running")
                continue
            deadlines = [t.handle.deadline for _, t in running
                         if t.handle is not None and t.handle.deadline is not None]
            wait = 1.0
            if deadlines:
                wait = max(0.0, min(min(deadlines) - time.monotonic(), wait))
            try:
                kind, payload = self.events.get(timeout=wait)
            except queue.Empty:
                kind, payload = "", None
            if kind == "log" and self.on_log is not None:
                self.on_log(payload)
            elif kind in ("result", "started"):
                found = self._find(payload["step"], payload["task_id"], payload["attempt"])
                if found is not None and kind == "result":
                    self._resolve(*found, payload)
                elif found is not None:
                    self._started(*found)
            elif kind == "done":
                attempt: Attempt = payload
                found = self._find(attempt.spec.step, attempt.spec.task_id, attempt.spec.attempt)
                if found is not None:  # no result event came first: the worker died, or the
                    # event was lost; ask the future
                    self._resolve(*found, self.executor.result(attempt))
            self._check_deadlines()
            self._flush_live_logs()

    def _find(self, step: str, task_id: int, attempt: int) -> tuple[StepState, TaskState] | None:
        """The task whose *current* attempt this is; None for a late or stopped attempt."""
        found = self._active.get(task_id)
        if found is None or found[0].name != step:
            return None
        handle = found[1].handle
        return found if handle is not None and handle.spec.attempt == attempt else None

    def _started(self, state: StepState, task: TaskState) -> None:
        """The worker began the attempt: its --timeout counts from now, not from the queue."""
        opts = state.node.options
        if task.handle is not None and opts is not None and opts.timeout:
            task.handle.deadline = time.monotonic() + opts.timeout

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for state, task in self._running():
            handle = task.handle
            if handle is None or handle.deadline is None or handle.deadline > now:
                continue
            opts = state.node.options
            assert opts is not None
            task.handle = None
            self.executor.stop([handle])
            error = (f"step {state.name!r} ran longer than its --timeout of {opts.timeout:g} s "
                     "and was stopped")
            result = {"error": error, "error_type": "Timeout", "exception": None,
                      **self._saved_live_logs(task)}
            self.store.meta.finish_attempt(task.task_id, task.attempt, TaskStatus.TIMED_OUT,
                                           error=error)
            self._after_failure(state, task, result, TaskStatus.TIMED_OUT)

    def _flush_live_logs(self) -> None:
        """Write the lines of running attempts to ``LIVE_LOG`` files, at most once a second.
        They are separate from the logs the worker writes when the attempt ends, so a late
        flush can never overwrite a complete log."""
        now = time.monotonic()
        if now - self._live_flushed < 1.0 or not self._live_dirty:
            return
        self._live_flushed = now
        with self._live_lock:
            dirty, self._live_dirty = self._live_dirty, set()
            snapshot = {k: {s: list(v) for s, v in self._live_logs.get(k, {}).items()}
                        for k in dirty if k in self._live_logs}
        for (task_id, attempt), streams in snapshot.items():
            for stream, lines in streams.items():
                with contextlib.suppress(OSError):
                    self.store.artifacts.write_text(
                        LIVE_LOG.format(run=self.run_id, task=task_id, attempt=attempt,
                                        stream=stream), "\n".join(lines) + "\n")

    def _saved_live_logs(self, task: TaskState) -> dict[str, Any]:
        """An attempt that never reported back: keep the lines it streamed, as its logs."""
        with self._live_lock:
            streams = self._live_logs.pop((task.task_id, task.attempt), {})
        out: dict[str, Any] = {}
        for stream, lines in streams.items():
            rel = f"logs/{self.run_id}/{task.task_id}.{task.attempt}.{stream}"
            with contextlib.suppress(OSError):
                out[f"{stream}_path"] = self.store.artifacts.write_text(rel, "\n".join(lines) + "\n")
        return out

    def _resolve(self, state: StepState, task: TaskState, result: dict[str, Any]) -> None:
        """Record how the task's current attempt ended, then retry, or finish the task."""
        worker = result.get("worker")
        if result["status"] == "succeeded":
            with self._live_lock:
                self._live_logs.pop((task.task_id, task.attempt), None)
            outputs = {n: ArtifactRef.from_json(r) for n, r in result["outputs"].items()}
            task.display = result.get("display")
            self.store.meta.finish_task(
                task.task_id, TaskStatus.SUCCEEDED, outputs=outputs, worker=worker,
                attempt=task.attempt, display=task.display, **_times(result),
                files=result.get("files"), stdout_path=result.get("stdout_path"),
                stderr_path=result.get("stderr_path"))
            self._finished(state, task, TaskStatus.SUCCEEDED, outputs)
            self.on_event("task-finished", {"step": state.name, "index": task.index,
                                            "status": "succeeded",
                                            "duration": result["finished"] - result["started"]})
            self._maybe_finish_step(state)
            return
        if "stdout_path" not in result:  # the worker died: keep what it streamed
            result = {**result, **self._saved_live_logs(task)}
        else:
            with self._live_lock:
                self._live_logs.pop((task.task_id, task.attempt), None)
        self.store.meta.finish_attempt(task.task_id, task.attempt, TaskStatus.FAILED,
                                       worker=worker, error=result.get("error"), **_times(result))
        self._after_failure(state, task, result, TaskStatus.FAILED)

    def _after_failure(self, state: StepState, task: TaskState, result: dict[str, Any],
                       status: TaskStatus) -> None:
        opts = state.node.options
        assert opts is not None
        if task.attempt <= opts.retry:
            self.on_event("task-retry", {"step": state.name, "index": task.index,
                                         "attempt": task.attempt, "error": result.get("error")})
            task.attempt += 1
            self.store.meta.start_attempt(task.task_id, task.attempt)
            self._submit(state, task)
            return
        outputs: dict[str, ArtifactRef] = {}
        exc_ref = result.get("exception")
        if opts.catch:
            if exc_ref is None:
                exc_ref = self.store.artifacts.put(
                    RuntimeError(result.get("error") or "task failed")).to_json()
            ref = ArtifactRef.from_json(exc_ref)
            outputs = {name: ref for name in state.node.outputs}
        self.store.meta.finish_task(
            task.task_id, status, outputs=outputs, worker=result.get("worker"), **_times(result),
            error=result.get("error"), error_type=result.get("error_type"),
            files=result.get("files"), stdout_path=result.get("stdout_path"),
            stderr_path=result.get("stderr_path"))
        self._finished(state, task, status, outputs)
        self.on_event("task-finished", {"step": state.name, "index": task.index,
                                        "status": status.value, "error": result.get("error"),
                                        "caught": opts.catch})
        self._maybe_finish_step(state)

    def _maybe_finish_step(self, state: StepState) -> None:
        if state.done or state.running:
            return
        opts = state.node.options
        assert opts is not None
        state.done = True
        uncaught = [t for t in state.tasks if not t.status.ok and not opts.catch]
        state.ok = not uncaught
        if uncaught:
            state.error = f"{len(uncaught)} task(s) {uncaught[0].status.value}"
            self.failed = True
        for name in state.node.outputs:
            refs = [t.outputs.get(name) for t in state.tasks]
            if opts.foreach is not None:
                if all(r is not None for r in refs):
                    state.outputs[name] = ("gather", refs)
            elif refs and refs[0] is not None:
                state.outputs[name] = ("artifact", refs[0])
        self.on_event("step-finished", {"step": state.name, "ok": state.ok})
        self.dispatch_ready()

    def abandon(self, reason: str) -> None:
        """Stop what is still running (restarting its workers) and close every open record."""
        handles = [t.handle for s in self.steps.values() for t in s.tasks if t.handle is not None]
        if handles and self.executor.connected:
            with contextlib.suppress(Exception):
                self.executor.stop(handles)
        for state in self.steps.values():
            for task in state.tasks:
                if not task.status.finished:
                    task.status, task.handle = TaskStatus.CANCELLED, None
            state.running = 0
            if not state.done and not state.tasks:
                self._cancel_step(state, reason)
            state.done = True
        self._active.clear()
        self.store.meta.close_open_tasks(self.run_id, reason)


def _times(result: dict[str, Any]) -> dict[str, Any]:
    """The attempt's start and end as the worker saw them (they exclude time spent queued)."""
    out = {}
    for key, column in (("started", "started_at"), ("finished", "finished_at")):
        if result.get(key) is not None:
            out[column] = dt.datetime.fromtimestamp(result[key], dt.UTC)
    return out


def _describe_inputs(inputs: dict[str, InputSpec],
                     info: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """How each input was supplied, as tasks record it; by-value inputs with their type and a
    short repr (``info``), for lineage and ``nbflow diff``."""
    out: dict[str, Any] = {}
    for name, (kind, value) in inputs.items():
        if kind == "artifact":
            out[name] = {"kind": kind, **value.to_json()}
        elif kind == "gather":
            out[name] = {"kind": kind, "items": [r.to_json() for r in value]}
        elif kind == "value":
            out[name] = {"kind": kind, "hash": xxhash.xxh3_128(value).hexdigest(),
                         "size": len(value), **(info or {}).get(name, {})}
        else:
            out[name] = {"kind": kind, "module": value}
    return out
