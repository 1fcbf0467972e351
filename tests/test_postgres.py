"""nbflow's metadata on a real PostgreSQL server (the session's private server from conftest.py):
the SQLite metadata tests of test_store.py re-run against PostgreSQL, migrations, two processes
migrating and writing at once, timezones, a whole flow run, and errors for bad URLs."""

from __future__ import annotations

import datetime as dt
import gc
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import alembic.command
import pytest
import sqlalchemy as sa
import test_store
from conftest import PostgresDatabases, PostgresServer, _free_port
from test_store import head_revision, new_run

from nbflow.client import Flow, Run
from nbflow.model import ArtifactRef, RunStatus, TaskStatus
from nbflow.runner import run_notebook
from nbflow.store import MetadataDB, MetadataError, Store, open_store

TABLES = {"alembic_version", "runs", "steps", "tasks", "attempts", "outputs", "tags", "codes"}


@pytest.fixture
def opened(tmp_path: Path, postgres_db_url: str) -> Iterator[Store]:
    """test_store.py's ``opened``, with its metadata in a fresh PostgreSQL database."""
    store = open_store(str(tmp_path / "artifacts"), db=postgres_db_url)
    try:
        yield store
    finally:
        store.close()


# -- test_store.py's metadata tests, collected here again: they use the `opened` above --------

test_run_step_task_lifecycle = test_store.test_run_step_task_lifecycle
test_cache_candidates = test_store.test_cache_candidates
test_runs_filters_paging_newest_first = test_store.test_runs_filters_paging_newest_first
test_runs_same_start_time_break_ties_by_id = test_store.test_runs_same_start_time_break_ties_by_id
test_mark_interrupted = test_store.test_mark_interrupted


def test_the_fixtures_give_a_private_server_and_fresh_databases(
        postgres_url: str, postgres_db_url: str, postgres_server: PostgresServer) -> None:
    assert postgres_url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/nbflow_test"
    assert postgres_db_url != postgres_url
    engine = sa.create_engine(postgres_db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_setting('listen_addresses')")).scalar() \
                == "127.0.0.1"
            assert sa.inspect(conn).get_table_names() == []  # nothing from other tests
            assert conn.execute(sa.text("SHOW server_version_num")).scalar()
    finally:
        engine.dispose()


# -- opening and migrating -------------------------------------------------------------------


def test_open_store_migrates_postgres_to_head(opened: Store, tmp_path: Path,
                                             postgres_db_url: str) -> None:
    assert opened.db_url == postgres_db_url
    assert opened.meta.engine.dialect.name == "postgresql"
    assert opened.meta.engine.dialect.driver == "psycopg"
    assert not list((tmp_path / "artifacts").glob("*.db"))  # no SQLite file on the side
    with opened.meta.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
            (head_revision(),)]
        assert set(sa.inspect(conn).get_table_names()) == TABLES
        types = dict(conn.execute(sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'runs'")).all())
    assert types["started_at"] == "timestamp with time zone"
    assert types["params"] in {"json", "jsonb"}
    with opened.meta.engine.connect() as conn:  # the migrations make exactly schema.py's tables
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        from nbflow.store import schema

        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    ref = opened.artifacts.put([1, 2])
    assert opened.artifacts.get(ref.hash) == [1, 2]


def test_reopen_keeps_data_and_skips_migrations(tmp_path: Path, postgres_db_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(str(tmp_path / "artifacts"), db=postgres_db_url)
    new_run(store.meta, "kept", flow="f")
    store.meta.create_task(run_id="kept", step="s", status="pending")
    store.close()

    def no_upgrade(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("migrations must not run on an up-to-date database")

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    for _ in range(2):
        again = open_store(str(tmp_path / "artifacts"), db=postgres_db_url)
        try:
            assert [r["id"] for r in again.meta.runs()] == ["kept"]
            assert len(again.meta.tasks("kept")) == 1
        finally:
            again.close()


def _newer_schema(db_url: str) -> None:
    """Migrate a fresh database, then mark it with a schema revision no nbflow knows."""
    MetadataDB(db_url).close()
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()


def test_unknown_schema_revision(postgres_db_url: str) -> None:
    _newer_schema(postgres_db_url)
    # trust authentication ignores the password, so this URL connects
    with_password = postgres_db_url.replace("postgres@", "postgres:s3cret-pw@")
    with warnings.catch_warnings():
        # the connection the failed open leaves behind: test_failed_open_leaves_no_connection
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(MetadataError) as info:
            MetadataDB(with_password)
        message = str(info.value)
        del info
        gc.collect()
    assert "9999" in message and "Upgrade nbflow" in message
    assert "s3cret-pw" not in message
    assert with_password.replace("s3cret-pw", "***") in message


def _connections(server: PostgresServer, database: str) -> int:
    import psycopg  # imported here: without it, the fixtures fail with how to install it

    with psycopg.connect(server.url("postgres", "postgresql"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                           (database,)).fetchone()
    assert row is not None
    return int(row[0])


def test_failed_open_leaves_no_connection(postgres_db_url: str,
                                          postgres_server: PostgresServer) -> None:
    _newer_schema(postgres_db_url)
    name = postgres_db_url.rsplit("/", 1)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with pytest.raises(MetadataError, match="Upgrade nbflow"):
                MetadataDB(postgres_db_url)
            deadline = time.monotonic() + 5
            while _connections(postgres_server, name) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _connections(postgres_server, name) == 0
        finally:
            gc.collect()  # let the leaked connection go here, with its warning recorded
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


# -- two processes at once: migration race, then concurrent writes ---------------------------

RUNS_PER_PROCESS = 30


def _open_then_write(db_url: str, tag: str, barrier: Any, report: str) -> None:
    """Child process: open (and so migrate) a fresh database together with the other child, then
    write runs with steps, tasks, attempts and outputs, again at the same time as the other.
    Each migration attempt is noted in ``report + ".upgrades"``."""
    try:
        upgrade = alembic.command.upgrade

        def noted_upgrade(*args: Any, **kwargs: Any) -> None:
            with open(report + ".upgrades", "a") as notes:
                notes.write("attempt\n")
            upgrade(*args, **kwargs)

        alembic.command.upgrade = noted_upgrade
        barrier.wait(timeout=120)
        meta = MetadataDB(db_url)
        try:
            barrier.wait(timeout=120)
            for i in range(RUNS_PER_PROCESS):
                run_id = f"{tag}-{i:03d}"
                new_run(meta, run_id, flow=tag, params={"i": i})
                meta.record_steps(run_id, [{"name": "s", "cell": 1, "code": "x = 1",
                                            "options": {"name": "s"}, "inputs": [],
                                            "outputs": ["x"], "upstream": []}])
                (task,) = meta.create_tasks([{"run_id": run_id, "step": "s",
                                              "cache_key": f"{tag}-{i}"}], start=True)
                meta.finish_task(task, TaskStatus.SUCCEEDED, attempt=1, worker=tag,
                                 outputs={"x": ArtifactRef(f"{i:032x}", i, "int")})
                meta.heartbeat(run_id)
                meta.finish_run(run_id, RunStatus.SUCCEEDED)
        finally:
            meta.close()
    except BaseException as exc:
        Path(report).write_text(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


def _run_children(db_url: str, n: int, tmp_path: Path) -> tuple[list[str], int]:
    """Run ``n`` children on a database; their errors, and how many tried to migrate it."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    errors = test_store._run_children(_open_then_write, db_url, n, folder, with_tag=True)
    migrating = sum(1 for note in folder.glob("child-*.err.upgrades") if note.read_text())
    return errors, migrating


def test_two_processes_migrate_a_fresh_database_and_write_at_once(
        make_postgres_db: PostgresDatabases, tmp_path: Path) -> None:
    for _trial in range(3):  # each trial on a fresh database
        db_url = make_postgres_db()
        errors, migrating = _run_children(db_url, 2, tmp_path)
        assert errors == []
        # Both found no schema; an advisory lock lets exactly one of them migrate.
        assert migrating == 1

        meta = MetadataDB(db_url)
        try:
            with meta.engine.connect() as conn:
                assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                    (head_revision(),)]
            runs = meta.runs()
            assert len(runs) == 2 * RUNS_PER_PROCESS
            assert {r["id"] for r in runs} == {f"p{p}-{i:03d}" for p in (0, 1)
                                                for i in range(RUNS_PER_PROCESS)}
            assert all(r["status"] == "succeeded" for r in runs)
            assert sorted(meta.flows()) == ["p0", "p1"]
            assert [len(meta.runs(flow=f)) for f in ("p0", "p1")] == [RUNS_PER_PROCESS] * 2
            for r in runs:
                (task,) = meta.tasks(r["id"])
                i = r["params"]["i"]
                assert task["status"] == "succeeded"
                assert task["outputs"] == {"x": ArtifactRef(f"{i:032x}", i, "int")}
                assert [(a["number"], a["status"]) for a in meta.attempts(task["id"])] == [
                    (1, "succeeded")]
                assert len(meta.steps(r["id"])) == 1
            found = meta.cache_candidates([f"p0-{RUNS_PER_PROCESS - 1}", "p1-0"])
            assert set(found) == {f"p0-{RUNS_PER_PROCESS - 1}", "p1-0"}
        finally:
            meta.close()


# -- timezones --------------------------------------------------------------------------------


def _assert_aware_utc(value: Any) -> None:
    assert isinstance(value, dt.datetime)
    assert value.tzinfo is not None
    assert value.utcoffset() == dt.timedelta(0)


def test_datetimes_come_back_aware_utc(opened: Store) -> None:
    meta = opened.meta
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    started = dt.datetime(2024, 3, 10, 12, 0, 30, 123456, tzinfo=india)
    new_run(meta, "r", started_at=started)
    run = meta.run("r")
    assert run is not None
    assert run["started_at"] == started  # the same instant...
    _assert_aware_utc(run["started_at"])  # ...in UTC
    assert run["started_at"] == dt.datetime(2024, 3, 10, 6, 30, 30, 123456, tzinfo=dt.UTC)

    tid = meta.create_task(run_id="r", step="s", status="pending")
    meta.start_attempt(tid, 1)
    meta.finish_task(tid, TaskStatus.SUCCEEDED, attempt=1)
    meta.finish_run("r", RunStatus.SUCCEEDED)
    run = meta.run("r")
    task = meta.task(tid)
    assert run is not None and task is not None
    for value in (run["finished_at"], run["heartbeat_at"], *(task[k] for k in
                  ("created_at", "started_at", "finished_at")),
                  *(a[k] for a in meta.attempts(tid) for k in ("started_at", "finished_at"))):
        _assert_aware_utc(value)
    assert task["started_at"] <= task["finished_at"] <= dt.datetime.now(dt.UTC)
    assert [r["id"] for r in meta.runs()] == ["r"]


def test_datetimes_are_utc_on_a_server_not_in_utc(postgres_db_url: str,
                                                   postgres_server: PostgresServer) -> None:
    name = postgres_db_url.rsplit("/", 1)[1]
    postgres_server.admin(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")
    meta = MetadataDB(postgres_db_url)
    try:
        started = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
        new_run(meta, "r", started_at=started)
        run = meta.run("r")
        assert run is not None
        assert run["started_at"] == started
        _assert_aware_utc(run["started_at"])
        _assert_aware_utc(meta.runs()[0]["started_at"])
    finally:
        meta.close()


# -- values SQLite stores and PostgreSQL's json type refuses ----------------------------------


def test_non_finite_float_params_are_stored_as_text(opened: Store) -> None:
    # PostgreSQL's json type refuses NaN and infinities; nbflow stores them as their repr, on
    # every database alike (the params column is the record, not the value a resume uses).
    new_run(opened.meta, "r", params={"tol": float("inf"), "lower": float("-inf"),
                                      "x": [float("nan")]})
    run = opened.meta.run("r")
    assert run is not None
    assert run["params"] == {"tol": "inf", "lower": "-inf", "x": ["nan"]}


def test_nul_characters_in_errors_are_stored(opened: Store) -> None:
    new_run(opened.meta, "r")
    tid = opened.meta.create_task(run_id="r", step="s", status="pending")
    opened.meta.finish_task(tid, TaskStatus.FAILED, error="a\x00b")
    task = opened.meta.task(tid)
    assert task is not None and task["error"] == "a\\x00b"


# -- a whole flow on PostgreSQL metadata ------------------------------------------------------

FLOW = [
    ("n = 3", ["parameters"]),
    "%%step make\nxs = list(range(1, n + 1))",
    "%%step square --foreach x in xs\ny = x * x",
    "%%step total\ns = sum(y)",
]


def test_whole_flow_run_and_cache_on_postgres(notebook, executor, tmp_path: Path,
                                              postgres_db_url: str) -> None:
    store = open_store(str(tmp_path / "s"), db=postgres_db_url)
    try:
        path = notebook(FLOW)
        first = Run(run_notebook(path, store=store, executor=executor), store)
        assert first.status == RunStatus.SUCCEEDED, first.error
        assert first.params == {"n": 3}
        assert [s.name for s in first.steps] == ["make", "square", "total"]
        assert first["square"].upstream == ["make"]
        assert {(t.step, t.index): t.status.value for t in first.tasks} == {
            ("make", None): "succeeded", ("square", 0): "succeeded",
            ("square", 1): "succeeded", ("square", 2): "succeeded", ("total", None): "succeeded"}
        assert first["make"].task.outputs["xs"].load() == [1, 2, 3]
        squares = sorted(first["square"].tasks, key=lambda t: t.index)
        assert [t.outputs["y"].load() for t in squares] == [1, 4, 9]
        assert first["total"].task.outputs["s"].load() == 14
        for task in first.tasks:
            assert task.cache_key and task.worker and task.worker.startswith("tcp://")
            assert [a["status"] for a in task.attempts] == ["succeeded"]
            _assert_aware_utc(task.started_at)
            assert task.started_at <= task.finished_at
        _assert_aware_utc(first.started_at)
        assert not list((tmp_path / "s").glob("*.db"))  # the metadata went to PostgreSQL

        second = Run(run_notebook(path, store=store, executor=executor), store)
        assert second.status == RunStatus.SUCCEEDED, second.error
        assert len(second.tasks) == 5
        assert {t.status.value for t in second.tasks} == {"cached"}
        by_key = {(t.step, t.index): t for t in first.tasks}
        for task in second.tasks:
            assert task.cached_from == by_key[(task.step, task.index)].id
        assert second["total"].task.outputs["s"].load() == 14

        assert [r.id for r in Flow("flow", store).runs()] == [second.id, first.id]
        assert store.meta.flows() == ["flow"]
        assert second.to_json()["counts"] == {"cached": 5}
    finally:
        store.close()


# -- errors -----------------------------------------------------------------------------------


def test_wrong_port_is_a_metadata_error_without_the_password(tmp_path: Path,
                                                             postgres_server: PostgresServer) -> None:
    port = _free_port()
    while port == postgres_server.port:
        port = _free_port()
    url = f"postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:{port}/nbflow_test"
    for opener in (lambda: MetadataDB(url), lambda: open_store(str(tmp_path / "s"), db=url)):
        with pytest.raises(MetadataError) as info:
            opener()
        message = str(info.value)
        assert "s3cret-pw" not in message
        assert f"postgresql+psycopg://postgres:***@127.0.0.1:{port}/nbflow_test" in message
        assert "--db" in message and "reachable" in message


def test_missing_database_is_a_metadata_error(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(f"nbflow_missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(MetadataError) as info:
        MetadataDB(url)
    assert url in str(info.value)
    assert "does not exist" in str(info.value)
