"""Scale this cell on the dask-kubernetes operator's ``KubeCluster``: a worker group of one pod.

``KubeScaler.add`` calls ``cluster.add_worker_group(name, n_workers=1, resources=...,
worker_command=...)``: the operator creates a ``DaskWorkerGroup`` whose one pod requests (and is
limited to) the requested ``memory`` (Mi), ``cpu`` (whole cores) and ``nvidia.com/gpu``, and whose
``dask worker`` command runs that many threads with that memory limit and declares the size as the
Dask resources ``memory``, ``cpus`` and ``gpus`` (``--resources``). ``retire`` calls
``cluster.delete_worker_group(name)``. The group's image and environment are the cluster's; for a
cluster made from a ``custom_cluster_spec``, the group is a copy of that spec's worker (image,
volumes, node selectors...) with the new size (``custom_spec=``).

The scaler only uses the cluster object's ``add_worker_group``/``delete_worker_group`` and its
``name``, ``resources``, ``worker_command`` attributes, so it can be exercised with any object
that has them.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import uuid
from typing import Any

import dask.utils

from nbflow.scaling import Scaler, cores
from nbflow.scaling.jobqueue import NAME_PREFIX, declared, merge_worker_args, nonsense

GPU_RESOURCE = "nvidia.com/gpu"


def quantity_bytes(value: Any) -> int | None:
    """A Kubernetes memory quantity (``4Gi``, ``4G``, ``4096Mi``, ``4e9``, 4000000000) in bytes."""
    if value is None:
        return None
    text = str(value).strip()
    if text.endswith(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")):
        text += "B"  # dask's parse_bytes reads KiB, not Ki
    try:
        return int(dask.utils.parse_bytes(text))
    except (ValueError, TypeError):
        return None


def pod_resources(wanted: dict[str, float], memory: int | None) -> dict[str, dict[str, str]]:
    """Container ``resources`` for one worker of this size: requests equal limits (Guaranteed QoS,
    so the pod is neither throttled below nor evicted above what it declares)."""
    size: dict[str, str] = {"cpu": str(cores(wanted))}
    if memory:
        size["memory"] = f"{math.ceil(memory / 2**20)}Mi"
    if wanted.get("gpus"):
        size[GPU_RESOURCE] = str(math.ceil(wanted["gpus"]))
    return {"requests": dict(size), "limits": dict(size)}


class KubeScaler(Scaler):
    """Adds a one-pod worker group per request to an operator ``KubeCluster``."""

    kind = "KubeCluster"

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._names = itertools.count(1)
        # Worker groups live in the Kubernetes API, beyond this process: the names of two nbflow
        # processes scaling one cluster must not collide.
        self._tag = uuid.uuid4().hex[:6]

    def _custom_worker(self) -> dict[str, Any] | None:
        custom = getattr(self.cluster, "_custom_cluster_spec", None)
        if not isinstance(custom, dict):
            return None
        worker = custom.get("spec", {}).get("worker")
        return worker if isinstance(worker, dict) else None

    def _base(self) -> tuple[dict[str, Any], list[str]]:
        """The cluster's worker container resources and worker command."""
        worker = self._custom_worker()
        if worker is not None:
            containers = worker.get("spec", {}).get("containers") or [{}]
            container = next((c for c in containers if c.get("name") == "worker"), containers[0])
            return dict(container.get("resources") or {}), list(container.get("args") or [])
        command = getattr(self.cluster, "worker_command", None) or ["dask-worker"]
        if isinstance(command, str):
            command = command.split(" ")
        return dict(getattr(self.cluster, "resources", None) or {}), list(command)

    def refuse(self, wanted: dict[str, float]) -> str | None:
        why = nonsense(wanted)
        if why:
            return why
        worker = self._custom_worker()
        if worker is not None and not (worker.get("spec", {}).get("containers")):
            return ("the KubeCluster's custom_cluster_spec has no worker container to copy, so "
                    "nbflow cannot add a worker group of another size")
        return None

    def worker_group(self, wanted: dict[str, float]) -> dict[str, Any]:
        """The keyword arguments of ``add_worker_group`` (besides the name) for this size."""
        why = self.refuse(wanted)
        if why:
            raise ValueError(why)
        base_resources, command = self._base()
        memory = wanted.get("memory")
        if memory is None:
            for part in ("limits", "requests"):
                memory = memory or quantity_bytes((base_resources.get(part) or {}).get("memory"))
        nbytes = math.ceil(memory / 2**20) * 2**20 if memory else None
        ncores = cores(wanted)
        args = merge_worker_args(command, declared(wanted, memory, ncores), nthreads=ncores,
                                 memory_limit=nbytes)
        resources = pod_resources(wanted, nbytes)
        worker = self._custom_worker()
        if worker is None:
            return {"n_workers": 1, "resources": resources, "worker_command": args}
        spec = copy.deepcopy(worker)
        spec["replicas"] = 1
        containers = spec["spec"]["containers"]
        container = next((c for c in containers if c.get("name") == "worker"), containers[0])
        container["args"] = args
        container["resources"] = resources
        return {"n_workers": 1, "custom_spec": spec}

    def add(self, wanted: dict[str, float]) -> str:
        kwargs = self.worker_group(wanted)
        name = f"{NAME_PREFIX}{next(self._names)}-{self._tag}"
        self.cluster.add_worker_group(name, **kwargs)
        return name

    def retire(self, handle: Any) -> None:
        # Deleting a DaskWorkerGroup deletes its pod at once; retire its worker through the
        # scheduler first so that its data moves to the other workers. (cluster.scale(0,
        # worker_group=...) would also do it, but it deletes the cluster's autoscaler.)
        cluster = self.cluster
        prefix = f"{getattr(cluster, 'name', '')}-{handle}-worker-"  # the operator's pod names
        info = getattr(cluster, "scheduler_info", None) or {}
        names = [str(w.get("name")) for w in (info.get("workers") or {}).values()
                 if str(w.get("name", "")).startswith(prefix)]
        comm = getattr(cluster, "scheduler_comm", None)
        if names and comm is not None:
            with contextlib.suppress(Exception):  # deleting the group is what matters
                cluster.sync(comm.retire_workers, names=names)
        cluster.delete_worker_group(handle)


def scaler(cluster: Any) -> Scaler | None:
    """A ``KubeScaler`` for an operator ``KubeCluster``."""
    if not callable(getattr(cluster, "add_worker_group", None)):
        return None
    return KubeScaler(cluster)


__all__ = ["GPU_RESOURCE", "KubeScaler", "pod_resources", "quantity_bytes", "scaler"]
