"""nbflow's one door to Dask: which cluster, submitting task attempts, resources, timeouts, logs.

The cluster comes from Dask's config under ``nbflow.cluster`` (see ``nbflow/nbflow.yaml``):

1. an address (``tcp://host:8786``) -> ``Client(address)``;
2. a cluster manager class path with keyword arguments -> ``Client(Class(**kwargs))``;
3. the ``Client`` this process already made;
4. nothing -> a ``LocalCluster`` started once per process, one single-threaded worker process per
   core, each declaring its ``memory`` (bytes) and ``cpus`` as Dask worker resources.

``Executor`` wraps a ``Client`` with exactly what a run needs: submit an attempt of a task with its
``%%resources``, be called back when it ends, stop it (an exception raised in its thread; a worker
restart for code stuck in a long C call, since a Python thread cannot be killed), check up front
that some worker can ever satisfy a request, and relay the stdout/stderr lines workers publish as
Dask events.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.utils
import psutil

from nbflow import config
from nbflow.model import RESOURCE_NAMES, Resources
from nbflow.worker import TaskSpec, cancel_tasks, run_task

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

# `distributed` is imported only when a cluster is needed: a run that is all cache hits, and the
# read-only commands, never pay for it.


class ClusterError(Exception):
    """No cluster could be had, or it cannot run what was asked."""


class ResourceError(ClusterError):
    """A ``%%resources`` request no worker of the cluster can ever satisfy."""


_local_lock = threading.Lock()
_local: tuple[LocalCluster, Client] | None = None


def _close_local() -> None:
    global _local
    if _local is not None:
        cluster, client = _local
        _local = None
        try:
            client.close()
            cluster.close()
        except Exception:
            pass


def local_cluster() -> Client:
    """The process's LocalCluster (started on first use, closed at exit), sized to this machine."""
    global _local
    from distributed import Client, LocalCluster

    with _local_lock:
        if _local is None:
            n = config.get("cluster.n-workers") or psutil.cpu_count() or 1
            threads = int(config.get("cluster.threads-per-worker") or 1)
            memory = psutil.virtual_memory().total // n
            # nbflow retries (--retry) and records each attempt itself: Dask must not re-run a
            # task whose worker died behind its back.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=threads,
                    processes=True,
                    memory_limit=memory,
                    resources={"memory": memory, "cpus": threads},
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            _local = (cluster, Client(cluster, set_as_default=False))
            atexit.register(_close_local)
        return _local[1]


def reset_local_cluster() -> None:
    """Forget the process's LocalCluster if it has stopped, so ``local_cluster()`` starts anew."""
    if _local is not None and _local[1].status != "running":
        _close_local()


def connect(address: str | None = None) -> tuple[Client, str]:
    """A client for the configured cluster, and its kind: local, address, class or existing."""
    from distributed import Client, default_client
    from distributed.comm.addressing import parse_address, parse_host_port

    address = address or config.get("cluster.address")
    if address:
        timeout = config.get("cluster.connect-timeout") or "10s"
        try:  # checked before a Client exists, so that a typo is one clear line, not a traceback
            scheme, location = parse_address(address)
            if scheme not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
                raise ValueError(f"unknown protocol {scheme!r}")
            if scheme != "inproc":
                parse_host_port(location)
        except ValueError as exc:
            raise ClusterError(
                f"{address!r} is not a Dask scheduler address ({exc}). Use the form "
                "tcp://HOST:PORT (what `dask scheduler` prints)."
            ) from exc
        try:
            return Client(address, timeout=timeout, set_as_default=False), "address"
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} (waited {timeout}): {exc}. Check "
                "that `dask scheduler` runs there and the address is right, or drop --cluster to "
                "use a local cluster."
            ) from exc
    class_path = config.get("cluster.class")
    if class_path:
        module, _, name = str(class_path).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ClusterError(
                f"cannot import the cluster class {class_path!r} (nbflow.cluster.class): {exc}. "
                "Install its package or fix the path, e.g. dask_jobqueue.SLURMCluster."
            ) from exc
        return Client(cls(**(config.get("cluster.kwargs") or {})), set_as_default=False), "class"
    try:
        return default_client(), "existing"
    except ValueError:
        return local_cluster(), "local"


@dataclass(frozen=True)
class WorkerInfo:
    address: str
    resources: dict[str, float]
    memory_limit: int
    nthreads: int


class Attempt:
    """One submitted attempt of a task: its Dask future and its deadline, if any."""

    def __init__(self, future: Future[Any], spec: TaskSpec,
                 deadline: float | None = None) -> None:
        self.future = future
        self.spec = spec
        self.deadline = deadline


class Executor:
    """Submits task attempts to one Dask client and reports back when they end."""

    def __init__(self, client: Client | None = None, kind: str = "existing", *,
                 address: str | None = None) -> None:
        self._client = client
        self.kind = kind
        self.address = address
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._on_connect: list[Callable[[Executor], None]] = []

    @classmethod
    def connect(cls, address: str | None = None) -> Executor:
        """An executor that connects to the configured cluster when first needed: a run whose
        every step is a cache hit never starts a cluster."""
        return cls(None, address=address)

    @property
    def connected(self) -> bool:
        return self._client is not None

    def ensure_alive(self) -> None:
        """Raise ``ClusterError`` if the cluster this executor was using has gone away (a
        closed LocalCluster, a scheduler that stopped); not connected yet is fine."""
        client = self._client
        if client is None:
            return
        deadline = time.monotonic() + 5
        while client.status == "connecting" and time.monotonic() < deadline:
            time.sleep(0.05)  # a reconnect under way
        if client.status != "running":
            where = self.address or f"the {self.kind} cluster"
            raise ClusterError(
                f"the Dask cluster ({where}) went away (client {client.status}). Start it again "
                "and re-run the cell, or connect elsewhere: `%nbflow cluster tcp://HOST:PORT`, "
                "or `%nbflow cluster local` for a new local cluster."
            )

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client, self.kind = connect(self.address)
            for hook in self._on_connect:
                hook(self)
        return self._client

    def on_connect(self, hook: Callable[[Executor], None]) -> None:
        """Call ``hook`` once connected (now, if already); ``remove_hook`` when done."""
        self._on_connect.append(hook)
        if self._client is not None:
            hook(self)

    def remove_hook(self, hook: Callable[[Executor], None]) -> None:
        with contextlib.suppress(ValueError):
            self._on_connect.remove(hook)

    # -- description ---------------------------------------------------------------------------
    def workers(self) -> list[WorkerInfo]:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return [
            WorkerInfo(addr, dict(w.get("resources") or {}), int(w.get("memory_limit") or 0),
                       int(w.get("nthreads") or 0))
            for addr, w in info.items()
        ]

    def describe(self) -> dict[str, Any]:
        if self._client is None:
            return {"kind": "not started (every step so far came from the cache)"}
        workers = self.workers()
        return {
            "kind": self.kind,
            "scheduler": getattr(self.client.scheduler, "address", None),
            "dashboard": self.client.dashboard_link,
            "workers": len(workers),
            "threads": sum(w.nthreads for w in workers),
            "memory": sum(w.memory_limit for w in workers),
            # What one task can ask for (%%resources): the biggest worker's declared resources.
            "largest_worker": max(
                ({"address": w.address, **{k: w.resources.get(k, 0) for k in RESOURCE_NAMES}}
                 for w in workers), key=lambda w: (w["memory"], w["cpus"], w["gpus"]),
                default=None),
        }

    def check_resources(self, resources: Resources, where: str) -> None:
        """Fail now, naming the largest worker, if no worker can ever run this request."""
        if not resources:
            return
        wanted = resources.as_dask()
        workers = self.workers()
        if any(all(w.resources.get(k, 0) >= v for k, v in wanted.items()) for w in workers):
            return
        if not workers:
            raise ResourceError(f"{where}: the cluster has no workers")

        def size(w: WorkerInfo) -> tuple[float, ...]:
            return tuple(w.resources.get(k, 0) for k in wanted)

        largest = max(workers, key=size)
        have = _format_resources(largest.resources) or "no declared resources"
        raise ResourceError(
            f"{where} asks for {_format_resources(wanted)}, but no worker can ever provide it; the "
            f"largest worker, {largest.address}, has {have}. Lower the %%resources request, or "
            "start workers that declare more (e.g. `dask worker ... --resources "
            f"\"{_dask_resource_arg(wanted)}\"`)."
        )

    # -- running -------------------------------------------------------------------------------
    def submit(
        self,
        spec: TaskSpec,
        resources: Resources,
        on_done: Callable[[Attempt], None],
    ) -> Attempt:
        future = self.client.submit(
            run_task,
            spec,
            key=f"nbflow-{spec.step}-{spec.run_id}-{spec.task_id}-{spec.attempt}",
            resources=resources.as_dask() or None,
            pure=False,
            retries=0,
        )
        attempt = Attempt(future, spec)
        future.add_done_callback(lambda _f: on_done(attempt))
        return attempt

    def result(self, attempt: Attempt) -> dict[str, Any]:
        """The task's result dict; a lost worker or cancellation becomes a failed result."""
        try:
            result: dict[str, Any] = attempt.future.result()
            return result
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if type(exc).__name__ == "KilledWorker":
                reason = (f"the worker running this task died ({exc}); it may have run out of "
                          "memory: give the step more with %%resources memory=...")
            return {"status": "failed", "error": reason, "error_type": type(exc).__name__,
                    "outputs": {}, "missing": [], "exception": None, "files": [],
                    "worker": None}

    def processing_worker(self, attempt: Attempt) -> str | None:
        key = attempt.future.key

        def where(dask_scheduler: Any) -> str | None:
            ts = dask_scheduler.tasks.get(key)
            return ts.processing_on.address if ts is not None and ts.processing_on else None

        try:
            address: str | None = self.client.run_on_scheduler(where)
            return address
        except Exception:
            return None

    def stop(self, attempts: list[Attempt], grace: float | None = None) -> None:
        """Stop attempts on the cluster: queued ones are cancelled; running ones get
        ``TaskCancelled`` raised in their thread and ``grace`` seconds to end; a worker whose
        attempt is still running after that (stuck in a long C call) is restarted."""
        if grace is None:
            grace = float(dask.utils.parse_timedelta(config.get("cancel-grace") or "3s"))
        where = {id(a): self.processing_worker(a) for a in attempts}
        by_worker: dict[str, list[tuple[str, int, int]]] = {}
        for a in attempts:
            address = where[id(a)]
            if address is not None:
                by_worker.setdefault(address, []).append(
                    (a.spec.run_id, a.spec.task_id, a.spec.attempt))
        for address, keys in by_worker.items():
            with contextlib.suppress(Exception):
                self.client.run(cancel_tasks, keys, workers=[address])
        deadline = time.monotonic() + grace
        stuck: set[str] = set()
        for attempt in attempts:
            address = where[id(attempt)]
            if address is not None:
                while not attempt.future.done() and time.monotonic() < deadline:
                    time.sleep(0.02)  # the future's state is kept by the client's own thread
                if not attempt.future.done():
                    stuck.add(address)
            attempt.future.cancel()
        if stuck:
            with contextlib.suppress(Exception):
                self.client.restart_workers(sorted(stuck), timeout=60)

    def subscribe(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call ``handler`` (on the client's event loop) with each message workers publish on
        ``topic``; several handlers may share a topic. Takes effect once connected."""
        first = topic not in self._handlers
        self._handlers.setdefault(topic, []).append(handler)
        if not first:
            return

        def relay(event: tuple[float, dict[str, Any]]) -> None:
            for h in list(self._handlers.get(topic, ())):
                h(event[1])

        if self._client is not None:
            self._client.subscribe_topic(topic, relay)
            return

        def subscribe(executor: Executor) -> None:
            if topic in executor._handlers:
                executor.client.subscribe_topic(topic, relay)

        self._on_connect.append(subscribe)

    def unsubscribe(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> None:
        handlers = self._handlers.get(topic, [])
        with contextlib.suppress(ValueError):
            handlers.remove(handler)
        if handlers:
            return
        self._handlers.pop(topic, None)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.unsubscribe_topic(topic)


def _format_resources(res: dict[str, float]) -> str:
    parts = []
    for k in ("memory", "cpus", "gpus"):
        if k in res:
            v = res[k]
            gb = f"{v / 1e9:.2f}".rstrip("0").rstrip(".")
            parts.append(f"{k}={gb} GB ({dask.utils.format_bytes(int(v))})"
                         if k == "memory" else f"{k}={v:g}")
    return " ".join(parts)


def _dask_resource_arg(res: dict[str, float]) -> str:
    return " ".join(f"{k}={int(v) if float(v).is_integer() else v}" for k, v in res.items())
