"""The ``nbflow`` command's front door: ``run`` and ``resume`` go to a warm daemon if one serves here.

A fresh ``nbflow run`` spends about two seconds before its first step: importing Dask and starting
the local cluster's worker processes. ``nbflow daemon start`` keeps a driver process with a warm
local cluster (``nbflow.daemon``); this module, which imports only the standard library, hands it
``run`` and ``resume`` commands over a Unix socket, together with the caller's stdout and stderr
file descriptors, so that the daemon writes to the same terminal or pipe. Every other command, and
these two when no daemon serves this environment (or it is busy with another command), runs in
this process as before.

A daemon serves only callers whose environment equals the one it started in (every environment
variable except the few that name a terminal or a shell's state, and the same Python): its workers
run with the daemon's environment, so a caller with other variables gets its own process instead.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

FORWARDED = ("run", "resume")
# Variables that describe a terminal or a shell, not what a run computes: they do not choose the daemon.
VOLATILE = frozenset({
    "_", "PWD", "OLDPWD", "SHLVL", "COLUMNS", "LINES", "TERM", "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION", "TERM_SESSION_ID", "COLORTERM", "WINDOWID", "TMUX", "TMUX_PANE",
    "STY", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "PS1", "PROMPT_COMMAND", "HISTFILE",
    "LS_COLORS", "NBFLOW_NO_DAEMON",
})
MAX_MESSAGE = 1 << 20
ACCEPT_TIMEOUT = 30.0  # seconds a daemon may take to take or refuse a command
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def environment_key(environ: dict[str, str] | None = None) -> str:
    """What a daemon must share with its callers: Python, and the non-volatile environment."""
    environ = dict(os.environ if environ is None else environ)
    kept = sorted((k, v) for k, v in environ.items() if k not in VOLATILE)
    # sys.prefix too: every virtual environment's python resolves to the same base interpreter.
    text = json.dumps([sys.executable, sys.prefix, kept])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def runtime_dir() -> Path:
    """A folder only this user can enter, for daemon sockets and logs (like tmux's):
    ``$XDG_RUNTIME_DIR/nbflow-UID``, or ``/tmp/nbflow-UID`` where that path is too long for a
    Unix socket's name (about 100 bytes)."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"nbflow-{os.getuid()}"
    if len(os.fsencode(folder)) > SOCKET_PATH_MAX - len("/daemon-0123456789abcdef.sock"):
        folder = Path("/tmp") / f"nbflow-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{folder} must be a folder owned by you and closed to others (chmod 700); "
                      "nbflow will not put a daemon's socket there")
    return folder


def socket_path(key: str | None = None) -> Path:
    return runtime_dir() / f"daemon-{key or environment_key()}.sock"


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(data)


class Channel:
    """Newline-delimited JSON messages in from a socket (file descriptors with the first one)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []

    def receive(self, *, with_fds: int = 0) -> dict[str, Any] | None:
        """The next message, or None when the peer has closed the connection."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_MESSAGE:
                raise ValueError("message too long")
            if with_fds:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, with_fds)
                self.fds.extend(fds)
            else:
                data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        return message


def connect(path: Path, timeout: float | None = None) -> socket.socket | None:
    """A connection to the daemon at ``path``, or None if none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def forward(argv: list[str]) -> int | None:
    """Have the daemon serving this environment run ``argv``; its exit code, or None to run here."""
    if os.name != "posix" or not hasattr(socket, "AF_UNIX"):
        return None
    try:
        path = socket_path()
    except OSError:
        return None
    if not path.exists():
        return None
    try:
        sock = connect(path, timeout=ACCEPT_TIMEOUT)
    except OSError:
        return None
    if sock is None:
        return None
    with sock:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            streams = [sys.stdout.fileno(), sys.stderr.fileno()]
            send(sock, {"op": "command", "argv": argv, "cwd": os.getcwd(),
                        "env": dict(os.environ)}, streams)
        except (AttributeError, OSError, ValueError):  # no real stdout/stderr, or no cwd
            return None
        channel = Channel(sock)
        try:
            reply = channel.receive()
        except (OSError, ValueError) as exc:  # a daemon stuck, or closing with callers queued
            reply = {"refused": f"no answer: {exc!r}"}
        if reply is None or "accepted" not in reply:
            why = (reply or {}).get("refused", "it closed the connection")
            print(f"nbflow: the daemon did not take this command ({why}); running it here.",
                  file=sys.stderr, flush=True)
            return None

        def interrupt(signum: int, _frame: Any) -> None:
            with contextlib.suppress(OSError):
                send(sock, {"signal": signal.Signals(signum).name})

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, interrupt)
        sock.settimeout(None)  # the command takes as long as it takes
        try:
            done = channel.receive()
        except (OSError, ValueError):
            done = None
        if done is None or "exit" not in done:
            print(f"nbflow: error: the daemon (pid {reply['accepted']}) stopped during the command; "
                  f"its log is {path.with_suffix('.log')}. A run it was driving shows as "
                  "interrupted: `nbflow resume` it.", file=sys.stderr)
            return 2
        return int(done["exit"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if (argv and argv[0] in FORWARDED and not {"-h", "--help", "--cluster"} & set(argv)
            and not any(a.startswith("--cluster=") for a in argv)
            and os.environ.get("NBFLOW_NO_DAEMON") != "1"):
        code = forward(argv)
        if code is not None:
            return code
    from nbflow.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
