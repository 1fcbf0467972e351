"""Benchmarks 7-11: nbflow as a whole process against its peers, Metaflow and papermill.

Owns everything these benchmarks run and how they are measured: the nbflow notebooks (written
here), the Metaflow flows (copied from ``benchmarks/metaflow_flows/`` into the scratch folder and
run there with the local datastore and metadata), the environment each tool runs in (nbflow's store,
Metaflow's datastore and ``METAFLOW_HOME``, all under the scratch folder), launching and timing each
command, the timestamps and results the steps write into ``$NBFLOW_BENCH_STAMPS``, and the peak
memory of a process tree. ``benchmarks/run.py`` alternates the contenders returned here and turns
their samples into rows; ``benchmarks/README.md`` explains the method.

Every measurement is a whole process, as a user starts it: ``nbflow run NOTEBOOK`` (which starts and
stops its default local Dask cluster), ``python FLOW.py run`` and ``papermill IN OUT``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import psutil

FLOWS = Path(__file__).with_name("metaflow_flows")
GIB = 1024**3
CHAIN_STEPS = 10
FOREACH_ITEMS = 100
ARRAY_ELEMENTS = 2**27  # float64: 1 GiB, as in metaflow_flows/artifact_flow.py
PAPERMILL_CELLS = 10
MEMORY_INTERVAL = 0.05  # seconds between samples of a process tree's memory

Contender = Callable[[], dict[str, float]]

# The first cell of every nbflow notebook here: a plain cell, run by the driver, whose function the
# steps capture by value. The same code as metaflow_flows/stamp.py.
STAMP_CELL = '''import os
import time


def stamp(name, value=None):
    folder = os.environ.get("NBFLOW_BENCH_STAMPS")
    if folder:
        with open(os.path.join(folder, name), "w") as f:
            f.write(repr(time.time() if value is None else value))'''


def write_notebook(path: Path, sources: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(path))
    return path


def chain_cells(n: int, *, fail_last: bool = False, prefix: str = "%%step ") -> list[str]:
    """``v1 = 1``, then ``v{i} = v{i-1} + 1``; the last writes the result (and may fail first)."""
    cells = [f"{prefix}s1\nv1 = 1"] + [f"{prefix}s{i}\nv{i} = v{i - 1} + 1" for i in range(2, n + 1)]
    last = f"v{n} = v{n - 1} + 1\nstamp('result', v{n})"
    if fail_last:
        last = ("stamp('last-started')\nif os.environ.get('NBFLOW_BENCH_FAIL') == '1':\n"
                "    raise RuntimeError('planned failure of the last step')\n" + last)
    cells[-1] = f"{prefix}s{n}\n{last}"
    return cells


# -- launching and measuring a process -------------------------------------------------------------
@dataclass
class Finished:
    """One finished process: wall time, output, the stamps its steps wrote, its peak memory."""

    seconds: float  # from launch to exit
    launched: float  # time.time() just before launch, comparable with the stamps
    returncode: int
    output: str  # stdout and stderr, interleaved
    lines: list[tuple[float, str]]  # (seconds since launch when it arrived, line) of the output
    stamps: dict[str, float]
    peak_tree: float = 0.0  # bytes: the largest sum of RSS over the process and its descendants
    peak_process: float = 0.0  # bytes: the largest high-water mark (VmHWM) of any one of them

    def since_launch(self, name: str) -> float:
        return self.stamps[name] - self.launched


class MemorySampler:
    """Samples the resident memory of a process tree every ``MEMORY_INTERVAL`` seconds.

    The tree's RSS is summed per sample (what the machine must hold at once; file-backed pages
    that a process has mapped and touched, such as a memory-mapped artifact, count); each process's
    own peak is its kernel high-water mark (``VmHWM``), so a short spike in one process is not
    missed between samples.
    """

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_tree = 0.0
        self.peak_process = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(MEMORY_INTERVAL):
                return

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error, OSError):
                total += p.memory_info().rss
                self.peak_process = max(self.peak_process, vm_hwm(p.pid))
        self.peak_tree = max(self.peak_tree, total)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Launcher:
    """Runs the tools' commands in ``folder`` with the benchmarks' environment, one at a time."""

    def __init__(self, folder: Path, settle: Callable[[], None]) -> None:
        self.folder = folder
        self.settle = settle
        self.stamps = folder / "stamps"
        self.flows = folder / "flows"
        folder.mkdir(parents=True, exist_ok=True)
        # The flow files run from the scratch folder, so that no __pycache__ lands in the repository.
        shutil.copytree(FLOWS, self.flows, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("METAFLOW_", "NBFLOW_", "DASK_NBFLOW__"))}
        self.env = {**env, "NBFLOW_BENCH_STAMPS": str(self.stamps), "PYTHONUNBUFFERED": "1",
                    "USERNAME": "nbflow-bench"}  # Metaflow refuses to run without a user name

    def run(self, cmd: Sequence[str], *, env: dict[str, str] | None = None, ok: bool = True,
            memory: bool = False) -> Finished:
        """Run ``cmd`` to its end after ``settle()``; ``ok``: it must exit 0 (else it must fail)."""
        shutil.rmtree(self.stamps, ignore_errors=True)
        self.stamps.mkdir(parents=True)
        lines: list[tuple[float, str]] = []
        self.settle()
        launched = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=self.folder, env={**self.env, **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            assert proc.stdout is not None
            stdout = proc.stdout

            def read() -> None:
                for line in stdout:
                    lines.append((time.perf_counter() - start, line))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            sampler = MemorySampler(proc.pid) if memory else None
            returncode = proc.wait()
            seconds = time.perf_counter() - start
            if sampler is not None:
                sampler.stop()
            reader.join(timeout=30)
        finally:
            # Whatever is left of the process's session (a worker it failed to stop, or all of it
            # if we are interrupted) ends with it. Only processes this call started are in it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        output = "".join(line for _, line in lines)
        if (returncode == 0) != ok:
            raise RuntimeError(f"{' '.join(cmd)} exited {returncode}, expected "
                               f"{'success' if ok else 'failure'}; its output:\n{output[-4000:]}")
        stamps = {p.name: float(p.read_text()) for p in self.stamps.iterdir()}
        return Finished(seconds, launched, returncode, output, lines, stamps,
                        sampler.peak_tree if sampler else 0.0,
                        sampler.peak_process if sampler else 0.0)

    # -- the tools --------------------------------------------------------------------------------
    def nbflow(self, *args: str, store: Path, env: dict[str, str] | None = None, ok: bool = True,
               memory: bool = False, daemon: bool = False) -> Finished:
        """``nbflow ARGS``: in a process of its own, unless ``daemon`` (then a running ``nbflow
        daemon`` of this environment may serve it)."""
        env = {**(env or {}), **({} if daemon else {"NBFLOW_NO_DAEMON": "1"})}
        return self.run([sys.executable, "-m", "nbflow", *args, "--store", str(store)],
                        env=env, ok=ok, memory=memory)

    def daemon(self, action: str) -> dict[str, Any] | None:
        """``nbflow daemon ACTION`` in this launcher's environment (the one its runs get)."""
        done = subprocess.run([sys.executable, "-m", "nbflow", "daemon", action, "--json"],
                              cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=300)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"nbflow daemon {action} failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] | None = json.loads(done.stdout)
        return result

    def metaflow(self, flow: str, command: str, *, root: Path, env: dict[str, str] | None = None,
                 ok: bool = True, memory: bool = False) -> Finished:
        # --no-pylint: Metaflow lints the flow file before every run when pylint is installed;
        # that is a linter's time, not the scheduler's, and it depends on what else is installed.
        cmd = [sys.executable, str(self.flows / flow), "--no-pylint", "--datastore=local",
               "--metadata=local", command]
        menv = {"METAFLOW_HOME": str(root / "home"),
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root / "datastore"), **(env or {})}
        return self.run(cmd, env=menv, ok=ok, memory=memory)

    def papermill(self, notebook: Path, output: Path) -> Finished:
        return self.run([sys.executable, "-m", "papermill", str(notebook), str(output)])


def check_result(done: Finished, expected: float, what: str) -> None:
    """Refuse a timing whose run did not compute the expected value."""
    got = done.stamps.get("result")
    if got != expected:
        raise RuntimeError(f"{what}: the run wrote result {got!r}, expected {expected!r}; its "
                           f"output:\n{done.output[-4000:]}")


def run_id_of(done: Finished) -> str:
    match = re.search(r"nbflow: run (\S+) started", done.output)
    if match is None:
        raise RuntimeError(f"no run id in nbflow's output:\n{done.output[-4000:]}")
    return match.group(1)


@dataclass
class Peers:
    """The scratch folder of one benchmark, its launcher, and the nbflow breakdowns it records."""

    folder: Path
    settle: Callable[[], None]
    launcher: Launcher = field(init=False)
    breakdown: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.launcher = Launcher(self.folder, self.settle)

    def through_daemon(self, command: Callable[[], Finished]) -> Finished:
        """Run ``command`` (an ``nbflow run`` or ``resume``) with this benchmark's ``nbflow
        daemon`` serving it (started at the first call, stopped by ``close``); refuse a timing
        the daemon did not serve."""
        status = self.launcher.daemon("status") or self.launcher.daemon("start")
        assert status is not None
        done = command()
        after = self.launcher.daemon("status")
        if after is None or after["pid"] != status["pid"] or \
                after["commands"] != status["commands"] + 1:
            raise RuntimeError(f"the nbflow daemon did not serve the command:\n{done.output[-4000:]}")
        return done

    def close(self) -> None:
        self.launcher.daemon("stop")

    def note(self, done: Finished) -> None:
        """Record when nbflow's progress lines arrived: start-up, run, shut-down."""
        for name, seconds in nbflow_phases(done).items():
            self.breakdown.setdefault(name, []).append(seconds)

    def warm_up(self, store: Path, root: Path) -> None:
        """One untimed 2-step run of each tool against these stores: imports, the metadata
        database's creation, Metaflow's datastore folders."""
        nb = write_notebook(self.folder / "warm-up.ipynb", [STAMP_CELL, *chain_cells(2)])
        check_result(self.launcher.nbflow("run", str(nb), store=store), 2, "nbflow warm-up")
        check_result(self.launcher.metaflow("chain2_flow.py", "run", root=root), 2, "metaflow warm-up")


def nbflow_phases(done: Finished) -> dict[str, float]:
    """Where a whole ``nbflow run`` process spends its time, from the timestamps the steps wrote
    and the process's exit; ``first-step`` is written by the notebooks' first step."""
    phases = {"whole process": done.seconds}
    started = [t for t, line in done.lines if re.match(r"nbflow: run \S+ started", line)]
    if started:
        phases["launch -> 'run started' printed (imports, store, notebook, run recorded)"] = started[0]
    if "first-step" in done.stamps:
        phases["launch -> first step's code starts (+ the local cluster's start)"] = \
            done.since_launch("first-step")
    if "last-step" in done.stamps:
        phases["last step's code ends -> process exits"] = done.seconds - done.since_launch("last-step")
    return phases


# -- benchmark 7: a 10-step chain, whole process -----------------------------------------------------
def timed_chain_cells(n: int) -> list[str]:
    """``chain_cells`` with the first step's start and the last step's end stamped."""
    cells = chain_cells(n)
    cells[0] = cells[0].replace("\n", "\nstamp('first-step')\n", 1)
    cells[-1] += "\nstamp('last-step')"
    return cells


def chain_contenders(folder: Path, settle: Callable[[], None]) -> tuple[dict[str, Contender], Peers]:
    peers = Peers(folder, settle)
    store, root = folder / "nbflow-store", folder / "metaflow"
    long_nb = write_notebook(folder / "chain10.ipynb", [STAMP_CELL, *timed_chain_cells(CHAIN_STEPS)])
    short_nb = write_notebook(folder / "chain2.ipynb", [STAMP_CELL, *timed_chain_cells(2)])
    extra = CHAIN_STEPS - 2
    peers.warm_up(store, root)

    def nbflow() -> dict[str, float]:
        long = peers.launcher.nbflow("run", str(long_nb), "--force", store=store)
        check_result(long, CHAIN_STEPS, "nbflow 10-step chain")
        peers.note(long)
        short = peers.launcher.nbflow("run", str(short_nb), "--force", store=store)
        check_result(short, 2, "nbflow 2-step chain")
        return {"nbflow run, 10-step chain": long.seconds, "nbflow run, 2-step chain": short.seconds,
                "nbflow run, per step (marginal)": (long.seconds - short.seconds) / extra}

    def metaflow() -> dict[str, float]:
        long = peers.launcher.metaflow("chain10_flow.py", "run", root=root)
        check_result(long, CHAIN_STEPS, "metaflow 10-step chain")
        short = peers.launcher.metaflow("chain2_flow.py", "run", root=root)
        check_result(short, 2, "metaflow 2-step chain")
        return {"metaflow run, 10-step chain": long.seconds,
                "metaflow run, 2-step chain": short.seconds,
                "metaflow run, per step (marginal)": (long.seconds - short.seconds) / extra}

    return {"nbflow": nbflow, "metaflow": metaflow}, peers


# -- benchmark 8: a 100-item foreach, whole process --------------------------------------------------
def foreach_contenders(folder: Path, settle: Callable[[], None]
                       ) -> tuple[dict[str, Contender], Peers]:
    peers = Peers(folder, settle)
    store, root = folder / "nbflow-store", folder / "metaflow"
    # The same four steps as metaflow_flows/foreach_flow.py (Metaflow's end step cannot be a join).
    nb = write_notebook(folder / "foreach.ipynb", [
        STAMP_CELL,
        f"%%step items\nstamp('first-step')\nxs = list(range({FOREACH_ITEMS}))",
        "%%step sq --foreach x in xs\ny = x * x",
        "%%step total\ns = sum(y)",
        "%%step done\nstamp('result', s)\nstamp('last-step')",
    ])
    expected = sum(x * x for x in range(FOREACH_ITEMS))
    peers.warm_up(store, root)

    def nbflow() -> dict[str, float]:
        done = peers.launcher.nbflow("run", str(nb), "--force", store=store)
        check_result(done, expected, "nbflow foreach")
        peers.note(done)
        return {"nbflow run, foreach-100": done.seconds}

    def nbflow_daemon() -> dict[str, float]:
        done = peers.through_daemon(
            lambda: peers.launcher.nbflow("run", str(nb), "--force", store=store, daemon=True))
        check_result(done, expected, "nbflow foreach, daemon")
        return {"nbflow run (daemon), foreach-100": done.seconds}

    def metaflow() -> dict[str, float]:
        done = peers.launcher.metaflow("foreach_flow.py", "run", root=root)
        check_result(done, expected, "metaflow foreach")
        return {"metaflow run, foreach-100": done.seconds}

    return {"nbflow": nbflow, "nbflow-daemon": nbflow_daemon, "metaflow": metaflow}, peers


# -- benchmark 9: a 1 GiB artifact from one step to the next ----------------------------------------
ARTIFACT_CELLS = [
    STAMP_CELL,
    f"%%step make\nimport numpy as np\n\nx = np.random.default_rng(0).random({ARRAY_ELEMENTS})\n"
    "stamp('made')",
    "%%step use\nstamp('use-started')\ntotal = float(x.sum())\nstamp('used')\n"
    "stamp('result', round(total))",
]


def artifact_measures(tool: str, done: Finished, stored: int) -> dict[str, float]:
    s = done.stamps
    return {
        f"{tool} artifact: made -> read in the next step": s["used"] - s["made"],
        f"{tool} artifact: made -> next step's code starts": s["use-started"] - s["made"],
        f"{tool} artifact: next step's code starts -> read done": s["used"] - s["use-started"],
        f"{tool} artifact: whole process": done.seconds,
        f"{tool} artifact: peak RSS of the process tree (GiB)": done.peak_tree / GIB,
        f"{tool} artifact: largest one-process peak (GiB)": done.peak_process / GIB,
        f"{tool} artifact: bytes stored (GiB)": stored / GIB,
    }


def artifact_contenders(folder: Path, settle: Callable[[], None]
                        ) -> tuple[dict[str, Contender], Peers]:
    peers = Peers(folder, settle)
    nb = write_notebook(folder / "artifact.ipynb", ARTIFACT_CELLS)
    # Each repetition starts from an empty store and datastore: both tools store artifacts by
    # content and would skip writing an array they already hold.
    store, root = folder / "nbflow-store", folder / "metaflow"
    peers.warm_up(store, root)
    # On a VM, memory the guest has never touched costs seconds per GiB the first time: have it
    # backed before the first timed run (Metaflow's runs peak near 4 GiB in one process).
    subprocess.run([sys.executable, "-c", "import numpy as np; np.ones(5 * 2**27)"], check=True)

    def expected_total() -> int:
        import numpy as np

        return round(float(np.random.default_rng(0).random(ARRAY_ELEMENTS).sum()))

    expected = expected_total()

    def nbflow() -> dict[str, float]:
        shutil.rmtree(store, ignore_errors=True)
        done = peers.launcher.nbflow("run", str(nb), store=store, memory=True)
        check_result(done, expected, "nbflow 1 GiB artifact")
        measures = artifact_measures("nbflow", done, folder_bytes(store / "objects"))
        shutil.rmtree(store, ignore_errors=True)
        return measures

    def metaflow() -> dict[str, float]:
        shutil.rmtree(root, ignore_errors=True)
        done = peers.launcher.metaflow("artifact_flow.py", "run", root=root, memory=True)
        check_result(done, expected, "metaflow 1 GiB artifact")
        measures = artifact_measures("metaflow", done, folder_bytes(root / "datastore"))
        shutil.rmtree(root, ignore_errors=True)
        return measures

    return {"nbflow": nbflow, "metaflow": metaflow}, peers


# -- benchmark 10: resume after the last step failed ------------------------------------------------
def resume_contenders(folder: Path, settle: Callable[[], None]
                      ) -> tuple[dict[str, Contender], Peers]:
    peers = Peers(folder, settle)
    nb = write_notebook(folder / "resume.ipynb",
                        [STAMP_CELL, *chain_cells(CHAIN_STEPS, fail_last=True)])
    store, root = folder / "nbflow-store", folder / "metaflow"
    fail = {"NBFLOW_BENCH_FAIL": "1"}
    peers.warm_up(store, root)
    launcher = peers.launcher

    def nbflow() -> dict[str, float]:
        shutil.rmtree(store, ignore_errors=True)  # every repetition resumes the same history
        failed = launcher.nbflow("run", str(nb), store=store, env=fail, ok=False)
        if "last-started" not in failed.stamps:
            raise RuntimeError(f"the nbflow run failed before its last step:\n{failed.output[-4000:]}")
        resumed = launcher.nbflow("resume", run_id_of(failed), store=store)
        check_result(resumed, CHAIN_STEPS, "nbflow resume")
        return {"nbflow resume: to the failed step's code": resumed.since_launch("last-started"),
                "nbflow resume: whole process": resumed.seconds}

    def nbflow_daemon() -> dict[str, float]:
        shutil.rmtree(store, ignore_errors=True)
        # The failing run has another environment (NBFLOW_BENCH_FAIL): it runs in its own process.
        failed = launcher.nbflow("run", str(nb), store=store, env=fail, ok=False)
        if "last-started" not in failed.stamps:
            raise RuntimeError(f"the nbflow run failed before its last step:\n{failed.output[-4000:]}")
        resumed = peers.through_daemon(
            lambda: launcher.nbflow("resume", run_id_of(failed), store=store, daemon=True))
        check_result(resumed, CHAIN_STEPS, "nbflow resume, daemon")
        return {"nbflow resume (daemon): to the failed step's code":
                resumed.since_launch("last-started"),
                "nbflow resume (daemon): whole process": resumed.seconds}

    def metaflow() -> dict[str, float]:
        shutil.rmtree(root, ignore_errors=True)
        failed = launcher.metaflow("resume_flow.py", "run", root=root, env=fail, ok=False)
        if "last-started" not in failed.stamps:
            raise RuntimeError(f"the Metaflow run failed before its end step:\n{failed.output[-4000:]}")
        # `resume` with no run id resumes the latest run of this flow: the failed one.
        resumed = launcher.metaflow("resume_flow.py", "resume", root=root)
        check_result(resumed, CHAIN_STEPS, "metaflow resume")
        return {"metaflow resume: to the failed step's code": resumed.since_launch("last-started"),
                "metaflow resume: whole process": resumed.seconds}

    return {"nbflow": nbflow, "nbflow-daemon": nbflow_daemon, "metaflow": metaflow}, peers


# -- benchmark 11: a 10-cell notebook, nbflow run against papermill ------------------------------------
def papermill_contenders(folder: Path, settle: Callable[[], None]
                         ) -> tuple[dict[str, Contender], Peers]:
    peers = Peers(folder, settle)
    store = folder / "nbflow-store"
    # The same ten cells: plain for papermill (and for nbflow's plain-notebook row), `%%step` cells
    # for nbflow. No stamp cell, so the notebooks are exactly ten cells.
    plain = [f"v{i} = {'1' if i == 1 else f'v{i - 1} + 1'}" for i in range(1, PAPERMILL_CELLS + 1)]
    plain_nb = write_notebook(folder / "plain10.ipynb", plain)
    steps_nb = write_notebook(folder / "steps10.ipynb",
                              [f"%%step c{i}\n{src}" for i, src in enumerate(plain, 1)])
    executed = folder / "papermill-out.ipynb"
    launcher = peers.launcher

    def last_value(path: Path) -> None:
        nb = json.loads(path.read_text())
        if not all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"):
            raise RuntimeError(f"papermill left cells of {path} unexecuted")

    def papermill() -> dict[str, float]:
        executed.unlink(missing_ok=True)
        done = launcher.papermill(plain_nb, executed)
        last_value(executed)
        return {"papermill, 10 plain cells": done.seconds}

    def nbflow_steps() -> dict[str, float]:
        return {"nbflow run, 10 step cells": launcher.nbflow("run", str(steps_nb), "--force",
                                                              store=store).seconds}

    def nbflow_plain() -> dict[str, float]:
        return {"nbflow run, the same 10 plain cells": launcher.nbflow("run", str(plain_nb),
                                                                       store=store).seconds}

    contenders: dict[str, Contender] = {"nbflow steps": nbflow_steps, "papermill": papermill,
                                        "nbflow plain": nbflow_plain}
    for warm in contenders.values():  # imports, the store's database, the kernel's first start
        warm()
    return contenders, peers
