"""Whole runs on a real LocalCluster with worker processes: dataflow, cache, retries, failures."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from nbflow.client import Flow, Run
from nbflow.execute import Executor, ResourceError
from nbflow.graph import GraphError
from nbflow.model import RunStatus, TaskStatus
from nbflow.runner import RunError, resume_run, run_notebook
from nbflow.store import Store


def run(path: Path, store: Store, executor: Executor, **kw: Any) -> Run:
    run_id = run_notebook(path, store=store, executor=executor, **kw)
    return Run(run_id, store)


def statuses(r: Run) -> dict[str, str]:
    return {t.step + ("" if t.index is None else f"[{t.index}]"): t.status.value
            for t in r.tasks}


CHAIN = [
    ("n = 3", ["parameters"]),
    "%%step a\nxs = list(range(n))\nprint('made', len(xs))",
    "%%step b\ntotal = sum(xs)",
    "%%step c\ndoubled = total * 2",
    "%%step side\nside_value = 'independent'",
]


def test_chain_outputs_logs_and_client_api(notebook, store, executor) -> None:
    r = run(notebook(CHAIN), store, executor)
    assert r.status == RunStatus.SUCCEEDED
    assert statuses(r) == {"a": "succeeded", "b": "succeeded", "c": "succeeded",
                           "side": "succeeded"}
    assert r["c"].task.outputs["doubled"].load() == 6
    assert "made 3" in r["a"].task.stdout
    flow = Flow("flow", store)
    assert flow.latest_run is not None and flow.latest_run.id == r.id
    task = r["b"].task
    assert task.inputs["xs"]["kind"] == "artifact"
    assert task.worker and task.worker.startswith("tcp://")
    assert task.started_at <= task.finished_at
    assert task.cache_key and len(task.cache_key) == 32
    assert r["b"].upstream == ["a"]
    assert r.params == {"n": 3}


def test_unchanged_steps_are_cached_and_edits_rerun_descendants_only(
        notebook, store, executor) -> None:
    path = notebook(CHAIN)
    first = run(path, store, executor)
    second = run(path, store, executor)
    assert set(statuses(second).values()) == {"cached"}
    assert second["c"].task.outputs["doubled"].hash == first["c"].task.outputs["doubled"].hash
    assert second["a"].task.cached_from == first["a"].task.id

    edited = list(CHAIN)
    edited[2] = "%%step b\n# a comment does not change the key\ntotal = sum(xs) + 1"
    third = run(notebook(edited), store, executor)
    assert statuses(third) == {"a": "cached", "b": "succeeded", "c": "succeeded",
                               "side": "cached"}
    assert third["c"].task.outputs["doubled"].load() == 8

    comment_only = list(edited)
    comment_only[2] = "%%step b\ntotal = sum(xs)   +   1  # spacing and comments"
    fourth = run(notebook(comment_only), store, executor)
    assert statuses(fourth)["b"] == "cached"


def test_force_executes_everything(notebook, store, executor) -> None:
    path = notebook(CHAIN)
    run(path, store, executor)
    again = run(path, store, executor, force=True)
    assert set(statuses(again).values()) == {"succeeded"}


def test_param_override_reruns_dependents(notebook, store, executor) -> None:
    path = notebook(CHAIN)
    run(path, store, executor)
    r = run(path, store, executor, params={"n": 5})
    assert r.params == {"n": 5}
    assert statuses(r) == {"a": "succeeded", "b": "succeeded", "c": "succeeded",
                           "side": "cached"}
    assert r["c"].task.outputs["doubled"].load() == 20
    with pytest.raises(RunError, match="unknown parameter 'm'; the parameters cell defines n"):
        run_notebook(path, store=store, executor=executor, params={"m": 1})


def test_unpicklable_output_nobody_reads_is_skipped_with_a_warning(
        notebook, store, executor) -> None:
    r = run(notebook(["%%step reads\nwith open(__import__('os').devnull) as f:\n    n = 1"]),
            store, executor)
    task = r["reads"].task
    assert task.status == TaskStatus.SUCCEEDED
    assert set(task.outputs) == {"n"}
    assert "output 'f' was not saved" in task.stderr


def test_edited_data_file_invalidates_the_cache(tmp_path, notebook, store, executor) -> None:
    data = tmp_path / "data.csv"
    data.write_text("1\n2\n3\n")
    path = notebook([
        f"path = {str(data)!r}",
        "%%step read\nwith open(path) as f:\n    numbers = [int(x) for x in f]",
    ])
    first = run(path, store, executor)
    files = first["read"].task.files
    assert [f.path for f in files] == [str(data)] and files[0].size == 6
    assert statuses(run(path, store, executor)) == {"read": "cached"}

    os.utime(data, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same content
    assert statuses(run(path, store, executor)) == {"read": "cached"}

    data.write_text("1\n2\n3\n4\n")
    r = run(path, store, executor)
    assert statuses(r) == {"read": "succeeded"}
    assert r["read"].task.outputs["numbers"].load() == [1, 2, 3, 4]


def test_foreach_gathers_outputs_in_item_order(notebook, store, executor) -> None:
    r = run(notebook([
        "%%step items\nxs = [5, 1, 4, 2, 3]",
        "%%step square --foreach x in xs\nimport time\ntime.sleep(0.05 * x)\ny = x * x",
        "%%step total\nys = y\ns = sum(y)",
    ]), store, executor)
    assert r.status == RunStatus.SUCCEEDED
    tasks = r["square"].tasks
    assert sorted(t.index for t in tasks) == [0, 1, 2, 3, 4]
    assert r["total"].task.outputs["ys"].load() == [25, 1, 16, 4, 9]
    assert r["total"].task.outputs["s"].load() == 55


def test_foreach_over_a_parameter_and_empty_foreach(notebook, store, executor) -> None:
    r = run(notebook([
        ("items = []", ["parameters"]),
        "%%step each --foreach i in items\nout = i + 1",
        "%%step after\ncount = len(out)",
    ]), store, executor)
    assert r.status == RunStatus.SUCCEEDED
    assert r["after"].task.outputs["count"].load() == 0


def test_independent_branches_run_at_the_same_time(notebook, store, executor) -> None:
    r = run(notebook([
        "%%step left\nimport time\ntime.sleep(2)\nl = 1",
        "%%step right\nimport time\ntime.sleep(2)\nr = 2",
        "%%step join\nboth = l + r",
    ]), store, executor)
    assert r.status == RunStatus.SUCCEEDED
    left, right = r["left"].task, r["right"].task
    overlap = (min(left.finished_at, right.finished_at)
               - max(left.started_at, right.started_at)).total_seconds()
    # Run one after the other, the two 2 s sleeps would not overlap at all; overlapping by more
    # than 1 s, the whole run takes clearly less than the 4 s they add up to.
    assert overlap > 1.0
    assert left.worker != right.worker
    assert (r.finished_at - r.started_at).total_seconds() < 4.0


def test_retry_records_every_attempt(tmp_path, notebook, store, executor) -> None:
    marker = tmp_path / "tried"
    r = run(notebook([
        f"marker = {str(marker)!r}",
        "%%step flaky --retry 2\nimport os\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    raise RuntimeError('first attempt fails')\n"
        "ok = True",
    ]), store, executor)
    task = r["flaky"].task
    assert task.status == TaskStatus.SUCCEEDED
    attempts = task.attempts
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert "first attempt fails" in attempts[0]["error"]


def test_timeout_is_recorded_and_the_run_goes_on(notebook, store, executor) -> None:
    r = run(notebook([
        "%%step slow --timeout 1\nimport time\ntime.sleep(120)\nx = 1",
        "%%step fast\ny = 2",
    ]), store, executor)
    assert r.status == RunStatus.FAILED
    assert r["slow"].task.status == TaskStatus.TIMED_OUT
    assert "--timeout of 1 s" in r["slow"].task.error
    assert r["fast"].task.status == TaskStatus.SUCCEEDED
    # The worker was restarted: the cluster still has both workers and runs new work.
    again = run(notebook(["%%step after\nz = 3"], name="after"), store, executor)
    assert again.status == RunStatus.SUCCEEDED


def test_catch_hands_the_exception_downstream(notebook, store, executor) -> None:
    r = run(notebook([
        "%%step risky --catch\nvalue = 1 / 0",
        "%%step handle\nkind = type(value).__name__\nrecovered = 0 if isinstance(value, "
        "ZeroDivisionError) else value",
    ]), store, executor)
    assert r.status == RunStatus.SUCCEEDED
    assert r["risky"].task.status == TaskStatus.FAILED
    assert r["handle"].task.outputs["kind"].load() == "ZeroDivisionError"


def test_failure_traceback_points_at_the_cell_and_downstream_is_cancelled(
        notebook, store, executor) -> None:
    r = run(notebook([
        "%%step a\nx = 1",
        "%%step boom\ny = x + 1\nz = int('not a number')",
        "%%step after\nw = z",
    ]), store, executor)
    assert r.status == RunStatus.FAILED
    task = r["boom"].task
    assert task.status == TaskStatus.FAILED
    assert task.error_type == "ValueError"
    assert '<cell 2: step boom>", line 3' in task.error
    assert "z = int('not a number')" in task.error
    assert "nbflow/worker.py" not in task.error
    assert r["after"].task.status == TaskStatus.CANCELLED


def test_resume_reruns_only_what_failed(tmp_path, notebook, store, executor) -> None:
    flag = tmp_path / "fixed"
    cells = [
        f"flag = {str(flag)!r}",
        "%%step a\nimport time\nstamp = time.time()",
        "%%step b\nimport os\nif not os.path.exists(flag):\n    raise RuntimeError('broken')\n"
        "y = stamp",
        "%%step c\nz = y",
    ]
    path = notebook(cells)
    first = run(path, store, executor)
    assert statuses(first) == {"a": "succeeded", "b": "failed", "c": "cancelled"}
    flag.touch()
    resumed = Run(resume_run(first.id, store=store, executor=executor), store)
    assert resumed.status == RunStatus.SUCCEEDED
    assert resumed.resumed_from == first.id
    assert statuses(resumed) == {"a": "cached", "b": "succeeded", "c": "succeeded"}
    assert resumed["c"].task.outputs["z"].load() == first["a"].task.outputs["stamp"].load()

    from_a = Run(resume_run(resumed.id, store=store, executor=executor, from_steps=["a"]), store)
    assert statuses(from_a) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    with pytest.raises(RunError, match="--from nope: no such step"):
        resume_run(first.id, store=store, executor=executor, from_steps=["nope"])


def test_plain_cells_read_step_outputs_and_their_errors_stop_the_run(
        notebook, store, executor) -> None:
    ok = run(notebook([
        "%%step make\nvalue = 21",
        "answer = value * 2",
        "%%step use\nfinal = answer + 0",
    ]), store, executor)
    assert ok["use"].task.outputs["final"].load() == 42

    bad = run(notebook(["%%step make\nvalue = 1", "x = value\nraise ValueError('no')",
                        "%%step later\ny = 1"], name="bad"), store, executor)
    assert bad.status == RunStatus.FAILED
    assert "plain cell 2 raised ValueError: no" in bad.error
    assert '<cell 2>", line 2' in bad.error


def test_plain_cell_functions_and_modules_ship_to_steps(notebook, store, executor) -> None:
    r = run(notebook([
        "import math\nimport collections\n\ndef area(r):\n    return math.pi * r ** 2\n\n"
        "class Box:\n    def __init__(self, v):\n        self.v = v\n\nsquare = lambda v: v * v",
        "%%step use\nresult = (round(area(1), 2), Box(3).v, square(4), "
        "collections.Counter('aab')['a'])",
    ]), store, executor)
    assert r["use"].task.outputs["result"].load() == (3.14, 3, 16, 2)
    assert r["use"].task.inputs["collections"] == {"kind": "module",
                                                         "module": "collections"}
    assert statuses(run(notebook([
        "import math\nimport collections\n\ndef area(r):\n    return math.pi * r ** 2\n\n"
        "class Box:\n    def __init__(self, v):\n        self.v = v\n\nsquare = lambda v: v * v",
        "%%step use\nresult = (round(area(1), 2), Box(3).v, square(4), "
        "collections.Counter('aab')['a'])",
    ]), store, executor)) == {"use": "cached"}


def test_unpicklable_output_and_input_get_clear_errors(notebook, store, executor) -> None:
    r = run(notebook(["%%step locky\nimport threading\nlock = threading.Lock()",
                      "%%step later\nfree = not lock.locked()"]), store, executor)
    err = r["locky"].task.error
    assert "output 'lock' of step 'locky' (cell 1) cannot be saved" in err
    assert "Fix:" in err

    r2 = run(notebook(["import threading\nlock = threading.Lock()",
                       "%%step uses\nheld = lock.locked()"], name="input"), store, executor)
    err2 = r2["uses"].task.error
    assert "reads 'lock', a lock defined in a plain cell, which cannot be shipped" in err2
    assert r2.status == RunStatus.FAILED


def test_impossible_resources_fail_at_once_naming_the_largest_worker(
        notebook, store, executor) -> None:
    with pytest.raises(ResourceError, match=r"largest worker, tcp://.*has memory=2\.15 GB \(2\.00 GiB\)"):
        run_notebook(notebook(["%%step huge\n%%resources memory=64G\nx = 1"]), store=store,
                     executor=executor)
    failed = Flow("flow", store).latest_run
    assert failed is not None and failed.status == RunStatus.FAILED
    assert "asks for memory=64 GB (59.60 GiB)" in failed.error
    ok = run(notebook(["%%resources cpus=1 memory=1G\n%%step fits\nx = 1"], name="fits"),
             store, executor)
    assert ok["fits"].task.resources.cpus == 1
    assert ok.status == RunStatus.SUCCEEDED


def test_graph_errors_happen_before_any_run_is_recorded(notebook, store, executor) -> None:
    with pytest.raises(GraphError, match="cell 1, line 2: 'nope' is read here but no cell"):
        run_notebook(notebook(["%%step a\nx = nope"]), store=store, executor=executor)
    assert store.meta.runs() == []


def test_environment_is_captured(notebook, store, executor) -> None:
    r = run(notebook(["import numpy", "%%step a\nimport numpy as np\nx = np.arange(3)"]),
            store, executor)
    env = r.environment
    assert env["python"].count(".") == 2
    assert env["packages"]["numpy"] == __import__("numpy").__version__
    assert env["nbflow"] == __import__("nbflow").__version__
    assert len(env["notebook_hash"]) == 32
