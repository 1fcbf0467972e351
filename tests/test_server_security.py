"""Security of the server extension's REST API, in a real Jupyter server (pytest-jupyter's
`jp_fetch`): every registered endpoint needs Jupyter's authentication (checked both over HTTP and
statically on the handler classes), hostile ids never reach a file or a 500, and markup that
steps print or store comes back escaped wherever the API sends HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import HTTPClientError

from nbflow.client import Run
from nbflow.runner import run_notebook
from nbflow.server import handlers
from nbflow.store import open_store

pytest_plugins = ["pytest_jupyter.jupyter_server"]

XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


class _App:
    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"base_url": "/"}
        self.routes: list[tuple[str, type]] = []

    def add_handlers(self, host: str, routes: list[tuple[str, type]]) -> None:
        self.routes += routes


def registered() -> list[tuple[str, type]]:
    """(URL pattern, handler class) as the extension registers them."""
    app = _App()
    handlers.setup_handlers(app, root_dir="/")
    assert app.routes, "the extension registers no handlers"
    return app.routes


METHODS = ("get", "post", "put", "patch", "delete")


def unauthenticated_methods(cls: type) -> list[str]:
    """The HTTP methods ``cls`` defines that are not wrapped by ``tornado.web.authenticated``
    (or jupyter_server's ``authorized``, which it must be combined with)."""
    bad = []
    for name in METHODS:
        method = getattr(cls, name, None)
        base = getattr(web.RequestHandler, name)
        if method is None or method is base:
            continue  # not implemented: tornado answers 405
        source = _source_chain(method)
        if "authenticated" not in source:
            bad.append(name)
    return bad


def _source_chain(method: Any) -> str:
    """Names of the decorators wrapping ``method`` (functools.wraps keeps ``__wrapped__``)."""
    import inspect

    names = []
    while hasattr(method, "__wrapped__"):
        names.append(getattr(method, "__qualname__", ""))
        code = getattr(method, "__code__", None)
        if code is not None:
            names.append(code.co_qualname)
        method = method.__wrapped__
    return " ".join(names) + " " + inspect.getsource(method).split("def ")[0]


def test_every_registered_handler_method_requires_authentication() -> None:
    routes = registered()
    for pattern, cls in routes:
        assert issubclass(cls, APIHandler), (pattern, cls)  # XSRF checks, JSON errors
        assert any(getattr(cls, m) is not getattr(web.RequestHandler, m) for m in METHODS)
        assert unauthenticated_methods(cls) == [], (pattern, cls)


def test_the_check_flags_a_handler_without_authentication() -> None:
    class Leaky(handlers.NbflowHandler):
        def get(self) -> None:
            self.reply({"secret": 1})

        @web.authenticated
        def post(self) -> None:
            self.reply({})

    class Decorated(handlers.NbflowHandler):
        @staticmethod
        def _noop(fn: Any) -> Any:
            import functools

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)
            return wrapper

        @_noop
        def delete(self) -> None:
            pass

    assert unauthenticated_methods(Leaky) == ["get"]
    assert unauthenticated_methods(Decorated) == ["delete"]


def _concrete(pattern: str) -> list[str]:
    """A URL path matching the route pattern (ids filled in with well-formed values)."""
    path = pattern.replace("/?", "")
    path = re.sub(r"\(\?P<run_id>[^)]*\)", "20990101-000000-abcdef", path)
    path = re.sub(r"\(\?P<task_id>[^)]*\)", "1", path)
    path = re.sub(r"\(\?P<key>[^)]*\)", "0" * 32, path)
    assert "(" not in path, path
    return [p for p in path.split("/") if p]


async def test_every_registered_endpoint_refuses_a_request_without_a_token(jp_fetch) -> None:
    for pattern, cls in registered():
        parts = _concrete(pattern)
        for method in ("GET", "POST"):
            implemented = getattr(cls, method.lower()) is not getattr(web.RequestHandler,
                                                                      method.lower())
            body = json.dumps({"notebook": "x.ipynb"}) if method == "POST" else None
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch(*parts, method=method, body=body, headers={"Authorization": ""})
            code = info.value.code
            assert code in ((401, 403) if implemented else (401, 403, 405)), (method, parts, code)


@pytest.fixture
def hostile(jp_root_dir: Path, executor) -> dict[str, Any]:
    """Runs whose logs, artifacts and errors carry markup; a secret file outside the root."""
    project = jp_root_dir / "project"
    project.mkdir()
    (jp_root_dir.parent / "secret.txt").write_text("TOPSECRET")
    store = open_store(str(project / ".nbflow"))
    write_notebook(project / "flow.ipynb", [
        "%%step talk\n"
        f"print({XSS[0]!r})\nimport sys\nprint({XSS[1]!r}, file=sys.stderr)\n"
        f"text = {XSS[0]!r}\nmapping = {{{XSS[1]!r}: {XSS[0]!r}}}\n"
        "import pandas as pd\n"
        f"df = pd.DataFrame({{{XSS[0]!r}: [{XSS[1]!r}], 'b': [{XSS[0]!r}]}})\n"
        f"df.index = [{XSS[1]!r}]",
        f"%%step bad\nraise RuntimeError({XSS[0] + XSS[1]!r})"])
    run_id = run_notebook(project / "flow.ipynb", store=store, executor=executor)
    run = Run(run_id, store)
    talk = run["talk"].task
    out = {"run": run_id, "task": talk.id, "outputs": {k: v.hash for k, v in talk.outputs.items()}}
    store.close()
    return out


async def get(jp_fetch: Any, *path: str, **params: str) -> Any:
    response = await jp_fetch("nbflow", "api", *path,
                              params={"notebook": "project/flow.ipynb", **params})
    assert response.code == 200
    return json.loads(response.body)


def _no_raw_markup(text: str) -> None:
    lowered = text.lower()
    assert "<script" not in lowered and "<img" not in lowered, text


async def test_markup_in_logs_artifacts_and_errors_comes_back_escaped(jp_fetch, hostile) -> None:
    run, task = hostile["run"], str(hostile["task"])
    # Logs: JSON text the UI shows as text (never HTML); the lines are the step's, unchanged.
    out = await get(jp_fetch, "runs", run, "tasks", task, "logs")
    err = await get(jp_fetch, "runs", run, "tasks", task, "logs", stream="stderr")
    assert out["text"] == XSS[0] + "\n" and err["text"] == XSS[1] + "\n"
    assert set(out) == {"run", "task", "stream", "text", "lines", "truncated"}  # no HTML field
    kinds = {}
    for name, key in hostile["outputs"].items():
        art = await get(jp_fetch, "artifacts", key)
        preview = art["preview"]
        kinds[name] = preview["kind"]
        assert set(preview) <= {"kind", "text", "html", "shape", "mimetype", "data"}
        if preview["kind"] == "html":
            _no_raw_markup(preview["html"])
            assert "&lt;script&gt;" in preview["html"] and "&lt;img src=x" in preview["html"]
        else:
            assert preview["kind"] == "text" and "html" not in preview
    assert {k: kinds[k] for k in ("text", "mapping", "df")} == {
        "text": "text", "mapping": "text", "df": "html"}
    body = await get(jp_fetch, "runs", run)
    failed = next(t for t in body["tasks"] if t["status"] == "failed")
    assert "RuntimeError: " + XSS[0] + XSS[1] in failed["error"]  # JSON text, shown as text
    for html_key in ("html", "error_html"):
        for t in body["tasks"]:
            assert html_key not in t


ATTACKS = ["..", "../..", "..%2F..%2Fsecret.txt", "..%2fsecret.txt", "%2e%2e%2fsecret.txt",
           "%2Fetc%2Fpasswd", "..%5C..%5Csecret.txt", "a%00b", "%00", "..%c0%af..",
           "%E2%80%AE", "%EF%BC%8E%EF%BC%8E%EF%BC%8F", "x" * 10_000, "0" * 33, "-1",
           "20990101-000000-abcdef%00", "20990101-000000-ABCDEF", "1e3", "١٢٣"]


async def _status(jp_fetch: Any, path: str, params: dict[str, str] | None = None) -> int:
    try:
        response = await jp_fetch(path, params=params or {}, raise_error=False)
    except HTTPClientError as exc:
        return exc.code
    return response.code


async def test_hostile_ids_in_every_position_are_400_or_404(jp_fetch, hostile) -> None:
    run, task, key = hostile["run"], str(hostile["task"]), next(iter(hostile["outputs"].values()))
    templates = ["nbflow/api/runs/{}", "nbflow/api/runs/{}/tasks/" + task + "/logs",
                 "nbflow/api/runs/{}/lineage", f"nbflow/api/runs/{run}/lineage{{}}",
                 f"nbflow/api/runs/{run}/tasks/{{}}/logs", "nbflow/api/artifacts/{}",
                 f"nbflow/api/artifacts/{key}{{}}", f"nbflow/api/runs/{run}{{}}"]
    for template in templates:
        for attack in ATTACKS:
            code = await _status(jp_fetch, template.format(attack))
            assert code in (400, 404), (template, attack[:40], code)


NOTEBOOK_ATTACKS = ["../secret.txt", "../../etc/passwd", "/etc/passwd", "project/../../x.ipynb",
                    "..\\secret.txt", "project\x00.ipynb", "\u202e..", "x" * 10_000,
                    "project/" + "../" * 50 + "etc/passwd"]


async def test_hostile_query_parameters_are_400_or_harmless(jp_fetch, hostile) -> None:
    endpoints = ["nbflow/api/flows", "nbflow/api/runs", f"nbflow/api/runs/{hostile['run']}",
                 "nbflow/api/cluster"]
    for endpoint in endpoints:
        for attack in NOTEBOOK_ATTACKS:
            code = await _status(jp_fetch, endpoint, {"notebook": attack})
            assert code in (200, 400, 404), (endpoint, attack[:40], code)
            # (tornado drops control characters such as NUL from query arguments; a backslash
            # is a plain file-name character on POSIX: both stay inside the root)
            if "../" in attack or attack.startswith("/"):
                assert code in (400, 404), (endpoint, attack[:40], code)
    for param in ("flow", "status", "tag"):
        for attack in [*NOTEBOOK_ATTACKS, *XSS, "' OR 1=1 --"]:
            code = await _status(jp_fetch, "nbflow/api/runs",
                                 {"notebook": "project/flow.ipynb", param: attack})
            assert code in (200, 400), (param, attack[:40], code)
            if code == 200:
                body = json.loads((await jp_fetch(
                    "nbflow", "api", "runs",
                    params={"notebook": "project/flow.ipynb", param: attack})).body)
                assert body["runs"] == []  # a filter that matches nothing, never an injection
    for param in ("limit", "offset", "tail"):
        for attack in ["-1", "1e9", "x" * 10_000, "\x00", "1.5"]:
            path = (f"nbflow/api/runs/{hostile['run']}/tasks/{hostile['task']}/logs"
                    if param == "tail" else "nbflow/api/runs")
            code = await _status(jp_fetch, path, {"notebook": "project/flow.ipynb", param: attack})
            assert code == 400, (param, attack[:20], code)


async def test_hostile_bodies_of_post_endpoints_are_400_or_404(jp_fetch, hostile,
                                                               jp_root_dir) -> None:
    code = await _status(jp_fetch, f"nbflow/api/runs/{hostile['run']}/lineage",
                         {"notebook": "project/flow.ipynb", "step": "talk", "name": "text"})
    assert code == 200  # the endpoint works, so the refusals below are about the input
    for attack in ATTACKS:
        for params in ({"step": attack, "name": "text"}, {"step": "talk", "name": attack},
                       {"a": attack, "b": hostile["run"]}):
            path = "nbflow/api/diff" if "a" in params else (
                f"nbflow/api/runs/{hostile['run']}/lineage")
            code = await _status(jp_fetch, path, {"notebook": "project/flow.ipynb", **params})
            assert code in (400, 404), (path, params, code)
    for attack in [*ATTACKS, "\x00", "a b", "<script>"]:
        try:
            response = await jp_fetch("nbflow", "api", "runs", hostile["run"], "tags",
                                      method="POST", body=json.dumps({"add": [attack]}),
                                      params={"notebook": "project/flow.ipynb"},
                                      raise_error=False)
            code = response.code
        except HTTPClientError as exc:
            code = exc.code
        if code == 200:  # a plain string is a fine tag (a label, never a path): JSON text back
            assert attack in json.loads(response.body)["tags"]
            continue
        assert code == 400, (attack[:40], code)
    for endpoint in ("runs", "export"):
        attacks = [a for a in NOTEBOOK_ATTACKS if "\\" not in a]  # `..\x` is a name on POSIX
        for attack in [*attacks, str(jp_root_dir.parent / "secret.txt")]:
            for body in ({"notebook": attack}, {"notebook": "project/flow.ipynb",
                                                "output": attack + ".py"}):
                if "output" in body and (endpoint == "runs" or not (
                        "../" in attack or attack.startswith("/"))):
                    continue  # other odd output names stay inside the root
                try:
                    response = await jp_fetch("nbflow", "api", endpoint, method="POST",
                                              body=json.dumps(body), raise_error=False)
                    code = response.code
                except HTTPClientError as exc:
                    code = exc.code
                assert code in (400, 404), (endpoint, body, code)
        for raw in ("[1]", '"x"', "{", "\x00"):
            try:
                response = await jp_fetch("nbflow", "api", endpoint, method="POST", body=raw,
                                          raise_error=False)
                code = response.code
            except HTTPClientError as exc:
                code = exc.code
            assert code == 400, (endpoint, raw, code)
    assert not list(jp_root_dir.parent.glob("*.py"))  # nothing written outside the root
