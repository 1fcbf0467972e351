"""The REST API of the server extension, in a real Jupyter server (pytest-jupyter's `jp_fetch`)
over a store filled by real runs on the session's LocalCluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook
from tornado.httpclient import HTTPClientError

from nbflow.client import Run
from nbflow.runner import run_notebook
from nbflow.store import open_store

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def history(jp_root_dir: Path, executor) -> dict[str, str]:
    """Two runs of a small flow in <root>/project/.nbflow: one succeeded, one failed."""
    project = jp_root_dir / "project"
    project.mkdir()
    store = open_store(str(project / ".nbflow"))
    # (pytest-jupyter has a `notebook` fixture of its own: write_notebook directly.)
    write_notebook(project / "flow.ipynb", [
        "%%step make --foreach i in range(3)\nv = i * 2\nprint('made', i)",
        "%%step total\ns = sum(v)\nlabel = '<script>alert(1)</script>'"])
    ok = run_notebook(project / "flow.ipynb", store=store, executor=executor)
    write_notebook(project / "flow.ipynb", [
        "%%step make --foreach i in range(3)\nv = i * 2\nprint('made', i)",
        "%%step total\nraise RuntimeError('<b>boom</b>')"])
    failed = run_notebook(project / "flow.ipynb", store=store, executor=executor)
    store.close()
    return {"ok": ok, "failed": failed}


async def get(jp_fetch: Any, *path: str, **params: str) -> Any:
    response = await jp_fetch("nbflow", "api", *path, params={"notebook": "project/flow.ipynb",
                                                             **params})
    assert response.code == 200
    return json.loads(response.body)


async def test_runs_newest_first_with_counts(jp_fetch, history) -> None:
    body = await get(jp_fetch, "runs")
    assert [r["id"] for r in body["runs"]] == [history["failed"], history["ok"]]
    failed, ok = body["runs"]
    assert failed["status"] == "failed" and failed["counts"] == {"cached": 3, "failed": 1}
    assert ok["counts"] == {"succeeded": 4} and ok["duration"] > 0
    assert (await get(jp_fetch, "runs", status="succeeded"))["runs"][0]["id"] == history["ok"]
    page = await get(jp_fetch, "runs", limit="1", offset="1")
    assert [r["id"] for r in page["runs"]] == [history["ok"]]
    assert (await get(jp_fetch, "flows"))["flows"] == ["flow"]


async def test_one_run_with_its_dag_tasks_logs_and_artifacts(jp_fetch, history) -> None:
    run = await get(jp_fetch, "runs", history["ok"])
    assert run["dag"] == {"nodes": ["make", "total"], "edges": [["make", "total"]]}
    make = [t for t in run["tasks"] if t["step"] == "make"]
    assert [t["index"] for t in make] == [0, 1, 2]
    logs = await get(jp_fetch, "runs", history["ok"], "tasks", str(make[1]["id"]), "logs")
    assert logs["text"] == "made 1\n" and logs["stream"] == "stdout"
    total = next(t for t in run["tasks"] if t["step"] == "total")
    art = await get(jp_fetch, "artifacts", total["outputs"]["label"])
    assert art["type"] == "str" and art["step"] == "total" and art["run"] == history["ok"]
    # Text previews are text, never HTML: the client shows them as text.
    assert art["preview"] == {"kind": "text", "text": "'<script>alert(1)</script>'"}
    failed = await get(jp_fetch, "runs", history["failed"])
    error = next(t for t in failed["tasks"] if t["status"] == "failed")["error"]
    assert "RuntimeError: <b>boom</b>" in error  # JSON carries it raw; the UI renders text


async def test_a_dataframe_preview_is_escaped_html(jp_fetch, jp_root_dir, executor) -> None:
    project = jp_root_dir / "project"
    project.mkdir()
    store = open_store(str(project / ".nbflow"))
    write_notebook(project / "flow.ipynb", [
        "%%step frame\nimport pandas as pd\n"
        "df = pd.DataFrame({'a': ['<img src=x onerror=alert(1)>', 'b']})"])
    run = Run(run_notebook(project / "flow.ipynb", store=store, executor=executor), store)
    key = run["frame"].task.outputs["df"].hash
    store.close()
    art = await get(jp_fetch, "artifacts", key)
    assert art["preview"]["kind"] == "html" and art["preview"]["shape"] == [2, 1]
    assert "<img" not in art["preview"]["html"] and "&lt;img src=x" in art["preview"]["html"]


async def test_every_endpoint_refuses_a_request_without_a_token(jp_fetch, history) -> None:
    run = history["ok"]
    for path in (("flows",), ("runs",), ("runs", run), ("runs", run, "tasks", "1", "logs"),
                 ("artifacts", "0" * 32), ("cluster",)):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("nbflow", "api", *path, headers={"Authorization": ""})
        assert info.value.code == 403, path


@pytest.mark.parametrize("path", [
    ("runs", "20990101-000000-abcdef"),
    ("runs", "20990101-000000-abcdef", "tasks", "1", "logs"),
    ("artifacts", "f" * 32),
])
async def test_unknown_ids_are_404(jp_fetch, history, path) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbflow", "api", *path, params={"notebook": "project/flow.ipynb"})
    assert info.value.code == 404


@pytest.mark.parametrize("path", [
    ("runs", "..%2F..%2Fetc%2Fpasswd"),
    ("runs", "..", "..", "etc"),
    ("artifacts", "..%2Fnbflow.db"),
    ("runs", "20990101-000000-abcdef", "tasks", "1%2F..", "logs"),
])
async def test_traversal_through_ids_is_not_found(jp_fetch, history, path) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbflow", "api", *path, params={"notebook": "project/flow.ipynb"})
    assert info.value.code == 404


@pytest.mark.parametrize("notebook", ["../outside.ipynb", "/etc/passwd", "project/../../x.ipynb"])
async def test_a_notebook_outside_the_root_is_refused(jp_fetch, history, notebook) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbflow", "api", "runs", params={"notebook": notebook})
    assert info.value.code == 400


async def test_bad_paging_is_400(jp_fetch, history) -> None:
    for params in ({"limit": "0"}, {"limit": "10000"}, {"offset": "-1"}, {"limit": "x"}):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("nbflow", "api", "runs", params=params)
        assert info.value.code == 400


async def test_a_notebook_without_history_is_an_empty_list(jp_fetch, jp_root_dir) -> None:
    (jp_root_dir / "fresh").mkdir()
    body = json.loads((await jp_fetch("nbflow", "api", "runs",
                                      params={"notebook": "fresh/new.ipynb"})).body)
    assert body["runs"] == [] and body["store"] is None
    assert not (jp_root_dir / "fresh" / ".nbflow").exists()  # reading creates nothing


async def test_run_flow_starts_a_run_of_the_notebook(jp_fetch, jp_root_dir, dask_client,
                                                     monkeypatch) -> None:
    import asyncio

    from nbflow.server import handlers

    monkeypatch.setenv("DASK_NBFLOW__CLUSTER__ADDRESS", dask_client.scheduler.address)
    project = jp_root_dir / "project"
    write_notebook(project / "flow.ipynb", ["%%step a\nx = 1", "%%step b\ny = x + 1"])
    response = await jp_fetch("nbflow", "api", "runs", method="POST",
                              body=json.dumps({"notebook": "project/flow.ipynb"}))
    assert response.code == 202
    proc = handlers._children[-1]
    for _ in range(600):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert proc.returncode == 0, (project / ".flow.nbflow-run.log").read_text()
    body = await get(jp_fetch, "runs")
    assert body["runs"][0]["status"] == "succeeded" and body["runs"][0]["counts"] == {"succeeded": 2}
    for bad in ({"notebook": "../x.ipynb"}, {"notebook": "/etc/passwd"}, {}):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("nbflow", "api", "runs", method="POST", body=json.dumps(bad))
        assert info.value.code == 400
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbflow", "api", "runs", method="POST",
                       body=json.dumps({"notebook": "project/missing.ipynb"}))
    assert info.value.code == 404


async def test_a_recreated_store_is_seen(jp_fetch, jp_root_dir, history, executor) -> None:
    import shutil

    assert len((await get(jp_fetch, "runs"))["runs"]) == 2
    project = jp_root_dir / "project"
    shutil.rmtree(project / ".nbflow")
    store = open_store(str(project / ".nbflow"))
    fresh = run_notebook(project / "flow.ipynb", store=store, executor=executor)
    store.close()
    assert [r["id"] for r in (await get(jp_fetch, "runs"))["runs"]] == [fresh]


async def test_a_running_tasks_logs_are_served_as_it_prints(jp_fetch, jp_root_dir, executor) -> None:
    import asyncio

    project = jp_root_dir / "project"
    flag = project / "go.flag"
    write_notebook(project / "flow.ipynb", [
        f"%%step wait\nimport os, time\nprint('started', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\nprint('done')\nx = 1"])
    store = open_store(str(project / ".nbflow"))
    running = asyncio.create_task(asyncio.to_thread(
        run_notebook, project / "flow.ipynb", store=store, executor=executor))
    try:
        text = ""
        for _ in range(300):  # the driver writes the lines so far about once a second
            runs = (await get(jp_fetch, "runs"))["runs"]
            if runs:
                run = await get(jp_fetch, "runs", runs[0]["id"])
                task = run["tasks"][0] if run["tasks"] else None
                if task is not None and task["status"] == "running":
                    logs = await get(jp_fetch, "runs", run["id"], "tasks", str(task["id"]), "logs")
                    text = logs["text"]
                    if text:
                        break
            await asyncio.sleep(0.1)
        assert text == "started\n"  # while the task still runs
    finally:
        flag.write_text("go")
        run_id = await running
        store.close()
    run = await get(jp_fetch, "runs", run_id)
    logs = await get(jp_fetch, "runs", run_id, "tasks", str(run["tasks"][0]["id"]), "logs")
    assert logs["text"] == "started\ndone\n"  # the complete log, as the worker wrote it


async def test_export_writes_the_module_and_its_schedule(jp_fetch, jp_root_dir) -> None:
    project = jp_root_dir / "project"
    write_notebook(project / "flow.ipynb", ["%%step a\nx = 1", "%%step b\ny = x + 1"])
    response = await jp_fetch("nbflow", "api", "export", method="POST", body=json.dumps(
        {"notebook": "project/flow.ipynb", "target": "systemd", "cron": "0 3 * * *",
         "timezone": "Europe/Paris"}))
    files = json.loads(response.body)["files"]
    assert files == ["project/flows/flow.py", "project/flows/nbflow-flow.service",
                     "project/flows/nbflow-flow.timer"]
    assert '@step("b", cell=2)' in (jp_root_dir / files[0]).read_text()
    assert "OnCalendar=*-*-* 03:00:00 Europe/Paris" in (jp_root_dir / files[2]).read_text()
    for body, code, message in [
        ({"notebook": "project/flow.ipynb", "target": "cron", "cron": "0 3 * *"}, 400,
         "has 4 field(s)"),
        ({"notebook": "project/flow.ipynb", "target": "fax"}, 400, "target must be one of"),
        ({"notebook": "project/flow.ipynb", "output": "../escape.py"}, 400, "inside the server"),
        ({"notebook": "project/nope.ipynb"}, 404, "no notebook"),
    ]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("nbflow", "api", "export", method="POST", body=json.dumps(body))
        assert info.value.code == code
        assert message in json.loads(info.value.response.body)["message"]
    assert not (jp_root_dir.parent / "escape.py").exists()
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbflow", "api", "export", method="POST", headers={"Authorization": ""},
                       body=json.dumps({"notebook": "project/flow.ipynb"}))
    assert info.value.code == 403
