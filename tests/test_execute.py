"""Where the cluster comes from: a scheduler address, a cluster class from config, the process's
own Client, or nbflow's LocalCluster; and what a missing one says."""

from __future__ import annotations

import dask.config
import pytest
from distributed import Client

from nbflow.client import Run
from nbflow.execute import ClusterError, Executor
from nbflow.runner import run_notebook

FLOW = ["%%step a\nx = 20", "%%step b\ny = x + 1"]


def test_a_cluster_class_from_config(notebook, store) -> None:
    settings = {
        "nbflow.cluster.class": "distributed.LocalCluster",
        "nbflow.cluster.kwargs": {"n_workers": 1, "threads_per_worker": 1, "processes": False,
                                  "dashboard_address": ":0"},
    }
    with dask.config.set(settings):
        executor = Executor.connect()
        try:
            run_id = run_notebook(notebook(FLOW), store=store, executor=executor)
            assert executor.kind == "class"
            assert executor.describe()["workers"] == 1
        finally:
            cluster = executor.client.cluster
            executor.client.close()
            cluster.close()
    r = Run(run_id, store)
    assert r["b"].task.outputs["y"].load() == 21
    assert r.to_json()["cluster"]["kind"] == "class"


def test_the_client_the_process_already_has(notebook, store, dask_client) -> None:
    with Client(dask_client.scheduler.address) as mine:  # becomes the default client
        executor = Executor.connect()
        run_id = run_notebook(notebook(FLOW), store=store, executor=executor)
        assert executor.kind == "existing"
        assert executor.client is mine
    assert Run(run_id, store)["b"].task.outputs["y"].load() == 21


def test_a_scheduler_address(notebook, store, dask_client) -> None:
    executor = Executor.connect(dask_client.scheduler.address)
    try:
        run_id = run_notebook(notebook(FLOW), store=store, executor=executor)
        assert executor.kind == "address"
    finally:
        executor.client.close()
    assert Run(run_id, store)["b"].task.outputs["y"].load() == 21


def test_a_cluster_class_that_does_not_import(notebook, store) -> None:
    with (
        dask.config.set({"nbflow.cluster.class": "dask_nowhere.NoCluster"}),
        pytest.raises(ClusterError, match="cannot import the cluster class 'dask_nowhere"),
    ):
        run_notebook(notebook(FLOW), store=store, executor=Executor.connect())
