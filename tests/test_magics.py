"""%%step, %%resources and %nbflow in a real IPython shell, on the session's real LocalCluster."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbflow.client import Run
from nbflow.execute import Executor


def run(ip: InteractiveShell, source: str) -> Any:
    return ip.run_cell(source, store_history=True)


def test_steps_bind_outputs_and_pass_artifacts_by_reference(ip, store) -> None:
    run(ip, "base = 10")
    assert run(ip, "%%step load\nxs = [base + i for i in range(3)]").success
    assert ip.user_ns["xs"] == [10, 11, 12]
    assert run(ip, "%%step total\ns = sum(xs)").success
    assert ip.user_ns["s"] == 33
    session = ip.magics_manager.registry["NbflowMagics"].session
    r = Run(session.run_id, store)
    assert r.kind == "interactive" and r.flow == "analysis"
    assert r["total"].task.inputs["xs"]["kind"] == "artifact"  # not uploaded again
    assert r["total"].upstream == ["load"] and r["load"].upstream == []  # the run's DAG
    assert r["load"].task.inputs["base"]["kind"] == "value"


def test_an_unchanged_cell_is_a_cache_hit_and_force_runs_it(ip, capsys) -> None:
    cell = "%%step make\nvalue = 6 * 7"
    run(ip, cell)
    capsys.readouterr()
    ip.user_ns["value"] = None
    run(ip, cell)
    out = capsys.readouterr().out
    assert "step 'make' cached (from run " in out
    assert ip.user_ns["value"] == 42
    run(ip, "%%step make --force\nvalue = 6 * 7")
    assert "cached" not in capsys.readouterr().out


def test_output_streams_while_the_step_runs(ip, monkeypatch) -> None:
    stamps: list[tuple[float, str]] = []

    class Recorder:
        def write(self, text: str) -> int:
            if text.strip():
                stamps.append((time.monotonic(), text.strip()))
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", Recorder())
    assert run(ip, "%%step ticks\nimport time\nfor i in range(3):\n"
                   "    print('tick', i, flush=True)\n    time.sleep(1)\ndone = True").success
    ended = time.monotonic()
    ticks = [t for t, text in stamps if text.startswith("tick")]
    assert len(ticks) == 3
    # Printed once a second: the first line must show up about 2 s before the step ends.
    assert ended - ticks[0] > 1.5


def test_a_failure_shows_the_cells_own_traceback(ip, capsys) -> None:
    result = run(ip, "%%step boom\nitems = [1, 2]\nx = items[5]")
    assert not result.success
    out = capsys.readouterr().out
    assert '<cell' in out and "line 3" in out and "x = items[5]" in out
    assert "IndexError" in out
    assert "nbflow/" not in out
    assert run(ip, "1 + 1").success  # the kernel goes on


BAD = [
    ("%%step a --retyr 2\nx = 1", "did you mean --retry?"),
    ("%%step a\n%%resources memory=abc\nx = 1", "memory 'abc' is not an amount of bytes"),
    ("%%resources ram=4G\n%%step a\nx = 1", "ram"),
    ("%%step empty\n# only a comment", "has no code"),
    ("%%step a\ny = not_defined_anywhere + 1", "'not_defined_anywhere' is read here but not "
                                                "defined in this kernel"),
]


@pytest.mark.parametrize(("cell", "expected"), BAD, ids=["option", "memory", "resource",
                                                          "empty", "undefined"])
def test_bad_input_is_one_clear_line(ip, capsys, cell: str, expected: str) -> None:
    result = run(ip, cell)
    assert not result.success
    out = capsys.readouterr().out
    assert expected in out
    assert out.strip().startswith("nbflow: ")
    assert "Traceback" not in out
    assert run(ip, "1 + 1").success


def test_a_step_mutating_an_input_changes_only_its_own_copy(ip) -> None:
    run(ip, "%%step make\nitems = [1, 2]")
    kernel_items = ip.user_ns["items"]
    run(ip, "%%step grow\nitems.append(3)\nn = len(items)")
    assert ip.user_ns["n"] == 3
    assert ip.user_ns["items"] == [1, 2] and ip.user_ns["items"] is kernel_items
    run(ip, "%%step again\ncount = len(items)")
    assert ip.user_ns["count"] == 2  # the stored artifact was not changed either


def test_plain_cell_definitions_work_inside_steps(ip) -> None:
    run(ip, "import math\ndef area(r):\n    return math.pi * r * r\nclass Box:\n"
            "    def __init__(self, v):\n        self.v = v\ntwice = lambda v: 2 * v\nLIMIT = 7")
    assert run(ip, "%%step use\nresult = (round(area(1), 2), Box(3).v, math.floor(2.5), "
                   "twice(LIMIT))").success
    assert ip.user_ns["result"] == (3.14, 3, 2, 14)


def test_nbflow_runs_lists_the_interactive_run(ip, capsys) -> None:
    run(ip, "%%step one\nv = 1")
    capsys.readouterr()
    run(ip, "%nbflow runs")
    assert "analysis" in capsys.readouterr().out


def test_step_help_comes_from_the_docstring() -> None:
    from nbflow.magics import NbflowMagics

    assert "%%step NAME [--foreach VAR in EXPR]" in (NbflowMagics.step.__doc__ or "")


def test_the_last_expression_is_displayed_richly_and_again_on_a_cache_hit(ip, capsys) -> None:
    import pandas as pd

    from nbflow.display import Displayed

    cell = "%%step table\nimport pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': ['<x>', 'y']})\ndf"
    for _ in range(2):  # executed, then cached
        result = run(ip, cell)
        assert result.success and isinstance(result.result, Displayed)
        data, _meta = result.result._repr_mimebundle_()
        assert "<table" in data["text/html"] and "&lt;x&gt;" in data["text/html"]
        assert data["text/plain"] == repr(pd.DataFrame({"a": [1, 2], "b": ["<x>", "y"]}))
    assert "cached" in capsys.readouterr().out
    assert run(ip, "%%step quiet\nv = 3\nv * 2;").result is None  # `;` hides it, as in IPython
    assert run(ip, "%%step none\nw = [1]\nw.clear()").result is None  # None shows nothing


def test_a_big_output_stays_in_the_store_behind_a_handle(ip, store, capsys) -> None:
    from nbflow import config
    from nbflow.handle import ArtifactHandle

    with config.set(**{"interactive.max-bind-size": "1MiB"}):
        assert run(ip, "%%step big\nimport numpy as np\narr = np.arange(1_000_000, dtype='int64')\n"
                       "small = 5").success
        handle = ip.user_ns["arr"]
        assert isinstance(handle, ArtifactHandle) and ip.user_ns["small"] == 5
        assert handle.size > 8_000_000 and handle.type == "numpy.ndarray"
        assert handle.location.startswith(store.url.removeprefix("file://"))
        assert "arr.load()" in capsys.readouterr().out
        html = handle._repr_html_()
        assert "numpy.ndarray" in html and "7.63 MiB" in html
        assert run(ip, "%%step use\ntotal = int(arr.sum())").success
        assert ip.user_ns["total"] == sum(range(1_000_000))
    session = ip.magics_manager.registry["NbflowMagics"].session
    task = Run(session.run_id, store)["use"].task
    assert task.inputs["arr"]["kind"] == "artifact"  # passed by reference, not via the kernel
    assert int(handle.load()[-1]) == 999_999


def test_a_kernel_value_mutated_after_it_came_from_the_store_is_sent_as_it_is_now(ip, store) -> None:
    run(ip, "%%step make\nitems = [1, 2]")
    run(ip, "items.append(99)")  # a plain cell changes the kernel's copy
    assert run(ip, "%%step use\ntotal = sum(items)").success
    assert ip.user_ns["total"] == 102  # what the user sees, not the stored [1, 2]
    session = ip.magics_manager.registry["NbflowMagics"].session
    assert Run(session.run_id, store)["use"].task.inputs["items"]["kind"] == "value"
    run(ip, "%%step make2\nother = [5]")
    assert run(ip, "%%step use2\nt2 = sum(other)").success
    assert Run(session.run_id, store)["use2"].task.inputs["other"]["kind"] == "artifact"


def test_an_unpicklable_output_is_a_clear_error(ip, capsys) -> None:
    result = run(ip, "%%step lock\nimport threading\nguard = threading.Lock()")
    assert not result.success
    out = capsys.readouterr().out
    assert "output 'guard' of step 'lock'" in out and "cannot be saved" in out and "Fix:" in out
    assert "Traceback" not in out
    assert run(ip, "1 + 1").success


def test_an_unshippable_input_is_named_with_a_fix(ip, capsys) -> None:
    run(ip, "import threading\nguard = threading.Lock()")
    result = run(ip, "%%step use\nheld = guard.locked()")
    assert not result.success
    out = capsys.readouterr().out
    assert "'guard', a lock, cannot be shipped to a worker" in out and "instead" in out


def test_nbflow_command_errors_are_one_line(ip, capsys) -> None:
    for line, expected in [("frobnicate", "invalid choice: 'frobnicate'"),
                           ("run --bogus nb.ipynb", "unrecognized arguments: --bogus"),
                           ("run", "does not know its notebook's file"),
                           ("show", "the following arguments are required: run_id"),
                           ("runs 'unclosed", "No closing quotation")]:
        magics = ip.magics_manager.registry["NbflowMagics"]
        magics.session.notebook = None
        assert not run(ip, f"%nbflow {line}").success
        out = capsys.readouterr().out
        assert expected in out and out.startswith("nbflow: ") and "Traceback" not in out, out


def test_nbflow_run_and_resume_a_notebook_file(ip, notebook, capsys, tmp_path) -> None:
    flag = tmp_path / "ready.flag"
    path = notebook([
        "%load_ext nbflow",
        ("n = 3", ["parameters"]),
        "%%step load\nxs = list(range(n))",
        f"%%step check\nimport os\nassert os.path.exists({str(flag)!r}), 'not ready'\nok = len(xs)",
        "%nbflow run",  # skipped when the notebook runs headless: no recursion
    ], name="pipeline")
    assert not run(ip, f"%nbflow run {path} -p n=4 --text").success  # a failed run fails the cell
    out = capsys.readouterr().out
    assert "nbflow: load" in out and "succeeded" in out
    assert "step 'check': AssertionError: not ready" in out
    assert "failed" in out and "%nbflow resume" in out
    first = next(r for r in list_runs_of(ip) if r.kind == "headless")
    assert first.status.value == "failed" and first.params == {"n": 4}
    flag.write_text("go")
    assert run(ip, "%nbflow resume --text").success
    out = capsys.readouterr().out
    resumed = next(r for r in list_runs_of(ip) if r.kind == "resume")
    assert resumed.status.value == "succeeded" and resumed.resumed_from == first.id
    assert f"run {resumed.id} succeeded" in out
    assert resumed["load"].task.status.value == "cached" and resumed["check"].task.status.value \
        == "succeeded"
    assert resumed["check"].task.outputs["ok"].load() == 4


def list_runs_of(ip: InteractiveShell) -> list[Run]:
    from nbflow.client import list_runs

    session = ip.magics_manager.registry["NbflowMagics"].session
    return [Run(r.id, session.store) for r in list_runs(store=session.store)]


def test_a_cluster_that_went_away_is_one_line_and_nbflow_cluster_reconnects(ip, dask_client,
                                                                             capsys) -> None:
    import logging

    from distributed import Client, LocalCluster

    # A second, in-process cluster that the test can stop without harming the session's one.
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    magics = ip.magics_manager.registry["NbflowMagics"]
    magics.session.use_executor(Executor(client, "existing"))
    assert run(ip, "%%step a\nx = 1").success
    client.close()
    cluster.close()
    capsys.readouterr()
    result = run(ip, "%%step b\ny = x + 1")
    assert not result.success
    out = capsys.readouterr().out
    assert out.startswith("nbflow: the Dask cluster") and "went away" in out
    assert "%nbflow cluster" in out and "Traceback" not in out
    assert run(ip, f"%nbflow cluster {dask_client.scheduler.address}").success
    assert run(ip, "%%step b\ny = x + 1").success and ip.user_ns["y"] == 2
    magics.session.executor.client.close()


def test_nbflow_export_writes_a_runnable_module(ip, notebook, tmp_path, capsys) -> None:
    path = notebook(["%load_ext nbflow", "%%step a\nx = 2", "%nbflow export"], name="mine")
    out = tmp_path / "flows" / "mine.py"
    assert run(ip, f"%nbflow export {path} -o {out}").success
    assert f"wrote {out}" in capsys.readouterr().out
    assert '@step("a", cell=2)' in out.read_text() and "%nbflow" not in out.read_text()
    assert not run(ip, f"%nbflow export {tmp_path / 'missing.ipynb'}").success
    assert "no such notebook file" in capsys.readouterr().out
