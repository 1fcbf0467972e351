"""The ``nbflow`` command: run | resume | runs | show | logs | lineage | diff | tag | note | gc |
export | schedule | daemon.

Exit codes: 0 success; 1 the run finished but failed (a step failed); 2 bad input or an environment
problem (bad notebook, bad option, unreachable cluster, unwritable store), with the reason on stderr.
``--json`` output is the scripting interface, documented in the README.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import dask.utils

from nbflow import __version__
from nbflow.analyze import AnalysisError

EXIT_FAILED = 1
EXIT_ERROR = 2
SCHEDULE_TARGETS = ("cron", "systemd", "airflow", "argo", "kubernetes")  # nbflow.schedule.TARGETS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nbflow",
        description="Run Jupyter notebooks as versioned, parallel, resumable flows on Dask.",
    )
    p.add_argument("--version", action="version", version=f"nbflow {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", help="artifact store URL (default: nearest .nbflow/)")
    common.add_argument("--db", help="metadata database URL (default: SQLite in the store)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run a notebook as a new run")
    run.add_argument("notebook", help="a notebook, or a flow module made by `nbflow export`")
    run.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                     help="override a name of the cell tagged `parameters` (repeatable)")
    run.add_argument("--force", action="store_true", help="execute every step, ignore the cache")
    run.add_argument("--until", metavar="STEP",
                     help="run only STEP and what it needs (one task of a scheduled flow)")
    run.add_argument("--cluster", help="Dask scheduler address (default: a local cluster)")
    run.add_argument("--quiet", "-q", action="store_true", help="do not echo the steps' output")

    resume = sub.add_parser("resume", parents=[common],
                            help="re-run what failed or never ran in a run, reusing the rest")
    resume.add_argument("run_id")
    resume.add_argument("--from", dest="from_steps", action="append", default=[],
                        metavar="STEP", help="also re-run STEP and everything after it")
    resume.add_argument("--cluster", help="Dask scheduler address")
    resume.add_argument("--quiet", "-q", action="store_true")

    runs = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    runs.add_argument("--flow", help="only this flow (a notebook's file name without .ipynb)")
    runs.add_argument("--status", help="only runs in this state")
    runs.add_argument("--tag", help="only runs with this tag")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")

    show = sub.add_parser("show", parents=[common], help="one run: environment, steps, tasks")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="write a notebook as a flow module to review and run")
    export.add_argument("notebook")
    export.add_argument("-o", "--output", help="the module to write (default: flows/NAME.py)")

    sched = sub.add_parser("schedule", help="a flow module as a cron, systemd, Airflow, Argo or "
                                            "Kubernetes scheduled job")
    sched.add_argument("flow", help="a flow module made by `nbflow export`")
    sched.add_argument("--cron", required=True, metavar="EXPR", help="e.g. '0 2 * * *' or @daily")
    sched.add_argument("--target", required=True, choices=SCHEDULE_TARGETS)
    sched.add_argument("--timezone", metavar="TZ", help="IANA name, e.g. Europe/Paris")
    sched.add_argument("--image", help="container image with the project (argo, kubernetes)")
    sched.add_argument("--workdir", default="/app", help="the project's folder in the image")
    sched.add_argument("--python", help="interpreter for local targets (default: this one)")
    sched.add_argument("--cluster", help="Dask scheduler address the runs use")
    sched.add_argument("--store", help="artifact store URL the runs use (default: this one)")
    sched.add_argument("--db", help="metadata database URL the runs use (default: this one)")
    sched.add_argument("-o", "--output-dir", help="where to write (default: the module's folder)")
    sched.add_argument("--install", action="store_true",
                       help="cron: add the line to your crontab (idempotent)")

    logs = sub.add_parser("logs", parents=[common], help="a step's stdout and stderr")
    logs.add_argument("run_id")
    logs.add_argument("step")
    logs.add_argument("--index", type=int, help="only this foreach item")
    logs.add_argument("--json", action="store_true",
                      help="an array of {step, index, status, stdout, stderr} per task")

    lineage = sub.add_parser("lineage", parents=[common],
                             help="where an output came from: tasks, code, parameters, "
                                  "environment, inputs and data files, back through the graph")
    lineage.add_argument("run_id")
    lineage.add_argument("step")
    lineage.add_argument("name", help="the output (a name the step binds)")
    lineage.add_argument("--index", type=int, help="the foreach item (a foreach step's task)")
    lineage.add_argument("--json", action="store_true")

    diff = sub.add_parser("diff", parents=[common],
                          help="what changed from RUN_A to RUN_B: code, parameters, packages, "
                               "data files and outputs, step by step")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    diff.add_argument("--json", action="store_true")

    tag = sub.add_parser("tag", parents=[common], help="tag a run (or --untag)")
    tag.add_argument("run_id")
    tag.add_argument("names", nargs="*", metavar="NAME")
    tag.add_argument("--untag", action="append", default=[], metavar="NAME",
                     help="remove this tag (repeatable)")

    note = sub.add_parser("note", parents=[common], help="show or set a run's free-text note")
    note.add_argument("run_id")
    note.add_argument("text", nargs="?", help="the note (omit to show it; '' clears it)")

    gc = sub.add_parser("gc", parents=[common],
                        help="delete old runs and the artifacts and logs no kept run reaches "
                             "(a dry run unless --delete)")
    gc.add_argument("--keep-last", type=int, metavar="N", help="keep each flow's newest N runs")
    gc.add_argument("--keep-tagged", action="store_true", help="keep every tagged run")
    gc.add_argument("--older-than", metavar="DURATION",
                    help="only delete runs started longer ago than this (30d, 12h, 2w)")
    gc.add_argument("--flow", help="only consider this flow's runs")
    mode = gc.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", default=True,
                      help="report what would be deleted (the default)")
    mode.add_argument("--delete", action="store_true", help="really delete")
    gc.add_argument("--json", action="store_true")

    daemon = sub.add_parser(
        "daemon", help="keep a driver with a warm local cluster for `run` and `resume` (start, "
                       "stop, status)")
    daemon.add_argument("action", choices=("start", "stop", "status"))
    daemon.add_argument("--idle-timeout", metavar="DURATION",
                        help="stop after this long without a command (default: "
                             "nbflow.daemon.idle-timeout, 1h)")
    daemon.add_argument("--json", action="store_true")
    return p


class UsageError(Exception):
    """A command's arguments are wrong (exit 2, the message on stderr)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from nbflow.cronexpr import ScheduleError
    from nbflow.daemon import DaemonError
    from nbflow.execute import ClusterError
    from nbflow.notebook import NotebookError
    from nbflow.runner import RunError
    from nbflow.store import ArtifactError, MetadataError, StoreError

    try:
        handler = globals()[f"cmd_{args.command}"]
        return int(handler(args))
    except (AnalysisError, RunError, ClusterError, StoreError, MetadataError, NotebookError,
            ArtifactError, ScheduleError, UsageError, DaemonError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"nbflow: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("nbflow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nbflow runs | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0


def _store(args: argparse.Namespace, *, create: bool = True) -> Any:
    from nbflow.store import StoreError, open_store, resolve

    if not create:
        url, db = resolve(args.store, args.db)
        if db.startswith("sqlite:///") and not os.path.exists(db.removeprefix("sqlite:///")):
            raise StoreError(
                f"no nbflow store at {url} (looked for .nbflow/ from {os.getcwd()} upward): run "
                "a flow first, or point at one with --store / --db."
            )
    return open_store(args.store, args.db, writable=create)


class _Printer:
    """Echoes a run's progress and its steps' output lines as they arrive."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.lock = threading.Lock()

    def log(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        stream = sys.stderr if event["stream"] == "stderr" else sys.stdout
        with self.lock:
            for line in event["lines"]:
                print(f"[{event['step']}] {line}", file=stream, flush=True)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        with self.lock:
            if kind == "run-started":
                print(f"nbflow: run {data['run']} started", file=sys.stderr, flush=True)
            elif kind == "task-finished":
                idx = "" if data.get("index") is None else f"[{data['index']}]"
                status = data["status"]
                extra = ""
                if status == "cached":
                    extra = f" (from run {data['from']})"
                elif data.get("duration") is not None:
                    extra = f" ({data['duration']:.2f} s)"
                print(f"nbflow: {data['step']}{idx} {status}{extra}", file=sys.stderr, flush=True)
                if data.get("error") and status != "cached":
                    print(_indent(data["error"]), file=sys.stderr, flush=True)
            elif kind == "task-retry":
                print(f"nbflow: {data['step']} attempt {data['attempt']} failed; retrying",
                      file=sys.stderr, flush=True)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in str(text).rstrip().splitlines())


def _finish(store: Any, run_id: str) -> int:
    from nbflow.client import Run

    run = Run(run_id, store)
    counts = run.to_json()["counts"]
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"nbflow: run {run_id} {run.status.value} ({summary}). "
          f"See `nbflow show {run_id}`.", file=sys.stderr)
    if run.error:
        print(_indent(run.error), file=sys.stderr)
    return 0 if run.status.value == "succeeded" else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from nbflow.execute import Executor
    from nbflow.runner import parse_param, run_notebook

    for p in args.param:
        parse_param(p)  # refuse a malformed --param before anything starts
    from nbflow import notebook as nbmod
    from nbflow.graph import build_graph, cells_until

    nb = nbmod.load(args.notebook)  # a bad notebook fails before a store or a cluster is made
    cells = nb.cells
    graph = build_graph(cells_until(cells, args.until) if args.until else cells)
    executor = Executor.connect(args.cluster)
    executor.expect(n.options.resources for n in graph.nodes if n.options is not None)
    # Steps will run: start the cluster while the driver opens the store and gets going.
    if args.force:
        executor.warm_up()
    store = _store(args)
    if not args.force and not _ran_before(store, nb):
        executor.warm_up()
    printer = _Printer(args.quiet)
    try:
        run_id = run_notebook(args.notebook, store=store, executor=executor,
                              param_args=args.param, force=args.force, until=args.until,
                              on_log=printer.log, on_event=printer.event)
        return _finish(store, run_id)
    finally:
        executor.settle()
        store.close()  # in `nbflow daemon`, the process goes on


def _ran_before(store: Any, nb: Any) -> bool:
    """Whether this very notebook (same code) already ran to success in this store: then its
    steps are likely all cache hits, and no cluster should be started before one is needed."""
    return any(r.get("notebook_hash") == nb.content_hash
               for r in store.meta.runs(flow=nb.flow_name, status="succeeded", limit=20))


def cmd_resume(args: argparse.Namespace) -> int:
    from nbflow import config
    from nbflow.execute import Executor
    from nbflow.runner import resume_run

    executor = Executor.connect(args.cluster)
    # A resume runs what did not succeed: start the cluster now, while the store opens (not a
    # cluster made for the run's sizes, dask-gateway: that waits for the steps' requests).
    early = args.cluster or not config.get("cluster.class")
    if early:
        executor.warm_up()
    store = None
    try:
        store = _store(args)
        if store.meta.run(args.run_id) is None:
            raise KeyError(f"no run {args.run_id!r} in {store.url}; `nbflow runs` lists them")
    except BaseException:
        executor.settle()
        if store is not None:
            store.close()
        raise
    printer = _Printer(args.quiet)
    try:
        run_id = resume_run(args.run_id, store=store, executor=executor,
                            from_steps=args.from_steps, on_log=printer.log,
                            on_event=printer.event)
        return _finish(store, run_id)
    finally:
        executor.settle()
        store.close()


def cmd_export(args: argparse.Namespace) -> int:
    from nbflow.export import export_file

    path = export_file(args.notebook, args.output)
    print(f"nbflow: wrote {path}; run it with `python {path} run`", file=sys.stderr)
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from nbflow import schedule
    from nbflow.cronexpr import ScheduleError
    from nbflow.store import resolve

    store, db = args.store, args.db
    if args.target in ("cron", "systemd", "airflow") and not (store and db):
        default_store, default_db = resolve(None, None)  # spelled out: the job must not depend
        store, db = store or default_store, db or default_db  # on the folder it starts in
    job = schedule.load_job(args.flow, cron=args.cron, timezone=args.timezone, image=args.image,
                            workdir=args.workdir, python=args.python, cluster=args.cluster,
                            store=store, db=db)
    for path in schedule.write(job, args.target, args.output_dir):
        print(f"nbflow: wrote {path}", file=sys.stderr)
    if args.install:
        if args.target != "cron":
            raise ScheduleError("--install works with --target cron only; see the README for "
                                "enabling the other targets")
        line = schedule.install_crontab(job)
        print(f"nbflow: installed in your crontab: {line}", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from nbflow.client import list_runs

    runs = list_runs(args.flow, store=_store(args, create=False), status=args.status,
                     tag=args.tag, limit=args.limit)
    if args.json:
        print(json.dumps([r.summary_json() for r in runs], indent=2))
        return 0
    if not runs:
        print("no runs yet: `nbflow run NOTEBOOK.ipynb` makes one")
        return 0
    print(f"{'RUN':24} {'FLOW':20} {'STATUS':12} {'STARTED':20} {'DURATION':10} TAGS")
    for r in runs:
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S")
        dur = (f"{(r.finished_at - r.started_at).total_seconds():.1f} s"
               if r.finished_at else "-")
        print(f"{r.id:24} {r.flow[:20]:20} {r.status.value:12} {started:20} {dur:10} "
              f"{' '.join(r.tags)}".rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nbflow.client import Run

    run = Run(args.run_id, _store(args, create=False))
    data = run.to_json()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    env = data["environment"]
    print(f"run {run.id}  flow {run.flow}  {run.status.value}")
    print(f"  notebook   {run.notebook_path}  (content {env.get('notebook_hash')})")
    print(f"  started    {data['started_at']}   finished {data['finished_at']}")
    if run.resumed_from:
        print(f"  resumes    {run.resumed_from}")
    if run.tags:
        print(f"  tags       {' '.join(run.tags)}")
    if run.note:
        print(f"  note       {run.note}")
    if data["params"]:
        print("  params     " + ", ".join(f"{k}={v!r}" for k, v in data["params"].items()))
    print(f"  python     {env.get('python')}   nbflow {env.get('nbflow')}")
    packages = env.get("packages") or {}
    if packages:
        print("  packages   " + ", ".join(f"{k}=={v}" for k, v in sorted(packages.items())))
    cluster = data.get("cluster") or {}
    if cluster:
        print(f"  cluster    {cluster.get('kind')} {cluster.get('scheduler')}, "
              f"{cluster.get('workers')} workers, "
              f"{dask.utils.format_bytes(cluster.get('memory') or 0)}")
    print()
    print(f"  {'STEP':24} {'STATUS':10} {'TIME':>8}  {'WORKER':24} OUTPUTS")
    for t in data["tasks"]:
        name = t["step"] + ("" if t["index"] is None else f"[{t['index']}]")
        dur = f"{t['duration']:.2f}s" if t["duration"] is not None else "-"
        outs = ", ".join(f"{n}:{h[:8]}" for n, h in t["outputs"].items())
        print(f"  {name[:24]:24} {t['status']:10} {dur:>8}  {(t['worker'] or '-')[:24]:24} {outs}")
        if t["error"] and t["status"] not in ("cached", "succeeded"):
            print(_indent(_indent(t["error"])))
    if run.error:
        print("\n  run error:\n" + _indent(_indent(run.error)))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from nbflow.client import Run

    step = Run(args.run_id, _store(args, create=False))[args.step]
    tasks = [t for t in step.tasks if args.index is None or t.index == args.index]
    if args.json:
        print(json.dumps([{"step": t.step, "index": t.index, "status": t.status.value,
                           "stdout": t.stdout, "stderr": t.stderr} for t in tasks], indent=2))
        return 0
    for t in tasks:
        if len(tasks) > 1:
            print(f"--- {t.step}[{t.index}] ({t.status.value})")
        sys.stdout.write(t.stdout)
        err = t.stderr
        if err:
            sys.stderr.write(err)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from nbflow.lineage import lineage, render_text

    data = lineage(_store(args, create=False), args.run_id, args.step, args.name, args.index)
    print(json.dumps(data, indent=2) if args.json else render_text(data))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from nbflow.compare import diff_runs, render_text

    data = diff_runs(_store(args, create=False), args.run_a, args.run_b)
    print(json.dumps(data, indent=2, default=str) if args.json else render_text(data))
    return 0


def _run_of(args: argparse.Namespace) -> Any:
    from nbflow.client import Run

    store = _store(args, create=False)
    if store.meta.run(args.run_id) is None:
        raise KeyError(f"no run {args.run_id!r} in {store.url}; `nbflow runs` lists them")
    return Run(args.run_id, store)


def cmd_tag(args: argparse.Namespace) -> int:
    if not args.names and not args.untag:
        raise UsageError("give tags to add (nbflow tag RUN NAME...) or --untag NAME")
    run = _run_of(args)
    try:
        run.add_tags(*args.names)  # checks every name before it writes any
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.untag:
        run.remove_tags(*args.untag)
    print(f"run {run.id}: {' '.join(run.tags) or 'no tags'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    run = _run_of(args)
    if args.text is not None:
        run.set_note(args.text)
    print(run.note or "", end="\n" if run.note else "")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from nbflow.retention import Policy, RetentionError, collect, parse_duration

    try:
        policy = Policy(keep_last=args.keep_last, keep_tagged=args.keep_tagged,
                        older_than=parse_duration(args.older_than) if args.older_than else None,
                        flow=args.flow)
        policy.check()
    except RetentionError as exc:
        raise UsageError(str(exc)) from None
    report = collect(_store(args, create=False), policy, dry_run=not args.delete)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from nbflow import config, daemon

    if args.action == "start":
        raw = args.idle_timeout or config.get("daemon.idle-timeout") or "1h"
        try:
            idle = float(dask.utils.parse_timedelta(raw, default="s") or 0)
        except (ValueError, KeyError) as exc:
            raise UsageError(f"--idle-timeout {raw!r} is not a duration (try 30m, 1h, 600)") from exc
        if idle <= 0:
            raise UsageError(f"--idle-timeout {raw!r} must be longer than zero")
        status: dict[str, Any] | None = daemon.start(idle)
    elif args.action == "stop":
        stopped = daemon.stop()
        if args.json:
            print(json.dumps(stopped and {"stopped": stopped["stopping"],
                                          "interrupted": stopped.get("interrupted", False)}))
        elif stopped is None:
            print("nbflow: no daemon serves this environment", file=sys.stderr)
        else:
            print(f"nbflow: daemon {stopped['stopping']} stopped"
                  + (" (the run it was driving was interrupted: `nbflow resume` it)"
                     if stopped.get("interrupted") else ""), file=sys.stderr)
        return 0
    else:
        status = daemon.request("status")
        if status is None:
            if args.json:
                print(json.dumps(None))
            else:
                print("nbflow: no daemon serves this environment (`nbflow daemon start`)",
                      file=sys.stderr)
            return EXIT_FAILED
    assert status is not None
    if args.json:
        print(json.dumps(status))
        return 0
    verb = "already serves" if status.pop("already", False) or args.action == "status" else "serves"
    print(f"nbflow: daemon {status['pid']} {verb} this environment: `nbflow run` and `nbflow "
          f"resume` go to it ({status['commands']} so far{', one now' if status['busy'] else ''}).\n"
          f"  local cluster: {status['dashboard'] or 'not started'}\n"
          f"  log: {status['log']}\n"
          f"  stops after {status['idle_timeout']:g} s without a command; `nbflow daemon stop` "
          "stops it now", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
