"""The magics in real IPython kernels (ipykernel over ZeroMQ), on the session's real LocalCluster.

Each test starts a kernel whose nbflow config points at the test cluster's scheduler and a fresh
store, and talks to it with jupyter_client, the way JupyterLab does: timings are taken from the
kernel's own message timestamps, never from sleeping.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from nbflow.client import Run, list_runs
from nbflow.store import open_store


@dataclass
class Reply:
    """What one execute request produced on iopub, with each message's kernel timestamp."""

    status: str
    messages: list[tuple[str, dict[str, Any], dt.datetime]] = field(default_factory=list)

    def stream(self, name: str = "stdout") -> str:
        return "".join(c["text"] for t, c, _ in self.messages
                       if t == "stream" and c["name"] == name)

    @property
    def error(self) -> dict[str, Any] | None:
        return next((c for t, c, _ in self.messages if t == "error"), None)

    @property
    def result(self) -> dict[str, Any] | None:
        return next((c["data"] for t, c, _ in self.messages if t == "execute_result"), None)


class Kernel:
    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km, self.kc = km, kc

    def send(self, code: str) -> str:
        msg_id: str = self.kc.execute(code)
        return msg_id

    def collect(self, msg_id: str, timeout: float = 120, until: str | None = None) -> Reply:
        """iopub messages of ``msg_id`` until the kernel is idle (or a stream contains ``until``)."""
        reply = Reply("ok")
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                return reply
            reply.messages.append((kind, content, msg["header"]["date"]))
            if kind == "error":
                reply.status = "error"
            if until is not None and kind == "stream" and until in content["text"]:
                return reply

    def run(self, code: str, timeout: float = 120) -> Reply:
        return self.collect(self.send(code), timeout)


@contextlib.contextmanager
def started_kernel(env: dict[str, str], cwd: Path) -> Iterator[Kernel]:
    """A python3 kernel with ``env``, in ``cwd``, with nbflow loaded; shut down afterwards."""
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(cwd))
    k = Kernel(km, kc)
    try:
        assert k.run("%load_ext nbflow").status == "ok"
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path, dask_client: Client) -> Iterator[Kernel]:
    env = {**os.environ,
           "DASK_NBFLOW__CLUSTER__ADDRESS": dask_client.scheduler.address,
           "DASK_NBFLOW__STORE": str(tmp_path / "store"),
           "JPY_SESSION_NAME": str(tmp_path / "analysis.ipynb")}
    with started_kernel(env, tmp_path) as k:
        yield k


def test_output_streams_into_the_cell_while_the_step_runs(kernel) -> None:
    reply = kernel.run("%%step ticks\nimport time\nfor i in range(3):\n"
                       "    print('tick', i, flush=True)\n    time.sleep(1)\ndone = True")
    assert reply.status == "ok", reply.error
    ticks = [(c["text"], when) for t, c, when in reply.messages
             if t == "stream" and "tick" in c["text"]]
    assert [text.strip() for text, _ in ticks] == ["tick 0", "tick 1", "tick 2"]
    gaps = [(b - a).total_seconds() for (_, a), (_, b) in itertools.pairwise(ticks)]
    # The step prints once a second: each line must reach the cell on its own, about a second
    # after the previous one (all at the end would make the gaps ~0).
    assert all(0.6 < g < 2.5 for g in gaps), gaps


def test_the_last_expression_shows_as_the_cells_result(kernel) -> None:
    reply = kernel.run("%%step table\nimport pandas as pd\n"
                       "frame = pd.DataFrame({'city': ['Oslo', 'Lima'], 'n': [3, 4]})\nframe")
    assert reply.status == "ok", reply.error
    assert reply.result is not None
    assert "<table" in reply.result["text/html"] and "Oslo" in reply.result["text/html"]
    assert "Lima" in reply.result["text/plain"]
    assert kernel.run("print(type(frame).__name__)").stream() == "DataFrame\n"


def test_interrupting_the_kernel_cancels_the_task_on_the_cluster(kernel, dask_client,
                                                                  tmp_path) -> None:
    from nbflow.worker import running_tasks

    pids = dask_client.run(os.getpid)
    msg_id = kernel.send("%%step spin\nimport time\nprint('started', flush=True)\n"
                         "for _ in range(6000):\n    time.sleep(0.01)\nfinished = True")
    kernel.collect(msg_id, until="started")  # the task is running on a worker now
    assert any(dask_client.run(running_tasks).values())
    kernel.km.interrupt_kernel()
    reply = kernel.collect(msg_id)
    assert reply.status == "error" and reply.error is not None
    assert reply.error["traceback"] == [
        "nbflow: step 'spin' interrupted; its task was stopped on the cluster and recorded as "
        "cancelled"]
    # Stopped by an exception in its thread, not by restarting the workers.
    assert not any(dask_client.run(running_tasks).values())
    assert dask_client.run(os.getpid) == pids
    assert kernel.run("print(1 + 1)").stream() == "2\n"  # the kernel goes on
    assert kernel.run("print('finished' in dir())").stream() == "False\n"
    store = open_store(str(tmp_path / "store"))
    try:
        (run,) = list_runs(store=store)
        task = Run(run.id, store)["spin"].task
        assert task.status.value == "cancelled" and "interrupted" in (task.error or "")
    finally:
        store.close()


def test_bad_input_is_one_line_and_the_kernel_goes_on(kernel) -> None:
    reply = kernel.run("%%step a --retyr 2\nx = 1")
    assert reply.status == "error" and reply.error is not None
    assert reply.error["traceback"] == [
        "nbflow: cell 2, line 1: unknown option --retyr in '%%step a --retyr 2'. Known options: "
        "--foreach, --retry, --timeout, --catch, --force. Fix: did you mean --retry?"]
    assert kernel.run("print('still here')").stream() == "still here\n"


def test_nbflow_run_shows_a_widget_view_that_ends_as_text(kernel, tmp_path) -> None:
    from conftest import write_notebook

    # The kernel's own notebook, as the Jupyter server tells it (JPY_SESSION_NAME): no path needed.
    write_notebook(tmp_path / "analysis.ipynb", [
        "%load_ext nbflow", "%%step one\nx = 1", "%%step many --foreach i in range(5)\ny = i * x",
        "%nbflow run"])
    reply = kernel.run("%nbflow run")
    assert reply.status == "ok", reply.error
    shown = [(t, c) for t, c, _ in reply.messages if t in ("display_data", "update_display_data")]
    first_kind, first = shown[0]
    assert first_kind == "display_data"
    view = first["data"]["application/vnd.jupyter.widget-view+json"]
    assert view["version_major"] == 2 and view["model_id"]
    display_id = first["transient"]["display_id"]
    last_kind, last = shown[-1]
    assert last_kind == "update_display_data" and last["transient"]["display_id"] == display_id
    final = last["data"]["text/plain"]
    assert "succeeded" in final and "5/5" in final and "one" in final and "many" in final
    # The widgets' own state travels as comm messages, which JupyterLab renders.
    assert any(t == "comm_open" for t, _, _ in reply.messages)
    assert "nbflow: run " in reply.stream() and "succeeded (6 succeeded)" in reply.stream()
