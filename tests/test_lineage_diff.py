"""Lineage and run comparison on real runs: `nbflow run` processes (each with its own LocalCluster)
whose runs differ in a step's code, a parameter, a data file and a package version; in-process
runs for foreach gathers and a kernel session's re-run step; `%nbflow diff` in a real shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook

from nbflow.client import Flow, Run
from nbflow.compare import diff_runs, render_html, render_text
from nbflow.execute import Executor
from nbflow.lineage import LineageError, lineage
from nbflow.runner import run_notebook
from nbflow.store import Store, open_store
from nbflow.worker import describe_file

FEATURES_A = "%%step features\nimport probepkg\narr = np.arange(6) * scale\nversion = probepkg.VERSION"
FEATURES_B = FEATURES_A.replace("np.arange(6) * scale", "np.arange(6) * scale + 1")


def _cells(features: str) -> list[Any]:
    return [
        ("scale = 2", ["parameters"]),
        "import numpy as np",
        '%%step load\nimport pandas as pd\ndf = pd.read_csv("data.csv")',
        features,
        '%%step summary\ntotal = float(df["x"].sum() + arr.sum())\nframe = df.assign(y=df["x"] * scale)',
    ]


def _package(root: Path, version: str) -> Path:
    """An installed distribution `probepkg` of this version, in a site-packages folder of its
    own (what `pip install probepkg==VERSION --target` would leave), put on PYTHONPATH."""
    site = root / f"v{version}" / "site-packages"
    (site / "probepkg").mkdir(parents=True)
    (site / "probepkg" / "__init__.py").write_text(f"VERSION = {version!r}\n")
    info = site / f"probepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: probepkg\nVersion: {version}\n")
    (info / "top_level.txt").write_text("probepkg\n")
    return site


def _nbflow(project: Path, *args: str, pythonpath: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DASK_NBFLOW__CLUSTER__N_WORKERS": "2"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run([sys.executable, "-m", "nbflow.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run A, then run B with the features step's code edited, scale=3, one value of data.csv
    changed and probepkg 2.0 instead of 1.0; then run C, the same as B (all cache hits)."""
    root = tmp_path_factory.mktemp("lineage")
    project = root / "project"
    project.mkdir()
    v1, v2 = _package(root, "1.0"), _package(root, "2.0")
    (project / "data.csv").write_text("x\n1\n2\n3\n")
    write_notebook(project / "flow.ipynb", _cells(FEATURES_A))
    _nbflow(project, "run", "flow.ipynb", "-q", pythonpath=v1)
    (project / "data.csv").write_text("x\n1\n20\n3\n")
    write_notebook(project / "flow.ipynb", _cells(FEATURES_B))
    _nbflow(project, "run", "flow.ipynb", "-q", "-p", "scale=3", pythonpath=v2)
    _nbflow(project, "run", "flow.ipynb", "-q", "-p", "scale=3", pythonpath=v2)
    store = open_store(str(project / ".nbflow"))
    c, b, a = (r.id for r in Flow("flow", store).runs())
    yield {"project": project, "store": store, "a": a, "b": b, "c": c}
    store.close()


def test_diff_names_code_parameter_data_file_package_and_output_changes(two_runs) -> None:
    store, a, b = two_runs["store"], two_runs["a"], two_runs["b"]
    d = diff_runs(store, a, b)
    assert d["a"]["id"] == a and d["b"]["id"] == b
    assert d["params"] == [{"name": "scale", "a": 2, "b": 3, "status": "changed"}]
    assert {"name": "probepkg", "a": "1.0", "b": "2.0"} in d["environment"]["packages"]
    steps = {s["name"]: s for s in d["steps"]}
    assert list(steps) == ["load", "features", "summary"]
    assert all(s["status"] == "changed" for s in steps.values())

    load = steps["load"]
    data = str(two_runs["project"] / "data.csv")
    assert [f["path"] for f in load["files"]] == [data]
    assert load["files"][0]["b"]["hash"] == describe_file(data).hash  # type: ignore[union-attr]
    assert load["files"][0]["a"]["hash"] != load["files"][0]["b"]["hash"]
    assert load["code"]["diff"] == "" and load["inputs"] == []
    (df,) = load["outputs"]
    assert df["name"] == "df" and df["summary"]["kind"] == "frame"
    assert df["summary"]["changed_columns"][0]["column"] == "'x'"  # labels as reprs
    assert df["summary"]["changed_columns"][0]["rows_changed"] == 1

    features = steps["features"]
    diff = features["code"]["diff"]
    assert "-arr = np.arange(6) * scale\n" in diff and "+arr = np.arange(6) * scale + 1\n" in diff
    assert features["code"]["a"] + "\n" != features["code"]["b"]
    scale = next(i for i in features["inputs"] if i["name"] == "scale")
    assert (scale["a"]["repr"], scale["b"]["repr"], scale["b"]["type"]) == ("2", "3", "int")
    assert features["packages"] == [{"name": "probepkg", "a": "1.0", "b": "2.0"}]
    outputs = {o["name"]: o for o in features["outputs"]}
    arr = outputs["arr"]["summary"]
    assert arr["kind"] == "array" and arr["changed"] == 6 and arr["shape"] == {"a": [6], "b": [6]}
    assert outputs["version"]["summary"]["kind"] == "text"
    assert "'1.0'" in outputs["version"]["summary"]["text"] or "1.0" in outputs["version"][
        "summary"]["text"]

    summary = {o["name"]: o for o in steps["summary"]["outputs"]}
    total = summary["total"]["summary"]
    # A: 6 + 2*(0+..+5) = 36; B: 24 + 3*15 + 6 = 75
    assert (total["kind"], total["a"], total["b"], total["delta"]) == ("number", 36.0, 75.0, 39.0)
    assert summary["frame"]["summary"]["kind"] == "frame"
    assert d["counts"] == {"steps_changed": 3, "outputs_changed": 5}

    text = render_text(d)
    assert "parameter scale: 2 -> 3" in text and "package probepkg: 1.0 -> 2.0" in text
    assert "+arr = np.arange(6) * scale + 1" in text and "file " + data in text


def test_identical_runs_diff_as_unchanged(two_runs) -> None:
    d = diff_runs(two_runs["store"], two_runs["b"], two_runs["c"])
    assert [s["status"] for s in d["steps"]] == ["same", "same", "same"]
    assert d["params"] == [] and d["environment"]["packages"] == []
    assert d["counts"] == {"steps_changed": 0, "outputs_changed": 0}
    assert "unchanged: load, features, summary" in render_text(d)


def test_cli_diff_json_is_the_model_and_bad_ids_are_clear_errors(two_runs) -> None:
    project, a, b = two_runs["project"], two_runs["a"], two_runs["b"]
    proc = _nbflow(project, "diff", a, b, "--json")
    assert json.loads(proc.stdout) == json.loads(json.dumps(diff_runs(two_runs["store"], a, b)))
    text = _nbflow(project, "diff", a, b).stdout
    assert "step features: changed" in text
    bad = _nbflow(project, "diff", a, "20990101-000000-abcdef", check=False)
    assert bad.returncode == 2 and "no run '20990101-000000-abcdef'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_lineage_goes_back_to_parameters_data_files_code_and_environment(two_runs) -> None:
    store, b = two_runs["store"], two_runs["b"]
    data = lineage(store, b, "summary", "total")
    assert data["artifact"]["name"] == "total" and data["artifact"]["step"] == "summary"
    assert data["params"] == {"scale": 3}
    nodes = {n["step"]: n for n in data["tasks"]}
    assert data["tasks"][0]["step"] == "summary"
    assert set(nodes) == {"summary", "load", "features"}
    assert data["root"] == nodes["summary"]["id"]
    summary, features, load = nodes["summary"], nodes["features"], nodes["load"]
    by_input = {i["name"]: i["from"] for i in summary["inputs"]}
    assert by_input == {"df": [load["id"]], "arr": [features["id"]]}
    assert features["code"] == FEATURES_B.split("\n", 1)[1]
    import numpy

    # probepkg imported by the step, numpy shipped to it as the module `np`
    assert features["environment"]["packages"] == {"probepkg": "2.0", "numpy": numpy.__version__}
    scale = next(v for v in features["values"] if v["name"] == "scale")
    assert (scale["repr"], scale["type"], scale["parameter"]) == ("3", "int", True)
    assert {"name": "np", "module": "numpy"} in features["modules"]
    path = str(two_runs["project"] / "data.csv")
    current = describe_file(path)
    assert current is not None
    assert load["files"] == [{"path": path, "size": current.size, "hash": current.hash}]
    assert data["files"] == [{"path": path, "size": current.size, "hash": current.hash,
                              "task": load["id"]}]


def test_client_lineage_equals_the_cli_json_and_a_cached_task_names_its_origin(two_runs) -> None:
    store, project, b, c = two_runs["store"], two_runs["project"], two_runs["b"], two_runs["c"]
    art = Run(b, store)["summary"].task.outputs["total"]
    cli = json.loads(_nbflow(project, "lineage", b, "summary", "total", "--json").stdout)
    assert art.lineage().to_json() == json.loads(json.dumps(cli))
    text = _nbflow(project, "lineage", b, "summary", "total").stdout
    assert "parameter: scale = 3 (int)" in text and "probepkg==2.0" in text
    assert f"file read: {project / 'data.csv'}" in text
    cached = Run(c, store)["summary"].task.outputs["total"].lineage()
    root = cached.tasks[0]
    assert root["status"] == "cached" and root["run"] == c
    original = Run(b, store)["summary"].task
    assert root["cached_from"] == {"run": b, "task": original.id}
    assert root["code"] == original.code
    assert root["environment"] == {k: original.environment[k]
                                   for k in ("python", "packages", "sources")}


def test_lineage_errors_name_what_exists(two_runs) -> None:
    store, b, project = two_runs["store"], two_runs["b"], two_runs["project"]
    with pytest.raises(LineageError, match="its outputs are arr, probepkg, version"):
        lineage(store, b, "features", "nope")
    with pytest.raises(LineageError, match="its steps are features, load, summary"):
        lineage(store, b, "ghost", "x")
    bad = _nbflow(project, "lineage", b, "ghost", "x", check=False)
    assert bad.returncode == 2 and "nbflow: error: run" in bad.stderr and "ghost" in bad.stderr


def test_gathered_foreach_items_trace_to_their_own_tasks(notebook, store: Store,
                                                         executor: Executor) -> None:
    path = notebook(["%%step square --foreach v in [1, 1, 2]\ny = v * v",
                     "%%step add\ns = sum(y)"])
    run_id = run_notebook(path, store=store, executor=executor)
    data = lineage(store, run_id, "add", "s")
    squares = [n for n in data["tasks"] if n["step"] == "square"]
    assert sorted(n["index"] for n in squares) == [0, 1, 2]  # items 0 and 1 are equal values
    by_index = {n["index"]: n["id"] for n in squares}
    assert data["tasks"][0]["inputs"][0]["from"] == [by_index[0], by_index[1], by_index[2]]
    assert [n["item"] for n in sorted(squares, key=lambda n: n["index"])] == ["1", "1", "2"]
    with pytest.raises(LineageError, match="choose one with --index"):
        lineage(store, run_id, "square", "y")
    one = lineage(store, run_id, "square", "y", 2)
    assert one["artifact"]["index"] == 2 and one["tasks"][0]["item"] == "2"


def test_a_step_re_run_with_new_code_keeps_its_old_tasks_code(ip, store: Store) -> None:
    assert ip.run_cell("%%step make\nvalue = 1 + 1").success
    assert ip.run_cell("%%step make\nvalue = 2 + 2").success
    run = Run(ip.magics_manager.registry["NbflowMagics"].session.run_id, store)
    old, new = run.tasks
    assert (old.code.strip(), new.code.strip()) == ("value = 1 + 1", "value = 2 + 2")
    assert old.outputs["value"].lineage().tasks[0]["code"] == old.code
    assert new.outputs["value"].lineage().tasks[0]["code"] == new.code


def test_percent_nbflow_diff_shows_escaped_html_and_text(ip, store: Store, notebook,
                                                         executor: Executor) -> None:
    path = notebook(["x = '<script>alert(1)</script>'", "%%step s\ny = x * 2"])
    a = run_notebook(path, store=store, executor=executor)
    path = notebook(["x = '<img src=x onerror=alert(1)>'", "%%step s\ny = x * 3"])
    b = run_notebook(path, store=store, executor=executor)
    result = ip.run_cell(f"%nbflow diff {a} {b}")
    assert result.success
    shown = result.result
    page = shown._repr_html_()
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert "-y = x * 2" in page and "+y = x * 3" in page
    assert page == render_html(diff_runs(store, a, b))
    assert "step s: changed" in repr(shown)
    bad = ip.run_cell(f"%nbflow diff {a} 20990101-000000-abcdef")
    assert not bad.success and "no run" in str(bad.error_in_exec)
