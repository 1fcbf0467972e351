"""Shared fixtures: a real LocalCluster with worker processes, a fresh store, notebooks on disk."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dask.config
import nbformat
import psutil
import pytest
from distributed import Client, LocalCluster

from nbflow.execute import Executor
from nbflow.store import Store, open_store

WORKER_MEMORY = 2 * 2**30


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """Two single-threaded worker processes declaring memory and cpus, as nbflow's default does
    (Dask must not re-run a task whose worker died: nbflow counts attempts itself)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
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


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a private, throwaway server for the test session (tests/test_postgres.py).
# `bash scripts/test` installs the server binaries (Debian's postgresql) and psycopg when missing.

PG_SETUP_HINT = ("run `bash scripts/test` once (it installs Debian's postgresql package and "
                 "psycopg through the `test` extra), then run the tests again")


def _pg_bindir() -> Path | None:
    """The folder of initdb/pg_ctl/postgres: on PATH, from `pg_config --bindir`, or Debian's."""
    import glob
    import shutil
    import subprocess

    found = shutil.which("initdb")
    if found:
        folder = Path(found).resolve().parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                  reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if all((folder / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


PG_TEMP_PREFIX = "nbflow-pg-"


class PostgresServer:
    """initdb + pg_ctl in a temp dir; as root, both run as the `postgres` user."""

    def __init__(self, bindir: Path, root: Path | None = None) -> None:
        """A new temp dir, or (``root``) the dir of an earlier server, to stop it."""
        import os
        import tempfile

        self.bindir = bindir
        self.root = root or Path(tempfile.mkdtemp(prefix=PG_TEMP_PREFIX))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = 0
        self.as_root = os.geteuid() == 0
        if root is not None:
            return
        self.sockets.mkdir()
        (self.root / "owner").write_text(str(os.getpid()))  # see _stop_abandoned_servers
        if self.as_root:
            import pwd
            import shutil

            try:
                pg_user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                pytest.fail("there is no `postgres` user to run the PostgreSQL test server as "
                            f"(initdb refuses to run as root): {PG_SETUP_HINT}", pytrace=False)
            for path in (self.root, self.sockets):
                os.chown(path, pg_user.pw_uid, pg_user.pw_gid)

    def _run(self, *args: str) -> None:
        import subprocess

        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False,
                              cwd=self.root)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}"
                               f"{proc.stderr}\n{log}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-locale", "--no-sync")
        last: Exception | None = None
        for _ in range(3):  # a free port can be taken by someone else before the server binds it
            self.port = _free_port()
            options = " ".join([
                "-c listen_addresses=127.0.0.1", f"-c port={self.port}",
                f"-c unix_socket_directories={self.sockets}", "-c timezone=UTC",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=200",
            ])
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "60", "start")
                return
            except RuntimeError as exc:
                last = exc
        assert last is not None
        raise last

    def stop(self) -> None:
        import shutil

        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on the server."""
        import psycopg

        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True,
                             connect_timeout=30) as conn:
            conn.execute(sql)


def _stop_abandoned_servers(bindir: Path) -> None:
    """Stop and remove the servers of earlier test sessions that were killed before their
    teardown (their pytest process is gone), so they do not pile up on a developer's machine."""
    import contextlib
    import tempfile

    for root in Path(tempfile.gettempdir()).glob(f"{PG_TEMP_PREFIX}*"):
        try:
            owner = int((root / "owner").read_text())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(owner):
            continue
        # someone else's, or already half gone: not this session's business
        with contextlib.suppress(Exception):
            PostgresServer(bindir, root).stop()


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"psycopg is not installed ({exc}): {PG_SETUP_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server on 127.0.0.1 for this test session; missing binaries fail."""
    _require_psycopg()
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found on "
                    f"PATH, via `pg_config --bindir` or in Debian's usual place: {PG_SETUP_HINT}",
                    pytrace=False)
    _stop_abandoned_servers(bindir)
    server = PostgresServer(bindir)
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"cannot start the PostgreSQL test server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql+psycopg://postgres@127.0.0.1:PORT/nbflow_test`` on the session's server."""
    postgres_server.admin('CREATE DATABASE "nbflow_test"')
    return postgres_server.url("nbflow_test")


class PostgresDatabases:
    """``make_postgres_db()`` creates an empty database and returns its URL."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.names: list[str] = []

    def __call__(self) -> str:
        import uuid

        name = f"nbflow_{uuid.uuid4().hex[:16]}"
        self.server.admin(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.server.url(name)

    def drop_all(self) -> None:
        for name in self.names:
            self.server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabases]:
    """Fresh databases on demand for one test; all dropped (connections or not) afterwards."""
    databases = PostgresDatabases(postgres_server)
    yield databases
    databases.drop_all()


@pytest.fixture
def postgres_db_url(make_postgres_db: PostgresDatabases) -> str:
    """A fresh, empty database of its own for one test: tests never see each other's rows."""
    return make_postgres_db()


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """pytest-jupyter's server, with nbflow's server extension (for the modules that load the
    `pytest_jupyter.jupyter_server` plugin)."""
    return {"ServerApp": {"jpserver_extensions": {"nbflow.server": True}}}


@pytest.fixture
def ip(store: Store, executor: Executor) -> Iterator[Any]:
    """A real IPython shell with `%load_ext nbflow`, its session recording into ``store`` and
    running steps on the session's cluster (as a notebook called analysis.ipynb)."""
    from IPython.core.interactiveshell import InteractiveShell

    from nbflow.session import InteractiveSession

    # An InteractiveShell puts its own module in sys.modules["__main__"], which breaks
    # multiprocessing's spawn in later tests of this process: put the real one back afterwards.
    main = sys.modules["__main__"]
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbflow")
    magics = shell.magics_manager.registry["NbflowMagics"]
    shell.reset(new_session=False)
    magics._session = InteractiveSession(shell.user_ns, store=store, executor=executor,
                                         notebook="analysis.ipynb")
    try:
        yield shell
    finally:
        magics._session.close()
        magics._session = None
        sys.modules["__main__"] = main
