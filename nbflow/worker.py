"""What runs on a Dask worker for one task attempt: load inputs, run the step's code, save outputs.

``run_task(spec)`` is shipped to a worker by ``nbflow.execute``. It builds a fresh namespace holding
the step's inputs (artifacts loaded from the store by the worker itself; by-value inputs unpickled;
modules imported by name), runs the code compiled with the cell's own line numbers, captures stdout
and stderr (per task, though a worker runs several tasks in threads), records the data files the
code reads (an audit hook), writes the outputs to the store and returns a small ``dict`` of
references: data never travels back through the driver.

This module imports no Dask at import time; the worker handle is looked up lazily for log events.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import functools
import importlib
import io
import linecache
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TextIO

import cloudpickle
import xxhash

from nbflow import freshness
from nbflow.display import format_value, split_last_expression
from nbflow.model import ArtifactRef, DataFile
from nbflow.store.artifacts import ArtifactError, ArtifactStore, SerializationError

# How an input reaches the namespace: ("artifact", ref) | ("gather", [ref, ...]) |
# ("value", pickled bytes) | ("module", module name)
InputSpec = tuple[str, Any]


@dataclass
class TaskSpec:
    """Everything a worker needs to run one attempt of one task."""

    run_id: str
    task_id: int
    attempt: int
    step: str
    cell: int
    code: str  # the step body (header lines removed)
    body_line: int  # cell line where the body starts
    cell_source: str  # the whole cell, for tracebacks
    outputs: tuple[str, ...]
    store_url: str
    # Outputs later cells read: one that cannot be saved fails the task. Any other output that
    # cannot be pickled (say the file of a `with open(...) as f:`) is skipped with a warning.
    required: tuple[str, ...] | None = None
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    foreach_var: str | None = None
    item: bytes | None = None  # cloudpickled foreach item
    catch: bool = False
    fsync: bool = True
    log_topic: str | None = None
    # The result is also published on this Dask event topic as the task ends, so the driver has it
    # without a second round trip to fetch it from the worker.
    result_topic: str | None = None
    tail_lines: int = 50
    # The notebook's folder: the task runs there, with it on sys.path, when the worker has it.
    cwd: str | None = None
    # Publish a "started" event too (the driver counts --timeout from it).
    report_start: bool = False
    # Format the value of a last expression for display (see nbflow.display); not for foreach.
    display: bool = False

    @property
    def filename(self) -> str:
        return f"<cell {self.cell}: step {self.step}>"


# -- per-task stdout/stderr ------------------------------------------------------------------------
_current = threading.local()


class _TaskLog:
    """The output of one task on one stream; complete lines are forwarded as Dask events."""

    def __init__(self, spec: TaskSpec, stream: str) -> None:
        self.spec = spec
        self.stream = stream
        self.buffer = io.StringIO()
        self.partial = ""

    def write(self, text: str) -> None:
        self.buffer.write(text)
        if self.spec.log_topic is None:
            return
        self.partial += text
        if "\n" in self.partial:
            *lines, self.partial = self.partial.split("\n")
            _emit(self.spec, self.stream, lines)

    def close(self) -> None:
        if self.partial and self.spec.log_topic is not None:
            _emit(self.spec, self.stream, [self.partial])
        self.partial = ""


def _emit(spec: TaskSpec, stream: str, lines: list[str]) -> None:
    _publish(spec.log_topic, {"run": spec.run_id, "task": spec.task_id, "attempt": spec.attempt,
                              "step": spec.step, "stream": stream, "lines": lines})


def _publish(topic: str | None, message: dict[str, Any]) -> None:
    if topic is None:
        return
    try:
        from distributed import get_worker

        get_worker().log_event(topic, message)
    except Exception:  # not on a worker, or it is closing: the driver falls back to the future
        pass


class _ThreadRouter(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr``: writes go to the calling task's log, if any."""

    def __init__(self, original: TextIO, stream: str) -> None:
        self.original = original
        self.stream = stream

    def write(self, text: str) -> int:
        log: _TaskLog | None = getattr(_current, self.stream, None)
        if log is None:
            return self.original.write(text)
        log.write(text)
        return len(text)

    def flush(self) -> None:
        if getattr(_current, self.stream, None) is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


_install_lock = threading.Lock()


@cache
def _install_process_hooks() -> None:
    """Once per worker process: route stdout/stderr per thread and watch file opens."""
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadRouter):
            sys.stdout = _ThreadRouter(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _ThreadRouter):
            sys.stderr = _ThreadRouter(sys.stderr, "stderr")
        sys.addaudithook(_audit)


# -- data files read by a task ---------------------------------------------------------------------
_PYTHON_DIRS = {os.path.join(os.path.realpath(p), "")
                for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
# The time zone database is read by pandas and datetime as a side effect, not as a step's data.
_IGNORED_PREFIXES = (*_PYTHON_DIRS, "/proc/", "/sys/", "/dev/", "/usr/share/zoneinfo/")
# Python source and extension modules are imports, covered by the environment part of the key.
_IGNORED_SUFFIXES = (".py", ".pyc", ".so", ".pth")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open":
        return
    files: set[str] | None = getattr(_current, "files", None)
    if files is None:
        return
    try:
        path, mode = args[0], args[1]
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return
        if isinstance(path, int) or path is None:
            return
        files.add(os.fsdecode(os.fspath(path)))
    except Exception:
        pass


def _hash_file(path: str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def describe_file(path: str) -> DataFile | None:
    """Size, mtime and content hash of a regular file; None if it is gone or not a file."""
    try:
        st = os.stat(path)
        if not os.path.isfile(path):
            return None
        return DataFile(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, hash=_hash_file(path))
    except OSError:
        return None


def _data_files(paths: set[str], store: ArtifactStore) -> list[DataFile]:
    out = []
    for raw in sorted(paths):
        path = os.path.abspath(raw)
        if path.startswith(_IGNORED_PREFIXES) or path.endswith(_IGNORED_SUFFIXES):
            continue
        if store.local and path.startswith(store.root + os.sep):
            continue
        info = describe_file(path)
        if info is not None:
            out.append(info)
    return out


# -- running a task --------------------------------------------------------------------------------
@cache
def _store(url: str, fsync: bool) -> ArtifactStore:
    return ArtifactStore(url, fsync=fsync)


def load_input(store: ArtifactStore, spec: InputSpec) -> Any:
    kind, value = spec
    if kind == "artifact":
        return store.get(value.hash)
    if kind == "gather":
        return [store.get(ref.hash) for ref in value]
    if kind == "value":
        return cloudpickle.loads(value)
    if kind == "module":
        return importlib.import_module(value)
    raise ValueError(f"unknown input kind {kind!r}")


def _user_traceback(exc: BaseException, filename: str) -> str:
    """The traceback from the step's own code down, without nbflow's frames above it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
    return "".join(lines)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:
        return f"{socket.gethostname()}:{os.getpid()}"


def compile_step(spec: TaskSpec) -> tuple[Any, Any]:
    """The step's code compiled with the cell's line numbers, and, when the cell ends in an
    expression whose value IPython would display, that expression compiled apart (else None)."""
    import ast

    tree = ast.parse(spec.code, filename=spec.filename)
    ast.increment_lineno(tree, spec.body_line - 1)
    lines = spec.cell_source.splitlines(keepends=True)
    linecache.cache[spec.filename] = (len(spec.cell_source), None, lines, spec.filename)
    last = None
    if spec.display:
        tree, expr = split_last_expression(tree, spec.code)
        if expr is not None:
            last = compile(expr, spec.filename, "eval")
    return compile(tree, spec.filename, "exec"), last


def run_task(spec: TaskSpec) -> dict[str, Any]:
    """Run one attempt of one task; never raises for the step's own errors (they are reported)."""
    _install_process_hooks()
    if _own_process():
        freshness.drop_changed()  # a local module edited since this worker imported it
    started = time.time()
    if spec.report_start:
        _publish(spec.result_topic, {"kind": "started", "run": spec.run_id, "step": spec.step,
                                     "task_id": spec.task_id, "attempt": spec.attempt})
    _enter_notebook_dir(spec.cwd)
    store = _store(spec.store_url, spec.fsync)
    result: dict[str, Any] = {
        "status": "failed", "outputs": {}, "missing": [], "skipped": {}, "error": None, "error_type": None,
        "exception": None, "worker": _worker_address(), "files": [], "started": started,
    }
    logs = {"stdout": _TaskLog(spec, "stdout"), "stderr": _TaskLog(spec, "stderr")}
    namespace: dict[str, Any] = {"__name__": "__nbflow_step__", "__builtins__": builtins}
    stage = "loading inputs"
    try:
        for name, input_spec in spec.inputs.items():
            try:
                namespace[name] = load_input(store, input_spec)
            except ArtifactError as exc:  # corrupt or missing: name the input, not a traceback
                raise InputError(
                    f"input {name!r} of step {spec.step!r} (cell {spec.cell}) cannot be loaded: "
                    f"{exc}") from exc
        if spec.foreach_var is not None and spec.item is not None:
            namespace[spec.foreach_var] = cloudpickle.loads(spec.item)
        code, last = compile_step(spec)
        stage = "running"
        _current.stdout, _current.stderr = logs["stdout"], logs["stderr"]
        files: set[str] = set()
        _current.files = files
        shown: Any = None
        try:
            with _cancellable(spec):
                exec(code, namespace)
                if last is not None:
                    shown = eval(last, namespace)
        finally:
            _current.stdout = _current.stderr = _current.files = None
        stage = "saving outputs"
        result["files"] = [f.to_json() for f in _data_files(files, store)]
        bundle = format_value(shown) if last is not None else None
        if bundle is not None:
            try:
                result["display"] = store.put(bundle).to_json()
            except SerializationError:
                raise
            except ArtifactError as exc:
                raise OutputError(f"the displayed value of step {spec.step!r} (cell {spec.cell}) "
                                  f"cannot be saved: {exc}") from exc
        for name in spec.outputs:
            if name not in namespace:
                result["missing"].append(name)
                continue
            try:
                result["outputs"][name] = store.put(namespace[name]).to_json()
            except SerializationError as exc:
                if spec.required is not None and name not in spec.required:
                    result["skipped"][name] = str(exc)
                    logs["stderr"].write(f"nbflow: output {name!r} was not saved ({exc}); no "
                                         "later cell reads it.\n")
                    continue
                raise OutputError(
                    f"output {name!r} of step {spec.step!r} (cell {spec.cell}) cannot be saved: "
                    f"{exc}. Fix: keep only picklable values in the step's top-level names (e.g. "
                    f"`del {name}` at the end of the cell, or build it inside a function), or "
                    "rebuild it where it is used."
                ) from exc
            except ArtifactError as exc:  # the store is full, read-only, gone: say which output
                raise OutputError(f"output {name!r} of step {spec.step!r} (cell {spec.cell}) "
                                  f"cannot be saved: {exc}") from exc
        result["status"] = "succeeded"
    except BaseException as exc:  # the step's code may raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, TaskCancelled):
            result["status"] = "cancelled"
            result["error"] = f"step {spec.step!r} was cancelled while {stage}: {exc}"
            result["error_type"] = "Cancelled"
        elif stage == "running":
            result["error"] = _user_traceback(exc, spec.filename)
        elif isinstance(exc, OutputError | InputError):
            result["error"] = str(exc)
        else:
            result["error"] = f"while {stage}: {''.join(traceback.format_exception(exc))}"
        kind = type(exc.__cause__) if isinstance(exc, InputError) and exc.__cause__ else type(exc)
        result["error_type"] = f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")
        if spec.catch and not isinstance(exc, TaskCancelled):
            with contextlib.suppress(ArtifactError):  # a full store: the error is recorded anyway
                result["exception"] = _save_exception(store, exc).to_json()
    finally:
        _running.pop((spec.run_id, spec.task_id, spec.attempt), None)  # even if cancelled late
        for log in logs.values():
            log.close()
        prefix = f"logs/{spec.run_id}/{spec.task_id}.{spec.attempt}"
        for stream, log in logs.items():
            text = log.buffer.getvalue()
            result[f"{stream}_tail"] = "".join(text.splitlines(keepends=True)[-spec.tail_lines:])
            result[f"{stream}_path"] = None
            if text:
                with contextlib.suppress(OSError):
                    result[f"{stream}_path"] = store.write_text(f"{prefix}.{stream}", text)
        result["finished"] = time.time()
        if _own_process():
            freshness.drop_changed()  # records what the task imported, as it is now
    _publish(spec.result_topic, {"kind": "result", "run": spec.run_id, "step": spec.step,
                                 "task_id": spec.task_id, "attempt": spec.attempt, **result})
    return result


def _enter_notebook_dir(cwd: str | None) -> None:
    """Run where the notebook is, like the driver (process-wide: one notebook folder per worker
    at a time). A worker that does not have the folder (another machine) stays where it is."""
    if not cwd or not os.path.isdir(cwd):
        return
    try:
        here: str | None = os.getcwd()
    except FileNotFoundError:  # the folder of an earlier task's notebook was deleted since
        here = None
    if here != cwd:
        os.chdir(cwd)
    if not _own_process():  # a kernel's or driver's own path and modules are left alone
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        return
    global _notebook_folder
    if _notebook_folder != cwd:
        if _notebook_folder is not None:
            # Another notebook's folder: its local modules (a `utils.py` of its own) must not
            # stand in for this one's, nor its folder shadow this one on the path.
            with contextlib.suppress(ValueError):
                sys.path.remove(_notebook_folder)
            freshness.drop_all()
        _notebook_folder = cwd
    if not sys.path or sys.path[0] != cwd:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)
        sys.path.insert(0, cwd)


_notebook_folder: str | None = None  # the folder this worker's tasks last ran in


@functools.cache
def _own_process() -> bool:
    """Whether this worker has its process to itself (a nanny started it). Only then does nbflow
    forget modules and move folders off ``sys.path``: a cluster running inside a kernel or a
    driver (``processes=False``) shares that process's modules with the user's own code."""
    try:
        from distributed import get_worker

        return get_worker().nanny is not None
    except (ImportError, ValueError):
        return False


class OutputError(Exception):
    """An output of the step cannot be stored."""


class InputError(Exception):
    """An input of the step cannot be loaded from the store (corrupt or missing)."""


# -- cancelling a running task ---------------------------------------------------------------------
class TaskCancelled(BaseException):
    """Raised inside a step's thread to stop it (its kernel was interrupted, or it timed out).

    A ``BaseException``, like ``KeyboardInterrupt``: a step's ``except Exception`` must not
    swallow it."""

    def __str__(self) -> str:
        return "cancelled by the driver"


_running: dict[tuple[str, int, int], int] = {}  # (run, task, attempt) -> thread id
_running_lock = threading.Lock()


@contextlib.contextmanager
def _cancellable(spec: TaskSpec) -> Iterator[None]:
    key = (spec.run_id, spec.task_id, spec.attempt)
    with _running_lock:
        _running[key] = threading.get_ident()
    try:
        yield
    finally:
        with _running_lock:
            _running.pop(key, None)


def cancel_tasks(keys: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Raise ``TaskCancelled`` in the threads running these attempts on this worker (run by the
    driver through ``Client.run``); returns the attempts found. The exception lands at the step's
    next Python instruction: a long call into C (``time.sleep(600)``) finishes first, which is why
    the driver restarts the worker when an attempt does not stop within a grace period."""
    found: list[tuple[str, int, int]] = []
    with _running_lock:
        for run, task, attempt in keys:
            key = (run, task, attempt)
            ident = _running.get(key)
            if ident is None:
                continue
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                       ctypes.py_object(TaskCancelled))
            found.append(key)
    return found


def running_tasks() -> list[tuple[str, int, int]]:
    """The attempts whose code is running on this worker now."""
    with _running_lock:
        return list(_running)


def _save_exception(store: ArtifactStore, exc: BaseException) -> ArtifactRef:
    try:
        return store.put(exc.with_traceback(None))
    except SerializationError:
        return store.put(RuntimeError(f"{type(exc).__name__}: {exc}"))


# -- preflight checks, run on every worker by nbflow.execute.Executor ---------------------------


def probe_store(url: str, path: str, token: str) -> str | None:
    """None if this worker reads the probe object the driver wrote at ``url``/``path`` (holding
    ``token``) and can write an object of its own next to it; otherwise why not."""
    import uuid

    import fsspec

    where = f"{url.rstrip('/')}/{path}"
    try:
        fs, root = fsspec.core.url_to_fs(url)
        target = f"{root.rstrip('/')}/{path}"
        fs.invalidate_cache(target)
        with fs.open(target, "rb") as f:
            if f.read() != token.encode():
                return f"the probe object {where} holds other bytes here (another store?)"
        mine = f"{target}.{uuid.uuid4().hex}"
        with fs.open(mine, "wb") as f:
            f.write(b"ok")
        fs.rm(mine)
    except FileNotFoundError:
        return (f"on {socket.gethostname()}, {where} does not exist (the worker sees another file "
                "system or bucket)")
    except PermissionError as exc:
        return f"on {socket.gethostname()}, no permission to read or write there ({exc})"
    except Exception as exc:
        return f"on {socket.gethostname()}, {type(exc).__name__}: {exc}"
    return None


def worker_versions(modules: list[str]) -> dict[str, str]:
    """This worker's Python (major.minor) and the versions of the packages behind ``modules``."""
    from nbflow import environment

    return {"python": environment.python_version().rsplit(".", 1)[0],
            **environment.package_versions(modules)}
