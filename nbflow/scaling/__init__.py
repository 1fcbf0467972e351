"""Scale this cell: add a worker of the size a ``%%resources`` request needs, retire it when idle.

``scaler_for(cluster)`` gives the ``Scaler`` for the cluster manager nbflow runs on, or ``None``
for a cluster nbflow cannot grow (a bare scheduler address). A scaler asks its manager through the
manager's own API:

- ``distributed.LocalCluster`` (the default): a worker process of the requested size, when this
  machine has that much memory and that many cores (``nbflow.scaling.local``);
- ``dask_jobqueue`` clusters (SLURM, PBS, ...): one batch job sized to the request
  (``nbflow.scaling.jobqueue``);
- ``dask_kubernetes`` operator ``KubeCluster``: a worker group of one pod with those requests and
  limits (``nbflow.scaling.kubernetes``);
- ``dask_gateway`` ``GatewayCluster``: the gateway's worker size options
  (``nbflow.scaling.gateway``).

Every worker a scaler starts declares its size as the Dask worker resources ``memory`` (bytes),
``cpus`` and ``gpus``, the names ``%%resources`` asks for. The executor (``nbflow.execute``) waits
for the worker, watches it, and calls ``retire`` once it has been idle for
``nbflow.scaling.idle-timeout``. ``new_cluster_kwargs`` sizes a dask-gateway cluster, whose
workers can only be sized when it is made, for the largest request a run knows of.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from typing import Any

import dask.utils

# Where each cluster manager's scaler lives: (module prefix of the manager's class, class name or
# None for any class of that module) -> nbflow module with a ``scaler(cluster)`` factory.
_SCALERS: list[tuple[str, str | None, str]] = [
    ("distributed.deploy.local", "LocalCluster", "nbflow.scaling.local"),
    ("dask_jobqueue", None, "nbflow.scaling.jobqueue"),
    ("dask_kubernetes.operator", "KubeCluster", "nbflow.scaling.kubernetes"),
    ("dask_gateway", "GatewayCluster", "nbflow.scaling.gateway"),
]


class Scaler(ABC):
    """Adds workers of a requested size to one cluster manager, and removes them again."""

    #: What the docs and messages call this kind of cluster ("LocalCluster", "SLURMCluster", ...).
    kind: str = "cluster"
    #: False for a manager that can never add a worker of a chosen size (it only explains why).
    grows: bool = True

    def limits(self) -> dict[str, float] | None:
        """The most one new worker can have (``memory`` in bytes, ``cpus``, ``gpus``), or ``None``
        when the manager does not say (a batch queue, a Kubernetes cluster)."""
        return None

    @abstractmethod
    def refuse(self, wanted: dict[str, float]) -> str | None:
        """``None`` if this manager can start a worker declaring at least ``wanted`` (Dask worker
        resources: ``memory`` in bytes, ``cpus``, ``gpus``); otherwise why not, and which settings
        of the cluster would serve the request."""

    @abstractmethod
    def add(self, wanted: dict[str, float]) -> Any:
        """Ask the manager for one worker declaring at least ``wanted``; return a handle for
        ``retire``. Returns once asked: the executor waits for the worker to join."""

    @abstractmethod
    def retire(self, handle: Any) -> None:
        """Stop the worker(s) ``add`` asked for (gracefully: the scheduler moves their data)."""


class ScalingError(Exception):
    """A cluster cannot be made with workers of the size a run needs."""


def new_cluster_kwargs(class_path: str, kwargs: dict[str, Any],
                       wanted: dict[str, float]) -> dict[str, Any]:
    """The keyword arguments to make a ``class_path`` cluster with, so that its workers serve
    ``wanted`` (the largest request the run knows of when it makes the cluster). Only
    dask-gateway needs this: its workers' size is fixed when the cluster is made, while the
    other managers add a worker of the right size when a step asks (``Scaler.add``)."""
    if wanted and class_path.startswith("dask_gateway."):
        from nbflow.scaling.gateway import sized_kwargs

        return sized_kwargs(kwargs, wanted)
    return kwargs


def scaler_for(cluster: Any) -> Scaler | None:
    """The scaler for a cluster manager object, or ``None`` if nbflow cannot add workers to it."""
    if cluster is None:
        return None
    for cls in type(cluster).__mro__:
        for module, name, scaler_module in _SCALERS:
            if cls.__module__.startswith(module) and (name is None or cls.__name__ == name):
                factory = importlib.import_module(scaler_module).scaler
                result: Scaler | None = factory(cluster)
                return result
    return None


# -- helpers the scalers share ---------------------------------------------------------------


def worker_resources_arg(wanted: dict[str, float]) -> str:
    """``wanted`` as the value of ``dask worker --resources`` (``memory=8000000000,cpus=2``)."""
    return ",".join(f"{k}={int(v) if float(v).is_integer() else v}"
                    for k, v in sorted(wanted.items()))


def cores(wanted: dict[str, float]) -> int:
    """Whole cores (threads) for a worker that must declare ``wanted["cpus"]`` (at least 1)."""
    return max(1, math.ceil(wanted.get("cpus", 1)))


def memory_text(n: float) -> str:
    """A size for cluster managers that parse sizes: whole MiB, rounded up (``7630MiB``)."""
    return f"{math.ceil(n / 2**20)}MiB"


def describe(wanted: dict[str, float]) -> str:
    """``wanted`` for people: ``memory=8 GB (7.45 GiB) cpus=2``."""
    parts = []
    for k in ("memory", "cpus", "gpus"):
        if k in wanted:
            v = wanted[k]
            parts.append(f"memory={v / 1e9:.3g} GB ({dask.utils.format_bytes(int(v))})"
                         if k == "memory" else f"{k}={v:g}")
    return " ".join(parts)


__all__ = ["Scaler", "ScalingError", "cores", "describe", "memory_text", "scaler_for", "worker_resources_arg"]
