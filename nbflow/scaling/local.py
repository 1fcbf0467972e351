"""Scale this cell on the default ``LocalCluster``: one more worker process of the requested size.

The default cluster has one worker per core, each declaring an equal share of the machine's memory.
A step that asks for more (``%%resources memory=12G``) than any of them, but no more than the machine
has, gets a worker process of its own with that memory limit, as many threads as it asks cores for,
and those numbers declared as its Dask resources; it is retired once idle. A request beyond the
machine is refused, naming the cluster settings that would serve it.
"""

from __future__ import annotations

import copy
import functools
import itertools
import shutil
import subprocess
from typing import Any

import dask.utils
import psutil

from nbflow.scaling import Scaler, cores, describe

BEYOND = (
    "A request this big needs workers that big: point nbflow at a cluster that has them "
    "(nbflow.cluster.address: tcp://HOST:8786, whose workers declare "
    '`dask worker ... --resources "{resources}"`), or at a cluster manager nbflow can grow '
    "(nbflow.cluster.class: dask_jobqueue.SLURMCluster or dask_kubernetes.operator.KubeCluster); "
    "see docs/laptop-to-cluster.md."
)


@functools.cache
def gpu_count() -> int:
    """NVIDIA GPUs on this machine (``nvidia-smi -L``), 0 when there is no driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


class LocalScaler(Scaler):
    kind = "LocalCluster"

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def limits(self) -> dict[str, float]:
        return {"memory": psutil.virtual_memory().total, "cpus": psutil.cpu_count() or 1,
                "gpus": gpu_count()}

    def refuse(self, wanted: dict[str, float]) -> str | None:
        memory = psutil.virtual_memory().total
        ncores = psutil.cpu_count() or 1
        short = []
        if wanted.get("memory", 0) > memory:
            short.append(f"it has {dask.utils.format_bytes(memory)} of memory")
        if wanted.get("cpus", 0) > ncores:
            short.append(f"it has {ncores} cores")
        if wanted.get("gpus", 0) > (gpus := gpu_count() if wanted.get("gpus") else 0):
            short.append(f"it has {gpus} GPUs" if gpus else "it has no GPU")
        if not short:
            return None
        from nbflow.scaling import worker_resources_arg

        return (f"The local cluster cannot start a worker with {describe(wanted)}: this machine "
                f"is too small ({', '.join(short)}). "
                + BEYOND.format(resources=worker_resources_arg(wanted).replace(",", " ")))

    def add(self, wanted: dict[str, float]) -> str:
        name = next(name for n in itertools.count(1)
                    if (name := f"nbflow-scaled-{n}") not in self.cluster.worker_spec)
        spec = copy.deepcopy(self.cluster.new_spec)
        options = spec["options"]
        threads = cores(wanted)
        memory = int(wanted.get("memory") or psutil.virtual_memory().total // (psutil.cpu_count()
                                                                               or 1))
        declared: dict[str, float] = {"memory": memory, "cpus": threads}
        if wanted.get("gpus"):
            declared["gpus"] = wanted["gpus"]
        options.update(nthreads=threads, memory_limit=memory, resources=declared, name=name)
        self.cluster.worker_spec[name] = spec
        self.cluster.sync(self.cluster._correct_state)
        return name

    def retire(self, handle: Any) -> None:
        if self.cluster.worker_spec.pop(handle, None) is not None:
            self.cluster.sync(self.cluster._correct_state)


def scaler(cluster: Any) -> Scaler | None:
    if not hasattr(cluster, "worker_spec") or not hasattr(cluster, "new_spec"):
        return None
    return LocalScaler(cluster)
