"""``nbflow daemon``: a driver process that keeps Dask imported and a local cluster warm between runs.

``nbflow daemon start`` starts it for the caller's environment (see ``nbflow.launch``, which hands
it ``run`` and ``resume``); ``stop`` and ``status`` do what they say. The daemon runs one command at
a time, on its main thread, exactly as the command would run in a process of its own: in the
caller's folder and environment, writing to the caller's stdout and stderr (their descriptors come
over the socket), with Ctrl-C (or the caller going away) interrupting the run as it would a local
driver. A second caller while it is busy is told so and runs in its own process.

What a command leaves behind is undone before the next one: the working folder, ``sys.path``, the
environment, and the local modules its plain cells imported. Workers drop a local module whose
source changed (``nbflow.freshness``). The daemon stops itself when it has been idle for
``nbflow.daemon.idle-timeout``, and before a command if nbflow, an installed package or a Dask
config file changed since it started: the caller then runs the command itself.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import glob
import io
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import dask.config

import nbflow
from nbflow import config, environment, freshness
from nbflow.launch import Channel, connect, environment_key, send, socket_path

STOP = "stop"
WARM_UP_NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 4,
    "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
    "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
               "source": source} for source in (
        "n = 3", "%%step first\nitems = list(range(n))",
        "%%step each --foreach item in items\nsquare = item * item", "%%step total\nsum(square)")],
}


class DaemonError(Exception):
    """The daemon cannot start, or cannot be reached."""


def _fingerprint() -> dict[str, int]:
    """Modification times that, when they change, make the daemon's imports stale: nbflow's own
    source, installed packages (a site-packages folder changes when one is added or removed) and
    the Dask config files nbflow's settings come from."""
    paths = [str(p) for p in Path(nbflow.__file__).parent.rglob("*.py")]
    paths += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    for folder in dask.config.paths:
        paths += glob.glob(os.path.join(folder, "*.y*ml"))
    out = {}
    for path in paths:
        with contextlib.suppress(OSError):
            out[path] = os.stat(path).st_mtime_ns
    return out


def _peer_uid(sock: socket.socket) -> int | None:
    """The caller's uid where the system says it (Linux); elsewhere None, and the socket's
    folder, which only its owner can enter, is the only gate."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class Daemon:
    """The serving process: an accepting thread, and commands run one by one on the main thread."""

    def __init__(self, path: Path, idle_timeout: float) -> None:
        self.path = path
        self.key = path.name.removeprefix("daemon-").removesuffix(".sock")
        self.idle_timeout = idle_timeout
        self.started = time.time()
        self.last_used = time.monotonic()
        self.commands = 0
        self.busy = False
        self.ready = False
        self.stopping = False
        # Set only while a command's own code runs: a SIGINT (the caller's Ctrl-C, a stop) then
        # interrupts it; at any other moment the daemon's own bookkeeping must not be cut short.
        self.interruptible = False
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()  # put() is safe in a signal handler
        self.fingerprint: dict[str, int] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The log is what stdout was at start: during a command, descriptors 1 and 2 are the caller's.
        self._log = os.fdopen(os.dup(1), "w", buffering=1)

    def log(self, message: str) -> None:
        with contextlib.suppress(OSError):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} nbflow daemon: {message}", file=self._log)

    # -- starting ---------------------------------------------------------------------------------
    def bind(self) -> None:
        """Take this environment's lock, then its socket (a stale one from a killed daemon goes)."""
        self._lock_file = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DaemonError("a daemon already serves this environment") from exc
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.listener.listen(16)

    def warm_up(self) -> None:
        """Import what ``run`` and ``resume`` use and start the local cluster."""
        if config.get("cluster.address") or config.get("cluster.class"):
            raise DaemonError(
                "nbflow.cluster.address or nbflow.cluster.class is set: the daemon keeps a local "
                "cluster warm, and runs on another cluster would not use it. Unset them, or run "
                "without the daemon.")
        import nbflow.cli  # noqa: F401 - imported now, not during a command
        from nbflow.execute import Executor
        from nbflow.runner import run_notebook
        from nbflow.store import open_store

        # Worker processes started later (scale this cell, a restart) come from a fork server
        # made now: started during a command, they would hold the caller's stdout and stderr
        # (descriptors 1 and 2 are the caller's then) open for as long as they live.
        dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
        # A small real run, in a store thrown away after: it starts the cluster, and has the
        # driver and every worker import and initialize what a run needs.
        with tempfile.TemporaryDirectory(prefix="nbflow-warm-up-") as folder:
            notebook = Path(folder) / "warm_up.ipynb"
            notebook.write_text(json.dumps(WARM_UP_NOTEBOOK))
            store = open_store(str(Path(folder) / "store"))
            try:
                run_notebook(notebook, store=store, executor=Executor.connect())
            finally:
                store.close()
        environment.package_versions(["dask"])  # reads what every installed package provides
        self.fingerprint = _fingerprint()
        self.last_used = time.monotonic()  # idle from now on
        self.ready = True

    # -- serving ----------------------------------------------------------------------------------
    def listen(self) -> None:
        """Answer callers from now on (``status`` says ``ready: false`` while warming up)."""
        threading.Thread(target=self._accept, name="nbflow-daemon-accept", daemon=True).start()

    def on_sigint(self, _signum: int, _frame: Any) -> None:
        if self.interruptible:
            raise KeyboardInterrupt

    def interrupt(self) -> None:
        """Interrupt the command under way, as Ctrl-C would (a real signal, so that a wait the
        main thread is blocked in ends at once); nothing if no command's code is running."""
        if self.interruptible:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def serve(self) -> None:
        while True:
            remaining = self.idle_timeout - (time.monotonic() - self.last_used)
            try:
                job = self.jobs.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                if self.busy:
                    continue
                self.log(f"idle for {self.idle_timeout:g} s; stopping")
                return
            if job == STOP:
                return
            self._command(*job)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                self._answer(conn)
            except Exception as exc:  # one bad caller must not stop the daemon
                self.log(f"a caller was refused: {exc!r}")
                conn.close()

    def _answer(self, conn: socket.socket) -> None:
        """One caller's request. Only an accepted command keeps its connection and the
        descriptors it sent (the main thread runs it); every other answer closes them."""
        channel = Channel(conn)
        handed_over = False
        try:
            if _peer_uid(conn) not in (None, os.getuid()):
                return
            conn.settimeout(5)  # a caller that connects and says nothing must not hold this thread
            request = channel.receive(with_fds=2)
            conn.settimeout(None)
            if request is None:
                return
            op = request.get("op")
            if op == "status":
                send(conn, self.status())
            elif op == "stop":
                send(conn, {"stopping": os.getpid(), "interrupted": self.busy})
                self.stop()
            elif op == "command":
                refusal = self._refusal(request, channel.fds)
                if refusal:
                    send(conn, {"refused": refusal})
                else:
                    self.jobs.put((conn, channel, request))
                    handed_over = True
        finally:
            if not handed_over:
                for fd in channel.fds:
                    os.close(fd)
                conn.close()

    def _refusal(self, request: dict[str, Any], fds: list[int]) -> str | None:
        if len(fds) != 2 or not isinstance(request.get("argv"), list):
            return "a malformed request"
        if environment_key(request.get("env") or {}) != self.key:
            return "its environment differs from the daemon's"
        with self.lock:
            if not self.ready:
                return "it is still starting"
            if self.stopping:
                return "it is stopping"
            if self.busy:
                return "it is busy with another command"
            if _fingerprint() != self.fingerprint:
                self.stopping = True
                self.jobs.put(STOP)
                return ("nbflow, an installed package or a Dask config file changed since it "
                        "started; it stops now: `nbflow daemon start` starts a fresh one")
            self.busy = True
        return None

    def stop(self) -> None:
        """Stop after the current command, which is interrupted as by Ctrl-C (its run is recorded
        interrupted, ready to resume). Safe in a signal handler."""
        self.stopping = True
        self.jobs.put(STOP)
        self.interrupt()

    def status(self) -> dict[str, Any]:
        from nbflow.execute import _local

        dashboard = None
        if _local is not None:
            with contextlib.suppress(Exception):
                dashboard = _local[0].dashboard_link
        return {"pid": os.getpid(), "ready": self.ready, "busy": self.busy,
                "commands": self.commands, "uptime": time.time() - self.started,
                "idle_timeout": self.idle_timeout, "socket": str(self.path),
                "log": str(self.path.with_suffix(".log")), "dashboard": dashboard,
                "nbflow": nbflow.__version__}

    # -- one command --------------------------------------------------------------------------------
    def _command(self, conn: socket.socket, channel: Channel, request: dict[str, Any]) -> None:
        out_fd, err_fd = channel.fds

        def watch() -> None:
            """Each signal from the caller, or the caller gone: interrupt the command (Ctrl-C)."""
            while True:
                try:
                    message = channel.receive()
                except (OSError, ValueError):
                    message = None
                if message is None or "signal" in message:
                    self.interrupt()
                if message is None:
                    return

        code = 1
        began = time.monotonic()
        released = False
        try:
            with self._as_caller(request, out_fd, err_fd):
                send(conn, {"accepted": os.getpid()})
                threading.Thread(target=watch, name="nbflow-daemon-watch", daemon=True).start()
                try:
                    self.interruptible = True
                    code = self._main(request["argv"])
                except KeyboardInterrupt:  # after the command's own handlers
                    code = 130
                finally:
                    self.interruptible = False
            self.commands += 1
            self.log(f"{' '.join(request['argv'][:2])}: exit {code} after "
                     f"{time.monotonic() - began:.2f} s")
            self._release()  # the next caller may come as soon as this one has its exit code
            released = True
            # After the caller's descriptors are given back: its pipes see their end with this.
            send(conn, {"exit": code})
        except OSError as exc:
            self.log(f"a caller went away: {exc!r}")
        finally:
            if not released:
                self._release()
            conn.close()
        from nbflow.execute import reset_local_cluster

        reset_local_cluster()  # a cluster that died is started again by the next command
        gc.collect()

    def _release(self) -> None:
        with self.lock:
            self.busy = False
            self.last_used = time.monotonic()

    @staticmethod
    def _main(argv: list[str]) -> int:
        from nbflow.cli import main

        try:
            return main(argv)
        except SystemExit as exc:  # argparse's usage errors
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                print("nbflow: interrupted", file=sys.stderr)
            return 130
        except Exception:
            with contextlib.suppress(OSError):
                traceback.print_exc()
            return 1

    @contextlib.contextmanager
    def _as_caller(self, request: dict[str, Any], out_fd: int, err_fd: int) -> Any:
        """Run in the caller's folder and environment, writing to its stdout and stderr; undo it
        all afterwards, and forget the local modules the command imported."""
        before_modules = set(sys.modules)
        before_env = dict(os.environ)
        before_path = list(sys.path)
        before_cwd = os.getcwd()
        before_streams = sys.stdout, sys.stderr  # a command may replace them (a broken pipe)
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=stream.isatty())
        try:
            _set_environ(request.get("env") or {})
            cwd = str(request.get("cwd") or "/")
            os.chdir(cwd)
            sys.path.insert(0, cwd)  # as `python -m nbflow` has its folder on the path
            yield
        finally:
            self.interruptible = False
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = before_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            _set_environ(before_env)
            sys.path[:] = before_path
            os.chdir(before_cwd)
            local = freshness.local_modules()
            freshness.drop({m for m in set(sys.modules) - before_modules if m in local})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        from nbflow.execute import _close_local

        _close_local()


def _set_environ(wanted: dict[str, str]) -> None:
    """Make ``os.environ`` equal ``wanted``, touching only the variables that differ (other
    threads of the daemon read it meanwhile)."""
    for name in [n for n in os.environ if n not in wanted]:
        del os.environ[name]
    for name, value in wanted.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


# -- the commands ----------------------------------------------------------------------------------
def _log_path(path: Path) -> Path:
    return path.with_suffix(".log")


def _socket_path() -> Path:
    try:
        return socket_path()
    except OSError as exc:
        raise DaemonError(str(exc)) from exc


def request(op: str, *, timeout: float = 5.0) -> dict[str, Any] | None:
    """Send ``op`` (status, stop) to this environment's daemon; None if none runs."""
    path = _socket_path()
    try:
        sock = connect(path, timeout)
        if sock is None:
            return None
        with sock:
            send(sock, {"op": op})
            return Channel(sock).receive()
    except (OSError, ValueError) as exc:
        raise DaemonError(f"the daemon at {path} did not answer {op!r}: {exc!r}; its log is "
                          f"{_log_path(path)}") from exc


def start(idle_timeout: float, *, wait: float = 120.0) -> dict[str, Any]:
    """Start this environment's daemon (unless one runs) and wait until it serves; its status."""
    running = request("status")
    if running is not None:
        deadline = time.monotonic() + wait
        while not running.get("ready") and time.monotonic() < deadline:  # another start's
            time.sleep(0.05)
            running = request("status") or running
        return {**running, "already": True}
    path = _socket_path()
    log = _log_path(path)
    deadline = time.monotonic() + wait
    while not _lock_free(path):  # a daemon still stopping (or starting: then it answers soon)
        status = request("status")
        if status is not None:
            return {**status, "already": True}
        if time.monotonic() > deadline:
            raise DaemonError(f"a daemon of this environment neither serves nor stops; see {log}")
        time.sleep(0.05)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nbflow.daemon", str(path), str(idle_timeout)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
            start_new_session=True)
    while time.monotonic() < deadline:
        with contextlib.suppress(DaemonError):  # busy starting: ask again
            status = request("status")
            if status is not None and status.get("ready"):
                return status
        if process.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise DaemonError("the daemon stopped while starting:\n" + "\n".join(tail))
        time.sleep(0.05)
    process.terminate()
    raise DaemonError(f"the daemon did not get ready in {wait:g} s; see {log}")


def stop(*, wait: float = 60.0) -> dict[str, Any] | None:
    """Stop this environment's daemon (interrupting a command under way); None if none ran,
    else its pid and whether a command was interrupted."""
    answer = request("stop")
    if answer is None:
        return None
    path = _socket_path()
    deadline = time.monotonic() + wait
    while not _lock_free(path):  # held until the process has closed its cluster and exited
        if time.monotonic() > deadline:
            raise DaemonError(f"daemon {answer['stopping']} did not stop in {wait:g} s")
        time.sleep(0.05)
    return answer


def _lock_free(path: Path) -> bool:
    """Whether no daemon process of this environment is alive (it holds this lock for life)."""
    try:
        with open(path.with_suffix(".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return False
    return True


def _serve(path: Path, idle_timeout: float) -> int:
    with contextlib.suppress(ValueError):
        sys.path.remove(os.getcwd())
    daemon = Daemon(path, idle_timeout)
    try:
        daemon.bind()
    except DaemonError as exc:
        daemon.log(str(exc))
        return 1
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    # A caller's Ctrl-C arrives as a SIGINT to the main thread (set even if started from a shell
    # that ignores SIGINT for background jobs).
    signal.signal(signal.SIGINT, daemon.on_sigint)
    try:
        daemon.log(f"pid {os.getpid()} starting on {path}")
        daemon.listen()
        daemon.warm_up()
        daemon.log("ready")
        daemon.serve()
    except DaemonError as exc:
        daemon.log(str(exc))
        return 1
    finally:
        daemon.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m nbflow.daemon")
    parser.add_argument("socket")
    parser.add_argument("idle_timeout", type=float)
    arguments = parser.parse_args()
    code = _serve(Path(arguments.socket), arguments.idle_timeout)
    # The cluster is closed: exit at once, so that the lock (which `stop` waits for) is released
    # only when this process is gone, not before the interpreter's slow teardown.
    sys.stdout.flush()
    os._exit(code)


__all__ = ["Daemon", "DaemonError", "request", "start", "stop"]
