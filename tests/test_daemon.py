"""``nbflow daemon``: real daemon processes with a warm local cluster, called by real ``nbflow`` processes.

Each test gets its own ``XDG_RUNTIME_DIR``, so its daemon, socket and log are its own. A run's
record names the process that drove it (``driver.pid``): that is how a test tells a command the
daemon ran from one its caller ran itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import write_notebook

from nbflow.store import open_store

# A plain cell and two steps; the last fails while a file named `fail` is next to the notebook
# (not an environment variable: a daemon only serves callers whose environment is its own).
FLOW = [
    "import os\nprint('plain cell here')",
    "%%step first\nx = 20\nprint('first step here')",
    "%%step second\nif os.path.exists('fail'):\n    raise RuntimeError('asked to fail')\ny = x + 1",
]


class Daemon:
    """One test's daemon environment: the ``nbflow`` command with its own runtime folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Short: a Unix socket's path must fit in about 100 bytes (pytest's tmp_path may not).
        self.runtime = Path(tempfile.mkdtemp(prefix="nbf-", dir="/tmp"))
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)}
        self.env.pop("NBFLOW_NO_DAEMON", None)
        self.store = root / "store"

    def nbflow(self, *args: str, cwd: Path | None = None, extra: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nbflow", *args], cwd=cwd or self.root,
                              env={**self.env, **(extra or {})}, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "nbflow", *args], cwd=cwd or self.root,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def start(self, *extra: str) -> dict[str, Any]:
        done = self.nbflow("daemon", "start", "--json", *extra)
        assert done.returncode == 0, done.stderr
        status: dict[str, Any] = json.loads(done.stdout)
        assert status["ready"] is True
        return status

    def status(self) -> dict[str, Any] | None:
        done = self.nbflow("daemon", "status", "--json")
        result: dict[str, Any] | None = json.loads(done.stdout)
        assert done.returncode == (0 if result else 1), done.stderr
        return result

    def stop(self) -> None:
        status = self.status()
        done = self.nbflow("daemon", "stop")
        assert done.returncode == 0, done.stderr
        if status is not None:
            assert not psutil.pid_exists(status["pid"]) or \
                psutil.Process(status["pid"]).status() == psutil.STATUS_ZOMBIE

    def run_record(self, stderr: str) -> dict[str, Any]:
        """The record of the run whose id ``stderr`` announced."""
        run_id = next(line.split()[2] for line in stderr.splitlines()
                      if line.startswith("nbflow: run ") and line.endswith(" started"))
        store = open_store(str(self.store))
        try:
            record = store.meta.run(run_id)
        finally:
            store.close()
        assert record is not None
        return record


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    yield d
    status = d.status()
    d.nbflow("daemon", "stop")
    if status is not None and psutil.pid_exists(status["pid"]):  # a test that failed half-way
        psutil.Process(status["pid"]).kill()
    shutil.rmtree(d.runtime, ignore_errors=True)


def test_run_and_resume_go_to_the_daemon_and_write_to_the_callers_streams(daemon: Daemon) -> None:
    nb = write_notebook(daemon.root / "flow.ipynb", FLOW)
    (daemon.root / "fail").touch()
    status = daemon.start()
    assert status["commands"] == 0 and status["busy"] is False

    failed = daemon.nbflow("run", str(nb), "--store", str(daemon.store))
    assert failed.returncode == 1, failed.stderr
    assert "plain cell here" in failed.stdout  # a plain cell's print, from the daemon's driver
    assert "[first] first step here" in failed.stdout  # a step's output, relayed from a worker
    assert "RuntimeError: asked to fail" in failed.stderr
    record = daemon.run_record(failed.stderr)
    assert record["driver"]["pid"] == status["pid"]
    assert record["status"] == "failed"

    (daemon.root / "fail").unlink()
    resumed = daemon.nbflow("resume", record["id"], "--store", str(daemon.store))
    assert resumed.returncode == 0, resumed.stderr
    assert "first cached" in resumed.stderr and "second succeeded" in resumed.stderr
    again = daemon.run_record(resumed.stderr)
    assert again["driver"]["pid"] == status["pid"] and again["status"] == "succeeded"
    assert again["resumed_from"] == record["id"]

    after = daemon.status()
    assert after is not None and after["commands"] == 2 and after["pid"] == status["pid"]
    # Usage errors come back as they would from a process of its own.
    bad = daemon.nbflow("run", str(nb), "--store", str(daemon.store), "--param", "no equals")
    assert bad.returncode == 2 and "expected NAME=VALUE" in bad.stderr
    missing = daemon.nbflow("resume", "no-such-run", "--store", str(daemon.store))
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    daemon.stop()


def test_a_local_module_edited_between_runs_is_imported_afresh(daemon: Daemon) -> None:
    helpers = daemon.root / "helpers.py"
    helpers.write_text("VALUE = 1\n")
    nb = write_notebook(daemon.root / "mods.ipynb", [
        "import helpers\nin_driver = helpers.VALUE\nprint('driver sees', in_driver)",
        "%%step use\nimport helpers\non_worker = helpers.VALUE\nprint('worker sees', on_worker)",
    ])
    daemon.start()
    first = daemon.nbflow("run", str(nb), "--store", str(daemon.store))
    assert first.returncode == 0, first.stderr
    assert "driver sees 1" in first.stdout and "worker sees 1" in first.stdout

    helpers.write_text("VALUE = 22\n")
    later = time.time() + 5  # an mtime that differs even on a file system with coarse times
    os.utime(helpers, (later, later))
    second = daemon.nbflow("run", str(nb), "--store", str(daemon.store))
    assert second.returncode == 0, second.stderr
    assert "driver sees 22" in second.stdout and "worker sees 22" in second.stdout
    assert "use succeeded" in second.stderr  # re-run: the module's source is in the cache key


def test_each_notebook_folder_gets_its_own_local_modules(daemon: Daemon) -> None:
    """Two projects with a `utils.py` each, on the daemon's same workers, one after the other."""
    notebooks = []
    for project, value in (("alpha", 1), ("beta", 2)):
        folder = daemon.root / project
        folder.mkdir()
        (folder / "utils.py").write_text(f"VALUE = {value}\n")
        notebooks.append(write_notebook(folder / "flow.ipynb", [
            "%%step use\nimport utils\nprint('utils says', utils.VALUE)\nv = utils.VALUE"]))
    daemon.start()
    for _ in range(2):  # and back: each run lands on a worker that served the other project
        for nb, value in zip(notebooks, (1, 2), strict=True):
            done = daemon.nbflow("run", str(nb), "--store", str(daemon.store), "--force",
                                 cwd=nb.parent)
            assert done.returncode == 0, done.stderr
            assert f"utils says {value}" in done.stdout, (nb, done.stdout)


def test_output_piped_into_a_closed_reader_leaves_later_commands_their_output(
        daemon: Daemon) -> None:
    loud = write_notebook(daemon.root / "loud.ipynb", [
        "for i in range(20000):\n    print('line', i)",
        "%%step s\nx = 1",
    ])
    nb = write_notebook(daemon.root / "flow.ipynb", FLOW)
    status = daemon.start()
    piped = subprocess.run(
        f"{sys.executable} -m nbflow run {loud} --store {daemon.store} | head -n 1",
        shell=True, cwd=daemon.root, env=daemon.env, capture_output=True, text=True, timeout=120)
    assert piped.stdout == "line 0\n", piped.stderr
    deadline = time.monotonic() + 60
    while (now := daemon.status()) is not None and now["busy"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    after = daemon.nbflow("run", str(nb), "--store", str(daemon.store))
    assert after.returncode == 0, after.stderr
    assert "plain cell here" in after.stdout and "[first] first step here" in after.stdout
    assert daemon.run_record(after.stderr)["driver"]["pid"] == status["pid"]


def test_a_worker_started_for_a_big_step_does_not_hold_the_callers_pipe(daemon: Daemon) -> None:
    """Scale this cell during a daemon command: the new worker comes from the fork server the
    daemon started at warm-up, not from a process whose stdout is the caller's pipe, so the
    caller's output ends when its command does (the worker idles on for a minute)."""
    per_worker = psutil.virtual_memory().total // (psutil.cpu_count() or 1)
    gib = -(-(per_worker + 2**30) // 2**30)
    nb = write_notebook(daemon.root / "big.ipynb", [f"%%resources memory={gib}G\n%%step big\nx = 1"])
    daemon.start()
    try:
        done = daemon.nbflow("run", str(nb), "--store", str(daemon.store), timeout=45)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the caller's pipe stayed open after its command ended") from exc
    assert done.returncode == 0, done.stderr
    assert "big succeeded" in done.stderr


def test_a_command_while_the_daemon_warms_up_runs_itself(daemon: Daemon) -> None:
    from nbflow import launch

    nb = write_notebook(daemon.root / "flow.ipynb", FLOW)
    env = daemon.env
    key = launch.environment_key(env)
    folder = daemon.runtime / f"nbflow-{os.getuid()}"
    folder.mkdir(mode=0o700)
    path = folder / f"daemon-{key}.sock"
    log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "nbflow.daemon", str(path), "600"],
                              env=env, cwd="/", stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not path.exists():
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.01)
        early = daemon.status()
        assert early is not None and early["ready"] is False  # answered while warming up
        done = daemon.nbflow("run", str(nb), "--store", str(daemon.store))
        assert done.returncode == 0, done.stderr
        assert "the daemon did not take this command (it is still starting)" in done.stderr
        assert daemon.run_record(done.stderr)["driver"]["pid"] != server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def test_callers_with_another_environment_or_cluster_run_themselves(daemon: Daemon) -> None:
    nb = write_notebook(daemon.root / "flow.ipynb", FLOW)
    status = daemon.start()
    other = daemon.nbflow("run", str(nb), "--store", str(daemon.store),
                          extra={"SOME_SETTING": "differs"})
    assert other.returncode == 0, other.stderr
    assert daemon.run_record(other.stderr)["driver"]["pid"] != status["pid"]
    # Only the terminal's variables may differ.
    same = daemon.nbflow("run", str(nb), "--store", str(daemon.store), "--force",
                         extra={"COLUMNS": "71", "TERM": "dumb"})
    assert same.returncode == 0, same.stderr
    assert daemon.run_record(same.stderr)["driver"]["pid"] == status["pid"]
    # NBFLOW_NO_DAEMON=1 keeps a command in its own process.
    own = daemon.nbflow("run", str(nb), "--store", str(daemon.store), "--force",
                        extra={"NBFLOW_NO_DAEMON": "1"})
    assert own.returncode == 0, own.stderr
    assert daemon.run_record(own.stderr)["driver"]["pid"] != status["pid"]
    after = daemon.status()
    assert after is not None and after["commands"] == 1


def test_a_busy_daemon_sends_the_next_caller_back_to_run_itself(daemon: Daemon) -> None:
    gate = daemon.root / "gate"
    nb = write_notebook(daemon.root / "slow.ipynb", [
        "import os, time",
        "%%step wait\nopen('waiting', 'w').close()\nwhile not os.path.exists('gate'):\n"
        "    time.sleep(0.05)\ndone = True",
    ])
    quick = write_notebook(daemon.root / "flow.ipynb", FLOW)
    status = daemon.start()
    slow = daemon.popen("run", str(nb), "--store", str(daemon.store))
    try:
        deadline = time.monotonic() + 60
        while not (daemon.root / "waiting").exists():
            assert time.monotonic() < deadline and slow.poll() is None
            time.sleep(0.05)
        second = daemon.nbflow("run", str(quick), "--store", str(daemon.store))
        assert second.returncode == 0, second.stderr
        assert "it is busy with another command); running it here" in second.stderr
        assert daemon.run_record(second.stderr)["driver"]["pid"] != status["pid"]
    finally:
        gate.touch()
        _out, err = slow.communicate(timeout=60)
    assert slow.returncode == 0, err
    assert daemon.run_record(err)["driver"]["pid"] == status["pid"]


@pytest.mark.parametrize("how", ["sigint", "kill", "daemon stop"])
def test_ctrl_c_or_a_killed_caller_interrupts_the_run_and_the_daemon_goes_on(
        daemon: Daemon, how: str) -> None:
    nb = write_notebook(daemon.root / "long.ipynb", [
        "import time",
        "%%step long\nopen('started', 'w').close()\nfor _ in range(1200):\n    time.sleep(0.1)\nz = 1",
    ])
    status = first = daemon.start()
    caller = daemon.popen("run", str(nb), "--store", str(daemon.store))
    deadline = time.monotonic() + 60
    while not (daemon.root / "started").exists():
        assert time.monotonic() < deadline and caller.poll() is None
        time.sleep(0.05)
    if how == "sigint":
        caller.send_signal(signal.SIGINT)
        _out, err = caller.communicate(timeout=60)
        assert caller.returncode == 130, err
        assert "nbflow: interrupted" in err
    elif how == "kill":
        caller.kill()
        caller.communicate(timeout=60)
    else:
        stopped = daemon.nbflow("daemon", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "the run it was driving was interrupted" in stopped.stderr
        _out, err = caller.communicate(timeout=60)
        assert caller.returncode == 130, err
        status = daemon.start()  # a fresh one, for the rest of the test
    store = open_store(str(daemon.store))
    try:
        deadline = time.monotonic() + 60
        while (run := store.meta.runs(limit=1)[0])["status"] == "running":
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        assert run["status"] == "interrupted"
        assert store.meta.run(run["id"])["driver"]["pid"] == first["pid"]  # type: ignore[index]
    finally:
        store.close()
    # The daemon serves the next caller, once it has finished with this one.
    deadline = time.monotonic() + 60
    while (now := daemon.status()) is None or now["busy"]:
        assert now is not None, "the daemon died"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    again = daemon.nbflow("run", str(write_notebook(daemon.root / "flow.ipynb", FLOW)),
                          "--store", str(daemon.store))
    assert again.returncode == 0, again.stderr
    assert daemon.run_record(again.stderr)["driver"]["pid"] == status["pid"]


def test_a_changed_config_file_stops_the_daemon_before_the_next_command(daemon: Daemon) -> None:
    config_dir = daemon.root / "dask-config"
    config_dir.mkdir()
    (config_dir / "nbflow.yaml").write_text("nbflow:\n  heartbeat:\n    interval: 5\n")
    daemon.env["DASK_CONFIG"] = str(config_dir)
    nb = write_notebook(daemon.root / "flow.ipynb", FLOW)
    status = daemon.start()
    (config_dir / "nbflow.yaml").write_text("nbflow:\n  heartbeat:\n    interval: 4\n")
    later = time.time() + 5
    os.utime(config_dir / "nbflow.yaml", (later, later))
    done = daemon.nbflow("run", str(nb), "--store", str(daemon.store))
    assert done.returncode == 0, done.stderr
    assert "a Dask config file changed since it started" in done.stderr
    assert daemon.run_record(done.stderr)["driver"]["pid"] != status["pid"]
    deadline = time.monotonic() + 60
    while psutil.pid_exists(status["pid"]) and \
            psutil.Process(status["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert daemon.status() is None


def test_status_stop_idle_timeout_and_permissions(daemon: Daemon) -> None:
    assert daemon.status() is None
    quiet = daemon.nbflow("daemon", "status")
    assert quiet.returncode == 1 and "no daemon serves this environment" in quiet.stderr
    assert daemon.nbflow("daemon", "stop").returncode == 0  # none to stop: fine

    status = daemon.start("--idle-timeout", "4s")
    assert status["idle_timeout"] == 4
    folder = Path(status["socket"]).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(status["socket"]).stat().st_mode) == 0o600
    twice = daemon.nbflow("daemon", "start")
    assert twice.returncode == 0 and f"daemon {status['pid']} already serves" in twice.stderr
    deadline = time.monotonic() + 60
    while daemon.status() is not None:
        assert time.monotonic() < deadline, "the idle daemon did not stop"
        time.sleep(0.2)
    assert "idle for 4 s; stopping" in Path(status["log"]).read_text()
    assert not Path(status["socket"]).exists()


def test_refusals_are_clear(daemon: Daemon) -> None:
    bad = daemon.nbflow("daemon", "start", "--idle-timeout", "soon")
    assert bad.returncode == 2 and "--idle-timeout 'soon' is not a duration" in bad.stderr
    remote = daemon.nbflow("daemon", "start",
                           extra={"DASK_NBFLOW__CLUSTER__ADDRESS": "tcp://127.0.0.1:9"})
    assert remote.returncode == 2
    assert "nbflow.cluster.address or nbflow.cluster.class is set" in remote.stderr
    # A runtime folder others can enter is refused, not used.
    (daemon.runtime / f"nbflow-{os.getuid()}").mkdir(exist_ok=True)  # made by the calls above
    (daemon.runtime / f"nbflow-{os.getuid()}").chmod(0o755)
    open_dir = daemon.nbflow("daemon", "start")
    assert open_dir.returncode == 2 and "closed to others (chmod 700)" in open_dir.stderr
    (daemon.runtime / f"nbflow-{os.getuid()}").chmod(0o700)
    assert daemon.status() is None  # and usable again once closed
