"""Regression tests for the harder corners of a run: snapshots, local modules, timeouts, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nbflow.client import Flow, Run
from nbflow.execute import Executor, ResourceError
from nbflow.model import RunStatus, TaskStatus
from nbflow.runner import resume_run, run_notebook
from nbflow.store import ArtifactError, Store


def run(path: Path, store: Store, executor: Executor, **kw: Any) -> Run:
    return Run(run_notebook(path, store=store, executor=executor, **kw), store)


def statuses(r: Run) -> dict[str, str]:
    return {t.step + ("" if t.index is None else f"[{t.index}]"): t.status.value
            for t in r.tasks}


def test_foreach_items_come_from_the_snapshot_at_the_step(notebook, store, executor) -> None:
    r = run(notebook([
        "items = [1, 2, 3]",
        "%%step slow\nimport time\ntime.sleep(1)\nbase = 10",
        "%%step each --foreach i in items\ny = i + base",
        "items = [100]  # rebinding later must not change what `each` iterates over",
        "print(y)",
    ]), store, executor)
    assert r.status == RunStatus.SUCCEEDED
    assert [t.outputs["y"].load() for t in r["each"].tasks] == [11, 12, 13]


def test_editing_a_local_module_invalidates_the_cache(tmp_path, notebook, store,
                                                      executor) -> None:
    (tmp_path / "helpers.py").write_text("def f():\n    return 1\n")
    path = notebook(["%%step a\nimport helpers\nv = helpers.f()"])
    assert run(path, store, executor)["a"].task.outputs["v"].load() == 1
    assert statuses(run(path, store, executor)) == {"a": "cached"}
    (tmp_path / "helpers.py").write_text("def f():\n    return 2\n")
    again = run(path, store, executor)
    assert statuses(again) == {"a": "succeeded"}
    assert again["a"].task.outputs["v"].load() == 2


def test_steps_run_in_the_notebook_folder(tmp_path, store, executor, monkeypatch) -> None:
    from conftest import write_notebook

    folder = tmp_path / "project"
    path = write_notebook(folder / "nb.ipynb", [
        "with open('settings.txt') as f:\n    setting = f.read().strip()",
        "%%step read\nwith open('data.txt') as f:\n    data = f.read().strip()\nout = data + setting",
    ])
    (folder / "data.txt").write_text("data")
    (folder / "settings.txt").write_text("!")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = run(path, store, executor)
    assert r["read"].task.outputs["out"].load() == "data!"
    assert os.getcwd() == str(elsewhere)


def test_timeout_counts_from_when_the_task_starts(notebook, store, executor) -> None:
    # Four 1.5 s tasks on two workers: the last two wait ~1.5 s in the queue, which must not
    # count against their 2.5 s --timeout.
    r = run(notebook(["%%step s --foreach i in range(4) --timeout 2.5\n"
                      "import time\ntime.sleep(1.5)\nx = i"]), store, executor)
    assert [t.status for t in r["s"].tasks] == [TaskStatus.SUCCEEDED] * 4


def test_lines_printed_before_a_timeout_are_kept(notebook, store, executor) -> None:
    r = run(notebook(["%%step s --timeout 2\nimport time\nprint('got this far', flush=True)\n"
                      "time.sleep(60)\nx = 1"]), store, executor)
    task = r["s"].task
    assert task.status == TaskStatus.TIMED_OUT
    assert "got this far" in task.stdout


def test_a_zero_resource_request_is_no_restriction(notebook, store, executor) -> None:
    r = run(notebook(["%%step a\n%%resources gpus=0\nx = 1"]), store, executor)
    assert r.status == RunStatus.SUCCEEDED


def test_an_impossible_foreach_leaves_no_task_running(notebook, store, executor) -> None:
    with pytest.raises(ResourceError):
        run_notebook(notebook(["%%step a --foreach i in range(3)\n%%resources memory=10T\nx = i"]),
                     store=store, executor=executor)
    latest = Flow("flow", store).latest_run
    assert latest is not None and latest.status == RunStatus.FAILED
    assert not [t for t in latest.tasks if not t.status.finished]


def test_a_crashing_worker_is_one_attempt_per_retry(tmp_path, notebook, store, executor) -> None:
    count = tmp_path / "count"
    r = run(notebook([
        f"count = {str(count)!r}",
        "%%step crash --retry 1\nimport os\nwith open(count, 'a') as f:\n    f.write('x')\n"
        "os._exit(1)",
    ]), store, executor)
    task = r["crash"].task
    assert task.status == TaskStatus.FAILED
    assert [a["status"] for a in task.attempts] == ["failed", "failed"]
    assert count.read_text() == "xx"
    assert "worker" in task.error and "died" in task.error


def test_plain_cells_do_not_hold_back_ready_steps(notebook, store, executor) -> None:
    r = run(notebook([
        "%%step a\nimport time\ntime.sleep(1)\nx = 1",
        "%%step b\nimport time\ntime.sleep(1)\ny = x",
        "import time\nbegan = time.time()\ntime.sleep(4)\nended = time.time()",
        "%%step c\nz = (y, began, ended)",
    ]), store, executor)
    _, began, ended = r["c"].task.outputs["z"].load()
    b = r["b"].task
    # `b` became ready while the plain cell slept; it must have run then, not after.
    assert began < b.started_at.timestamp() < ended


def test_resume_takes_the_original_steps_as_they_are(tmp_path, notebook, store,
                                                     executor) -> None:
    flag = tmp_path / "ok"
    path = notebook([
        ("shape = (3, 4)", ["parameters"]),
        f"import time\nflag = {str(flag)!r}\nstamp = time.time()",
        "%%step a\nx = stamp",
        "%%step b\nimport os\nassert os.path.exists(flag)\ny = (x, shape)",
    ])
    first = Run(run_notebook(path, store=store, executor=executor,
                             param_args=["shape=(5, 6)"]), store)
    assert statuses(first) == {"a": "succeeded", "b": "failed"}
    flag.touch()
    resumed = Run(resume_run(first.id, store=store, executor=executor), store)
    assert statuses(resumed) == {"a": "cached", "b": "succeeded"}
    x, shape = resumed["b"].task.outputs["y"].load()
    assert x == first["a"].task.outputs["x"].load()  # the original `a`, though `stamp` moved on
    assert shape == (5, 6) and isinstance(shape, tuple)  # the parameter, with its type


def test_log_paths_cannot_leave_the_store(store) -> None:
    with pytest.raises(ArtifactError, match="not a path inside the store"):
        store.artifacts.read_text("../../../../etc/hostname")


def test_set_tokens_do_not_depend_on_string_hashing() -> None:
    code = ("from nbflow.tokenize import value_token\n"
            "print(value_token([{'a', 'b', 'c', 'd'}, frozenset({'x', 'y'})]))")
    tokens = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
              for seed in ("1", "2", "3")}
    assert len(tokens) == 1


def test_a_memory_store_with_worker_processes_is_refused(notebook, executor) -> None:
    from nbflow.execute import ClusterError
    from nbflow.store import open_store

    store = open_store("memory://nbflow-refused", db="sqlite://")
    with pytest.raises(ClusterError, match="lives in this process's memory"):
        run_notebook(notebook(["%%step a\nx = 1"]), store=store, executor=executor)


def test_a_truncated_output_is_not_a_cache_hit_and_the_rerun_repairs_it(
        notebook, store, executor) -> None:
    nb = notebook(["%%step make\nimport numpy as np\narr = np.arange(100_000)"])
    first = Run(run_notebook(nb, store=store, executor=executor), store)
    artifact = first["make"].task.outputs["arr"]
    path = Path(store.artifacts.path(artifact.hash))
    path.write_bytes(path.read_bytes()[: artifact.size // 2])
    with pytest.raises(ArtifactError):
        artifact.load()
    second = Run(run_notebook(nb, store=store, executor=executor), store)
    task = second["make"].task
    assert task.status == TaskStatus.SUCCEEDED  # executed again, not a cache hit of the broken file
    assert task.outputs["arr"].hash == artifact.hash
    assert int(task.outputs["arr"].load().sum()) == sum(range(100_000))
    assert int(artifact.load().sum()) == sum(range(100_000))  # the first run's reference reads again

