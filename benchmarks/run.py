"""nbflow benchmarks, the one command: nbflow against raw Dask, numpy, sqlite3, Metaflow and
papermill, in one run, alternating, writing medians and ratios with the machine's description.

Usage::

    python benchmarks/run.py [--quick] [--only NAME[,NAME]] [--output FILE]

NAME is one of chain, foreach, cache-hit, kernel-step, artifact, history (in this process, against
raw Dask, numpy and sqlite3) and chain-metaflow, foreach-metaflow, artifact-metaflow,
resume-metaflow, papermill (whole processes, against Metaflow and papermill: ``peers.py``).
Only a full run writes ``benchmarks/results.md`` by default; ``--quick`` or ``--only`` write to
``benchmarks/.work/`` unless given ``--output``.

This file owns the harness (alternation, settling, medians), benchmarks 1-5, the report and the
command line; ``history.py`` owns benchmark 6 and ``peers.py`` benchmarks 7-11. Each benchmark
alternates repetitions between nbflow and its contenders (the order flips every repetition) so that
drift on the machine hits all alike; the table shows medians. See ``benchmarks/README.md`` for what
is measured and why.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import psutil
from distributed import Client, Future, LocalCluster

import nbflow
from nbflow.execute import Executor
from nbflow.model import ArtifactRef
from nbflow.runner import run_notebook
from nbflow.session import InteractiveSession
from nbflow.store import Store, open_store
from nbflow.store.artifacts import ArtifactStore

CHAIN_STEPS = 10
FOREACH_ITEMS = 100
ARRAY_ELEMENTS = 2**27  # float64: 1 GiB
N_WORKERS = 2

# In the order they run; the first four share one cluster; the last five (peers.py) run whole
# processes, after that cluster has stopped.
PEER_BENCHMARKS = ("chain-metaflow", "foreach-metaflow", "artifact-metaflow", "resume-metaflow",
                   "papermill")
BENCHMARKS = ("chain", "foreach", "cache-hit", "kernel-step", "artifact", "history", *PEER_BENCHMARKS)
CLUSTER_BENCHMARKS = {"chain", "foreach", "cache-hit", "kernel-step"}
PEER_PACKAGES = {"chain-metaflow": "metaflow", "foreach-metaflow": "metaflow",
                 "artifact-metaflow": "metaflow", "resume-metaflow": "metaflow",
                 "papermill": "papermill"}

Samples = dict[str, list[float]]
Contender = Callable[[], dict[str, float]]

SETTLE = 0.1  # seconds of quiet before each timed call, so one call's cleanup does not bleed into the next

# Run in a fresh interpreter per measurement; argv: mode ("nbflow" | "numpy"), folder, number of
# float64 elements; prints one JSON line. The peak is VmHWM (the high-water mark of the process's
# resident set): on Linux ru_maxrss carries the *parent's* high-water mark over fork+exec, so in a
# child of this (large) process it would hide the save's peak entirely; VmHWM starts fresh at exec.
SAVE_RSS_SNIPPET = """
import json, os, sys
import numpy as np
from nbflow.store.artifacts import ArtifactStore

def maxrss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")

mode, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
baseline = maxrss()
arr = np.random.default_rng(0).random(n)
before = maxrss()
if mode == "nbflow":
    ArtifactStore(folder).put(arr)
else:
    with open(os.path.join(folder, "array.npy"), "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
after = maxrss()
print(json.dumps({"baseline": baseline, "before": before, "after": after, "nbytes": arr.nbytes}))
"""


# -- helpers ---------------------------------------------------------------------------------------
def settle() -> None:
    """Collect garbage and let background traffic (released futures, heartbeats) die down."""
    gc.collect()
    time.sleep(SETTLE)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn()``, after ``settle()`` outside the timed region."""
    settle()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(reps: int, contenders: dict[str, Contender]) -> Samples:
    """Run every contender once per repetition, flipping the order each repetition."""
    samples: Samples = {}
    names = list(contenders)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            for measure, value in contenders[name]().items():
                samples.setdefault(measure, []).append(value)
    return samples


def check(got: object, expected: object) -> None:
    """Refuse to report a timing whose computation went wrong (not an assert: ``-O`` drops those)."""
    if got != expected:
        raise RuntimeError(f"benchmark computed {got!r}, expected {expected!r}")


def median(samples: Samples, key: str) -> float:
    return statistics.median(samples[key])


def write_notebook(path: Path, sources: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(path))
    return path


# Module-level so that Dask ships them once per worker like any function (nbflow ships run_task).
def increment(x: int) -> int:
    return x + 1


def square(x: int) -> int:
    return x * x


# -- the cluster -----------------------------------------------------------------------------------
def start_cluster() -> tuple[LocalCluster, Client]:
    memory = psutil.virtual_memory().total // N_WORKERS
    cluster = LocalCluster(
        n_workers=N_WORKERS,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory,
        resources={"memory": memory, "cpus": 1},
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    return cluster, Client(cluster, set_as_default=False)


def make_store(folder: Path) -> Store:
    return open_store(str(folder / "store"), f"sqlite:///{folder / 'nbflow.db'}")


class EventClock:
    """Timestamps of a run's ``on_event`` events, for a breakdown of where a run spends its time."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((time.perf_counter(), kind, data))

    def times(self, kind: str, step: str | None = None) -> list[float]:
        return [t for t, k, d in self.events if k == kind and (step is None or d.get("step") == step)]

    def dispatch_seconds(self) -> float:
        """Driver time from each step's ``step-started`` to its last ``task-started``, summed."""
        return sum(max(self.times("task-started", step)) - start
                   for step, start in self._step_starts().items() if self.times("task-started", step))

    def task_latency(self) -> float:
        """Median ``task-started`` -> ``task-finished`` of one task, as the driver sees it."""
        started = {(d["step"], d.get("index")): t for t, k, d in self.events if k == "task-started"}
        return statistics.median(t - started[(d["step"], d.get("index"))]
                                 for t, k, d in self.events if k == "task-finished")

    def worker_seconds(self) -> float:
        """Median of the tasks' own durations, as measured by ``run_task`` on the workers."""
        return statistics.median(d.get("duration") or 0.0
                                 for _, k, d in self.events if k == "task-finished")

    def _step_starts(self) -> dict[str, float]:
        return {d["step"]: t for t, k, d in self.events if k == "step-started"}

    def breakdown(self, start: float, end: float) -> dict[str, float]:
        first_task, last_done = min(self.times("task-started")), max(self.times("task-finished"))
        run_started = self.times("run-started")[0]
        return {
            "whole run": end - start,
            "call -> run-started (load, analyze, record the run)": run_started - start,
            "run-started -> first task-started": first_task - run_started,
            "first task-started -> last task-finished": last_done - first_task,
            "last task-finished -> return": end - last_done,
            "driver dispatching (step-started -> its last task-started, summed)":
                self.dispatch_seconds(),
            "one task, task-started -> task-finished (median)": self.task_latency(),
            "one task, its own duration measured on the worker (median)": self.worker_seconds(),
        }


@dataclass
class NbflowRun:
    """Runs one notebook with ``force=True`` and records its wall time and event breakdown."""

    path: Path
    store: Store
    executor: Executor
    measure: str
    per: int = 1  # divide the wall time by this (steps in the chain)
    breakdown: Samples = field(default_factory=dict)

    def __call__(self) -> dict[str, float]:
        clock = EventClock()
        settle()
        start = time.perf_counter()
        run_id = run_notebook(self.path, store=self.store, executor=self.executor, force=True,
                              on_event=clock)
        end = time.perf_counter()
        status = (self.store.meta.run(run_id) or {}).get("status")
        if str(getattr(status, "value", status)) != "succeeded":
            raise RuntimeError(f"benchmark run {run_id} did not succeed: {status}")
        for name, seconds in clock.breakdown(start, end).items():
            self.breakdown.setdefault(name, []).append(seconds)
        return {self.measure: (end - start) / self.per}


# -- benchmark 1: per-step overhead ----------------------------------------------------------------
def chain_notebook(folder: Path) -> Path:
    cells = ["v0 = 0"] + [f"%%step s{i}\nv{i} = v{i - 1} + 1" for i in range(1, CHAIN_STEPS + 1)]
    return write_notebook(folder / "chain.ipynb", cells)


def raw_chain(client: Client) -> dict[str, float]:
    def go() -> None:
        prev: Future[int] | int = 0
        for _ in range(CHAIN_STEPS):
            prev = client.submit(increment, prev, pure=False)
        check(prev.result() if isinstance(prev, Future) else prev, CHAIN_STEPS)

    return {"dask chain": timed(go) / CHAIN_STEPS}


def raw_round_trip(client: Client) -> dict[str, float]:
    return {"dask round trip": timed(lambda: client.submit(increment, 1, pure=False).result())}


def bench_chain(client: Client, executor: Executor, folder: Path, reps: int) -> tuple[Samples, Samples]:
    nbflow_run = NbflowRun(chain_notebook(folder), make_store(folder), executor, "nbflow chain",
                           per=CHAIN_STEPS)
    contenders: dict[str, Contender] = {
        "nbflow": nbflow_run,
        "dask chain": lambda: raw_chain(client),
        "dask round trip": lambda: raw_round_trip(client),
    }
    alternate(1, contenders)  # warm-up: imports on the workers, database schema, caches
    nbflow_run.breakdown.clear()
    return alternate(reps, contenders), nbflow_run.breakdown


# -- benchmark 2: 100-item foreach -----------------------------------------------------------------
def foreach_notebook(folder: Path) -> Path:
    cells = [
        f"%%step items\nxs = list(range({FOREACH_ITEMS}))",
        "%%step sq --foreach x in xs\ny = x * x",
        "%%step total\ns = sum(y)",
    ]
    return write_notebook(folder / "foreach.ipynb", cells)


def raw_map_sum(client: Client) -> dict[str, float]:
    expected = sum(x * x for x in range(FOREACH_ITEMS))

    def go() -> None:
        futures = client.map(square, range(FOREACH_ITEMS), pure=False)
        check(client.submit(sum, futures, pure=False).result(), expected)

    return {"dask map+sum": timed(go)}


def bench_foreach(client: Client, executor: Executor, folder: Path,
                  reps: int) -> tuple[Samples, Samples]:
    nbflow_run = NbflowRun(foreach_notebook(folder), make_store(folder), executor, "nbflow foreach")
    contenders: dict[str, Contender] = {"nbflow": nbflow_run, "dask": lambda: raw_map_sum(client)}
    alternate(1, contenders)  # warm-up
    nbflow_run.breakdown.clear()
    return alternate(reps, contenders), nbflow_run.breakdown


# -- benchmark 3: a 1 GiB artifact -----------------------------------------------------------------
def fsynced_np_save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


def clear(folder: Path) -> None:
    gc.collect()  # unmap what was loaded from the folder before deleting it
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def load_and_read(load: Callable[[], Any]) -> tuple[float, float]:
    """Seconds to load the array, then seconds for one full read pass (``sum``) over it."""
    held: list[Any] = []
    load_s = timed(lambda: held.append(load()))
    read_s = timed(lambda: held[0].sum())
    held.clear()
    return load_s, read_s


def nbflow_artifact(arr: np.ndarray, folder: Path) -> dict[str, float]:
    clear(folder)
    store = ArtifactStore(str(folder))  # fsync on, as in a run
    refs: list[ArtifactRef] = []
    save = timed(lambda: refs.append(store.put(arr)))
    load, read = load_and_read(lambda: store.get(refs[0].hash))
    clear(folder)
    return {"nbflow save": save, "nbflow load": load, "nbflow read pass": read,
            "nbflow load+read": load + read}


def numpy_artifact(arr: np.ndarray, folder: Path) -> dict[str, float]:
    clear(folder)
    path = folder / "array.npy"
    save = timed(lambda: fsynced_np_save(path, arr))
    load, read = load_and_read(lambda: np.load(path))
    clear(folder)
    return {"numpy save": save, "numpy load": load, "numpy read pass": read,
            "numpy load+read": load + read}


def save_peak_rss(mode: str, folder: Path) -> dict[str, float]:
    """Peak RSS of saving the array in a fresh interpreter, as multiples of the array's size."""
    clear(folder)
    proc = subprocess.run(
        [sys.executable, "-c", SAVE_RSS_SNIPPET, mode, str(folder), str(ARRAY_ELEMENTS)],
        capture_output=True, text=True, check=True,
    )
    clear(folder)
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        # what the process held at its peak during the save, beyond the bare interpreter
        f"{mode} save peak RSS": (m["after"] - m["baseline"]) / m["nbytes"],
        # how much the save raised the high-water mark above "interpreter + array"
        f"{mode} save RSS increase": (m["after"] - m["before"]) / m["nbytes"],
    }


def bench_artifact_timing(folder: Path, reps: int) -> Samples:
    arr = np.random.default_rng(0).random(ARRAY_ELEMENTS)
    contenders: dict[str, Contender] = {
        "nbflow": lambda: nbflow_artifact(arr, folder / "nbflow"),
        "numpy": lambda: numpy_artifact(arr, folder / "numpy"),
    }
    # Warm-up: on a VM the first touch of fresh memory (page cache for the first write, the first
    # 1 GiB np.load buffer) costs seconds that belong to the machine, not to either contender.
    alternate(1, contenders)
    return alternate(reps, contenders)


def bench_artifact(folder: Path, reps: int) -> Samples:
    timing = bench_artifact_timing(folder, reps)
    memory = alternate(reps, {
        "nbflow": lambda: save_peak_rss("nbflow", folder / "rss-nbflow"),
        "numpy": lambda: save_peak_rss("numpy", folder / "rss-numpy"),
    })
    return {**timing, **memory}


# -- benchmarks 4 and 5: step cells in a warm IPython kernel ---------------------------------------
KERNEL_SETUP = "x = 1"
PLAIN_CELL = "y = x + 1"
CACHED_CELL = f"%%step tiny\n{PLAIN_CELL}"
FORCED_CELL = f"%%step forced --force\n{PLAIN_CELL}"


class Kernel:
    """An in-process IPython shell with ``%load_ext nbflow``, whose nbflow session records into
    a store in ``folder`` and runs steps through ``executor`` (the benchmark's cluster)."""

    def __init__(self, folder: Path, executor: Executor) -> None:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        folder.mkdir(parents=True, exist_ok=True)
        config = Config()
        config.HistoryManager.enabled = False  # no history database in the user's profile
        # An InteractiveShell puts its own module in sys.modules["__main__"], which breaks the
        # spawning of Dask worker processes (a restart) afterwards: put the real one back.
        main = sys.modules["__main__"]
        try:
            self.shell = InteractiveShell.instance(config=config)
            self.shell.extension_manager.load_extension("nbflow")
        finally:
            sys.modules["__main__"] = main
        self.magics = self.shell.magics_manager.registry["NbflowMagics"]
        self.store = make_store(folder)
        self.session = InteractiveSession(self.shell.user_ns, store=self.store, executor=executor,
                                          notebook=str(folder / "kernel.ipynb"))
        self.magics._session = self.session

    def run(self, source: str) -> tuple[float, str]:
        """Wall seconds of ``shell.run_cell(source)`` (after ``settle()``) and what it printed,
        which is captured, not shown; an error in the cell raises."""
        out = io.StringIO()
        results: list[Any] = []
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            seconds = timed(lambda: results.append(self.shell.run_cell(source)))
        if not results[0].success:
            raise RuntimeError(f"benchmark cell failed:\n{source}\n---\n{out.getvalue()}")
        return seconds, out.getvalue()

    def last_task(self, step: str) -> dict[str, Any] | None:
        """The newest task of ``step`` in the kernel's interactive run."""
        if self.session.run_id is None:
            return None
        tasks = self.store.meta.tasks(self.session.run_id, step)
        return tasks[-1] if tasks else None

    def run_step(self, source: str, step: str, status: str) -> float:
        """Run a step cell, then check that it made a new task of ``step`` with ``status`` and
        bound ``y``; returns the cell's wall seconds."""
        before = self.last_task(step)
        self.shell.user_ns["y"] = None
        seconds, printed = self.run(source)
        task = self.last_task(step)
        cached_line = f"nbflow: step {step!r} cached (from run "
        if task is None:
            raise RuntimeError(f"step {step!r} recorded no task; the cell printed {printed!r}")
        if ((before is not None and task["id"] == before["id"]) or task["status"] != status
                or (cached_line in printed) != (status == "cached")):
            raise RuntimeError(f"step {step!r}: expected a new {status} task, got task "
                               f"{task['id']} ({task['status']}); the cell printed {printed!r}")
        check(self.shell.user_ns["y"], 2)
        return seconds

    def close(self) -> None:
        self.magics._session = None
        self.session.close()
        self.store.close()


def kernel_cache_hit(kernel: Kernel) -> dict[str, float]:
    return {"nbflow cache hit": kernel.run_step(CACHED_CELL, "tiny", "cached")}


def kernel_plain_cell(kernel: Kernel) -> dict[str, float]:
    kernel.shell.user_ns["y"] = None
    seconds, _ = kernel.run(PLAIN_CELL)
    check(kernel.shell.user_ns["y"], 2)
    return {"plain cell": seconds}


def bench_cache_hit(kernel: Kernel, reps: int) -> Samples:
    kernel.run(KERNEL_SETUP)
    kernel.run_step(CACHED_CELL, "tiny", "succeeded")  # the one execution: later ones are hits
    contenders: dict[str, Contender] = {
        "nbflow": lambda: kernel_cache_hit(kernel),
        "plain cell": lambda: kernel_plain_cell(kernel),
    }
    alternate(1, contenders)  # warm-up
    return alternate(reps, contenders)


def kernel_forced_step(kernel: Kernel) -> dict[str, float]:
    return {"nbflow forced step": kernel.run_step(FORCED_CELL, "forced", "succeeded")}


def raw_kernel_round_trip(client: Client, kernel: Kernel) -> dict[str, float]:
    x = kernel.shell.user_ns["x"]
    results: list[int] = []
    seconds = timed(lambda: results.append(client.submit(increment, x, pure=False).result()))
    check(results[0], 2)
    return {"kernel dask round trip": seconds}


def bench_kernel_step(kernel: Kernel, client: Client, reps: int) -> Samples:
    kernel.run(KERNEL_SETUP)
    contenders: dict[str, Contender] = {
        "nbflow": lambda: kernel_forced_step(kernel),
        "dask round trip": lambda: raw_kernel_round_trip(client, kernel),
    }
    alternate(1, contenders)  # warm-up: imports on the workers, the interactive run
    return alternate(reps, contenders)


# -- the report ------------------------------------------------------------------------------------
@dataclass
class Row:
    benchmark: str
    nbflow: float
    contender_name: str
    contender: float
    unit: str  # "ms", "s", "GiB" or "x" (multiples of the array size)
    target: str = "-"
    met: bool | None = None

    def fmt(self, value: float) -> str:
        if self.unit == "x":
            return f"{value:.2f}x array"
        if self.unit == "s" or value < 10:
            return f"{value:.2f} {self.unit}"
        return f"{value:.1f} {self.unit}"

    def markdown(self) -> str:
        verdict = "-" if self.met is None else ("met" if self.met else "**missed**")
        ratio = self.nbflow / self.contender if self.contender else float("nan")
        return (f"| {self.benchmark} | {self.fmt(self.nbflow)} | {self.contender_name} | "
                f"{self.fmt(self.contender)} | {ratio:.2f}x | {self.target} | {verdict} |")


MS = 1000.0


def chain_rows(s: Samples) -> list[Row]:
    step = median(s, "nbflow chain") * MS
    trip = median(s, "dask round trip") * MS
    return [
        Row("10-step chain: time per step", step, "raw Dask chain, per submit",
            median(s, "dask chain") * MS, "ms", "<= 20 ms per step", step <= 20),
        Row("10-step chain: time per step vs one round trip", step,
            "raw Dask `submit(f, 1).result()`", trip, "ms", "<= 2x raw round trip", step <= 2 * trip),
    ]


def foreach_rows(s: Samples) -> list[Row]:
    return [Row("100-item foreach: whole run", median(s, "nbflow foreach"),
                "raw Dask `map` + `submit(sum)`", median(s, "dask map+sum"), "s")]


def artifact_rows(s: Samples) -> list[Row]:
    save, np_save = median(s, "nbflow save"), median(s, "numpy save")
    peak = median(s, "nbflow save peak RSS")
    return [
        Row("1 GiB array: save (fsync)", save, "`np.save` + fsync", np_save, "s",
            "<= 2x np.save+fsync", save <= 2 * np_save),
        Row("1 GiB array: load", median(s, "nbflow load"), "`np.load`", median(s, "numpy load"), "s"),
        Row("1 GiB array: load + full read (`sum`)", median(s, "nbflow load+read"),
            "`np.load` + `sum`", median(s, "numpy load+read"), "s"),
        Row("1 GiB array: peak RSS during save", peak, "`np.save` + fsync",
            median(s, "numpy save peak RSS"), "x", "<= 1.3x array", peak <= 1.3),
    ]


def cache_hit_rows(s: Samples) -> list[Row]:
    hit = median(s, "nbflow cache hit") * MS
    return [Row("Warm kernel: cache hit of an unchanged step cell", hit,
                "the same body as a plain IPython cell", median(s, "plain cell") * MS, "ms",
                "<= 5 ms", hit <= 5)]


def kernel_step_rows(s: Samples) -> list[Row]:
    step = median(s, "nbflow forced step") * MS
    trip = median(s, "kernel dask round trip") * MS
    return [Row("Warm kernel: trivial step cell with --force (round trip)", step,
                "raw Dask `submit(f, x).result()`", trip, "ms", "<= 2x raw round trip",
                step <= 2 * trip)]


def history_rows(s: Samples) -> list[Row]:
    page = median(s, "nbflow history page") * MS
    return [Row("History API: first page of 50 with 10,000 runs", page,
                "the same page from sqlite3, hand-written SQL", median(s, "sqlite3 history page") * MS,
                "ms", "<= 50 ms", page <= 50)]


def fraction_row(benchmark: str, s: Samples, nbflow_key: str, peer: str, peer_key: str,
                 unit: str, fraction: int | None = None) -> Row:
    """A row nbflow against a peer; with ``fraction`` n, the target is at most 1/n of the peer."""
    scale = MS if unit == "ms" else 1.0
    ours, theirs = median(s, nbflow_key) * scale, median(s, peer_key) * scale
    if fraction is None:
        return Row(benchmark, ours, peer, theirs, unit)
    name = "papermill" if peer.startswith("papermill") else "Metaflow"
    return Row(benchmark, ours, peer, theirs, unit, f"<= 1/{fraction} of {name}",
               ours <= theirs / fraction)


def chain_metaflow_rows(s: Samples) -> list[Row]:
    mf = "Metaflow `python flow.py run`"
    return [
        fraction_row("10-step chain, whole process: time per step ((10-step - 2-step run) / 8)", s,
                     "nbflow run, per step (marginal)", mf, "metaflow run, per step (marginal)", "ms",
                     15),
        fraction_row("10-step chain, whole process: the whole run", s, "nbflow run, 10-step chain",
                     mf, "metaflow run, 10-step chain", "s"),
        fraction_row("2-step chain, whole process: the whole run (fixed costs)", s,
                     "nbflow run, 2-step chain", mf, "metaflow run, 2-step chain", "s"),
    ]


def foreach_metaflow_rows(s: Samples) -> list[Row]:
    mf = "Metaflow `run` (foreach + join)"
    return [fraction_row("100-item foreach + join, whole process", s, "nbflow run, foreach-100",
                         mf, "metaflow run, foreach-100", "s", 8),
            fraction_row("100-item foreach + join, whole process, `nbflow daemon` running", s,
                         "nbflow run (daemon), foreach-100", mf, "metaflow run, foreach-100", "s",
                         8)]


def artifact_metaflow_rows(s: Samples) -> list[Row]:
    mf = "Metaflow, the same two steps"

    def row(what: str, measure: str, unit: str, fraction: int | None = None) -> Row:
        return fraction_row(f"1 GiB array, step to step: {what}", s, f"nbflow artifact: {measure}",
                            mf, f"metaflow artifact: {measure}", unit, fraction)

    return [
        row("made -> fully read in the next step", "made -> read in the next step", "s", 5),
        row("peak RSS of the process tree", "peak RSS of the process tree (GiB)", "GiB"),
        row("largest peak of one process", "largest one-process peak (GiB)", "GiB"),
        row("bytes stored", "bytes stored (GiB)", "GiB"),
        row("whole process", "whole process", "s"),
    ]


def resume_metaflow_rows(s: Samples) -> list[Row]:
    mf = "Metaflow `python flow.py resume`"
    return [
        fraction_row("Resume after the last step failed: launch -> failed step's code starts", s,
                     "nbflow resume: to the failed step's code", mf,
                     "metaflow resume: to the failed step's code", "s", 3),
        fraction_row("Resume after the last step failed: whole process", s,
                     "nbflow resume: whole process", mf, "metaflow resume: whole process", "s"),
        fraction_row("Resume, `nbflow daemon` running: launch -> failed step's code starts", s,
                     "nbflow resume (daemon): to the failed step's code", mf,
                     "metaflow resume: to the failed step's code", "s", 3),
        fraction_row("Resume, `nbflow daemon` running: whole process", s,
                     "nbflow resume (daemon): whole process", mf, "metaflow resume: whole process",
                     "s"),
    ]


def papermill_rows(s: Samples) -> list[Row]:
    pm = "papermill, the 10 cells as plain cells"
    return [
        fraction_row("10-cell notebook, whole process: `nbflow run`, 10 `%%step` cells", s,
                     "nbflow run, 10 step cells", pm, "papermill, 10 plain cells", "s"),
        fraction_row("10-cell notebook, whole process: `nbflow run` on papermill's plain notebook", s,
                     "nbflow run, the same 10 plain cells", pm, "papermill, 10 plain cells", "s"),
    ]


ROWS: dict[str, Callable[[Samples], list[Row]]] = {
    "chain": chain_rows, "foreach": foreach_rows, "cache-hit": cache_hit_rows,
    "kernel-step": kernel_step_rows, "artifact": artifact_rows, "history": history_rows,
    "chain-metaflow": chain_metaflow_rows, "foreach-metaflow": foreach_metaflow_rows,
    "artifact-metaflow": artifact_metaflow_rows, "resume-metaflow": resume_metaflow_rows,
    "papermill": papermill_rows,
}


def build_rows(s: Samples, selected: Sequence[str] = BENCHMARKS) -> list[Row]:
    return [row for name in BENCHMARKS if name in selected for row in ROWS[name](s)]


def results_table(rows: list[Row]) -> str:
    head = ("| Benchmark | nbflow | Contender | Contender value | nbflow / contender | Target | "
            "Result |\n|---|---:|---|---:|---:|---|---|")
    return "\n".join([head, *(r.markdown() for r in rows)])


def samples_table(samples: Samples, title: str) -> str:
    def fmt(v: float) -> str:  # sub-millisecond seconds keep their digits
        return f"{v:.4f}" if abs(v) >= 0.01 else f"{v:.6f}"

    lines = [f"| {title} | median | all repetitions, in order |", "|---|---:|---|"]
    for name, values in samples.items():
        lines.append(f"| {name} | {fmt(statistics.median(values))} | "
                     f"{', '.join(fmt(v) for v in values)} |")
    return "\n".join(lines)


def installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(scratch: Path) -> str:
    gib = 1024**3
    items = {
        "Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_model(),
        "Cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False)} physical)",
        "RAM": f"{psutil.virtual_memory().total / gib:.1f} GiB",
        "Disk free (benchmark scratch filesystem)": f"{shutil.disk_usage(scratch).free / gib:.0f} GiB",
        "Load average (1/5/15 min, at the end)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "nbflow": nbflow.__version__,
        "dask / distributed": f"{version('dask')} / {version('distributed')}",
        "numpy": np.__version__,
        "Peers": ", ".join(f"{name} {installed(name) or '(not installed)'}"
                           for name in ("metaflow", "papermill", "ipykernel")),
    }
    return "\n".join(f"- {k}: {v}" for k, v in items.items())


def breakdown_section(breakdowns: dict[str, Samples]) -> str:
    parts = []
    for title, samples in breakdowns.items():
        ms = {k: [v * 1000 for v in vals] for k, vals in samples.items()}
        parts.append(f"### {title}\n\n{samples_table(ms, 'interval (ms)')}")
    return "\n\n".join(parts)


def report(rows: list[Row], samples: Samples, breakdowns: dict[str, Samples], reps: dict[str, int],
           machine_text: str, cmd: str) -> str:
    repetitions = ", ".join(f"{name} {n}" for name, n in reps.items())
    where = "" if not breakdowns else f"""## Where an nbflow run spends its time

Intervals between the events nbflow reports through `run_notebook(on_event=...)`, for the timed
nbflow repetitions above (whole-run times, not divided by the number of steps). For the whole
`nbflow run` processes (benchmarks 7 and 8): when the `run ... started` line was printed, when the
first step's code started and when the last step's code ended (timestamps the steps write).

{breakdown_section(breakdowns)}

"""
    return f"""# nbflow benchmark results

Produced by `{cmd}`; see `benchmarks/README.md` for what each line measures.

- Medians of alternating repetitions (the contenders' order flips every repetition).
- Repetitions: {repetitions};
  each after one untimed warm-up repetition of every contender (benchmarks 7-10: one untimed 2-step
  run of each tool against the benchmark's own store and datastore).
- Every timed call is preceded by a garbage collection and {SETTLE:g} s of quiet.
- Cluster (benchmarks 1, 2, 4 and 5): one `LocalCluster`, {N_WORKERS} worker processes x 1 thread,
  shared by nbflow and raw Dask.
- Peers (benchmarks 7-11): every tool runs as a whole process, one at a time, as a user starts it:
  `nbflow run` / `nbflow resume` (each starts and stops nbflow's default local Dask cluster),
  Metaflow's `python FLOW.py --datastore=local --metadata=local run` / `resume`, `papermill IN OUT`.
  Rows that say "`nbflow daemon` running" time the same `nbflow` command handed to the benchmark's
  `nbflow daemon` (started once, untimed, with the command's environment; it keeps Dask imported
  and a local cluster warm). Each such repetition checks that the daemon served the command.
- Ratios are nbflow / contender: below 1 means nbflow is faster (or smaller).

{results_table(rows)}

{where}## All repetitions

Seconds, unless the name says otherwise; benchmark 3's peak RSS rows are multiples of the array size.

{samples_table(samples, "measure")}

## Machine

{machine_text}
"""


# -- benchmarks 7-11: whole processes against Metaflow and papermill (peers.py) --------------------
def run_peers(scratch: Path, selected: Sequence[str], reps: dict[str, int],
              breakdowns: dict[str, Samples]) -> Samples:
    """Each selected peer benchmark: its warm-up (inside ``peers``), then alternating repetitions;
    nbflow's whole-process phases go to ``breakdowns``."""
    import peers

    suites = {
        "chain-metaflow": ("benchmark 7: 10-step chain, whole process, against Metaflow",
                           peers.chain_contenders, "`nbflow run`, 10-step chain (whole process)"),
        "foreach-metaflow": ("benchmark 8: 100-item foreach, whole process, against Metaflow",
                             peers.foreach_contenders, "`nbflow run`, 100-item foreach (whole process)"),
        "artifact-metaflow": ("benchmark 9: 1 GiB artifact step to step, against Metaflow",
                              peers.artifact_contenders, None),
        "resume-metaflow": ("benchmark 10: resume after the last step failed, against Metaflow",
                            peers.resume_contenders, None),
        "papermill": ("benchmark 11: a 10-cell notebook, against papermill",
                      peers.papermill_contenders, None),
    }
    samples: Samples = {}
    for name, (title, make, breakdown_title) in suites.items():
        if name not in selected:
            continue
        print(title, file=sys.stderr, flush=True)
        contenders, state = make(scratch / name, settle)
        try:
            samples.update(alternate(reps[name], contenders))
        finally:
            state.close()
        if breakdown_title and state.breakdown:
            breakdowns[breakdown_title] = state.breakdown
    return samples


# -- main ------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help=f"run only these benchmarks, of: {', '.join(BENCHMARKS)}")
    p.add_argument("--output", type=Path,
                   help="markdown file to write (default: benchmarks/results.md for a full run, "
                        "benchmarks/.work/results-quick.md or results-subset.md otherwise)")
    args = p.parse_args(argv)
    names = [n.strip() for n in (args.only or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r} in --only; choose from {', '.join(BENCHMARKS)}")
    args.selected = [n for n in BENCHMARKS if n in names] if names else list(BENCHMARKS)
    if args.output is None:  # results.md holds full runs only: a smoke test must not replace it
        here = Path(__file__).parent
        args.output = (here / "results.md" if not (args.quick or names) else
                       here / ".work" / f"results-{'quick' if args.quick else 'subset'}.md")
    missing = sorted({PEER_PACKAGES[n] for n in args.selected if n in PEER_PACKAGES
                      and importlib.util.find_spec(PEER_PACKAGES[n]) is None})
    if missing:
        p.error(f"{' and '.join(missing)} not installed: `pip install -e '.[bench]'` (or "
                f"`pip install {' '.join(missing)}`), or leave their benchmarks out with --only")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    selected: list[str] = args.selected
    all_reps = ({"chain": 3, "foreach": 3, "cache-hit": 7, "kernel-step": 5, "artifact": 1,
                 "history": 7, "chain-metaflow": 1, "foreach-metaflow": 1, "artifact-metaflow": 1,
                 "resume-metaflow": 1, "papermill": 2}
                if args.quick else
                {"chain": 7, "foreach": 5, "cache-hit": 21, "kernel-step": 11, "artifact": 3,
                 "history": 21, "chain-metaflow": 5, "foreach-metaflow": 3, "artifact-metaflow": 3,
                 "resume-metaflow": 5, "papermill": 5})
    reps = {name: all_reps[name] for name in selected}
    samples: Samples = {}
    breakdowns: dict[str, Samples] = {}
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-") as tmp:
        scratch = Path(tmp)
        if CLUSTER_BENCHMARKS.intersection(selected):
            cluster, client = start_cluster()
            try:
                executor = Executor(client, "existing")
                if "chain" in selected:
                    print("benchmark 1: 10-step chain", file=sys.stderr, flush=True)
                    chain, breakdowns["10-step chain"] = bench_chain(
                        client, executor, scratch / "chain", reps["chain"])
                    samples.update(chain)
                if "foreach" in selected:
                    print("benchmark 2: 100-item foreach", file=sys.stderr, flush=True)
                    foreach, breakdowns["100-item foreach"] = bench_foreach(
                        client, executor, scratch / "foreach", reps["foreach"])
                    samples.update(foreach)
                if {"cache-hit", "kernel-step"}.intersection(selected):
                    kernel = Kernel(scratch / "kernel", executor)
                    try:
                        if "cache-hit" in selected:
                            print("benchmark 4: cache hit in a warm kernel", file=sys.stderr,
                                  flush=True)
                            samples.update(bench_cache_hit(kernel, reps["cache-hit"]))
                        if "kernel-step" in selected:
                            print("benchmark 5: step round trip in a warm kernel",
                                  file=sys.stderr, flush=True)
                            samples.update(bench_kernel_step(kernel, client, reps["kernel-step"]))
                    finally:
                        kernel.close()
            finally:
                client.close()
                cluster.close()
        if "artifact" in selected:
            print("benchmark 3: 1 GiB artifact", file=sys.stderr, flush=True)
            samples.update(bench_artifact(scratch / "artifact", reps["artifact"]))
        if "history" in selected:
            print("benchmark 6: run history page", file=sys.stderr, flush=True)
            from history import contenders as history_contenders

            history = history_contenders(scratch / "history", timed)
            alternate(1, history)  # warm-up
            samples.update(alternate(reps["history"], history))
        if set(PEER_BENCHMARKS).intersection(selected):
            samples.update(run_peers(scratch, selected, reps, breakdowns))
        machine_text = machine(scratch)
    rows = build_rows(samples, selected)
    print(results_table(rows))
    cmd = " ".join(["python benchmarks/run.py", *(["--quick"] if args.quick else []),
                    *(["--only", ",".join(selected)] if args.only else [])])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(rows, samples, breakdowns, reps, machine_text, cmd))
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
