"""`nbflow export`: a notebook as a flow module, deterministic, importable, and run on the same engine.

The round trip (notebook -> module -> run) is checked on the real cluster: the module's run, forced
to execute every step, must store byte-identical artifacts (same hashes) as the notebook's run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbflow.analyze import AnalysisError
from nbflow.client import Run
from nbflow.export import export_file, export_notebook
from nbflow.flowfile import FlowModuleError
from nbflow.flowfile import load as load_module
from nbflow.graph import GraphError
from nbflow.runner import run_notebook

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"
GOLDEN = Path(__file__).resolve().parent / "golden" / "quickstart_flow.py.txt"


def test_the_quickstart_exports_to_the_golden_file() -> None:
    text = export_notebook(QUICKSTART, REPO / "flows" / "quickstart.py")
    if os.environ.get("NBFLOW_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "export changed: review, then NBFLOW_UPDATE_GOLDEN=1"


def test_export_is_deterministic_and_only_depends_on_the_notebook(tmp_path) -> None:
    copy = tmp_path / "elsewhere" / "notebooks" / "quickstart.ipynb"
    copy.parent.mkdir(parents=True)
    shutil.copy(QUICKSTART, copy)
    here = export_notebook(QUICKSTART, REPO / "flows" / "quickstart.py").encode()
    there = export_notebook(copy, tmp_path / "elsewhere" / "flows" / "quickstart.py").encode()
    again = export_notebook(QUICKSTART, REPO / "flows" / "quickstart.py").encode()
    assert here == there == again


def test_the_module_is_importable_and_its_functions_callable(tmp_path) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    path = export_file(tmp_path / "quickstart.ipynb", tmp_path / "flows" / "quickstart.py")
    spec = importlib.util.spec_from_file_location("exported_quickstart", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.test_size == 0.25 and module.Cs == [0.01, 0.1, 1.0, 10.0]
    assert module.GRAPH["pick"] == ["logreg", "forest"]
    _data, X, y = module.load()
    X_train, X_test, y_train, y_test = module.split(module.cell_4(), X, y, 0.25, 0)
    assert len(X_train) + len(X_test) == len(X) == len(y_train) + len(y_test) == 569


def test_round_trip_gives_identical_artifacts(notebook, tmp_path, store, executor) -> None:
    """Notebook -> module -> run: every output of a forced module run is byte-identical (same
    hash) to the notebook run's. The flow computes its values (numpy, pandas, plain data) in
    each step; see the quickstart test below for steps that re-pickle objects they loaded."""
    path = notebook([
        ("n = 5\nscale = 2.5", ["parameters"]),
        "import numpy as np",
        "%%step base\nimport pandas as pd\nxs = np.arange(n) * scale\n"
        "frame = pd.DataFrame({'x': xs, 'y': xs ** 2})",
        "%%step square --foreach k in range(n)\nvalue = {'k': k, 'sq': float(xs[k] ** 2)}",
        "%%step stats\nsummary = {'mean': float(frame.y.mean()), 'n': len(frame)}",
        "%%step join\ntotal = sum(v['sq'] for v in value) + summary['mean']",
        "print(total)",
    ], name="trip")
    module = export_file(path, tmp_path / "flows" / "trip.py")
    from_notebook = Run(run_notebook(path, store=store, executor=executor), store)
    from_module = Run(run_notebook(module, store=store, executor=executor, force=True), store)
    assert from_notebook.status.value == from_module.status.value == "succeeded"
    assert from_module.flow == from_notebook.flow == "trip"
    assert all(t.status.value == "succeeded" for t in from_module.tasks)  # executed, not cached
    assert hashes(from_module) == hashes(from_notebook)
    assert len(hashes(from_module)) == 8  # base, 5 x square, stats, join
    cached = Run(run_notebook(module, store=store, executor=executor), store)
    assert {t.status.value for t in cached.tasks} == {"cached"}  # and it shares the cache


def test_the_quickstart_round_trip_shares_the_cache(tmp_path, store, executor) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    module = export_file(tmp_path / "quickstart.ipynb", tmp_path / "flows" / "quickstart.py")
    from_notebook = Run(run_notebook(tmp_path / "quickstart.ipynb", store=store,
                                     executor=executor), store)
    from_module = Run(run_notebook(module, store=store, executor=executor), store)
    assert from_notebook.status.value == "succeeded"
    assert {t.status.value for t in from_module.tasks} == {"cached"}
    assert hashes(from_module) == hashes(from_notebook)


def hashes(run: Run) -> dict[tuple[str, int | None], dict[str, str]]:
    return {(t.step, t.index): {n: a.hash for n, a in t.outputs.items()} for t in run.tasks}


def test_parameters_and_options_survive_the_round_trip(notebook, tmp_path, store, executor) -> None:
    path = notebook([
        ("n = 3\nlabel = 'x'", ["parameters"]),
        "%%step make --foreach i in range(n) --retry 2 --timeout 60 --catch\n"
        "%%resources memory=1G cpus=1\nvalue = i * 10",
        "%%step total\ns = sum(value)\nprint(label, s)",
    ], name="opts")
    module = export_file(path, tmp_path / "flows" / "opts.py")
    text = module.read_text()
    assert ('@step("make", cell=2, foreach="i in range(n)", retry=2, timeout=60, catch=True, '
            'resources={"memory": 1000000000, "cpus": 1.0})') in text
    nb_cells = {c.number: c for c in load_module(module).cells}
    assert nb_cells[1].tags == ("parameters",)
    run = Run(run_notebook(module, store=store, executor=executor, param_args=["n=4"]), store)
    assert run.status.value == "succeeded" and run.params == {"n": 4, "label": "x"}
    assert run["total"].task.outputs["s"].load() == 60
    step = next(s for s in run.steps if s.name == "make")
    assert step.options.retry == 2 and step.options.catch and step.options.timeout == 60
    assert step.options.resources.memory == 10**9


@pytest.mark.parametrize(("cell", "expected"), [
    ("!ls -l", "cell 1, line 1: '!ls -l' is IPython syntax that a Python module cannot contain"),
    ("x = 1\n%time y = 2", "cell 1, line 2: '%time y = 2'"),
    ("global z\nz = 1", "cell 1, line 1: a top-level `global` statement cannot be exported"),
    ("import asyncio\nawait asyncio.sleep(0)", "cell 1, line 2: top-level `await`/`yield`"),
], ids=["shell", "magic", "global", "await"])
def test_cells_a_module_cannot_express_are_refused(notebook, tmp_path, cell, expected) -> None:
    path = notebook([cell, "%%step s\nv = 1"], name="bad")
    out = tmp_path / "flows" / "bad.py"
    with pytest.raises(AnalysisError) as info:
        export_file(path, out)
    assert expected in str(info.value)
    assert not out.exists() and not out.parent.exists()  # nothing half-written


def test_display_magics_are_dropped(notebook, tmp_path) -> None:
    path = notebook(["%load_ext nbflow", "%matplotlib inline\nimport math", "%%step s\nv = math.pi"],
                    name="magics")
    text = export_file(path, tmp_path / "m.py").read_text()
    assert "%" not in text.replace("%%step", "") and "@cell(2)" in text and "@cell(1)" not in text


def test_a_module_whose_graph_disagrees_with_its_code_is_refused(tmp_path) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    module = export_file(tmp_path / "quickstart.ipynb", tmp_path / "quickstart.py")
    module.write_text(module.read_text().replace('"pick": ["logreg", "forest"]', '"pick": ["forest"]'))
    with pytest.raises(GraphError, match=r"pick: GRAPH says \['forest'\], the code reads from "
                                         r"\['forest', 'logreg'\]"):
        load_module(module)


def test_module_level_code_outside_the_markers_is_refused(tmp_path) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    module = export_file(tmp_path / "quickstart.ipynb", tmp_path / "quickstart.py")
    module.write_text(module.read_text().replace("\nGRAPH = {", "\nimport os\nos.getcwd()\nGRAPH = {"))
    with pytest.raises(FlowModuleError, match="neither the parameters block nor a @step/@cell"):
        load_module(module)


def test_cli_export_then_python_module_run(tmp_path, dask_client) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    env = {**os.environ, "DASK_NBFLOW__CLUSTER__ADDRESS": dask_client.scheduler.address}
    exported = subprocess.run([sys.executable, "-m", "nbflow.cli", "export", "quickstart.ipynb"],
                              cwd=tmp_path, capture_output=True, text=True, env=env, check=False)
    assert exported.returncode == 0, exported.stderr
    assert "wrote flows/quickstart.py" in exported.stderr
    ran = subprocess.run([sys.executable, "flows/quickstart.py", "run", "--param", "seed=1"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert "succeeded (8 succeeded)" in ran.stderr
    assert "The best model is" in ran.stdout
    assert (tmp_path / ".nbflow").is_dir()  # the notebook's folder (FOLDER = ".."), not flows/


def test_nbconvert_to_nbflow(tmp_path) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "nbflow",
                           "quickstart.ipynb"], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "quickstart.py").read_text() == export_notebook(
        tmp_path / "quickstart.ipynb", tmp_path / "quickstart.py")
