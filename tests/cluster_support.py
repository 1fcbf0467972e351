"""Real "remote" infrastructure for tests/test_remote.py: hosts in network namespaces, a
``dask scheduler`` with ``dask worker`` processes on those hosts, and an S3 server.

Hosts. Each worker runs in a network namespace of its own (``nbflow-<pid>-wN``), attached by a
veth pair to a bridge on the test machine (``nbf<pid>br``), which holds the first address of a
free ``10.213.X.0/24``; the workers get ``.2``, ``.3``, ... So a worker is another host as far as
the network goes: it reaches the scheduler and S3 only through the bridge, and every request it
makes carries its own source address (which the tests read in S3's access log). The namespaces
still share the machine's filesystem, as two containers sharing a volume would. Namespaces,
links and processes of earlier sessions that were killed before their teardown (their pid is gone;
processes are listed in ``$TMPDIR/nbflow-remote-PID.pids``) are removed first. Without the
permission to create namespaces (not root), everything falls back to loopback processes and says
so on stderr; the tests that depend on separate addresses then skip those checks
(``NBFLOW_TESTS_NO_NETNS=1`` forces that fallback). With ``CI`` set, failing to create them is an
error instead: CI runs as root, and there a fallback would hide a regression.

S3. moto's server mode (``python -m moto.server``), run as a subprocess on the bridge address.
moto rather than s3rver: moto implements the S3 REST API that s3fs/botocore use (multipart
uploads, ListObjectsV2, CopyObject, conditional requests, batch delete), it comes from PyPI
(``moto[server]``, in the ``test`` extra) with no Node and no Docker, and its werkzeug access log
has one line per request with the client's IP, which is how the tests prove that workers upload
artifacts themselves.

Processes. Everything is started with ``subprocess.Popen`` from the test process (no double fork,
no daemon), and stopped by pid at teardown. conftest's autouse ``_no_leaked_children`` compares
the test process's children before and after each test: the module-scoped processes here are
started by fixtures set up before that snapshot (pytest sets up wider-scoped fixtures first), so
they are in "before". A dask worker's actual worker process is a ``multiprocessing`` (spawn) child
of its nanny, which the check recognises as a dask worker: so a nanny may restart a worker that a
test killed, and the replacement is not reported as leaked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

NETNS_PREFIX = "nbflow-"
LINK_PREFIX = "nbf"
SUBNET_BASE = "10.213"
_NETNS_RE = re.compile(rf"^{re.escape(NETNS_PREFIX)}(\d+)-w\d+$")
_LINK_RE = re.compile(rf"^{LINK_PREFIX}(\d+)(?:br|h\d+)$")


# The session's pytest config, set by the tests' fixtures: log_line() writes past its capturing.
PYTEST_CONFIG: Any = None


def log_line(message: str) -> None:
    """A line on the terminal, past pytest's output capturing (what whoever runs the tests
    should know about: a fallback taken, what was measured)."""
    capman = PYTEST_CONFIG.pluginmanager.getplugin("capturemanager") if PYTEST_CONFIG else None
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        print(f"\n[nbflow remote tests] {message}", file=sys.stderr, flush=True)


# -- hosts ---------------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited with {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    return pid != os.getpid() and psutil.pid_exists(pid)


# Every process started here is listed (pid, start time) in a file named after the test
# process, so that a later session can stop what a session killed before its teardown left.
REGISTRY_PREFIX = "nbflow-remote-"


def _registry(owner: int | None = None) -> Path:
    return Path(tempfile.gettempdir()) / f"{REGISTRY_PREFIX}{owner or os.getpid()}.pids"


def register(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(psutil.Error, OSError), open(_registry(), "a") as f:
        f.write(f"{proc.pid} {psutil.Process(proc.pid).create_time()}\n")


def forget_registered() -> None:
    """This session stopped its processes itself."""
    with contextlib.suppress(OSError):
        _registry().unlink()


def _stop_orphans() -> None:
    for listing in Path(tempfile.gettempdir()).glob(f"{REGISTRY_PREFIX}*.pids"):
        try:
            owner = int(listing.name.removeprefix(REGISTRY_PREFIX).removesuffix(".pids"))
            entries = [line.split() for line in listing.read_text().splitlines()]
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        for pid, created in (e for e in entries if len(e) == 2):
            with contextlib.suppress(psutil.Error, ValueError):
                proc = psutil.Process(int(pid))
                if abs(proc.create_time() - float(created)) < 0.01:  # not a reused pid
                    family = [*proc.children(recursive=True), proc]
                    for p in family:
                        with contextlib.suppress(psutil.Error):
                            p.kill()
        with contextlib.suppress(OSError):
            listing.unlink()


def remove_stale() -> None:
    """Namespaces, links and processes left by earlier test sessions whose process is gone."""
    _stop_orphans()
    listed = _ip("netns", "list", check=False).stdout.splitlines()
    for line in listed:
        name = line.split()[0] if line.split() else ""
        m = _NETNS_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _LINK_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _ip("link", "del", name, check=False)


def _free_subnet() -> str:
    """``10.213.X`` for the first X no interface or route of this machine uses yet."""
    used = _ip("-o", "-4", "addr", "show", check=False).stdout + _ip("-4", "route", check=False).stdout
    for x in range(256):
        prefix = f"{SUBNET_BASE}.{x}"
        if f"{prefix}." not in used:
            return prefix
    raise RuntimeError(f"no free {SUBNET_BASE}.X.0/24 subnet on this machine")


@dataclass
class Hosts:
    """The test machine (``host_ip``: scheduler, S3, the driver) and the worker hosts."""

    isolated: bool  # True: each worker slot is a network namespace with its own address
    host_ip: str
    worker_ips: list[str]
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    reason: str = ""

    def wrap(self, slot: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run on worker host ``slot`` (0-based)."""
        if not self.isolated:
            return list(argv)
        return ["ip", "netns", "exec", self.namespaces[slot], *argv]

    def remove(self) -> None:
        for ns in self.namespaces:
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
        for link in self.links:
            _ip("link", "del", link, check=False)
        self.namespaces, self.links = [], []


def make_hosts(count: int) -> Hosts:
    """``count`` worker hosts in network namespaces on a bridge; loopback if that is refused."""
    pid = os.getpid()
    hosts = Hosts(isolated=True, host_ip="", worker_ips=[])
    try:
        remove_stale()
        if os.environ.get("NBFLOW_TESTS_NO_NETNS"):
            raise RuntimeError("NBFLOW_TESTS_NO_NETNS is set")
        prefix = _free_subnet()
        bridge = f"{LINK_PREFIX}{pid}br"
        _ip("link", "add", bridge, "type", "bridge")
        hosts.links.append(bridge)
        hosts.host_ip = f"{prefix}.1"
        _ip("addr", "add", f"{hosts.host_ip}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i in range(1, count + 1):
            ns = f"{NETNS_PREFIX}{pid}-w{i}"
            host_end, ns_end = f"{LINK_PREFIX}{pid}h{i}", f"{LINK_PREFIX}{pid}p{i}"
            _ip("netns", "add", ns)
            hosts.namespaces.append(ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns)
            hosts.links.append(host_end)
            _ip("link", "set", host_end, "master", bridge)
            _ip("link", "set", host_end, "up")
            address = f"{prefix}.{i + 1}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", ns_end)
            _ip("-n", ns, "link", "set", ns_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            hosts.worker_ips.append(address)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        hosts.remove()
        if os.environ.get("CI"):
            # CI runs as root, where namespaces work: there the fallback would hide a regression.
            raise RuntimeError(f"cannot create network namespaces in CI: {exc}") from exc
        reason = (f"cannot create network namespaces ({exc}); the workers run as plain loopback "
                  "processes, and the checks of where requests come from are skipped")
        log_line(reason)
        return Hosts(isolated=False, host_ip="127.0.0.1", worker_ips=["127.0.0.1"] * count,
                     reason=reason)
    return hosts


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[Any] | None = None,
                  what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:g} s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL, to ``proc`` and whatever it started that is still around."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    _, alive = psutil.wait_procs([p for p in family if p.pid != proc.pid], timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# -- S3 ------------------------------------------------------------------------------------------

_ACCESS = re.compile(r'^(\S+) - - \[[^\]]*\] "([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass(frozen=True)
class S3Request:
    client: str
    method: str
    path: str  # with its query string
    status: int

    @property
    def key_path(self) -> str:
        """The path without the query string, e.g. ``/bucket/prefix/objects/ab/cd...``."""
        return self.path.split("?", 1)[0]

    @property
    def writes(self) -> bool:
        """An upload: PUT (a whole object, a multipart part, a copy) or POST of a multipart
        upload (start/complete); POST ``?delete`` is a batch delete, not an upload."""
        if self.method == "PUT":
            return True
        return self.method == "POST" and ("?uploads" in self.path or "uploadId=" in self.path)


class S3Server:
    """``python -m moto.server`` on ``host``; its access log is read by ``requests()``."""

    BUCKET = "nbflow-remote-tests"

    def __init__(self, host: str, workdir: Path) -> None:
        self.host = host
        self.port = free_port(host)
        self.log = workdir / "moto.log"
        self.endpoint = f"http://{host}:{self.port}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "nbflow-test",
            "AWS_SECRET_ACCESS_KEY": "nbflow-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            # never the developer's own AWS settings, and no instance-metadata lookups
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", host, "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        register(self.proc)
        try:
            wait_for_port(host, self.port, 60, self.proc, "moto_server")
            self.client().create_bucket(Bucket=self.BUCKET)
        except BaseException:
            self.stop()
            raise

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str) -> set[str]:
        out: set[str] = set()
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.BUCKET, Prefix=prefix)
        for page in pages:
            out.update(o["Key"] for o in page.get("Contents", []))
        return out

    def requests(self) -> list[S3Request]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _ACCESS.match(line)
            if m:
                out.append(S3Request(m.group(1), m.group(2), m.group(3), int(m.group(4))))
        return out

    def stop(self) -> None:
        stop_process(self.proc)


# -- Dask ----------------------------------------------------------------------------------------


@dataclass
class WorkerProc:
    name: str
    slot: int
    proc: subprocess.Popen[bytes]
    log: Path


class DaskCluster:
    """A ``dask scheduler`` on the host address and ``dask worker`` processes on worker hosts.

    The scheduler has ``allowed-failures: 0``, as nbflow's README asks of one's own scheduler:
    a task whose worker died is not re-run behind nbflow's back."""

    def __init__(self, hosts: Hosts, workdir: Path, env: Mapping[str, str], name: str) -> None:
        self.hosts = hosts
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1",
                    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
        self.workers: list[WorkerProc] = []
        self._client: Any = None
        scheduler_file = self.workdir / "scheduler.json"
        self.scheduler_log = self.workdir / "scheduler.log"
        with open(self.scheduler_log, "wb") as out:
            self.scheduler = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", hosts.host_ip,
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True)
        register(self.scheduler)
        deadline = time.monotonic() + 60
        self.address = ""
        while time.monotonic() < deadline and not self.address:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with {self.scheduler.returncode}:\n"
                                   f"{tail(self.scheduler_log)}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.address = json.loads(scheduler_file.read_text())["address"]
            time.sleep(0.1)
        if not self.address:
            self.close()
            raise RuntimeError(f"dask scheduler did not start:\n{tail(self.scheduler_log)}")

    def start_worker(self, name: str, slot: int, *, nthreads: int, resources: str,
                     env: Mapping[str, str] | None = None, hide: str | None = None) -> WorkerProc:
        """A ``dask worker`` (with its nanny) on worker host ``slot``. ``hide``: a folder the
        worker cannot see (an empty tmpfs is mounted over it in a mount namespace of its own)."""
        local = self.workdir / f"{name}-space"
        local.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                "--name", name, "--nthreads", str(nthreads), "--resources", resources,
                "--local-directory", str(local), "--no-dashboard", "--death-timeout", "60"]
        if hide is not None:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    f"mount -t tmpfs nbflow-hidden {shlex.quote(hide)} && exec \"$@\"", "sh", *argv]
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.hosts.wrap(slot, argv), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **(env or {})}, start_new_session=True)
        register(proc)
        worker = WorkerProc(name, slot, proc, log)
        self.workers.append(worker)
        return worker

    def client(self) -> Any:
        if self._client is None:
            from distributed import Client

            self._client = Client(self.address, timeout="30s", set_as_default=False)
        return self._client

    def wait_for_workers(self, names: Sequence[str], timeout: float = 120) -> dict[str, str]:
        """Block until the workers called ``names`` are registered; name -> address."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.worker_addresses()
            if all(n in found for n in names):
                return found
            dead = [w for w in self.workers if w.proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {w.name}:\n{tail(w.log)}" for w in self.workers)
                raise RuntimeError(f"workers {list(names)} did not all register with "
                                   f"{self.address} (have {sorted(found)}):\n{logs}")
            time.sleep(0.2)

    def worker_addresses(self) -> dict[str, str]:
        info = self.client().scheduler_info(n_workers=-1)["workers"]
        return {str(w.get("name")): addr for addr, w in info.items()}

    def logs(self) -> str:
        parts = [f"--- scheduler:\n{tail(self.scheduler_log)}"]
        parts += [f"--- {w.name}:\n{tail(w.log)}" for w in self.workers]
        return "\n".join(parts)

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close(timeout=10)
            self._client = None
        for w in self.workers:
            stop_process(w.proc)
        stop_process(self.scheduler)


# -- the nbflow command --------------------------------------------------------------------------


def nbflow(*args: str, cwd: Path, env: Mapping[str, str] | None = None,
           timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``nbflow ARGS`` as a subprocess of this Python (``python -m nbflow.cli``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_NBFLOW__")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "nbflow.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def nbflow_popen(*args: str, cwd: Path, env: Mapping[str, str] | None = None
                 ) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_NBFLOW__")}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "nbflow.cli", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def described(proc: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> str:
    code, out, err = ((proc.returncode, proc.stdout, proc.stderr)
                      if isinstance(proc, subprocess.CompletedProcess) else proc)
    return f"exit {code}\n--- stdout:\n{out[-4000:]}\n--- stderr:\n{err[-6000:]}"


def run_id_of(stderr: str) -> str:
    """The id in ``nbflow: run ID started``."""
    m = re.search(r"nbflow: run (\S+) started", stderr)
    assert m, f"no run id in:\n{stderr[-4000:]}"
    return m.group(1)


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for the duration (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_probe_package(src: Path, target: Path, version: str) -> None:
    """``nbflowprobe`` (``__version__ = version``) installed into ``target`` with pip, offline
    (hatchling from this environment, no build isolation, no index)."""
    folder = src / f"nbflowprobe-{version}"
    (folder / "nbflowprobe").mkdir(parents=True)
    (folder / "nbflowprobe" / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        f'[project]\nname = "nbflowprobe"\nversion = "{version}"\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["nbflowprobe"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
         "--no-index", "--target", str(target), str(folder)],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"pip could not build nbflowprobe {version}:\n{proc.stdout}{proc.stderr}")
