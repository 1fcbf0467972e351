"""Showing a run's progress in a notebook: an ipywidgets view, with a plain-text fallback where
widgets cannot render.

``ProgressView`` is fed the runner's events (``on_event`` of ``nbflow.runner.Runner`` and
``nbflow.dispatch.Dispatcher``) in order, on one thread, and keeps one row per step of the flow,
``pending`` from the start.

In a kernel with ipywidgets (or with ``widgets=True``) it displays a header (title, run id, status,
elapsed time) and a grid with one row per step: name, state, duration, a progress bar with
"done/total" and failure counts for steps of more than one task, and a note (``cached (from run
X)``, the error's line). An event updates the widgets of its own step's row only, and only those
whose value changes, so a foreach of 1000 items costs a few small widget messages per task, never a
re-render of the view. The displayed object carries the plain-text summary too, and ``close()``
updates the display with the final one, so a notebook saved after the run (or executed by
nbclient/nbconvert, where the widget state may be missing) shows the outcome as text.

Elsewhere it writes lines prefixed ``nbflow: `` to ``out``: a step starting (with its task count
when it is not 1), each task of a single-task step finishing, a foreach step's progress each time
another tenth of its tasks has finished (at most 10 lines per step, the last at ``total/total``)
plus its first failure, each step finishing, the run finishing, and the summary table on
``close()``.

A step's *duration* is wall time as the driver sees it: from its ``step-started`` event to its
``step-finished`` (time so far while it runs). That is what one waits for; a sum of task durations
would overstate a foreach whose tasks run in parallel and would say nothing for cached tasks. Task
lines show the task's own duration as the worker measured it.

An error's line is its first line, except for a Python traceback, whose line is the exception
(``ValueError: ...``) rather than ``Traceback (most recent call last):``.
"""

from __future__ import annotations

import html
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

PREFIX = "nbflow: "
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
FAILURES = ("failed", "timed_out", "cancelled")  # task statuses that are not usable downstream
TEXT_PROGRESS_LINES = 10  # at most this many progress lines per foreach step, in text mode
HEADER_INTERVAL = 1.0  # seconds between refreshes of the header's elapsed time on task events
NOTE_WIDTH = 160  # characters of an error line shown in a note
_TRACEBACK = "Traceback (most recent call last):"
_COLORS = {"pending": "#888", "running": "#1565c0", "succeeded": "#2e7d32", "cached": "#00796b",
           "failed": "#c62828", "timed_out": "#c62828", "cancelled": "#ef6c00"}


# -- formatting -----------------------------------------------------------------------------------
def format_seconds(seconds: float) -> str:
    """``0.52 s``, ``12.3 s``, ``4m 05s``, ``2h 03m``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def error_line(error: str | None) -> str:
    """The one line of an error worth showing: the exception of a traceback, else the first line."""
    lines = [line for line in str(error or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0].strip()
    if any(_TRACEBACK in x for x in lines):
        indented = [i for i, x in enumerate(lines) if x[:1].isspace() or _TRACEBACK in x]
        after = lines[indented[-1] + 1:]
        line = after[0].strip() if after else line
    return line if len(line) <= NOTE_WIDTH else line[:NOTE_WIDTH - 1] + "…"


def _runs(ids: Sequence[str]) -> str:
    if len(ids) == 1:
        return f"run {ids[0]}"
    shown = ", ".join(ids[:2])
    return f"runs {shown}" + (f" and {len(ids) - 2} more" if len(ids) > 2 else "")


# -- the state of a run ---------------------------------------------------------------------------
@dataclass
class _Step:
    """What is known of one step, from its events."""

    name: str
    state: str = "pending"
    total: int = 0
    done: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    cached_from: list[str] = field(default_factory=list)
    error: str | None = None  # the first failure's error (or why the step never ran)
    caught: bool = False
    retrying: str | None = None  # a single-task step's last failed attempt, while it is retried
    retries: int = 0
    started: float | None = None
    finished: float | None = None
    progress_bucket: int = 0  # text mode: tenths of the tasks reported so far

    @property
    def multi(self) -> bool:
        return self.total > 1

    @property
    def failures(self) -> int:
        return sum(self.statuses[s] for s in FAILURES)

    @property
    def all_cached(self) -> bool:
        return self.total > 0 and self.statuses["cached"] == self.total

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else now) - self.started

    def duration_text(self, now: float) -> str:
        seconds = self.duration(now)
        return "" if seconds is None else format_seconds(seconds)

    def tasks_text(self) -> str:
        return "" if self.started is None else f"{self.done}/{self.total}"

    def failures_text(self) -> str:
        """``2 failed, 1 timed_out`` (and ``(caught)`` under --catch); empty without failures."""
        text = ", ".join(f"{self.statuses[s]} {s}" for s in FAILURES if self.statuses[s])
        return text + " (caught)" if text and self.caught else text

    def cached_text(self) -> str:
        if not self.cached_from:
            return ""
        if self.all_cached:
            return f"cached (from {_runs(self.cached_from)})"
        return f"{self.statuses['cached']} cached (from {_runs(self.cached_from)})"

    def note(self) -> str:
        """Cached from where, how many tasks failed (of several), the error's line."""
        parts = [self.cached_text()]
        if self.multi:
            parts.append(self.failures_text())
        if self.error:
            parts.append(error_line(self.error))
        elif self.retrying is not None:
            parts.append(f"retrying: {error_line(self.retrying)}".rstrip(": "))
        elif self.multi and self.retries:
            parts.append(f"{self.retries} retried")
        return "; ".join(p for p in parts if p)

    def final_state(self, ok: bool) -> str:
        if ok:
            return "cached" if self.all_cached else "succeeded"
        return next((s for s in FAILURES if self.statuses[s]), "failed")


# -- the view -------------------------------------------------------------------------------------
class ProgressView:
    """The progress of one run, as ipywidgets in a kernel or as ``nbflow: `` lines elsewhere.

    Feed it every event of the run with ``event(kind, data)``, in order, from one thread; call
    ``close()`` when the run is over. ``widgets=None`` chooses widgets when ipywidgets can be
    imported and the code runs in an IPython kernel; ``out`` (default ``sys.stdout``) receives the
    text lines. An event that the view cannot handle is reported once on stderr and never raised:
    the display must not stop a run.
    """

    def __init__(self, steps: Sequence[str], *, title: str = "", widgets: bool | None = None,
                 out: TextIO | None = None) -> None:
        self.title = title
        self.run_id: str | None = None
        self.status = "starting"
        self.error: str | None = None
        self._steps = {name: _Step(name) for name in steps}
        self._started = self._now()
        self._finished: float | None = None
        self._closed = False
        self._failed_once = False
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "run-started": self._run_started, "run-finished": self._run_finished,
            "step-started": self._step_started, "step-finished": self._step_finished,
            "task-started": self._task_started, "task-retry": self._task_retry,
            "task-finished": self._task_finished,
        }
        use_widgets = _widgets_usable() if widgets is None else widgets
        self._render: _Renderer = (_WidgetRenderer(self) if use_widgets
                                   else _TextRenderer(self, out if out is not None else sys.stdout))
        self._render.show()

    # -- public API -----------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The root ipywidgets ``VBox`` in widget mode, else None."""
        return self._render.widget

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Take one runner event into account; unknown kinds are ignored."""
        handler = self._handlers.get(kind)
        if handler is None or self._closed:
            return
        try:
            handler(data)
        except Exception as exc:  # a display problem must not stop the run
            if not self._failed_once:
                self._failed_once = True
                print(f"{PREFIX}the progress view could not show a {kind!r} event: {exc!r}",
                      file=sys.stderr)

    def close(self) -> None:
        """Show the final state (the summary, in text mode); later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._finished is None:
            self._finished = self._now()
            self.status = "stopped" if self.run_id is not None else "not started"
        self._render.close()

    def summary(self) -> str:
        """A plain-text table of the current state: a header line, then one line per step."""
        now = self._now()
        rows = [("step", "state", "duration", "tasks", "note")]
        rows += [(s.name, s.state, s.duration_text(now), s.tasks_text(), s.note())
                 for s in self._steps.values()]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join(
            f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}  {e}".rstrip()
            for a, b, c, d, e in rows)

    # -- helpers for renderers ------------------------------------------------------------------
    def _now(self) -> float:
        """The clock durations are measured with (monotonic seconds)."""
        return time.monotonic()

    def elapsed(self) -> float:
        return (self._finished if self._finished is not None else self._now()) - self._started

    def header_parts(self) -> list[str]:
        """Title, run id, status and elapsed time (and the run's error line), as plain text."""
        parts = [self.title or "nbflow run"]
        if self.run_id is not None:
            parts.append(f"run {self.run_id}")
        parts += [self.status, format_seconds(self.elapsed())]
        if self.error:
            parts.append(error_line(self.error))
        return parts

    def report(self) -> str:
        """The header line and the summary: the displayed object's plain text."""
        return " · ".join(self.header_parts()) + "\n" + self.summary()

    def _all_steps(self) -> list[_Step]:
        return list(self._steps.values())

    # -- events -----------------------------------------------------------------------------------
    def _step(self, name: Any) -> _Step:
        name = str(name)
        step = self._steps.get(name)
        if step is None:  # not announced at construction: give it a row anyway
            step = self._steps[name] = _Step(name)
            self._render.add_row(step)
        return step

    def _run_started(self, data: dict[str, Any]) -> None:
        self.run_id = str(data.get("run"))
        self.status = "running"
        self._started = self._now()
        self._render.run_started()

    def _run_finished(self, data: dict[str, Any]) -> None:
        self.status = str(data.get("status") or "finished")
        self.error = data.get("error")
        now = self._finished = self._now()
        for step in self._steps.values():
            if step.state in ("pending", "running"):  # the run stopped before the step ended
                step.state = "cancelled"
                if step.started is not None:
                    step.finished = now
                self._render.step_changed(step)
        self._render.run_finished()

    def _step_started(self, data: dict[str, Any]) -> None:
        step = self._step(data.get("step"))
        step.state, step.total, step.started = "running", int(data.get("tasks") or 0), self._now()
        self._render.step_started(step)

    def _task_started(self, data: dict[str, Any]) -> None:
        step = self._step(data.get("step"))
        if step.state == "pending":
            step.state = "running"
            step.started = self._now()
            self._render.step_changed(step)

    def _task_retry(self, data: dict[str, Any]) -> None:
        step = self._step(data.get("step"))
        step.retries += 1
        if not step.multi:
            step.retrying = str(data.get("error") or "")
        self._render.task_retry(step, data)

    def _task_finished(self, data: dict[str, Any]) -> None:
        step = self._step(data.get("step"))
        status = str(data.get("status"))
        if "index" not in data:  # the step failed (or was cancelled) before any task ran
            step.state, step.error, step.finished = status, data.get("error"), self._now()
            self._render.step_failed_early(step)
            return
        step.done += 1
        step.statuses[status] += 1
        step.retrying = None
        if status == "cached" and data.get("from") and data["from"] not in step.cached_from:
            step.cached_from.append(str(data["from"]))
        if status in FAILURES:
            step.caught = step.caught or bool(data.get("caught"))
            if step.error is None:
                step.error = data.get("error") or status
        self._render.task_finished(step, data)

    def _step_finished(self, data: dict[str, Any]) -> None:
        step = self._step(data.get("step"))
        step.state, step.finished = step.final_state(bool(data.get("ok"))), self._now()
        step.retrying = None
        self._render.step_finished(step)


def _widgets_usable() -> bool:
    """ipywidgets can be imported and this runs in an IPython kernel (not a terminal, not a script)."""
    try:
        import ipywidgets  # type: ignore[import-untyped]  # noqa: F401
        from IPython.core.getipython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


# -- renderers ------------------------------------------------------------------------------------
class _Renderer:
    """How the view shows changes; the base shows nothing."""

    widget: Any = None

    def show(self) -> None: ...
    def add_row(self, step: _Step) -> None: ...
    def run_started(self) -> None: ...
    def run_finished(self) -> None: ...
    def step_started(self, step: _Step) -> None: ...
    def step_changed(self, step: _Step) -> None: ...
    def step_failed_early(self, step: _Step) -> None: ...
    def task_retry(self, step: _Step, data: dict[str, Any]) -> None: ...
    def task_finished(self, step: _Step, data: dict[str, Any]) -> None: ...
    def step_finished(self, step: _Step) -> None: ...
    def close(self) -> None: ...


class _TextRenderer(_Renderer):
    """``nbflow: `` lines on a stream, one per meaningful change."""

    def __init__(self, view: ProgressView, out: TextIO) -> None:
        self.view = view
        self.out = out

    def write(self, text: str) -> None:
        self.out.write("".join(PREFIX + line + "\n" for line in text.splitlines()))
        self.out.flush()

    def run_started(self) -> None:
        title = f"{self.view.title}: " if self.view.title else ""
        self.write(f"{title}run {self.view.run_id} started")

    def run_finished(self) -> None:
        error = error_line(self.view.error)
        self.write(f"run {self.view.run_id} {self.view.status} in {format_seconds(self.view.elapsed())}"
                   + (f": {error}" if error else ""))

    def step_started(self, step: _Step) -> None:
        self.write(f"{step.name} started" + ("" if step.total == 1 else f" ({step.total} tasks)"))

    def step_failed_early(self, step: _Step) -> None:
        self.write(f"{step.name} {step.state}: {error_line(step.error)}".rstrip(": "))

    def task_retry(self, step: _Step, data: dict[str, Any]) -> None:
        if step.multi:
            return  # counted in the step's note
        error = error_line(data.get("error"))
        self.write(f"{step.name}{_index(data)} attempt {data.get('attempt')} failed; retrying"
                   + (f": {error}" if error else ""))

    def task_finished(self, step: _Step, data: dict[str, Any]) -> None:
        status = str(data.get("status"))
        if not step.multi:
            self.write(f"{step.name}{_index(data)} {_task_outcome(data)}")
            return
        if status in FAILURES and step.failures == 1:  # a foreach's first failure, in full
            self.write(f"{step.name}{_index(data)} {_task_outcome(data)}")
        bucket = step.done * TEXT_PROGRESS_LINES // step.total
        if bucket > step.progress_bucket or step.done == step.total:
            step.progress_bucket = bucket
            extra = ", ".join(p for p in (step.failures_text(), _cached_count(step)) if p)
            self.write(f"{step.name} {step.done}/{step.total} done" + (f" ({extra})" if extra else ""))

    def step_finished(self, step: _Step) -> None:
        now = self.view._now()
        note = step.note() if step.multi else ""
        self.write(f"{step.name} finished: {step.state} in {step.duration_text(now)}"
                   + (f" ({note})" if note else ""))

    def close(self) -> None:
        self.write(self.view.summary())


def _index(data: dict[str, Any]) -> str:
    return "" if data.get("index") is None else f"[{data['index']}]"


def _task_outcome(data: dict[str, Any]) -> str:
    status = str(data.get("status"))
    if status == "cached":
        return f"cached (from run {data.get('from')})"
    if data.get("duration") is not None and status not in FAILURES:
        return f"{status} ({format_seconds(float(data['duration']))})"
    error = error_line(data.get("error"))
    return f"{status}: {error}" if error else status


def _cached_count(step: _Step) -> str:
    n = step.statuses["cached"]
    return f"{n} cached" if n else ""


class _Row:
    """The widgets of one step's row; each setter touches only what changed."""

    def __init__(self, widgets: Any, step: _Step) -> None:
        self.name = widgets.HTML(f"<b>{html.escape(step.name)}</b>")
        self.state = widgets.HTML()
        self.duration = widgets.HTML()
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="160px"))
        self.count = widgets.HTML()
        self.progress = widgets.HBox([])
        self.note = widgets.HTML()
        self.state.value = _state_html(step.state)

    @property
    def cells(self) -> list[Any]:
        return [self.name, self.state, self.duration, self.progress, self.note]

    def show_state(self, step: _Step, now: float) -> None:
        self.state.value = _state_html(step.state)
        self.duration.value = html.escape(step.duration_text(now))
        self.note.value = _note_html(step)

    def show_bar(self, step: _Step) -> None:
        """Shown for steps of more than one task, once they have started."""
        if step.multi and not self.progress.children:
            self.bar.max = step.total
            self.progress.children = (self.bar, self.count)
        self.show_progress(step)

    def show_progress(self, step: _Step) -> None:
        if not step.multi:
            return
        self.bar.value = step.done
        failures = step.failures_text()
        self.count.value = html.escape(f"{step.done}/{step.total}" + (f" · {failures}" if failures else ""))
        style = "danger" if step.failures and not step.caught else ""
        if step.state in ("succeeded", "cached"):
            style = "warning" if step.failures else "success"
        self.bar.bar_style = style


def _state_html(state: str) -> str:
    color = _COLORS.get(state, "#000")
    return f'<span style="color:{color}">{html.escape(state)}</span>'


def _note_html(step: _Step) -> str:
    note = step.note()
    if not note:
        return ""
    full = (step.error or step.retrying or "")[:2000]
    title = f' title="{html.escape(full, quote=True)}"' if full else ""
    return f"<span{title}>{html.escape(note)}</span>"


class _WidgetRenderer(_Renderer):
    """A header and a grid of one row per step, displayed once, updated in place."""

    def __init__(self, view: ProgressView) -> None:
        import ipywidgets as widgets

        self.view = view
        self.widgets = widgets
        self.header = widgets.HTML()
        self.rows = {step.name: _Row(widgets, step) for step in view._all_steps()}
        titles = [widgets.HTML(f"<b>{t}</b>") for t in ("step", "state", "duration", "tasks", "note")]
        self.grid = widgets.GridBox(
            titles + [cell for row in self.rows.values() for cell in row.cells],
            layout=widgets.Layout(grid_template_columns="repeat(4, max-content) auto",
                                  grid_gap="0 16px", align_items="center"))
        self.widget = widgets.VBox([self.header, self.grid])
        self.header_shown_at = view._now()
        self.handle: Any = None
        self.show_header()

    def show(self) -> None:
        self.handle = _display(_Display(self.view))

    def show_header(self) -> None:
        parts = [html.escape(p) for p in self.view.header_parts()]
        color = _COLORS.get(self.view.status, "#000")
        parts[0] = f"<b>{parts[0]}</b>"
        status_at = 2 if self.view.run_id is not None else 1
        parts[status_at] = f'<span style="color:{color}">{parts[status_at]}</span>'
        self.header.value = " · ".join(parts)
        self.header_shown_at = self.view._now()

    def maybe_show_header(self) -> None:
        """On task events: keep the elapsed time roughly current without a message per task."""
        if self.view._now() - self.header_shown_at >= HEADER_INTERVAL:
            self.show_header()

    def add_row(self, step: _Step) -> None:
        row = self.rows[step.name] = _Row(self.widgets, step)
        self.grid.children = (*self.grid.children, *row.cells)

    def run_started(self) -> None:
        self.show_header()

    def run_finished(self) -> None:
        self.show_header()

    def step_started(self, step: _Step) -> None:
        row = self.rows[step.name]
        row.show_state(step, self.view._now())
        row.show_bar(step)
        self.show_header()

    def step_changed(self, step: _Step) -> None:
        row = self.rows[step.name]
        row.show_state(step, self.view._now())
        row.show_progress(step)

    def step_failed_early(self, step: _Step) -> None:
        self.step_changed(step)
        self.show_header()

    def task_retry(self, step: _Step, data: dict[str, Any]) -> None:
        self.rows[step.name].note.value = _note_html(step)

    def task_finished(self, step: _Step, data: dict[str, Any]) -> None:
        row = self.rows[step.name]
        row.duration.value = html.escape(step.duration_text(self.view._now()))
        row.note.value = _note_html(step)
        row.show_progress(step)
        self.maybe_show_header()

    def step_finished(self, step: _Step) -> None:
        self.step_changed(step)
        self.show_header()

    def close(self) -> None:
        self.show_header()
        if self.handle is not None:  # the saved notebook keeps the final summary as text
            self.handle.update(_Display(self.view))


class _Display:
    """What is displayed: the widget view, and the report as its plain-text alternative.

    As ipywidgets 8's own ``Widget._repr_mimebundle_``, but with the whole report as text/plain."""

    def __init__(self, view: ProgressView) -> None:
        self.view = view

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        return {
            "text/plain": self.view.report(),
            WIDGET_VIEW_MIMETYPE: {"version_major": 2, "version_minor": 0,
                                   "model_id": self.view.widget.model_id},
        }

    def __repr__(self) -> str:
        return self.view.report()


def _display(obj: _Display) -> Any:
    """Display ``obj`` in the IPython shell there is, and return its handle; None without a shell
    (``display`` would print it, and the view could never be updated)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display

    if not InteractiveShell.initialized():
        return None
    return display(obj, display_id=True)


__all__ = ["ProgressView", "error_line", "format_seconds"]
