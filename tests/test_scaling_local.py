"""Scale this cell on the default LocalCluster, for real: a ``%%resources`` request bigger than every
worker but within this machine starts a worker process of that size, which runs the step and is
retired once idle; a request beyond the machine is refused, naming the settings that would serve it.
"""

from __future__ import annotations

import ast
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import psutil
import pytest
from distributed import Client, LocalCluster
from test_kernel import Kernel, started_kernel

from nbflow.client import Run
from nbflow.execute import Executor, ResourceError
from nbflow.model import Resources
from nbflow.runner import run_notebook
from nbflow.scaling import scaler_for
from nbflow.scaling.local import LocalScaler
from nbflow.store import Store

SMALL = 2**30  # what each worker of the test cluster declares


@pytest.fixture
def small_cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """One single-threaded worker declaring 1 GiB: every request below is bigger than it."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0,
                         "nbflow.scaling.idle-timeout": "1s"}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=SMALL,
                     resources={"memory": SMALL, "cpus": 1}, dashboard_address=":0",
                     silence_logs=logging.ERROR) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield cluster, client


def _workers(client: Client) -> dict[str, dict[str, Any]]:
    workers: dict[str, dict[str, Any]] = client.scheduler_info(n_workers=-1)["workers"]
    return workers


def _wait_gone(client: Client, address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while address in _workers(client):
        assert time.monotonic() < deadline, f"{address} was not retired within {timeout} s"
        time.sleep(0.2)


def test_the_local_cluster_has_a_scaler(small_cluster: tuple[LocalCluster, Client]) -> None:
    cluster, client = small_cluster
    assert isinstance(scaler_for(cluster), LocalScaler)
    assert scaler_for(None) is None
    assert scaler_for(object()) is None
    # The cluster's description says so, with this machine as the limit (the scale dialog shows it).
    assert Executor(client, "local").describe()["scaling"] == {
        "manager": "LocalCluster",
        "limits": {"memory": psutil.virtual_memory().total, "cpus": psutil.cpu_count(),
                   "gpus": 0}}
    with Client(cluster.scheduler_address, set_as_default=False) as bare:
        assert Executor(bare, "address").describe()["scaling"] is None


def test_a_step_bigger_than_every_worker_gets_a_worker_of_its_size_then_it_is_retired(
        small_cluster: tuple[LocalCluster, Client], store: Store, notebook: Any,
        tmp_path: Path) -> None:
    cluster, client = small_cluster
    before = set(_workers(client))
    nb = notebook([
        "%%step small\nbase = 20",
        # Two steps of the same size: the second is served by the worker started for the first.
        "%%resources memory=3G cpus=2\n%%step big\nimport threading\n"
        "size = base * 2\nthreads = threading.active_count()",
        "%%resources memory=3G\n%%step bigger\ntotal = size + 1",
    ])
    executor = Executor(client, "local")
    run_id = run_notebook(nb, store=store, executor=executor)
    run = Run(run_id, store)
    assert run.status.value == "succeeded", run.error
    assert run["bigger"].task.outputs["total"].load() == 41
    big, bigger = (run[s].task.worker for s in ("big", "bigger"))
    # Asked for when `big` is submitted, not when the run starts: `small` ran on the old worker.
    assert run["small"].task.worker in before
    assert big not in before and big == bigger, (big, bigger, before)
    info = _workers(client)[big]
    assert info["resources"]["memory"] >= 3e9 and info["resources"]["cpus"] == 2
    assert info["nthreads"] == 2 and info["memory_limit"] >= 3e9
    assert [n for n in map(str, cluster.worker_spec) if n.startswith("nbflow-scaled-")] == ["nbflow-scaled-1"]
    assert executor.scaled_workers == [big]
    # Idle for nbflow.scaling.idle-timeout (1 s here): retired, and gone from the cluster's spec.
    _wait_gone(client, big)
    assert not [n for n in map(str, cluster.worker_spec) if n.startswith("nbflow-scaled-")]
    assert set(_workers(client)) == before
    assert executor.scaled_workers == []


def test_a_retired_size_is_started_again_when_asked_again(
        small_cluster: tuple[LocalCluster, Client]) -> None:
    _, client = small_cluster
    executor = Executor(client, "local")
    request = Resources(memory=2_500_000_000)
    before = set(_workers(client))
    executor.check_resources(request, "step 'a'")  # possible, so no error; nothing started yet
    assert executor.scaled_workers == [] and set(_workers(client)) == before
    executor.check_resources(request, "step 'a'", scale=True)
    (first,) = executor.scaled_workers
    _wait_gone(client, first)
    executor.check_resources(request, "step 'a'", scale=True)
    (second,) = executor.scaled_workers
    assert second != first and second in _workers(client)
    _wait_gone(client, second)


def test_a_busy_scaled_worker_is_not_retired(small_cluster: tuple[LocalCluster, Client],
                                             store: Store, notebook: Any) -> None:
    _, client = small_cluster
    executor = Executor(client, "local")
    samples: list[set[str]] = []
    stop = threading.Event()

    def watch() -> None:  # the scheduler's workers, five times a second, while the run runs
        while not stop.is_set():
            samples.append(set(_workers(client)))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    # The step runs for 4 s, four times the idle timeout: its worker must stay for all of it.
    nb = notebook(["%%resources memory=2G\n%%step slow\nimport time\ntime.sleep(4)\ndone = 1"])
    try:
        run = Run(run_notebook(nb, store=store, executor=executor), store)
    finally:
        stop.set()
        watcher.join()
    assert run.status.value == "succeeded", run.error
    worker = run["slow"].task.worker
    first = next(i for i, seen in enumerate(samples) if worker in seen)
    assert len(samples) - first >= 15  # about 4 s of samples while it ran
    assert all(worker in seen for seen in samples[first:])
    _wait_gone(client, worker)


def test_a_request_beyond_this_machine_names_the_settings_that_would_serve_it(
        small_cluster: tuple[LocalCluster, Client]) -> None:
    cluster, client = small_cluster
    too_much = 2 * psutil.virtual_memory().total
    executor = Executor(client, "local")
    with pytest.raises(ResourceError) as err:
        executor.check_resources(Resources(memory=too_much), "step 'huge' (cell 3)")
    message = str(err.value)
    assert message.startswith("step 'huge' (cell 3) asks for memory=")
    assert "largest worker" in message and "this machine is too small" in message
    assert "nbflow.cluster.address" in message and "dask_jobqueue.SLURMCluster" in message
    assert "docs/laptop-to-cluster.md" in message
    with pytest.raises(ResourceError, match=r"it has \d+ cores"):
        executor.check_resources(Resources(cpus=(psutil.cpu_count() or 1) + 1), "step 'wide'")
    with pytest.raises(ResourceError, match="it has no GPU"):
        executor.check_resources(Resources(gpus=1), "step 'gpu'")
    assert not [n for n in map(str, cluster.worker_spec) if n.startswith("nbflow-scaled-")]


def test_a_cluster_nbflow_cannot_grow_says_how_to_get_bigger_workers(
        small_cluster: tuple[LocalCluster, Client]) -> None:
    cluster, _ = small_cluster
    # A client of the bare scheduler address: no cluster manager behind it to ask.
    with Client(cluster.scheduler_address, set_as_default=False) as bare:
        executor = Executor(bare, "address")
        with pytest.raises(ResourceError) as err:
            executor.check_resources(Resources(memory=3_000_000_000), "step 'big'")
    assert "no worker can ever provide it" in str(err.value)
    assert '--resources "memory=3000000000"' in str(err.value)


# -- in a kernel, as "scale this cell" in JupyterLab does it ----------------------------------


@pytest.fixture
def local_kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A kernel on its own default LocalCluster: two workers, each half of this machine."""
    env = {**os.environ,
           "DASK_NBFLOW__STORE": str(tmp_path / "store"),
           "DASK_NBFLOW__CLUSTER__N_WORKERS": "2",
           "DASK_NBFLOW__SCALING__IDLE_TIMEOUT": "2s",
           "JPY_SESSION_NAME": str(tmp_path / "analysis.ipynb")}
    env.pop("DASK_NBFLOW__CLUSTER__ADDRESS", None)
    with started_kernel(env, tmp_path) as k:
        yield k


def _cluster(kernel: Kernel) -> dict[str, Any]:
    reply = kernel.run("%nbflow cluster")
    assert reply.status == "ok" and reply.result is not None, reply.error
    described: dict[str, Any] = ast.literal_eval(reply.result["text/plain"])
    return described


@pytest.mark.timeout(240)
def test_scale_this_cell_in_a_kernel_starts_a_bigger_local_worker_and_retires_it(
        local_kernel: Kernel) -> None:
    total = psutil.virtual_memory().total
    before = _cluster(local_kernel)
    assert before["kind"] == "local" and before["workers"] == 2
    # More than either worker (half the machine each), less than the machine.
    wanted = int(total * 0.75)
    assert wanted > before["largest_worker"]["memory"]
    reply = local_kernel.run(f"%%resources memory={wanted} cpus=1\n%%step big\n"
                             "import os\npid = os.getpid()\nprint('ran in', pid)")
    assert reply.status == "ok", reply.error
    assert "ran in" in reply.stream()
    during = _cluster(local_kernel)
    assert during["workers"] == 3
    assert during["largest_worker"]["memory"] >= wanted
    # Idle for 2 s (DASK_NBFLOW__SCALING__IDLE_TIMEOUT): retired.
    deadline = time.monotonic() + 60
    while _cluster(local_kernel)["workers"] != 2:
        assert time.monotonic() < deadline, "the scaled worker was not retired"
        time.sleep(0.5)
    # Beyond the machine: one clear line, nothing started.
    reply = local_kernel.run(f"%%resources memory={2 * total}\n%%step huge\nx = 1")
    assert reply.status == "error" and reply.error is not None
    message = reply.error["evalue"]
    assert "this machine is too small" in message and "nbflow.cluster.address" in message
    assert "Traceback" not in "".join(reply.error["traceback"])
    assert _cluster(local_kernel)["workers"] == 2
