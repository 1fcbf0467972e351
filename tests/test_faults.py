"""Faults with real processes: a worker or the driver killed, two runs on one store, corrupted
artifacts, a read-only or full store, a step that outgrows its worker's memory.

Every scenario uses real components (Dask LocalClusters with worker processes, ``python -m
nbflow.cli`` subprocesses, SQLite files, tmpfs and bind mounts) and ends by checking that nothing
was lost: the run history reads, every output of every succeeded task loads and verifies, and
SQLite's ``PRAGMA integrity_check`` passes. Tests that kill processes use clusters of their own, so
the session cluster of ``conftest`` is never hurt.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
from distributed import Client, LocalCluster

from nbflow.client import Run
from nbflow.execute import Executor
from nbflow.model import RunStatus, TaskStatus
from nbflow.runner import resume_run, run_notebook
from nbflow.store import ArtifactIntegrityError, MetadataDB, MetadataError, Store, open_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts tmpfs and bind mounts: needs root")

MiB = 2**20


# -- helpers -------------------------------------------------------------------------------------


def statuses(r: Run) -> dict[str, str]:
    return {t.step + ("" if t.index is None else f"[{t.index}]"): t.status.value for t in r.tasks}


def sqlite_ok(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def assert_nothing_lost(store_dir: Path, db: str | None = None, *, min_runs: int = 1) -> list[str]:
    """The database is intact, every run reads (as `nbflow show --json` would print it), and every
    output of every succeeded or cached task loads and verifies. Returns the run ids."""
    db = db or f"sqlite:///{store_dir / 'nbflow.db'}"
    if db.startswith("sqlite:///"):
        sqlite_ok(Path(db.removeprefix("sqlite:///")))
    st = Store(str(store_dir), db)
    try:
        rows = st.meta.runs()
        assert len(rows) >= min_runs
        loaded = 0
        for row in rows:
            r = Run(row["id"], st)
            json.dumps(r.to_json())
            for t in r.tasks:
                if t.status in (TaskStatus.SUCCEEDED, TaskStatus.CACHED):
                    for artifact in t.outputs.values():
                        artifact.load()  # recomputes the hash: raises on wrong bytes
                        loaded += 1
        assert loaded, "no artifact was checked"
        return [r["id"] for r in rows]
    finally:
        st.close()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def read_pid(marker: Path) -> int | None:
    try:
        text = marker.read_text().strip()
    except OSError:
        return None
    return int(text) if text else None


# The step writes its process id there (atomically) before it starts its long part.
WRITE_PID = ("import os\n"
             "with open(marker + '.tmp', 'w') as fh:\n"
             "    fh.write(str(os.getpid()))\n"
             "del fh\n"
             "os.replace(marker + '.tmp', marker)\n")


class Processes:
    """``nbflow`` CLI subprocesses, each in a session of its own, so that the whole group (the
    driver and its LocalCluster's worker processes) is killed at teardown, even after a failure."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[str]] = []
        self.files: dict[int, tuple[Path, Path]] = {}
        self.env = {**os.environ, "DASK_NBFLOW__CLUSTER__N_WORKERS": "1"}
        for name in ("DASK_NBFLOW__STORE", "DASK_NBFLOW__DB", "DASK_NBFLOW__CLUSTER__ADDRESS"):
            self.env.pop(name, None)

    def start(self, *args: str, env: dict[str, str] | None = None,
              name: str = "cli") -> subprocess.Popen[str]:
        n = len(self.started)
        out, err = self.tmp / f"{name}.{n}.out", self.tmp / f"{name}.{n}.err"
        with out.open("w") as fout, err.open("w") as ferr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nbflow.cli", *args], cwd=self.tmp, text=True,
                env={**self.env, **(env or {})}, start_new_session=True, stdout=fout,
                stderr=ferr)
        self.started.append(proc)
        self.files[proc.pid] = (out, err)
        return proc

    def output(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        out, err = self.files[proc.pid]
        return out.read_text(), err.read_text()

    def wait(self, proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group(proc)
            out, err = self.output(proc)
            pytest.fail(f"{proc.args!r} did not end within {timeout} s:\n{out}\n{err}")
        self.kill_group(proc)  # what is left of its cluster, if anything
        out, err = self.output(proc)
        return rc, out, err

    def run(self, *args: str, timeout: float = 180, **kw: Any) -> tuple[int, str, str]:
        return self.wait(self.start(*args, **kw), timeout)

    @staticmethod
    def kill_group(proc: subprocess.Popen[str]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)

    def close(self) -> None:
        for proc in self.started:
            self.kill_group(proc)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.close()


class Mounts:
    """tmpfs and read-only bind mounts, all unmounted at teardown (lazily if busy)."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail(f"mount {' '.join(args)} failed: {proc.stderr.strip()} (these tests need "
                        "root with CAP_SYS_ADMIN)")

    def tmpfs(self, where: Path, size: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        self.points.append(where)
        return where

    def read_only(self, where: Path) -> Path:
        """``where`` becomes read-only, for root too (a read-only bind mount onto itself)."""
        self._mount("--bind", str(where), str(where))
        self.points.append(where)
        self._mount("-o", "remount,bind,ro", str(where))
        return where

    def unmount(self, where: Path) -> None:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
        self.points.remove(where)

    def close(self) -> None:
        for where in reversed(list(self.points)):
            self.unmount(where)


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    m = Mounts()
    try:
        yield m
    finally:
        m.close()


def own_cluster(n_workers: int, memory: int) -> tuple[LocalCluster, Client]:
    """A LocalCluster of this test's own, configured as nbflow's default one (no Dask retries)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               memory_limit=memory, resources={"memory": memory, "cpus": 1},
                               dashboard_address=":0", silence_logs=logging.CRITICAL)
    return cluster, Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def killable() -> Iterator[Executor]:
    """Two worker processes that tests may kill (their nannies start new ones)."""
    cluster, client = own_cluster(2, 2 * 2**30)
    try:
        yield Executor(client, "existing")
    finally:
        client.close()
        cluster.close()


def run_in_thread(fn: Callable[[], str]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["run_id"] = fn()
        except BaseException as exc:
            out["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, out


def joined(th: threading.Thread, out: dict[str, Any], timeout: float = 120) -> str:
    th.join(timeout)
    assert not th.is_alive(), "the run did not finish"
    if "error" in out:
        raise out["error"]
    return str(out["run_id"])


# -- 1. a worker killed mid-step -----------------------------------------------------------------


def _victim_notebook(notebook: Callable[..., Path], tmp_path: Path, retry: int) -> Path:
    marker, count = tmp_path / "victim.pid", tmp_path / "made"
    opt = f" --retry {retry}" if retry else ""
    return notebook([
        f"marker = {str(marker)!r}\ncount = {str(count)!r}",
        "%%step make\nwith open(count, 'a') as fh:\n    fh.write('x')\ndel fh\n"
        "xs = list(range(1000))",
        # The first attempt (no marker yet) writes its pid and waits to be killed; later ones
        # find the marker and finish at once.
        f"%%step victim{opt}\nimport os, time\nif not os.path.exists(marker):\n"
        + "".join("    " + line + "\n" for line in WRITE_PID.splitlines())
        + "    time.sleep(120)\ntotal = sum(xs)",
        "%%step after\ndoubled = total * 2",
    ], name=f"victim{retry}")


@pytest.mark.timeout(240)
def test_a_killed_worker_is_a_failed_attempt_and_retry_runs_it_again(
        tmp_path, notebook, killable) -> None:
    store = open_store(str(tmp_path / "store"))
    path = _victim_notebook(notebook, tmp_path, retry=1)
    th, out = run_in_thread(lambda: run_notebook(path, store=store, executor=killable))
    pid = wait_for(lambda: read_pid(tmp_path / "victim.pid"), 120, "the step to start")
    os.kill(pid, signal.SIGKILL)
    r = Run(joined(th, out), store)

    assert r.status == RunStatus.SUCCEEDED, r.to_json()
    task = r["victim"].task
    assert task.status == TaskStatus.SUCCEEDED
    assert task.to_json()["attempts"] == 2
    attempts = task.attempts
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert "the worker running this task died" in attempts[0]["error"]
    assert "exceeded its memory limit" not in attempts[0]["error"]  # a kill is not called an OOM
    assert r["after"].task.outputs["doubled"].load() == 2 * sum(range(1000))
    store.close()
    assert_nothing_lost(tmp_path / "store")


@pytest.mark.timeout(240)
def test_a_killed_worker_without_retry_fails_the_step_and_resume_reruns_only_it(
        tmp_path, notebook, killable) -> None:
    store = open_store(str(tmp_path / "store"))
    path = _victim_notebook(notebook, tmp_path, retry=0)
    th, out = run_in_thread(lambda: run_notebook(path, store=store, executor=killable))
    pid = wait_for(lambda: read_pid(tmp_path / "victim.pid"), 120, "the step to start")
    os.kill(pid, signal.SIGKILL)
    first = Run(joined(th, out), store)

    assert first.status == RunStatus.FAILED
    assert statuses(first) == {"make": "succeeded", "victim": "failed", "after": "cancelled"}
    victim = first["victim"].task
    assert "the worker running this task died" in victim.error
    assert victim.error_type == "KilledWorker"
    assert [a["status"] for a in victim.attempts] == ["failed"]
    assert_nothing_lost(tmp_path / "store")  # `make`'s output survived the crash next to it

    resumed = Run(resume_run(first.id, store=store, executor=killable), store)
    assert resumed.status == RunStatus.SUCCEEDED
    assert statuses(resumed) == {"make": "cached", "victim": "succeeded", "after": "succeeded"}
    assert resumed["make"].task.outputs["xs"].hash == first["make"].task.outputs["xs"].hash
    assert (tmp_path / "made").read_text() == "x"  # `make` ran once, in the first run only
    assert resumed["after"].task.outputs["doubled"].load() == 2 * sum(range(1000))
    store.close()
    assert len(assert_nothing_lost(tmp_path / "store")) == 2


# -- 2. the driver killed mid-run ----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_killed_driver_leaves_an_interrupted_run_that_resume_completes(
        tmp_path, notebook, procs) -> None:
    marker, flag, count = tmp_path / "long.pid", tmp_path / "go", tmp_path / "made"
    path = notebook([
        f"marker = {str(marker)!r}\nflag = {str(flag)!r}\ncount = {str(count)!r}",
        "%%step first\nwith open(count, 'a') as fh:\n    fh.write('x')\ndel fh\nvalue = 41",
        "%%step long\nimport time\n" + WRITE_PID
        + "while not os.path.exists(flag):\n    time.sleep(0.1)\nresult = value + 1",
    ])
    store = str(tmp_path / "store")
    env = {"DASK_NBFLOW__HEARTBEAT__INTERVAL": "0.5", "DASK_NBFLOW__HEARTBEAT__TIMEOUT": "2"}
    driver = procs.start("run", str(path), "--store", store, env=env, name="driver")
    wait_for(lambda: read_pid(marker) or driver.poll() is not None, 150, "the long step to start")
    assert driver.poll() is None, procs.output(driver)
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: its workers notice on their own
    driver.wait(30)
    procs.kill_group(driver)  # whatever of its cluster is still on its way out

    def interrupted() -> list[dict[str, Any]] | None:
        rc, out, err = procs.run("runs", "--json", "--store", store, env=env, name="runs")
        assert rc == 0, err
        runs = json.loads(out)
        return runs if runs and runs[0]["status"] == "interrupted" else None

    time.sleep(2.5)  # past the heartbeat timeout
    runs = wait_for(interrupted, 60, "the run to show as interrupted")
    assert len(runs) == 1
    run_id = runs[0]["id"]
    rc, out, err = procs.run("show", run_id, "--json", "--store", store, env=env, name="show")
    assert rc == 0, err
    shown = json.loads(out)
    assert shown["status"] == "interrupted"
    assert "heartbeat" in shown["error"]
    tasks = {t["step"]: t for t in shown["tasks"]}
    assert tasks["first"]["status"] == "succeeded"
    assert tasks["long"]["status"] == "cancelled"
    assert_nothing_lost(Path(store))

    flag.touch()
    rc, out, err = procs.run("resume", run_id, "--store", store, env=env, name="resume")
    assert rc == 0, err
    latest = json.loads(procs.run("runs", "--json", "--store", store, name="runs")[1])[0]
    assert latest["status"] == "succeeded" and latest["resumed_from"] == run_id
    resumed = Run(latest["id"], store)
    assert statuses(resumed) == {"first": "cached", "long": "succeeded"}
    assert resumed["long"].task.outputs["result"].load() == 42
    assert count.read_text() == "x"  # `first` was not run again
    assert len(assert_nothing_lost(Path(store))) == 2


# -- 3. two runs writing one store at once -------------------------------------------------------


@pytest.mark.timeout(300)
def test_two_runs_at_once_on_one_new_sqlite_store(tmp_path, notebook, procs) -> None:
    path = notebook([
        ("label = 'a'", ["parameters"]),
        "%%step base\nitems = list(range(6))",
        "%%step square --foreach i in items\nimport time\ntime.sleep(0.2)\nsq = i * i",
        "%%step total\nt = sum(sq)",
        # The same bytes from both runs: two writers of one content-addressed object.
        "%%step big\nimport numpy as np\narr = np.arange(300_000) + t",
        "%%step tagged --foreach k in range(3)\nname = f'{label}-{t}-{k}-{int(arr[-1])}'",
        "names = list(name)",
    ])
    store = tmp_path / "store"  # does not exist yet: both create and migrate its database
    started = [procs.start("run", str(path), "--store", str(store), "-p", f"label={label}",
                           name=f"run-{label}") for label in ("a", "b")]
    results = [procs.wait(p, 240) for p in started]
    for rc, _out, err in results:
        assert rc == 0, err

    runs = json.loads(procs.run("runs", "--json", "--store", str(store), name="runs")[1])
    assert sorted(r["status"] for r in runs) == ["succeeded", "succeeded"]
    assert sorted(r["params"]["label"] for r in runs) == ["a", "b"]
    for r in runs:
        rc, out, err = procs.run("show", r["id"], "--json", "--store", str(store), name="show")
        assert rc == 0, err
        shown = json.loads(out)
        assert shown["counts"].get("failed", 0) == 0
        run = Run(r["id"], str(store))
        label = r["params"]["label"]
        assert [t.outputs["name"].load() for t in run["tagged"].tasks] == [
            f"{label}-55-{k}-{300_000 - 1 + 55}" for k in range(3)]
        assert run["big"].task.outputs["arr"].load()[-1] == 300_000 - 1 + 55
    assert len(assert_nothing_lost(store)) == 2
    assert not list((store / "tmp").iterdir())  # no half-written object left behind


# -- 4. an artifact corrupted on disk ------------------------------------------------------------


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", [_flip_middle_byte, _truncate], ids=["flipped", "truncated"])
def test_a_corrupted_artifact_is_refused_by_load_and_by_a_downstream_step(
        tmp_path, notebook, store, executor, damage) -> None:
    path = notebook([
        "%%step make\nimport numpy as np\narr = np.arange(400_000)\nlabel = 'small'",
        "%%step use\ntotal = int(arr.sum())",
    ])
    first = Run(run_notebook(path, store=store, executor=executor), store)
    assert first.status == RunStatus.SUCCEEDED
    arr = first["make"].task.outputs["arr"]  # 3.2 MB: memory-mapped when read
    damage(Path(store.artifacts.path(arr.hash)))

    # The client API: a clear error naming the artifact, never wrong data.
    with pytest.raises(ArtifactIntegrityError) as info:
        arr.load()
    assert arr.hash in str(info.value) and "corrupt" in str(info.value)
    assert first["make"].task.outputs["label"].load() == "small"  # the rest still loads

    # A resumed run that re-runs `use`. A truncated output is seen before it is reused (its
    # size), so resume runs `make` again, which repairs it; a flipped byte is only seen when the
    # output is read: `make` is taken as it is and `use` fails, naming the artifact.
    again = Run(resume_run(first.id, store=store, executor=executor, from_steps=["use"]), store)
    if damage is _truncate:
        assert again.status == RunStatus.SUCCEEDED
        assert statuses(again) == {"make": "succeeded", "use": "succeeded"}
        np.testing.assert_array_equal(arr.load(), np.arange(400_000))  # repaired
        assert_nothing_lost(Path(store.url), store.db_url, min_runs=2)
        return
    assert again.status == RunStatus.FAILED
    assert statuses(again) == {"make": "cached", "use": "failed"}
    task = again["use"].task
    assert task.error.startswith("input 'arr' of step 'use' (cell 2) cannot be loaded: artifact "
                                 f"{arr.hash}"), task.error
    assert "corrupt" in task.error and "Traceback" not in task.error
    assert task.error_type == "nbflow.store.artifacts.ArtifactIntegrityError"

    # A forced run makes the artifact again: the corrupt copy is replaced, the old run reads.
    forced = Run(run_notebook(path, store=store, executor=executor, force=True), store)
    assert forced.status == RunStatus.SUCCEEDED
    assert forced["make"].task.outputs["arr"].hash == arr.hash
    np.testing.assert_array_equal(arr.load(), np.arange(400_000))
    assert_nothing_lost(Path(store.url), store.db_url, min_runs=3)


# -- 5. an unwritable or full store --------------------------------------------------------------

SMALL_THEN_BIG = [
    "%%step small\nxs = list(range(100))",
    "%%step big\nblob = b'x' * 20_000_000",  # ~20 MB
    "%%step after\nn = len(blob) + len(xs)",
]


@pytest.mark.timeout(240)
def test_a_read_only_store_is_refused_and_its_history_still_reads(
        tmp_path, notebook, executor, mounts, procs) -> None:
    folder = tmp_path / "store"
    st = open_store(str(folder))
    path = notebook(["%%step a\nx = 1"])
    first = Run(run_notebook(path, store=st, executor=executor), st)
    assert first.status == RunStatus.SUCCEEDED
    st.close()

    mounts.read_only(folder)
    rc, _out, err = procs.run("run", str(path), "--store", str(folder), timeout=120)
    assert rc == 2, err
    assert "Traceback" not in err
    assert f"the nbflow store folder {folder} is not writable" in err
    assert "--store" in err
    # While it is read-only, its history still reads (the database is opened immutable: WAL
    # would need to create its -shm file), through the CLI and the client API, artifacts too.
    rc, out, err = procs.run("runs", "--json", "--store", str(folder), timeout=120)
    assert rc == 0, err
    assert [r["id"] for r in json.loads(out)] == [first.id]
    rc, out, err = procs.run("show", first.id, "--json", "--store", str(folder), timeout=120)
    assert rc == 0, err
    assert json.loads(out)["status"] == "succeeded"
    reader = open_store(str(folder), writable=False)
    try:
        assert reader.meta.readonly
        assert Run(first.id, reader)["a"].task.outputs["x"].load() == 1
    finally:
        reader.close()
    # Nothing was recorded, and once the folder is writable again the history is intact.
    mounts.unmount(folder)
    assert assert_nothing_lost(folder) == [first.id]


def test_a_store_whose_objects_cannot_be_written_fails_the_task_clearly(
        tmp_path, notebook, store, executor, mounts) -> None:
    first = Run(run_notebook(notebook(["%%step a\nx = 1"]), store=store, executor=executor), store)
    tmp = Path(store.url) / "tmp"  # where every object is written before it is renamed in place
    tmp.mkdir(exist_ok=True)
    mounts.read_only(tmp)
    r = Run(run_notebook(notebook(["%%step b\ny = 2"], name="second"), store=store,
                         executor=executor), store)
    assert r.status == RunStatus.FAILED
    task = r["b"].task
    assert task.status == TaskStatus.FAILED
    assert task.error.startswith(f"output 'y' of step 'b' (cell 1) cannot be saved: cannot write "
                                 f"to the artifact store {store.url}: it is on a read-only file "
                                 "system"), task.error
    assert "--store" in task.error and "Traceback" not in task.error
    mounts.unmount(tmp)
    assert first.id in assert_nothing_lost(Path(store.url), store.db_url)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("db_on_tmpfs", [False, True], ids=["db-elsewhere", "db-on-the-full-disk"])
def test_a_full_store_fails_the_task_and_the_run_clearly(
        tmp_path, notebook, executor, mounts, db_on_tmpfs) -> None:
    disk = mounts.tmpfs(tmp_path / "small-disk", "8m")
    folder = disk / "store"
    db = None if db_on_tmpfs else f"sqlite:///{tmp_path / 'meta.db'}"
    st = open_store(str(folder), db)
    r = Run(run_notebook(notebook(SMALL_THEN_BIG), store=st, executor=executor), st)
    assert r.status == RunStatus.FAILED
    assert r.finished_at is not None
    assert statuses(r) == {"small": "succeeded", "big": "failed", "after": "cancelled"}
    error = r["big"].task.error
    assert error.startswith(f"output 'blob' of step 'big' (cell 2) cannot be saved: cannot write "
                            f"to the artifact store {folder}: it is full (no space left on "
                            "device)"), error
    assert "Fix: free space there" in error and "--store" in error
    assert "Traceback" not in error
    assert r["small"].task.outputs["xs"].load() == list(range(100))
    assert not list((folder / "tmp").iterdir())  # the partial object was removed
    st.close()
    assert_nothing_lost(folder, db)


def _fill(disk: Path) -> Path:
    """Fill the file system at ``disk`` to the last byte; returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        chunk = b"\0" * MiB
        while True:
            try:
                f.write(chunk)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for size in (64 * 1024, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(f.fileno(), b"\0" * size)
    return filler


@pytest.mark.timeout(240)
def test_a_full_disk_under_the_metadata_database_is_one_clear_error(
        tmp_path, notebook, executor, mounts, procs) -> None:
    disk = mounts.tmpfs(tmp_path / "small-disk", "8m")
    folder = disk / "store"
    st = open_store(str(folder))
    path = notebook(["%%step a\nx = 1"])
    first = Run(run_notebook(path, store=st, executor=executor), st)
    assert first.status == RunStatus.SUCCEEDED
    st.close()
    db_file = folder / "nbflow.db"
    meta = MetadataDB(f"sqlite:///{db_file}")  # open before the disk fills: a writer mid-run
    try:
        assert meta.run(first.id) is not None
        con = sqlite3.connect(db_file)  # an empty WAL: the next write needs new blocks
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        filler = _fill(disk)

        # In process: a write is refused with MetadataError, not a raw sqlite3 error.
        with pytest.raises(MetadataError) as info:
            meta.update_run(first.id, error="x" * (4 * MiB))
        message = str(info.value)
        assert (f"cannot write to the metadata database sqlite:///{db_file}: its disk is full"
                in message)
        assert "--db" in message
        assert meta.run(first.id)["error"] is None  # rolled back, still readable
    finally:
        meta.close()

    # From the CLI: exit 2 and one line saying what and how to fix it.
    rc, _out, err = procs.run("run", str(path), "--store", str(folder), "--force", timeout=120)
    assert rc == 2, err
    assert "Traceback" not in err
    assert "nbflow: error: cannot write to the metadata database" in err
    assert "its disk is full" in err and "--db" in err

    filler.unlink()
    ids = assert_nothing_lost(folder)
    assert first.id in ids
    rows = {r["id"]: r for r in Store(str(folder), f"sqlite:///{db_file}").meta.runs()}
    assert rows[first.id]["status"] == "succeeded"


# -- 6. a step that outgrows its worker's memory -------------------------------------------------


@pytest.mark.timeout(240)
def test_a_step_over_its_workers_memory_limit_is_recorded_as_out_of_memory(
        tmp_path, notebook) -> None:
    limit = 400 * MiB
    cluster, client = own_cluster(1, limit)
    store = open_store(str(tmp_path / "store"))
    try:
        ex = Executor(client, "existing")
        path = notebook([
            "%%step fine\nxs = list(range(10))",
            # ~1.5 GiB, touched, in steps: Dask's nanny restarts the worker at 95% of 400 MiB.
            "%%step hog\nimport time\nchunks = []\nfor k in range(96):\n"
            "    chunks.append(bytes([k % 251]) * (16 * 2**20))\n    time.sleep(0.02)\n"
            "n = len(chunks) + len(xs)",
        ])
        r = Run(run_notebook(path, store=store, executor=ex), store)
        assert r.status == RunStatus.FAILED
        task = r["hog"].task
        assert task.status == TaskStatus.FAILED
        assert task.error_type == "OutOfMemory"
        assert task.error.startswith("out of memory: the worker tcp://"), task.error
        assert "exceeded its memory limit of 400.00 MiB" in task.error
        assert "%%resources memory=1GiB" in task.error
        assert task.worker and task.worker.startswith("tcp://")
        # The cluster got its worker back and runs the next thing.
        ok = Run(run_notebook(notebook(["%%step after\ny = 1"], name="after"), store=store,
                              executor=ex), store)
        assert ok.status == RunStatus.SUCCEEDED
    finally:
        store.close()
        client.close()
        cluster.close()
    assert_nothing_lost(tmp_path / "store")
