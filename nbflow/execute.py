"""nbflow's one door to Dask: which cluster, submitting task attempts, resources, timeouts, logs.

The cluster comes from Dask's config under ``nbflow.cluster`` (see ``nbflow/nbflow.yaml``):

1. an address (``tcp://host:8786``) -> ``Client(address)``;
2. a cluster manager class path with keyword arguments -> ``Client(Class(**kwargs))``;
3. the ``Client`` this process already made;
4. nothing -> a ``LocalCluster`` started once per process, one single-threaded worker process per
   core, each declaring its ``memory`` (bytes) and ``cpus`` as Dask worker resources.

``Executor`` wraps a ``Client`` with exactly what a run needs: submit an attempt of a task with its
``%%resources``, be called back when it ends (a task whose worker Dask's nanny restarted for going
over its memory limit is reported as out of memory, with a bigger request to make), stop it (an
exception raised in its thread; a worker restart for code stuck in a long C call, since a Python
thread cannot be killed), check up front that some worker can ever satisfy a request (or have the
cluster manager start one: "scale this cell", see ``nbflow.scaling``), check up front that the
workers can reach the store and run the package versions the driver has, and relay the stdout/stderr
lines workers publish as Dask events.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask.utils
import psutil

from nbflow import config, environment, scaling
from nbflow.model import RESOURCE_NAMES, Resources
from nbflow.worker import TaskSpec, cancel_tasks, probe_store, run_task, worker_versions

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

log = logging.getLogger("nbflow")

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


def connect(address: str | None = None,
            expected: dict[str, float] | None = None) -> tuple[Client, str]:
    """A client for the configured cluster, and its kind: local, address, class or existing.
    ``expected``: the largest ``%%resources`` the run will ask for, for a cluster manager whose
    workers can only be sized when the cluster is made (dask-gateway)."""
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
        kwargs = dict(config.get("cluster.kwargs") or {})
        try:
            kwargs = scaling.new_cluster_kwargs(str(class_path), kwargs, expected or {})
        except scaling.ScalingError as exc:
            raise ClusterError(str(exc)) from exc
        cluster = cls(**kwargs)
        workers = config.get("cluster.scale")
        if workers:  # a manager that starts without workers (dask-gateway)
            cluster.scale(int(workers))
        client = Client(cluster, set_as_default=False)
        if workers:
            timeout = float(dask.utils.parse_timedelta(config.get("scaling.timeout") or "300s"))
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError as exc:
                client.close()
                cluster.close()
                raise ClusterError(
                    f"the {class_path} cluster was asked for {workers} workers, but none joined "
                    f"within {timeout:g} s. Check the cluster manager (queue, quota, pending "
                    "pods), or raise nbflow.scaling.timeout.") from exc
        return client, "class"
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
        self._checked: set[tuple[Any, ...]] = set()  # preflight checks passed: (what, workers)
        self._worker_cache: tuple[float, tuple[str, ...], Any] | None = None
        self._fit_seen: dict[tuple[tuple[str, float], ...], float] = {}  # request -> last seen fit
        self._warming: tuple[threading.Thread, list[Any]] | None = None
        self._expected: dict[str, float] = {}  # the largest request known before connecting
        self._scale_lock = threading.Lock()
        self._scaled: list[_Scaled] = []
        self._retirer: threading.Thread | None = None

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

    def expect(self, requests: Iterable[Resources]) -> None:
        """Requests the run will make: a cluster made later (dask-gateway) is sized for them."""
        for request in requests:
            for key, value in request.as_dask().items():
                self._expected[key] = max(self._expected.get(key, 0.0), value)

    def warm_up(self) -> None:
        """Start connecting (starting the local cluster: seconds of worker processes importing)
        in the background, while the driver reads the notebook and runs its plain cells. For a
        run that will surely execute steps; ``client`` waits for it and raises what it raised."""
        if self._client is not None or self._warming is not None:
            return
        box: list[Any] = []

        def start() -> None:
            try:
                box.append(connect(self.address, dict(self._expected)))
            except BaseException as exc:  # handed to whoever asks for the client
                box.append(exc)

        thread = threading.Thread(target=start, name="nbflow-connect", daemon=True)
        self._warming = (thread, box)
        thread.start()

    def settle(self) -> None:
        """Wait for a ``warm_up`` still under way (so that a cluster it starts is not left half
        made at exit); its errors are left to ``client``."""
        if self._warming is not None:
            self._warming[0].join()

    @property
    def client(self) -> Client:
        if self._client is None:
            if self._warming is not None:
                thread, box = self._warming
                thread.join()
                self._warming = None
                if isinstance(box[0], BaseException):
                    raise box[0]
                self._client, self.kind = box[0]
            else:
                self._client, self.kind = connect(self.address, dict(self._expected))
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
            # Whether a bigger request starts a worker of its size, and up to what (None: the
            # manager does not say): "scale this cell" tells the user before they ask.
            "scaling": self._scaling(),
        }

    def _scaling(self) -> dict[str, Any] | None:
        scaler = scaling.scaler_for(getattr(self.client, "cluster", None))
        if scaler is None or not scaler.grows:
            return None
        return {"manager": scaler.kind, "limits": scaler.limits()}

    def check_resources(self, resources: Resources, where: str, *, scale: bool = False) -> None:
        """Fail now, naming the largest worker, if no worker can ever run this request and the
        cluster manager cannot start one that big. With ``scale``, start that worker now ("scale
        this cell"; ``submit`` does, so a worker is only started when a task needs it)."""
        if not resources:
            return
        wanted = resources.as_dask()
        workers = self.workers()
        if any(_fits(w, wanted) for w in workers):
            self._fit_seen[_key(wanted)] = time.monotonic()
            return
        scaler = scaling.scaler_for(getattr(self.client, "cluster", None))
        refusal = scaler.refuse(wanted) if scaler is not None else None
        if scaler is not None and refusal is None:
            if scale:
                self._scale_up(scaler, wanted, where)
                self._fit_seen[_key(wanted)] = time.monotonic()
            return
        if not workers:
            raise ResourceError(f"{where}: the cluster has no workers")

        def size(w: WorkerInfo) -> tuple[float, ...]:
            return tuple(w.resources.get(k, 0) for k in wanted)

        largest = max(workers, key=size)
        have = _format_resources(largest.resources) or "no declared resources"
        message = (
            f"{where} asks for {_format_resources(wanted)}, but no worker can ever provide it; the "
            f"largest worker, {largest.address}, has {have}."
        )
        if refusal is not None:
            raise ResourceError(f"{message} {refusal}")
        raise ResourceError(
            f"{message} Lower the %%resources request, or start workers that declare more (e.g. "
            f"`dask worker ... --resources \"{_dask_resource_arg(wanted)}\"`), or use a cluster "
            "manager nbflow can grow (nbflow.cluster.class; see docs/laptop-to-cluster.md)."
        )

    def _scale_up(self, scaler: scaling.Scaler, wanted: dict[str, float], where: str) -> None:
        """Ask the cluster manager for a worker declaring ``wanted``; wait until one joins."""
        with self._scale_lock:
            if any(_fits(w, wanted) for w in self.workers()):
                return  # another step asked for one as big meanwhile
            before = {w.address for w in self.workers()}
            timeout = float(dask.utils.parse_timedelta(config.get("scaling.timeout") or "300s"))
            log.info("%s: asking the %s for a worker with %s", where, scaler.kind,
                     scaling.describe(wanted))
            handle = scaler.add(wanted)
            deadline = time.monotonic() + timeout
            while True:
                joined = [w.address for w in self.workers()
                          if w.address not in before and _fits(w, wanted)]
                if joined:
                    break
                if time.monotonic() > deadline:
                    with contextlib.suppress(Exception):
                        scaler.retire(handle)
                    raise ResourceError(
                        f"{where} asks for {scaling.describe(wanted)}; the {scaler.kind} was asked "
                        f"for a worker that big, but none joined within {timeout:g} s. Check the "
                        "cluster manager (queue, quota, pending pods), or raise "
                        "nbflow.scaling.timeout.")
                time.sleep(0.1)
            self._scaled.append(_Scaled(scaler, handle, wanted, set(joined)))
            if self._retirer is None or not self._retirer.is_alive():
                self._retirer = threading.Thread(target=self._retire_idle,
                                                 name="nbflow-retire-idle", daemon=True)
                self._retirer.start()

    @property
    def scaled_workers(self) -> list[str]:
        """Addresses of the workers started for big requests that are still up."""
        return sorted(a for s in self._scaled for a in s.addresses)

    def _retire_idle(self) -> None:
        """Retire each worker started for a request once it has run nothing for
        ``nbflow.scaling.idle-timeout``; ends when none is left or the client closes."""
        idle = float(dask.utils.parse_timedelta(config.get("scaling.idle-timeout") or "60s"))
        while self._scaled and self._client is not None and self._client.status == "running":
            time.sleep(min(max(idle / 4, 0.1), 5.0))
            try:
                busy = self._client.processing(workers=self.scaled_workers)
            except Exception:
                continue
            now = time.monotonic()
            for scaled in list(self._scaled):
                if any(busy.get(a) for a in scaled.addresses):
                    scaled.idle_since = now
                elif now - scaled.idle_since >= idle:
                    self._scaled.remove(scaled)
                    log.info("retiring the idle worker(s) %s started for %s",
                             ", ".join(sorted(scaled.addresses)), scaling.describe(scaled.wanted))
                    with contextlib.suppress(Exception):
                        scaled.scaler.retire(scaled.handle)

    def _touch_scaled(self, wanted: dict[str, float]) -> None:
        """A task that needs a scaled worker was just submitted: it is not idle."""
        now = time.monotonic()
        for scaled in self._scaled:
            if all(scaled.wanted.get(k, 0) >= v for k, v in wanted.items()):
                scaled.idle_since = now

    # -- preflight -----------------------------------------------------------------------------
    def _worker_set(self, max_age: float = 2.0) -> tuple[str, ...]:
        """The workers' addresses, asked of the scheduler at most every ``max_age`` seconds: the
        checks below run before every step, and most of the time nothing has joined."""
        now = time.monotonic()
        cached = self._worker_cache
        if cached is None or now - cached[0] > max_age or cached[2] is not self._client:
            cached = (now, tuple(sorted(w.address for w in self.workers())), self._client)
            self._worker_cache = cached
        return cached[1]

    def check_store(self, url: str) -> None:
        """Refuse, before anything runs, a store some worker cannot read and write (a folder on
        this machine with workers on others; missing object-store credentials on the workers).
        The driver writes a probe object; each worker reads it back and writes its own."""
        workers = self._worker_set()
        if ("store", url, workers) in self._checked or not workers:
            return
        if url.startswith("memory://"):
            remote = [w for w in workers if not w.startswith("inproc")]
            if remote:
                raise ClusterError(
                    f"the store {url} lives in this process's memory, which the workers (e.g. "
                    f"{remote[0]}) cannot reach. Use a folder or an object store (--store), or a "
                    "cluster whose workers run in this process (processes=False).")
            self._checked.add(("store", url, workers))
            return
        import fsspec

        token = uuid.uuid4().hex
        path = f"probes/{token}"
        fs, root = fsspec.core.url_to_fs(url)
        target = f"{root.rstrip('/')}/{path}"
        fs.makedirs(f"{root.rstrip('/')}/probes", exist_ok=True)
        with fs.open(target, "wb") as f:
            f.write(token.encode())
        try:
            answers = self.client.run(probe_store, url, path, token, on_error="return")
        finally:
            with contextlib.suppress(Exception):
                fs.rm(f"{target}*", recursive=True)
        bad = {a: (r if isinstance(r, str) else f"{type(r).__name__}: {r}")
               for a, r in answers.items() if r is not None}
        if bad:
            address, why = next(iter(sorted(bad.items())))
            local = "://" not in url or url.startswith("file://")
            fix = ("It is a folder on this machine: use a store every worker reaches, an object "
                   "store (--store s3://BUCKET/PREFIX) or a shared file system mounted at the same "
                   "path on every worker." if local else
                   "Give the workers access (credentials, endpoint: the AWS_* variables or "
                   "fsspec config for s3://) or choose a store they reach.")
            raise ClusterError(
                f"{len(bad)} of {len(answers)} workers cannot reach the artifact store {url}: "
                f"{address}: {why}. {fix}")
        self._checked.add(("store", url, workers))

    def check_versions(self, modules: Iterable[str]) -> None:
        """Refuse, before anything runs, workers whose Python or whose packages behind
        ``modules`` (what the steps import) differ from the driver's: results would differ, or
        pickles would not load. Off with ``nbflow.check-versions: false``; skipped on a local
        cluster, whose workers run this very environment."""
        if self.kind == "local" or not config.get("check-versions", True):
            return
        modules = sorted({m.split(".")[0] for m in modules})
        workers = self._worker_set()
        if ("versions", tuple(modules), workers) in self._checked or not workers:
            return
        here = {"python": environment.python_version().rsplit(".", 1)[0],
                **environment.package_versions(modules)}
        answers = self.client.run(worker_versions, modules, on_error="return")
        differ: list[str] = []
        for address, theirs in sorted(answers.items()):
            if not isinstance(theirs, dict):
                differ.append(f"{address} did not answer ({theirs})")
                continue
            for dist, version in here.items():
                if theirs.get(dist) != version:
                    differ.append(f"{dist} {version} here, {theirs.get(dist) or 'not installed'} "
                                  f"on {address}")
        if differ:
            first = [d for d in differ if not d.startswith("python")]
            pins = " ".join(f"{d.split()[0]}=={d.split()[1]}" for d in (first or differ)[:3]
                            if "did not answer" not in d)
            raise ClusterError(
                "the workers' package versions differ from this driver's for what the steps "
                f"import: {'; '.join(differ[:5])}"
                f"{f' (and {len(differ) - 5} more)' if len(differ) > 5 else ''}. Install the same "
                f"versions on the workers (e.g. `pip install {pins}` in their environment) or "
                "run the driver in theirs; to run anyway, set nbflow.check-versions: false "
                "(DASK_NBFLOW__CHECK_VERSIONS=false).")
        self._checked.add(("versions", tuple(modules), workers))

    # -- running -------------------------------------------------------------------------------
    def submit(
        self,
        spec: TaskSpec,
        resources: Resources,
        on_done: Callable[[Attempt], None],
    ) -> Attempt:
        if resources:
            # A worker that fits, or one started for it now (a worker started for a request is
            # retired when idle, so it may be gone since the run checked at its start).
            wanted = resources.as_dask()
            self._touch_scaled(wanted)
            if time.monotonic() - self._fit_seen.get(_key(wanted), -1e9) > 2.0:
                self.check_resources(resources, f"step {spec.step!r} (cell {spec.cell})",
                                     scale=True)
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
            error_type = type(exc).__name__
            worker = None
            if error_type == "KilledWorker":
                last = getattr(exc, "last_worker", None)
                worker = getattr(last, "address", None)
                oom = _memory_restart(self.client, worker) if worker else None
                limit = int(getattr(last, "memory_limit", 0) or 0)
                if oom is not None:
                    error_type = "OutOfMemory"
                    reason = _out_of_memory_reason(worker or "?", limit, oom)
                else:
                    reason = (f"the worker running this task died ({exc}); it may have run out "
                              "of memory: give the step more with %%resources memory=...")
            return {"status": "failed", "error": reason, "error_type": error_type,
                    "outputs": {}, "missing": [], "exception": None, "files": [],
                    "worker": worker}

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


MEMORY_RESTART_TOPIC = "worker-restart-memory"  # what Dask's nanny logs before it kills one


def _memory_restart(client: Client, worker: str, wait: float = 3.0) -> dict[str, Any] | None:
    """The event Dask's nanny logged when it restarted ``worker`` for going over its memory
    limit (``distributed.worker.memory.terminate``), or None if it did not. The event can reach
    the scheduler just after the worker's death does: look for ``wait`` seconds at most."""
    deadline = time.monotonic() + wait
    while True:
        try:
            events = client.get_events(MEMORY_RESTART_TOPIC)
        except Exception:
            return None
        for _stamp, event in reversed(events or ()):
            if isinstance(event, dict) and event.get("worker") == worker:
                return event
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _out_of_memory_reason(worker: str, limit: int, event: dict[str, Any]) -> str:
    """Why a task whose worker was restarted for memory failed, and how much to ask for."""
    fraction = dask.config.get("distributed.worker.memory.terminate", 0.95)
    used = int(event.get("rss") or 0)
    limit_text = dask.utils.format_bytes(limit) if limit else "unknown"
    # Twice the limit, rounded up to whole GiB: the step needed more than it had, by how much
    # is not known (the worker was stopped on the way up).
    suggest = max(1, -(-2 * limit // 2**30)) if limit else 2
    return (
        f"out of memory: the worker {worker} exceeded its memory limit of {limit_text} (it used "
        f"{dask.utils.format_bytes(used)} when Dask's nanny restarted it, at "
        f"distributed.worker.memory.terminate = {fraction:.0%} of the limit). Give the step "
        f"more: put `%%resources memory={suggest}GiB` (or more) under its `%%step` line, or "
        "make it use less (process the data in chunks)."
    )


@dataclass
class _Scaled:
    """A worker (or workers) started for a big request, retired once idle."""

    scaler: scaling.Scaler
    handle: Any
    wanted: dict[str, float]
    addresses: set[str]
    idle_since: float = field(default_factory=time.monotonic)


def _key(wanted: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(wanted.items()))


def _fits(worker: WorkerInfo, wanted: dict[str, float]) -> bool:
    return all(worker.resources.get(k, 0) >= v for k, v in wanted.items())


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
