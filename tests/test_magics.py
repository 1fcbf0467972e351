"""%%step, %%resources and %nbflow in a real IPython shell, on the session's real LocalCluster."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbflow.client import Run
from nbflow.execute import Executor
from nbflow.session import InteractiveSession
from nbflow.store import Store


@pytest.fixture
def ip(store: Store, executor: Executor) -> Iterator[InteractiveShell]:
    # An InteractiveShell puts its own module in sys.modules["__main__"], which breaks
    # multiprocessing's spawn in later tests of this process: put the real one back afterwards.
    main = sys.modules["__main__"]
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbflow")
    magics = shell.magics_manager.registry["NbflowMagics"]
    shell.reset(new_session=False)
    magics._session = InteractiveSession(shell.user_ns, store=store, executor=executor,
                                         notebook="analysis.ipynb")
    try:
        yield shell
    finally:
        magics._session.close()
        magics._session = None
        sys.modules["__main__"] = main


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
            "    def __init__(self, v):\n        self.v = v")
    assert run(ip, "%%step use\nresult = (round(area(1), 2), Box(3).v, math.floor(2.5))").success
    assert ip.user_ns["result"] == (3.14, 3, 2)


def test_nbflow_runs_lists_the_interactive_run(ip, capsys) -> None:
    run(ip, "%%step one\nv = 1")
    capsys.readouterr()
    run(ip, "%nbflow runs")
    assert "analysis" in capsys.readouterr().out


def test_step_help_comes_from_the_docstring() -> None:
    from nbflow.magics import NbflowMagics

    assert "%%step NAME [--foreach VAR in EXPR]" in (NbflowMagics.step.__doc__ or "")
