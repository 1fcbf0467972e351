"""The REST handlers: thin, authenticated views over ``nbflow.client`` (the only writes: start a
run, export a notebook, a run's tags and note).

Every handler is a jupyter_server ``APIHandler`` whose methods require Jupyter's own
authentication (``@web.authenticated``: a token or a logged-in session, else 403). Ids in URLs
are matched by strict patterns in the routes and looked up, never joined into paths; the optional
``notebook`` parameter (the notebook whose history is shown) must name a path inside the server's
root directory. JSON bodies come from the client's ``to_json`` methods: the wire model lives in
one place, mirrored by ``labextension/src/model.ts``.

    GET /nbflow/api/flows                               flows with runs in the store
    GET /nbflow/api/runs?flow=&status=&tag=&limit=&offset=   runs, newest first, with task
                                                        counts and tags
    POST /nbflow/api/runs {"notebook": PATH}            start `nbflow run PATH` ("Run flow")
    GET /nbflow/api/runs/RUN                            a run: steps, tasks, DAG, tags, note
    POST /nbflow/api/runs/RUN/tags {"add", "remove", "note"}   tag a run, set its note
    GET /nbflow/api/runs/RUN/lineage?step=&name=&index=&task=   where an output came from
    GET /nbflow/api/diff?a=RUN&b=RUN                    what changed from run a to run b
    GET /nbflow/api/tags                                tags in use, with their run counts
    GET /nbflow/api/runs/RUN/tasks/TASK/logs?stream=stdout|stderr&tail=N
    GET /nbflow/api/artifacts/HASH                      type, size, origin and a small preview
    GET /nbflow/api/cluster                             the cluster of the newest live run
    POST /nbflow/api/export {"notebook", "target", "cron", ...}   export (and schedule) it
All take ``?notebook=PATH`` (relative to the server root) to pick that notebook's store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from nbflow import config
from nbflow.store import Store, open_store

RUN_ID_PATTERN = r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}"
RUN_ID = rf"(?P<run_id>{RUN_ID_PATTERN})"
TASK_ID = r"(?P<task_id>[0-9]{1,12})"
HASH = r"(?P<key>[0-9a-f]{32})"
MAX_PAGE = 200

_stores: dict[tuple[str, str | None], tuple[Store, tuple[int, int] | None]] = {}


class NbflowHandler(APIHandler):
    """Common parts: the store for the request's notebook, JSON replies."""

    @property
    def root_dir(self) -> Path:
        return Path(self.settings["nbflow_root_dir"]).resolve()

    def store(self) -> Store | None:
        """The store of the ``notebook`` parameter's folder (the nearest ``.nbflow`` above it, as
        a run from that notebook uses), or the configured one; None if it does not exist yet."""
        configured = config.get("store")
        if configured:
            return _open(str(configured), config.get("db"))
        folder = self.root_dir
        notebook = self.get_query_argument("notebook", "")
        if notebook:
            folder = _inside_root(self.root_dir, notebook, "notebook").parent
        here = folder
        for parent in (here, *here.parents):
            if not parent.is_relative_to(self.root_dir):
                break
            if (parent / ".nbflow" / "nbflow.db").is_file() or config.get("db"):
                return _open(str(parent / ".nbflow"), config.get("db"))
        return None

    def reply(self, body: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))

    def run_argument(self, name: str) -> str:
        """A run id from the query string, checked like the ids in the routes."""
        import re

        value = self.get_query_argument(name, "")
        if not re.fullmatch(RUN_ID_PATTERN, value):
            raise web.HTTPError(400, f"{name} must be a run id such as 20260101-120000-abc123")
        return value

    def name_argument(self, name: str) -> str:
        """A step or output name from the query string: a Python identifier."""
        value = self.get_query_argument(name, "")
        if not value.isidentifier() or len(value) > 200:
            raise web.HTTPError(400, f"{name} must be a step or output name (an identifier)")
        return value

    def existing_store(self) -> Store:
        store = self.store()
        if store is None:
            raise web.HTTPError(404, "this notebook's folder has no nbflow store yet")
        return store

    def int_argument(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise web.HTTPError(400, f"{name} must be a whole number from {low} to {high}")
        return int(raw)


def _inside_root(root: Path, path: str, what: str) -> Path:
    """``path`` (relative to ``root``) resolved, if it stays inside ``root``; else a 400 (a NUL
    byte, which no file name has, is a 400 too, not the ValueError of ``resolve``)."""
    try:
        target = (root / path).resolve() if path and "\0" not in path else None
    except (OSError, ValueError):
        target = None
    if target is None or os.path.isabs(path) or not target.is_relative_to(root):
        raise web.HTTPError(400, f"{what} must be a path inside the server's root")
    return target


def _open(url: str, db: str | None) -> Store:
    """The store, opened once per server; reopened if its SQLite file was replaced (a deleted
    and re-created ``.nbflow``), so the sidebar never shows a history that is gone."""
    key = (url, db)
    identity = _file_identity(url, db)
    cached = _stores.get(key)
    if cached is not None and cached[1] == identity:
        return cached[0]
    if cached is not None:
        cached[0].close()
    store = open_store(url, db, writable=False)  # the sidebar only reads
    _stores[key] = (store, _file_identity(url, db))
    return store


def _file_identity(url: str, db: str | None) -> tuple[int, int] | None:
    """Device and inode of the default SQLite database file (None for other databases)."""
    if db is not None or "://" in url:
        return None
    try:
        st = os.stat(os.path.join(url, "nbflow.db"))
    except OSError:
        return None
    return st.st_dev, st.st_ino


class FlowsHandler(NbflowHandler):
    @web.authenticated
    def get(self) -> None:
        store = self.store()
        self.reply({"flows": store.meta.flows() if store else [],
                    "store": store.url if store else None})


class RunsHandler(NbflowHandler):
    @web.authenticated
    def get(self) -> None:
        from nbflow.client import history_page

        limit = self.int_argument("limit", 50, 1, MAX_PAGE)
        offset = self.int_argument("offset", 0, 0, 10**9)
        store = self.store()
        if store is None:
            self.reply({"runs": [], "offset": offset, "limit": limit, "store": None})
            return
        flow = self.get_query_argument("flow", None) or None
        status = self.get_query_argument("status", None) or None
        tag = self.get_query_argument("tag", None) or None
        self.reply(history_page(store, flow=flow, status=status, tag=tag, limit=limit,
                                offset=offset))


    @web.authenticated
    def post(self) -> None:
        """Start ``nbflow run NOTEBOOK`` (the sidebar's "Run flow") as a process of its own, in
        the notebook's folder; the new run shows up in the history as it starts."""
        import subprocess
        import sys

        notebook = self.get_json_body() or {}
        path = str(notebook.get("notebook") or "") if isinstance(notebook, dict) else ""
        target = _inside_root(self.root_dir, path, "notebook")
        if target.suffix not in (".ipynb", ".py") or not target.is_file():
            raise web.HTTPError(404, f"no notebook {path}")
        log = target.with_name(f".{target.stem}.nbflow-run.log")
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "nbflow.cli", "run", str(target)],
                                    cwd=target.parent, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        _children[:] = [p for p in _children if p.poll() is None]  # reap the ones that ended
        _children.append(proc)
        self.set_status(202)
        self.reply({"pid": proc.pid, "notebook": path, "log": log.name})


_children: list[Any] = []  # started runs, reaped when they end (no zombies)


class RunHandler(NbflowHandler):
    @web.authenticated
    def get(self, run_id: str) -> None:
        from nbflow.client import Run

        store = self.store()
        try:
            run = Run(run_id, store) if store else None
        except KeyError:
            run = None
        if run is None:
            raise web.HTTPError(404, f"no run {run_id}")
        body = run.to_json()
        body["dag"] = {"nodes": [s["name"] for s in body["steps"]],
                       "edges": [[u, s["name"]] for s in body["steps"] for u in s["upstream"]]}
        self.reply(body)


class LogsHandler(NbflowHandler):
    @web.authenticated
    def get(self, run_id: str, task_id: str) -> None:
        from nbflow.client import Task

        stream = self.get_query_argument("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise web.HTTPError(400, "stream must be stdout or stderr")
        tail = self.int_argument("tail", 0, 0, 100_000)
        store = self.store()
        row = store.meta.task(int(task_id)) if store else None
        if store is None or row is None or row["run_id"] != run_id:
            raise web.HTTPError(404, f"no task {task_id} in run {run_id}")
        text = Task(store, row).stdout if stream == "stdout" else Task(store, row).stderr
        lines = text.splitlines(keepends=True)
        if tail:
            lines = lines[-tail:]
        self.reply({"run": run_id, "task": int(task_id), "stream": stream,
                    "text": "".join(lines), "lines": len(text.splitlines()),
                    "truncated": bool(tail) and len(text.splitlines()) > tail})


class ArtifactHandler(NbflowHandler):
    @web.authenticated
    def get(self, key: str) -> None:
        from nbflow.server.preview import MAX_LOAD, preview

        store = self.store()
        row = store.meta.artifact(key) if store else None
        if store is None or row is None:
            raise web.HTTPError(404, f"no artifact {key}")
        body = {"hash": key, "name": row["name"], "type": row["type"], "size": row["size"],
                "run": row["run_id"], "step": row["step"], "preview": None}
        if row["size"] <= MAX_LOAD:
            try:
                body["preview"] = preview(store.artifacts.get(key))
            except Exception as exc:  # missing file, unpicklable here: say so, do not fail
                body["preview"] = {"kind": "text", "text": f"no preview: {type(exc).__name__}: "
                                                           f"{exc}"}
        self.reply(body)


class ExportHandler(NbflowHandler):
    """``POST {"notebook", "output"?, "target"?, "cron"?, "timezone"?, "image"?, "store"?, "db"?,
    "cluster"?}``: export the notebook as a flow module (default ``flows/NAME.py`` next to it) and,
    with a target, schedule it; replies with the written files, relative to the server root."""

    @web.authenticated
    def post(self) -> None:
        from nbflow.analyze import AnalysisError
        from nbflow.cronexpr import ScheduleError
        from nbflow.export import export_file
        from nbflow.schedule import TARGETS, load_job, write

        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "expected a JSON object")
        notebook = self._inside(body.get("notebook"), "notebook")
        if notebook.suffix != ".ipynb" or not notebook.is_file():
            raise web.HTTPError(404, f"no notebook {body.get('notebook')}")
        output = self._inside(body.get("output") or str(
            (notebook.parent / "flows" / f"{notebook.stem}.py").relative_to(self.root_dir)),
            "output")
        if output.suffix != ".py":
            raise web.HTTPError(400, "output must be a .py file")
        target = body.get("target") or None
        if target is not None and target not in TARGETS:
            raise web.HTTPError(400, f"target must be one of {', '.join(TARGETS)}")
        try:
            module = export_file(notebook, output)
            written = [module]
            if target:
                job = load_job(module, cron=str(body.get("cron") or ""),
                               timezone=body.get("timezone") or None,
                               image=body.get("image") or None, store=body.get("store") or None,
                               db=body.get("db") or None, cluster=body.get("cluster") or None,
                               project=self.root_dir)
                if target in ("cron", "systemd", "airflow") and not (job.store and job.db):
                    from nbflow.store import resolve

                    job.store, job.db = resolve(job.store, job.db)
                written += write(job, target, module.parent)
        except (AnalysisError, ScheduleError, ValueError) as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.reply({"files": [str(Path(p).resolve().relative_to(self.root_dir)) for p in written]})

    def _inside(self, value: Any, what: str) -> Path:
        return _inside_root(self.root_dir, str(value or ""), what)


class ClusterHandler(NbflowHandler):
    @web.authenticated
    def get(self) -> None:
        store = self.store()
        notebook = self.get_query_argument("notebook", "")
        flow = Path(notebook).stem if notebook else None
        # This notebook's live run (its kernel's interactive run, or a run of it), else any.
        live = (store.meta.runs(flow=flow, status="running", limit=1) if store and flow else [])
        live = live or (store.meta.runs(status="running", limit=1) if store else [])
        cluster = (live[0].get("cluster") if live else None) or None
        self.reply({"cluster": cluster, "run": live[0]["id"] if live else None,
                    "address": config.get("cluster.address")})


class TagsHandler(NbflowHandler):
    @web.authenticated
    def get(self) -> None:
        store = self.store()
        tags = store.meta.tag_counts() if store else []
        self.reply({"tags": [{"name": n, "runs": c} for n, c in tags]})


class RunTagsHandler(NbflowHandler):
    """``POST {"add"?: [...], "remove"?: [...], "note"?: str | null}``: the sidebar's tag and
    note editing; replies with the run's tags and note."""

    @web.authenticated
    def post(self, run_id: str) -> None:
        from nbflow.model import check_tag

        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "expected a JSON object")
        add, remove = body.get("add") or [], body.get("remove") or []
        if not all(isinstance(x, list) for x in (add, remove)):
            raise web.HTTPError(400, "add and remove must be lists of tags")
        try:
            for name in [*add, *remove]:
                check_tag(name)
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        note = body.get("note", ...)
        if note is not ... and note is not None and not isinstance(note, str):
            raise web.HTTPError(400, "note must be text or null")
        store = self.existing_store()
        if store.meta.run(run_id) is None:
            raise web.HTTPError(404, f"no run {run_id}")
        if add:
            store.meta.add_tags(run_id, add)
        if remove:
            store.meta.remove_tags(run_id, remove)
        if note is not ...:
            store.meta.set_note(run_id, note)
        row = store.meta.run(run_id) or {}
        self.reply({"tags": store.meta.tags([run_id])[run_id], "note": row.get("note")})


class LineageHandler(NbflowHandler):
    @web.authenticated
    async def get(self, run_id: str) -> None:
        from tornado.ioloop import IOLoop

        from nbflow.lineage import LineageError, lineage

        step, name = self.name_argument("step"), self.name_argument("name")
        raw = self.get_query_argument("index", "")
        index = self.int_argument("index", 0, 0, 10**9) if raw else None
        raw = self.get_query_argument("task", "")
        task = self.int_argument("task", 0, 1, 10**12) if raw else None  # one execution of it
        store = self.existing_store()
        try:
            body = await IOLoop.current().run_in_executor(
                None, lambda: lineage(store, run_id, step, name, index, task=task))
        except LineageError as exc:
            raise web.HTTPError(404, exc.args[0]) from None
        self.reply(body)


class DiffHandler(NbflowHandler):
    @web.authenticated
    async def get(self) -> None:
        from tornado.ioloop import IOLoop

        from nbflow.compare import CompareError, diff_runs
        from nbflow.server.preview import MAX_LOAD

        a, b = self.run_argument("a"), self.run_argument("b")
        store = self.existing_store()
        try:  # outputs are loaded to say how they differ: off the server's event loop
            body = await IOLoop.current().run_in_executor(
                None, lambda: diff_runs(store, a, b, max_load=MAX_LOAD))
        except CompareError as exc:
            raise web.HTTPError(404, exc.args[0]) from None
        self.reply(body)


def setup_handlers(web_app: Any, *, root_dir: str) -> None:
    web_app.settings["nbflow_root_dir"] = root_dir
    base = url_path_join(web_app.settings["base_url"], "nbflow", "api")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "flows"), FlowsHandler),
        (url_path_join(base, "runs"), RunsHandler),
        (url_path_join(base, "runs", RUN_ID) + "/?", RunHandler),
        (url_path_join(base, "runs", RUN_ID, "tasks", TASK_ID, "logs"), LogsHandler),
        (url_path_join(base, "runs", RUN_ID, "tags"), RunTagsHandler),
        (url_path_join(base, "runs", RUN_ID, "lineage"), LineageHandler),
        (url_path_join(base, "diff"), DiffHandler),
        (url_path_join(base, "tags"), TagsHandler),
        (url_path_join(base, "artifacts", HASH), ArtifactHandler),
        (url_path_join(base, "cluster"), ClusterHandler),
        (url_path_join(base, "export"), ExportHandler),
    ])
