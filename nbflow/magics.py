"""The IPython extension: ``%load_ext nbflow`` registers ``%%step``, ``%%resources`` and ``%nbflow``.

The only module that imports IPython. Each magic is a thin layer over ``nbflow.session`` (step
cells) and the read-only client (history); errors in the user's cell or input are shown as one
short message, never as nbflow's own traceback, and the kernel stays usable.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

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

    @property
    def session(self) -> InteractiveSession:
        if self._session is None:
            assert self.shell is not None
            self._session = InteractiveSession(self.shell.user_ns)
        return self._session

    def _run(self, source: str) -> None:
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

    @cell_magic
    def step(self, line: str, cell: str) -> None:
        """Run this cell as a step of the flow, on the Dask cluster.

        %%step NAME [--foreach VAR in EXPR] [--retry N] [--timeout SECONDS] [--catch] [--force]

        The cell's inputs (names it reads) come from the kernel: values that an earlier step
        produced are passed by reference to their stored artifact, others are shipped by value.
        Its outputs (names it binds) are stored as versioned artifacts and bound back into the
        kernel. An unchanged cell with unchanged inputs is a cache hit: nothing runs. Stack a
        ``%%resources memory=16G cpus=4 gpus=1`` line to ask the cluster for more.
        """
        self._run(f"%%step {line}\n{cell}")

    @cell_magic
    def resources(self, line: str, cell: str) -> None:
        """Ask the cluster for resources for the step in this cell: memory=16G cpus=4 gpus=1.

        Stack it with the step's own line, in either order:

            %%resources memory=16G
            %%step train
        """
        self._run(f"%%resources {line}\n{cell}")

    @line_magic
    def nbflow(self, line: str) -> Any:
        """nbflow's commands in the notebook:

        %nbflow runs [FLOW]        the store's runs, newest first
        %nbflow show RUN_ID        one run: its steps and tasks
        %nbflow cluster            the cluster steps run on
        """
        words = shlex.split(line)
        if not words:
            raise NbflowUsageError("usage: %nbflow runs [FLOW] | show RUN_ID | cluster")
        command, args = words[0], words[1:]
        from nbflow.client import Run, list_runs

        store = self.session.store
        if command == "runs":
            for r in list_runs(args[0] if args else None, store=store, limit=50):
                print(f"{r.id}  {r.flow:20}  {r.status.value:11}  {r.kind}")
            return None
        if command == "show" and len(args) == 1:
            try:
                run = Run(args[0], store)
            except KeyError as exc:
                raise NbflowUsageError(exc.args[0]) from None
            for t in run.tasks:
                idx = "" if t.index is None else f"[{t.index}]"
                print(f"{t.step}{idx:6}  {t.status.value:10}  {t.worker or '-'}")
            return None
        if command == "cluster":
            return self.session.executor.describe()
        raise NbflowUsageError(f"unknown command {line!r}; try: runs, show RUN_ID, cluster")


def _echo(msg: dict[str, Any]) -> None:
    stream = sys.stderr if msg["stream"] == "stderr" else sys.stdout
    for line in msg["lines"]:
        print(line, file=stream, flush=True)


def load_ipython_extension(ip: Any) -> None:
    ip.register_magics(NbflowMagics(ip))
