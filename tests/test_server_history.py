"""The REST endpoints for tags, notes, lineage and run comparison, in a real Jupyter server over a
store filled by real runs; hostile input to each of them is a 400 or 404."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook
from tornado.httpclient import HTTPClientError

from nbflow.compare import diff_runs
from nbflow.lineage import lineage
from nbflow.runner import run_notebook
from nbflow.store import open_store

pytest_plugins = ["pytest_jupyter.jupyter_server"]
NB = "project/flow.ipynb"


@pytest.fixture
def two(jp_root_dir: Path, executor) -> dict[str, Any]:
    """Two runs of a flow differing in a parameter (`n`), in <root>/project/.nbflow."""
    project = jp_root_dir / "project"
    project.mkdir()
    store = open_store(str(project / ".nbflow"))
    write_notebook(project / "flow.ipynb", [
        ("n = 3", ["parameters"]),
        "%%step make\nimport numpy as np\nitems = np.arange(n) * 1.5",
        "%%step total\ntotal = float(items.sum())\nprint('<script>x</script>')"])
    a = run_notebook(project / "flow.ipynb", store=store, executor=executor)
    b = run_notebook(project / "flow.ipynb", store=store, executor=executor, params={"n": 5})
    out = {"a": a, "b": b, "diff": diff_runs(store, a, b),
           "lineage": lineage(store, b, "total", "total")}
    store.close()
    return out


async def call(jp_fetch: Any, *path: str, method: str = "GET", body: Any = None,
               **params: str) -> tuple[int, Any]:
    try:
        response = await jp_fetch("nbflow", "api", *path, method=method,
                                  body=None if body is None else json.dumps(body),
                                  params={"notebook": NB, **params}, raise_error=False)
    except HTTPClientError as exc:
        return exc.code, None
    data = json.loads(response.body) if response.code == 200 else None
    return response.code, data


async def test_tags_and_notes_are_set_listed_and_filter_the_history(jp_fetch, two) -> None:
    a, b = two["a"], two["b"]
    code, body = await call(jp_fetch, "runs", a, "tags", method="POST",
                            body={"add": ["baseline", "paper-v1"], "note": "first <b>try</b>"})
    assert code == 200 and body == {"tags": ["baseline", "paper-v1"], "note": "first <b>try</b>"}
    code, body = await call(jp_fetch, "runs", b, "tags", method="POST", body={"add": ["paper-v1"]})
    assert body == {"tags": ["paper-v1"], "note": None}
    _, tags = await call(jp_fetch, "tags")
    assert tags == {"tags": [{"name": "baseline", "runs": 1}, {"name": "paper-v1", "runs": 2}]}
    _, page = await call(jp_fetch, "runs", tag="baseline")
    assert [r["id"] for r in page["runs"]] == [a] and page["runs"][0]["tags"] == [
        "baseline", "paper-v1"] and page["runs"][0]["note"] == "first <b>try</b>"
    _, page = await call(jp_fetch, "runs", tag="paper-v1")
    assert [r["id"] for r in page["runs"]] == [b, a]
    _, page = await call(jp_fetch, "runs", tag="nothing")
    assert page["runs"] == []
    code, body = await call(jp_fetch, "runs", a, "tags", method="POST",
                            body={"remove": ["baseline"], "note": None})
    assert body == {"tags": ["paper-v1"], "note": None}
    _, run = await call(jp_fetch, "runs", a)
    assert run["tags"] == ["paper-v1"] and run["note"] is None


@pytest.mark.parametrize("body", [{"add": ["two words"]}, {"add": ["a\x00b"]}, {"add": [""]},
                                  {"add": ["x" * 101]}, {"add": "baseline"}, {"add": [3]},
                                  {"note": 3}, [1]])
async def test_bad_tags_and_notes_are_400(jp_fetch, two, body) -> None:
    code, _ = await call(jp_fetch, "runs", two["a"], "tags", method="POST", body=body)
    assert code == 400
    _, run = await call(jp_fetch, "runs", two["a"])
    assert run["tags"] == [] and run["note"] is None  # nothing half-applied


async def test_diff_and_lineage_are_the_models_of_the_cli(jp_fetch, two) -> None:
    code, body = await call(jp_fetch, "diff", a=two["a"], b=two["b"])
    assert code == 200 and body == json.loads(json.dumps(two["diff"]))
    assert body["params"] == [{"name": "n", "a": 3, "b": 5, "status": "changed"}]
    total = next(s for s in body["steps"] if s["name"] == "total")["outputs"][0]
    assert total["summary"]["text"].startswith("4.5 → 15")
    code, body = await call(jp_fetch, "runs", two["b"], "lineage", step="total", name="total")
    assert code == 200 and body == json.loads(json.dumps(two["lineage"]))
    assert [t["step"] for t in body["tasks"]] == ["total", "make"]
    # One execution of the step by its task id (a kernel's run may have several): the same here.
    root, make = body["root"], body["tasks"][1]["id"]
    code, by_task = await call(jp_fetch, "runs", two["b"], "lineage", step="total", name="total",
                               task=str(root))
    assert code == 200 and by_task == body
    code, _ = await call(jp_fetch, "runs", two["b"], "lineage", step="total", name="total",
                         task=str(make))  # a task of another step
    assert code == 404


@pytest.mark.parametrize("params", [
    {"a": "..", "b": "20990101-000000-abcdef"}, {"a": "20990101-000000-abcdef"},
    {"a": "../../etc/passwd", "b": "x"}, {"a": "20990101-000000-abcdef%00", "b": "1"},
    {"a": "x" * 10_000, "b": "y"}])
async def test_hostile_diff_ids_are_400(jp_fetch, two, params) -> None:
    code, _ = await call(jp_fetch, "diff", **params)
    assert code == 400


async def test_unknown_runs_steps_and_outputs_are_404(jp_fetch, two) -> None:
    ghost = "20990101-000000-abcdef"
    assert (await call(jp_fetch, "diff", a=two["a"], b=ghost))[0] == 404
    assert (await call(jp_fetch, "runs", ghost, "lineage", step="total", name="total"))[0] == 404
    assert (await call(jp_fetch, "runs", two["a"], "lineage", step="ghost", name="x"))[0] == 404
    assert (await call(jp_fetch, "runs", two["a"], "lineage", step="total", name="x"))[0] == 404
    assert (await call(jp_fetch, "runs", ghost, "tags", method="POST", body={"add": ["a"]}))[
        0] == 404
    for bad in ({"step": "../x", "name": "total"}, {"step": "total", "name": "a b"},
                {"step": "total", "name": "total", "index": "-1"},
                {"step": "total", "name": "x" * 300}, {"step": "", "name": ""},
                {"step": "total", "name": "total", "task": "0"},
                {"step": "total", "name": "total", "task": "1; DROP TABLE runs"}):
        assert (await call(jp_fetch, "runs", two["a"], "lineage", **bad))[0] == 400, bad
