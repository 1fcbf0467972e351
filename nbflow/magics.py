"""The IPython extension: ``%load_ext nbflow`` registers ``%%step``, ``%%resources`` and ``%nbflow``.

The only module that imports IPython. Each magic is a thin layer over ``nbflow.session`` (step
cells) and the read-only client (history); errors in the user's cell or input are shown as one
short message, never as nbflow's own traceback, and the kernel stays usable.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from nbflow.display import Displayed
from nbflow.errors import AnalysisError
from nbflow.session import InteractiveSession, StepFailed


class NbflowUsageError(Exception):
    """A problem with what the user wrote: shown as one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"nbflow: {self}"]


def _short(exc: Exception) -> NbflowUsageError:
    return NbflowUsageError(str(exc))


@magics_class
class NbflowMagics(Magics):
    """nbflow's magics, sharing one ``InteractiveSession`` per kernel."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)  # type: ignore[no-untyped-call]
        self._session: InteractiveSession | None = None
        self._last_run: str | None = None

    @property
    def session(self) -> InteractiveSession:
        if self._session is None:
            assert self.shell is not None
            self._session = InteractiveSession(self.shell.user_ns)
        return self._session

    def _run(self, source: str) -> Displayed | None:
        from nbflow.execute import ClusterError
        from nbflow.store import ArtifactError, MetadataError, StoreError

        cell = getattr(self.shell, "execution_count", None)
        try:
            outcome = self.session.run_step(source, cell=cell, on_log=_echo)
        except StepFailed:
            raise
        except (AnalysisError, ClusterError, StoreError, MetadataError, ArtifactError) as exc:
            raise _short(exc) from None
        if outcome.cached:
            origin = ", ".join(sorted(set(outcome.cached_from)))
            print(f"nbflow: step {outcome.step!r} cached (from run {origin}); bound "
                  f"{', '.join(outcome.bound) or 'nothing'}")
        for name in outcome.handles:
            print(f"nbflow: {name!r} is bigger than nbflow.interactive.max-bind-size and stays in "
                  f"the store: {name} is a handle, `{name}.load()` brings the value here")
        return Displayed(outcome.display) if outcome.display else None

    @cell_magic
    def step(self, line: str, cell: str) -> Displayed | None:
        """Run this cell as a step of the flow, on the Dask cluster.

        %%step NAME [--foreach VAR in EXPR] [--retry N] [--timeout SECONDS] [--catch] [--force]

        The cell's inputs (names it reads) come from the kernel: values that an earlier step
        produced are passed by reference to their stored artifact, others are shipped by value.
        Its outputs (names it binds) are stored as versioned artifacts and bound back into the
        kernel. An unchanged cell with unchanged inputs is a cache hit: nothing runs. Stack a
        ``%%resources memory=16G cpus=4 gpus=1`` line to ask the cluster for more.
        """
        return self._run(f"%%step {line}\n{cell}")

    @cell_magic
    def resources(self, line: str, cell: str) -> Displayed | None:
        """Ask the cluster for resources for the step in this cell: memory=16G cpus=4 gpus=1.

        Stack it with the step's own line, in either order:

            %%resources memory=16G
            %%step train
        """
        return self._run(f"%%resources {line}\n{cell}")

    @line_magic
    def nbflow(self, line: str) -> Any:
        """nbflow's commands in the notebook:

        %nbflow run [NOTEBOOK] [-p NAME=VALUE]... [--force] [--text]
                                   run the whole notebook (this one by default) as a new run,
                                   with a progress view (plain text with --text or without widgets)
        %nbflow resume [RUN_ID] [--from STEP]... [--text]
                                   resume a run (by default the last one %nbflow run made here)
        %nbflow runs [FLOW] [--tag TAG] [--limit N]
                                   the store's runs, newest first
        %nbflow show RUN_ID        one run: its steps and tasks
        %nbflow diff RUN_A RUN_B   what changed between two runs: code, parameters, packages,
                                   data files, and how each differing output differs
        %nbflow lineage RUN_ID STEP NAME [--index N]
                                   where an output came from, back through the graph
        %nbflow cluster [ADDRESS|local]
                                   the cluster steps run on; with an address, switch to that
                                   scheduler (`local`: a new local cluster)
        %nbflow export [NOTEBOOK] [-o flows/NAME.py]
                                   write the notebook (this one by default) as a flow module
                                   to review and run: `python flows/NAME.py run`
        """
        try:
            args = _parser().parse_args(shlex.split(line))
        except ValueError as exc:  # shlex: unbalanced quotes
            raise NbflowUsageError(f"{exc} in {line!r}") from None
        if args.command is None:
            raise NbflowUsageError(f"usage: %nbflow {{{','.join(_COMMANDS)}}} ...; `%nbflow?` "
                                   "shows the help")
        return getattr(self, f"_cmd_{args.command}")(args)

    def _cmd_runs(self, args: argparse.Namespace) -> None:
        from nbflow.client import list_runs

        for r in list_runs(args.flow, store=self.session.store, tag=args.tag, limit=args.limit):
            print(f"{r.id}  {r.flow:20}  {r.status.value:11}  {r.kind:11}  {' '.join(r.tags)}"
                  .rstrip())

    def _cmd_diff(self, args: argparse.Namespace) -> Any:
        from nbflow.compare import CompareError, diff_runs

        try:
            return RunDiff(diff_runs(self.session.store, args.run_a, args.run_b))
        except CompareError as exc:
            raise NbflowUsageError(exc.args[0]) from None

    def _cmd_lineage(self, args: argparse.Namespace) -> Any:
        from nbflow.client import Lineage
        from nbflow.lineage import LineageError, lineage

        try:
            return Lineage(lineage(self.session.store, args.run_id, args.step, args.name,
                                   args.index))
        except LineageError as exc:
            raise NbflowUsageError(exc.args[0]) from None

    def _cmd_show(self, args: argparse.Namespace) -> None:
        from nbflow.client import Run

        try:
            run = Run(args.run_id, self.session.store)
        except KeyError as exc:
            raise NbflowUsageError(exc.args[0]) from None
        print(f"run {run.id} ({run.flow}, {run.kind}): {run.status.value}")
        for t in run.tasks:
            idx = "" if t.index is None else f"[{t.index}]"
            print(f"  {t.step}{idx:6}  {t.status.value:10}  {t.worker or '-'}")

    def _cmd_cluster(self, args: argparse.Namespace) -> Any:
        from nbflow.execute import ClusterError, Executor, local_cluster, reset_local_cluster

        try:
            if args.address is None:
                self.session.executor.client  # noqa: B018 - connect, to describe what steps get
                return self.session.executor.describe()
            if args.address == "local":
                reset_local_cluster()
                executor = Executor(local_cluster(), "local")
            else:
                executor = Executor.connect(args.address)
                executor.client  # noqa: B018 - connect now: an unreachable address fails here
        except ClusterError as exc:
            raise _short(exc) from None
        self.session.use_executor(executor)
        return executor.describe()

    def _cmd_export(self, args: argparse.Namespace) -> None:
        from nbflow.export import export_file

        path = self._notebook_path(args.notebook)
        try:
            written = export_file(path, args.output)
        except (AnalysisError, ValueError, OSError) as exc:
            raise _short(exc) from None
        print(f"nbflow: wrote {written}; run it with `python {written} run`, or schedule it")

    def _notebook_path(self, given: str | None) -> str:
        if given:
            return given
        current = self.session.notebook
        if current:
            if os.path.exists(current):
                return current
            here = os.path.basename(current)
            if os.path.exists(here):
                return here
        raise NbflowUsageError("this kernel does not know its notebook's file (no Jupyter "
                               "session): name it, as in `%nbflow run analysis.ipynb`")

    def _cmd_run(self, args: argparse.Namespace) -> None:
        from nbflow import notebook as nbmod
        from nbflow.graph import build_graph
        from nbflow.runner import parse_param, run_notebook

        path = self._notebook_path(args.notebook)
        try:
            for p in args.param:
                parse_param(p)
            graph = build_graph(nbmod.load(path).cells)
        except Exception as exc:
            raise _short(exc) from None
        view = _view(list(graph.steps), f"{os.path.basename(path)}", args.text)
        run_id = self._guarded(lambda: run_notebook(
            path, store=self.session.store, executor=self.session.executor,
            param_args=args.param, force=args.force, on_log=_echo_prefixed, on_event=view.event),
            view)
        self._last_run = run_id
        self._report(run_id)

    def _cmd_resume(self, args: argparse.Namespace) -> None:
        from nbflow import notebook as nbmod
        from nbflow.graph import build_graph
        from nbflow.runner import resume_run

        store = self.session.store
        run_id = args.run_id or self._last_run or self._latest_unfinished()
        row = store.meta.run(run_id)
        if row is None:
            raise NbflowUsageError(f"no run {run_id!r} in {store.url}; `%nbflow runs` lists them")
        try:
            steps = list(build_graph(nbmod.load(row["notebook_path"] or "").cells).steps)
        except Exception as exc:
            raise _short(exc) from None
        view = _view(steps, f"resume of {run_id}", args.text)
        new_id = self._guarded(lambda: resume_run(
            run_id, store=store, executor=self.session.executor, from_steps=args.from_steps,
            on_log=_echo_prefixed, on_event=view.event), view)
        self._last_run = new_id
        self._report(new_id)

    def _latest_unfinished(self) -> str:
        flow = self.session.flow
        for r in self.session.store.meta.runs(flow=flow, limit=50):
            if r["kind"] != "interactive" and r["status"] in ("failed", "interrupted"):
                return str(r["id"])
        raise NbflowUsageError(f"no failed or interrupted run of flow {flow!r} to resume: name "
                               "one, as in `%nbflow resume RUN_ID` (`%nbflow runs` lists them)")

    def _guarded(self, start: Callable[[], str], view: Any) -> str:
        from nbflow.execute import ClusterError
        from nbflow.runner import RunError
        from nbflow.store import ArtifactError, MetadataError, StoreError

        try:
            return start()
        except KeyboardInterrupt:
            raise RunInterrupted("the run was interrupted; its running tasks were stopped. "
                                 "`%nbflow resume` goes on from where it stopped") from None
        except (AnalysisError, RunError, ClusterError, StoreError, MetadataError,
                ArtifactError) as exc:
            raise _short(exc) from None
        finally:
            view.close()

    def _report(self, run_id: str) -> None:
        """One line for the run; a run that did not succeed fails the cell (so "Run All" stops
        there), saying what failed and how to go on."""
        from nbflow.client import Run

        run = Run(run_id, self.session.store)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run.to_json()["counts"].items()))
        if run.status.value == "succeeded":
            print(f"nbflow: run {run_id} succeeded ({counts})")
            return
        lines = [f"run {run_id} {run.status.value} ({counts})"]
        for t in [t for t in run.tasks if t.status.value in ("failed", "timed_out")][:3]:
            last = (t.error or t.status.value).strip().splitlines()[-1]
            lines.append(f"  step {t.step!r}: {last}")
        lines.append(f"  fix the cause, then `%nbflow resume {run_id}` runs what did not succeed, "
                     "reusing the rest")
        raise RunFailed("\n".join(lines))


class RunFailed(Exception):
    """A run started by ``%nbflow run`` or ``resume`` did not succeed: shown without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"nbflow: {line}" if i == 0 else line for i, line in enumerate(str(self).splitlines())]


class RunInterrupted(KeyboardInterrupt):
    """The kernel was interrupted during ``%nbflow run``: shown as one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"nbflow: {self}"]


_COMMANDS = ("run", "resume", "runs", "show", "diff", "lineage", "cluster", "export")


class RunDiff:
    """``%nbflow diff``'s result: HTML in the notebook (every value escaped), text elsewhere;
    ``.data`` is the JSON model of ``nbflow diff --json``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def _repr_html_(self) -> str:
        from nbflow.compare import render_html

        return render_html(self.data)

    def __repr__(self) -> str:
        from nbflow.compare import render_text

        return render_text(self.data)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise NbflowUsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="%nbflow", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_ArgumentParser)
    run = sub.add_parser("run", add_help=False)
    run.add_argument("notebook", nargs="?")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--force", action="store_true")
    run.add_argument("--text", action="store_true")
    resume = sub.add_parser("resume", add_help=False)
    resume.add_argument("run_id", nargs="?")
    resume.add_argument("--from", dest="from_steps", action="append", default=[], metavar="STEP")
    resume.add_argument("--text", action="store_true")
    runs = sub.add_parser("runs", add_help=False)
    runs.add_argument("flow", nargs="?")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--tag")
    show = sub.add_parser("show", add_help=False)
    show.add_argument("run_id")
    diff = sub.add_parser("diff", add_help=False)
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    lineage = sub.add_parser("lineage", add_help=False)
    lineage.add_argument("run_id")
    lineage.add_argument("step")
    lineage.add_argument("name")
    lineage.add_argument("--index", type=int)
    cluster = sub.add_parser("cluster", add_help=False)
    cluster.add_argument("address", nargs="?")
    export = sub.add_parser("export", add_help=False)
    export.add_argument("notebook", nargs="?")
    export.add_argument("-o", "--output")
    return parser


def _view(steps: list[str], title: str, text: bool) -> Any:
    from nbflow.progress import ProgressView

    return ProgressView(steps, title=title, widgets=False if text else None)


def _echo_prefixed(msg: dict[str, Any]) -> None:
    stream = sys.stderr if msg["stream"] == "stderr" else sys.stdout
    for line in msg["lines"]:
        print(f"[{msg['step']}] {line}", file=stream, flush=True)


def _echo(msg: dict[str, Any]) -> None:
    stream = sys.stderr if msg["stream"] == "stderr" else sys.stdout
    for line in msg["lines"]:
        print(line, file=stream, flush=True)


def load_ipython_extension(ip: Any) -> None:
    ip.register_magics(NbflowMagics(ip))
