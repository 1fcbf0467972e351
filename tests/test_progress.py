"""The progress view: text lines outside a kernel, ipywidgets (without a kernel) and what is displayed."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Any

import ipywidgets
import pytest
import traitlets
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from nbflow.progress import (
    HEADER_INTERVAL,
    WIDGET_VIEW_MIMETYPE,
    ProgressView,
    error_line,
    format_seconds,
)

SCRIPT_ERROR = ('Traceback (most recent call last):\n  File "<cell 4>", line 2, in <module>\n'
                '    raise ValueError("<script>alert(1)</script>")\n'
                "ValueError: <script>alert(1)</script>\n")
COLUMNS = ("name", "state", "duration", "progress", "note")


class ClockedView(ProgressView):
    """A view whose clock the test moves by hand, so durations are exact."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.clock = 100.0
        super().__init__(*args, **kwargs)

    def _now(self) -> float:
        return self.clock


@pytest.fixture
def shell() -> Iterator[CapturedIO]:
    """A real IPython shell (no kernel) whose display outputs are captured."""
    main = sys.modules["__main__"]  # an InteractiveShell replaces it; see test_magics
    InteractiveShell.instance()
    try:
        with capture_output(stdout=False, stderr=False) as captured:
            yield captured
    finally:
        sys.modules["__main__"] = main


def feed(view: ProgressView, *events: tuple[str, dict[str, Any]]) -> None:
    for kind, data in events:
        view.event(kind, data)


def foreach(view: ClockedView, step: str, n: int, failed: Collection[int] = (), seconds: float = 0.0,
            retried: Collection[int] = ()) -> None:
    """step-started, then task-started and task-finished for each of ``n`` items (``seconds`` each),
    with a failed first attempt for the ``retried`` ones."""
    view.event("step-started", {"step": step, "tasks": n})
    for i in range(n):
        view.event("task-started", {"step": step, "index": i, "attempt": 1})
        if i in retried:
            view.event("task-retry", {"step": step, "index": i, "attempt": 1, "error": "OSError: flaky"})
            view.event("task-started", {"step": step, "index": i, "attempt": 2})
        view.clock += seconds
        if i in failed:
            view.event("task-finished", {"step": step, "index": i, "status": "failed",
                                         "error": SCRIPT_ERROR, "caught": False})
        else:
            view.event("task-finished", {"step": step, "index": i, "status": "succeeded",
                                         "duration": seconds})


def row(view: ProgressView, step: str) -> dict[str, Any]:
    """The widgets of ``step``'s row: the grid holds a title row, then 5 cells per step."""
    grid = view.widget.children[1]
    names = [cell.value for cell in grid.children[5::5]]
    at = names.index(f"<b>{step}</b>")
    return dict(zip(COLUMNS, grid.children[5 * (at + 1):5 * (at + 2)], strict=True))


def whole_run(view: ClockedView) -> None:
    """A run: a plain step, a cached step, a foreach of 50 (2 failures, one retry), a failing step
    whose error holds <script>, a step cancelled before it ran; plus events to ignore."""
    feed(view, ("run-started", {"run": "R2"}), ("cell-started", {"cell": 1}),
         ("something-new", {"step": "load"}),
         ("step-started", {"step": "load", "tasks": 1}),
         ("task-started", {"step": "load", "index": None, "attempt": 1}))
    view.clock += 1.25
    feed(view, ("task-finished", {"step": "load", "index": None, "status": "succeeded", "duration": 1.0}),
         ("step-finished", {"step": "load", "ok": True}),
         ("step-started", {"step": "prep", "tasks": 1}),
         ("task-finished", {"step": "prep", "index": None, "status": "cached", "from": "R1"}),
         ("step-finished", {"step": "prep", "ok": True}))
    foreach(view, "fit", 50, failed={3, 30}, seconds=0.5, retried={7})
    feed(view, ("step-finished", {"step": "fit", "ok": False}),
         ("step-started", {"step": "plot", "tasks": 1}),
         ("task-started", {"step": "plot", "index": None, "attempt": 1}),
         ("task-retry", {"step": "plot", "index": None, "attempt": 1, "error": SCRIPT_ERROR}),
         ("task-started", {"step": "plot", "index": None, "attempt": 2}),
         ("task-finished", {"step": "plot", "index": None, "status": "failed", "error": SCRIPT_ERROR}),
         ("step-finished", {"step": "plot", "ok": False}),
         ("task-finished", {"step": "report", "status": "cancelled",
                            "error": "upstream step 'plot' did not succeed"}))
    view.clock += 0.5
    feed(view, ("run-finished", {"run": "R2", "status": "failed", "error": None}))


STEPS = ["load", "prep", "fit", "plot", "report"]


# -- text mode ------------------------------------------------------------------------------------
def test_text_mode_writes_a_line_per_change_and_the_summary_on_close() -> None:
    out = io.StringIO()
    view = ClockedView(STEPS, title="quickstart", widgets=False, out=out)
    whole_run(view)
    view.close()
    view.close()  # idempotent: the summary is written once
    feed(view, ("step-started", {"step": "load", "tasks": 1}))  # after close: ignored
    progress = [f"nbflow: fit {n}/50 done ({2 if n >= 35 else 1} failed)" for n in range(5, 51, 5)]
    assert out.getvalue().splitlines() == [
        "nbflow: quickstart: run R2 started",
        "nbflow: load started",
        "nbflow: load succeeded (1.00 s)",
        "nbflow: load finished: succeeded in 1.25 s",
        "nbflow: prep started",
        "nbflow: prep cached (from run R1)",
        "nbflow: prep finished: cached in 0.00 s",
        "nbflow: fit started (50 tasks)",
        "nbflow: fit[3] failed: ValueError: <script>alert(1)</script>",
        *progress,
        "nbflow: fit finished: failed in 25.0 s (2 failed; ValueError: <script>alert(1)</script>)",
        "nbflow: plot started",
        "nbflow: plot attempt 1 failed; retrying: ValueError: <script>alert(1)</script>",
        "nbflow: plot failed: ValueError: <script>alert(1)</script>",
        "nbflow: plot finished: failed in 0.00 s",
        "nbflow: report cancelled: upstream step 'plot' did not succeed",
        "nbflow: run R2 failed in 26.8 s",
        "nbflow: step    state      duration  tasks  note",
        "nbflow: load    succeeded    1.25 s    1/1",
        "nbflow: prep    cached       0.00 s    1/1  cached (from run R1)",
        "nbflow: fit     failed       25.0 s  50/50  2 failed; ValueError: <script>alert(1)</script>",
        "nbflow: plot    failed       0.00 s    1/1  ValueError: <script>alert(1)</script>",
        "nbflow: report  cancelled                   upstream step 'plot' did not succeed",
    ]


@pytest.mark.parametrize("n", [2, 3, 10, 11, 99, 1000])
def test_text_mode_foreach_progress_is_at_most_ten_lines_ending_at_the_total(n: int) -> None:
    out = io.StringIO()
    view = ClockedView(["fit"], widgets=False, out=out)
    foreach(view, "fit", n)
    lines = [line for line in out.getvalue().splitlines() if " done" in line]
    assert len(lines) == min(n, 10)
    assert lines[-1] == f"nbflow: fit {n}/{n} done"
    done = [int(line.split()[2].split("/")[0]) for line in lines]
    assert done == sorted(set(done))


def test_text_mode_foreach_all_cached_is_marked_cached() -> None:
    out = io.StringIO()
    view = ClockedView(["fit"], widgets=False, out=out)
    view.event("step-started", {"step": "fit", "tasks": 4})
    for i in range(4):
        view.event("task-finished", {"step": "fit", "index": i, "status": "cached", "from": "R1"})
    view.event("step-finished", {"step": "fit", "ok": True})
    assert out.getvalue().splitlines()[-2:] == [
        "nbflow: fit 4/4 done (4 cached)",
        "nbflow: fit finished: cached in 0.00 s (cached (from run R1))",
    ]
    assert view.summary().splitlines()[1].split() == ["fit", "cached", "0.00", "s", "4/4", "cached",
                                                      "(from", "run", "R1)"]


def test_widgets_none_outside_a_kernel_means_text(shell: CapturedIO) -> None:
    out = io.StringIO()
    view = ProgressView(["load"], widgets=None, out=out)  # a shell, but no kernel
    view.event("run-started", {"run": "R9"})
    assert view.widget is None
    assert out.getvalue() == "nbflow: run R9 started\n"
    assert shell.outputs == []


def test_a_bad_event_is_reported_once_and_never_raised(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    view = ProgressView(["load"], widgets=False, out=out)
    view.event("step-started", {"step": "load", "tasks": "many"})
    view.event("step-started", {"step": "load", "tasks": "several"})
    view.event("step-started", {"step": "load", "tasks": 1})
    assert capsys.readouterr().err.count("could not show a 'step-started' event") == 1
    assert out.getvalue().splitlines()[-1] == "nbflow: load started"


def test_summary_before_any_event_has_every_step_pending() -> None:
    view = ProgressView(["load", "a_much_longer_step"], widgets=False, out=io.StringIO())
    assert view.summary() == ("step                state    duration  tasks  note\n"
                              "load                pending\n"
                              "a_much_longer_step  pending")


def test_a_step_not_announced_gets_a_row() -> None:
    view = ClockedView(["load"], widgets=False, out=io.StringIO())
    feed(view, ("step-started", {"step": "extra", "tasks": 1}))
    assert [line.split()[:2] for line in view.summary().splitlines()[1:]] == [
        ["load", "pending"], ["extra", "running"]]


def test_error_line_and_durations() -> None:
    assert error_line(SCRIPT_ERROR) == "ValueError: <script>alert(1)</script>"
    assert error_line("while loading inputs: Traceback (most recent call last):\n  File x\n"
                      "KeyError: 'a'") == "KeyError: 'a'"
    assert error_line("step 'x' ran longer than its --timeout of 2 s\nmore") == (
        "step 'x' ran longer than its --timeout of 2 s")
    assert error_line("x" * 500).endswith("…") and len(error_line("x" * 500)) == 160
    assert error_line(None) == ""
    assert [format_seconds(s) for s in (0.5, 12.34, 245, 7380)] == ["0.50 s", "12.3 s", "4m 05s",
                                                                   "2h 03m"]


# -- widget mode ----------------------------------------------------------------------------------
def test_widget_rows_show_states_bars_and_escaped_text(shell: CapturedIO) -> None:
    view = ClockedView([*STEPS, "<script>x</script>"], title="<b>qs</b>", widgets=True)
    assert isinstance(view.widget, ipywidgets.VBox)
    assert "pending" in row(view, "fit")["state"].value
    whole_run(view)

    assert [
        (s, _text(row(view, s)["state"].value), row(view, s)["duration"].value) for s in STEPS
    ] == [("load", "succeeded", "1.25 s"), ("prep", "cached", "0.00 s"), ("fit", "failed", "25.0 s"),
          ("plot", "failed", "0.00 s"), ("report", "cancelled", "")]
    assert _text(row(view, "prep")["note"].value) == "cached (from run R1)"
    assert row(view, "load")["progress"].children == ()  # one task: no bar
    bar, count = row(view, "fit")["progress"].children
    assert isinstance(bar, ipywidgets.IntProgress)
    assert (bar.value, bar.max, bar.bar_style) == (50, 50, "danger")
    assert count.value == "50/50 · 2 failed"
    note = row(view, "plot")["note"].value
    assert "<script>" not in note and "ValueError: &lt;script&gt;alert(1)&lt;/script&gt;" in note
    assert "<script>" not in row(view, "fit")["note"].value
    header = view.widget.children[0].value
    assert header.startswith("<b>&lt;b&gt;qs&lt;/b&gt;</b> · run R2 · ") and "failed" in header
    # An unused step whose name holds markup: escaped, and cancelled by the end of the run.
    assert row(view, "&lt;script&gt;x&lt;/script&gt;")["state"].value.endswith(">cancelled</span>")
    view.close()
    assert view.summary().splitlines()[3].split()[:5] == ["fit", "failed", "25.0", "s", "50/50"]


def test_widget_caught_failures_and_all_succeeded_bar_styles(shell: CapturedIO) -> None:
    view = ClockedView(["ok", "caught"], widgets=True)
    foreach(view, "ok", 3)
    view.event("step-finished", {"step": "ok", "ok": True})
    view.event("step-started", {"step": "caught", "tasks": 2})
    view.event("task-finished", {"step": "caught", "index": 0, "status": "failed", "error": "E: x",
                                 "caught": True})
    view.event("task-finished", {"step": "caught", "index": 1, "status": "succeeded", "duration": 1})
    view.event("step-finished", {"step": "caught", "ok": True})
    assert row(view, "ok")["progress"].children[0].bar_style == "success"
    bar, count = row(view, "caught")["progress"].children
    assert (bar.bar_style, count.value) == ("warning", "2/2 · 1 failed (caught)")
    assert _text(row(view, "caught")["state"].value) == "succeeded"
    assert _text(row(view, "caught")["note"].value) == "1 failed (caught); E: x"


def test_a_large_foreach_touches_only_its_own_row(shell: CapturedIO) -> None:
    view = ClockedView(["load", "fit", "plot"], widgets=True)
    feed(view, ("run-started", {"run": "R3"}), ("step-started", {"step": "load", "tasks": 1}),
         ("task-finished", {"step": "load", "index": None, "status": "succeeded", "duration": 1}),
         ("step-finished", {"step": "load", "ok": True}))
    view.event("step-started", {"step": "fit", "tasks": 1000})
    changes: Counter[str] = Counter()

    def watch(where: str, widget: Any) -> None:
        widget.observe(lambda change: changes.update([f"{where}.{change['name']}"]), names=traitlets.All)

    grid = view.widget.children[1]
    watch("grid", grid)
    watch("header", view.widget.children[0])
    for step in ("load", "plot"):
        for column, widget in row(view, step).items():
            watch(f"{step}.{column}", widget)
    fit = row(view, "fit")
    bar, count = fit["progress"].children
    for column, widget in [*fit.items(), ("bar", bar), ("count", count)]:
        watch(f"fit.{column}", widget)

    for i in range(1000):
        view.event("task-started", {"step": "fit", "index": i, "attempt": 1})
        view.clock += HEADER_INTERVAL if i == 999 else 0.0001  # the header's refresh waits a second
        status = "failed" if i == 500 else "succeeded"
        view.event("task-finished", {"step": "fit", "index": i, "status": status, "duration": 0.0001,
                                     "error": SCRIPT_ERROR if i == 500 else None})

    assert {key for key in changes if not key.startswith("fit.")} == {"header.value"}
    assert changes["header.value"] == 1  # the elapsed time, refreshed at most once a second
    assert changes["fit.bar.value"] == 1000
    assert changes["fit.count.value"] == 1000
    assert changes["fit.bar.bar_style"] == 1  # turns "danger" at the failure
    assert changes["fit.note.value"] == 1  # the first error's line
    assert sum(changes.values()) <= 3 * 1000 + 50
    assert (bar.value, count.value) == (1000, "1000/1000 · 1 failed")
    assert len(grid.children) == 5 * 4  # never rebuilt


def test_the_display_carries_the_widget_view_and_the_summary(shell: CapturedIO) -> None:
    view = ClockedView(["load", "fit"], title="qs", widgets=True)
    assert len(shell.outputs) == 1
    first = shell.outputs[0]
    model = {"version_major": 2, "version_minor": 0, "model_id": view.widget.model_id}
    assert first.data[WIDGET_VIEW_MIMETYPE] == model
    assert first.data["text/plain"].splitlines() == [
        "qs · starting · 0.00 s", "step  state    duration  tasks  note", "load  pending",
        "fit   pending"]
    assert first.update is False
    display_id = first.transient["display_id"]

    feed(view, ("run-started", {"run": "R4"}), ("step-started", {"step": "load", "tasks": 1}),
         ("task-finished", {"step": "load", "index": None, "status": "cached", "from": "R1"}),
         ("step-finished", {"step": "load", "ok": True}))
    foreach(view, "fit", 4, seconds=1.0)
    feed(view, ("step-finished", {"step": "fit", "ok": True}),
         ("run-finished", {"run": "R4", "status": "succeeded", "error": None}))
    assert len(shell.outputs) == 1  # events update the widgets, not the output
    view.close()
    view.close()
    assert len(shell.outputs) == 2
    final = shell.outputs[1]
    assert (final.update, final.transient["display_id"]) == (True, display_id)
    assert final.data[WIDGET_VIEW_MIMETYPE] == model
    assert final.data["text/plain"] == "qs · run R4 · succeeded · 4.00 s\n" + view.summary()
    assert view.summary().splitlines()[1:] == [
        "load  cached       0.00 s    1/1  cached (from run R1)",
        "fit   succeeded    4.00 s    4/4"]


def test_widgets_without_an_ipython_shell_display_nothing() -> None:
    """In a plain Python process ``display`` would print the initial state: nothing is shown."""
    code = ("from nbflow.progress import ProgressView\n"
            "view = ProgressView(['load'], widgets=True)\n"
            "view.event('run-started', {'run': 'R5'})\n"
            "view.close()\n"
            "print(type(view.widget).__name__, view.summary().splitlines()[1].split())\n")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                          check=True)
    assert (done.stdout, done.stderr) == ("VBox ['load', 'pending']\n", "")


def _text(markup: str) -> str:
    """The text of a one-element HTML value, e.g. ``<span ...>failed</span>`` -> ``failed``."""
    return markup[markup.index(">") + 1:markup.rindex("</")] if markup else ""
