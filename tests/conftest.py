"""Shared fixtures: a real LocalCluster with worker processes, a fresh store, notebooks on disk."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import nbformat
import psutil
import pytest
from distributed import Client, LocalCluster

from nbflow.execute import Executor
from nbflow.store import Store, open_store

WORKER_MEMORY = 2 * 2**30


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """Two single-threaded worker processes declaring memory and cpus, as nbflow's default does."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=WORKER_MEMORY,
            resources={"memory": WORKER_MEMORY, "cpus": 1},
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture
def executor(dask_client: Client) -> Executor:
    return Executor(dask_client, "existing")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = open_store(str(tmp_path / "store"))
    yield st
    st.close()


def write_notebook(path: Path, cells: Sequence[str | tuple[str, Sequence[str]]]) -> Path:
    """A notebook of code cells; a cell given as (source, tags) carries those tags."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for cell in cells:
        source, tags = (cell, ()) if isinstance(cell, str) else cell
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)}))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def notebook(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``notebook(cells, name="flow")`` writes a notebook in tmp_path and returns its path."""

    def make(cells: Sequence[str | tuple[str, Sequence[str]]], name: str = "flow") -> Path:
        return write_notebook(tmp_path / f"{name}.ipynb", cells)

    return make


@pytest.fixture(autouse=True)
def _no_leaked_children() -> Iterator[None]:
    """Tests must not leave processes behind (besides the session cluster's workers)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    after = psutil.Process().children(recursive=True)
    leaked = [p for p in after if p.pid not in before and p.is_running()
              and p.status() != psutil.STATUS_ZOMBIE and not _is_dask_worker(p)]
    for p in leaked:
        p.kill()
    assert not leaked, f"leaked processes: {[p.cmdline() for p in leaked]}"


def _is_dask_worker(p: psutil.Process) -> bool:
    # The session cluster's worker processes start with whichever test first needs them.
    try:
        return "multiprocessing" in " ".join(p.cmdline())
    except psutil.Error:
        return False
