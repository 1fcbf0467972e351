"""Run, step, task and attempt records in a SQL database through SQLAlchemy.

SQLite (WAL, in the store folder) by default; any SQLAlchemy URL by config, e.g. PostgreSQL for a
team. The schema is versioned with Alembic and upgraded when a database is opened, so a store made
by an older nbflow still opens. Each write is one short transaction that only writes, so several
processes (two runs, a run and the sidebar) share one SQLite file without lock upgrades.
Rows come back as plain dicts with timezone-aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nbflow.model import ArtifactRef, RunStatus, TaskStatus
from nbflow.store import schema as t

if TYPE_CHECKING:
    from alembic.config import Config

Row = dict[str, Any]

# The newest migration in migrations/versions (a test checks it). A database already there opens
# without importing Alembic, which only runs when a database is new or older than this.
HEAD = "0004"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: Any) -> Any:
    """Datetimes as aware UTC, whatever the database's own time zone."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


def _finite(obj: Any) -> Any:
    """JSON that every database takes: NaN and infinities become strings ("inf", "nan")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _json_dumps(obj: Any) -> str:
    return json.dumps(_finite(obj))


def _text(value: Any) -> Any:
    """Text every database stores: PostgreSQL refuses NUL characters."""
    return value.replace("\x00", "\\x00") if isinstance(value, str) else value


def _row(mapping: Mapping[Any, Any]) -> Row:
    return {k: _aware(v) for k, v in mapping.items()}


_MIGRATION_LOCK = 0x6E62666C6F77  # "nbflow": the PostgreSQL advisory lock taken to migrate


def _shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class MetadataError(Exception):
    """The metadata database cannot be opened or written."""


def _alembic_config(conn: sa.Connection | None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "nbflow.store:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def _sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (None for other databases and in-memory SQLite)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.query:
        return None
    return None if parsed.database == ":memory:" else parsed.database


def _sqlite_read_only(url: str) -> bool:
    """Whether ``url`` is an existing SQLite file whose folder cannot be written (a read-only
    file system, or no permission): SQLite could read it but not keep its WAL files there."""
    path = _sqlite_file(url)
    if path is None or not os.path.isfile(path):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    try:
        read_only_fs = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_fs = False
    return read_only_fs or not os.access(folder, os.W_OK)


def _immutable(url: str) -> str:
    """The SQLite URL that opens the same file read-only and immutable (no WAL, no locks)."""
    path = os.path.abspath(_sqlite_file(url) or "")
    return f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# What a database says when the disk under it cannot take a write: the message to give instead.
_STORAGE_FAILURES = (
    ("database or disk is full", "its disk is full", "free space there"),
    ("No space left on device", "its disk is full", "free space there"),
    ("readonly database", "it is read-only", "make the file and its folder writable"),
    ("disk I/O error", "the disk failed a read or write", "check the disk"),
)


def _sqlite_disk_full(url: sa.engine.URL | None) -> bool:
    """Whether the file system holding this SQLite database has (almost) no space left: SQLite
    reports a full disk as a "disk I/O error" when it cannot even create its ``-shm`` file."""
    if url is None or url.get_backend_name() != "sqlite" or not url.database:
        return False
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(url.database)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _storage_error(context: sa.engine.ExceptionContext) -> None:
    """Turn a database that cannot write (full, read-only) into one clear ``MetadataError``.
    The failed transaction is rolled back, so what was recorded before stays readable."""
    text = str(context.original_exception)
    url = context.engine.url if context.engine is not None else None
    if "disk I/O error" in text and _sqlite_disk_full(url):
        text = f"database or disk is full: {text}"
    for needle, what, fix in _STORAGE_FAILURES:
        if needle in text:
            shown = _shown_url(str(url)) if url is not None else "?"
            raise MetadataError(
                f"cannot write to the metadata database {shown}: {what} ({text.strip()}). Fix: "
                f"{fix}, or use another database with --db (or DASK_NBFLOW__DB); what it "
                "recorded before is intact.") from context.original_exception


class MetadataDB:
    """The one writer path and the readers of nbflow's metadata."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._kept_codes: set[str] = set()  # step bodies recorded with a task by this process
        engine: sa.Engine | None = None
        # A SQLite file in a folder nobody can write to (a read-only mount, a snapshot): opened
        # immutable, so its history still reads (WAL would need to create its -shm file).
        self.readonly = _sqlite_read_only(url)
        try:
            engine = self.engine = sa.create_engine(
                _immutable(url) if self.readonly else url, json_serializer=_json_dumps)
            if self.engine.dialect.name == "sqlite" and not self.readonly:
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "handle_error", _storage_error)
            self._migrate()
        except MetadataError:
            if engine is not None:
                engine.dispose()
            raise
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            if engine is not None:
                engine.dispose()
            shown = _shown_url(url)
            raise MetadataError(
                f"cannot open the metadata database {shown}: {exc.__class__.__name__}: "
                f"{exc}. Check the --db URL (or nbflow.db in Dask's config), that its driver is "
                "installed, and that the database is reachable and writable."
            ) from exc

    def _revision(self) -> str | None:
        """The database's schema revision, None for a new database (no ``alembic_version``)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return None if found is None else str(found)

    def _migrate(self) -> None:
        if self._revision() == HEAD:
            return
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(_alembic_config(None))
        head = script.get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        if self.readonly:
            raise MetadataError(
                f"the metadata database {_shown_url(self.url)} is read-only and has schema "
                f"{current}, older than this nbflow's ({head}); open it once where it is "
                "writable, so that it is migrated, or read it with the nbflow that wrote it.")
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise MetadataError(
                f"the metadata database {_shown_url(self.url)} has schema {current}, newer than "
                "this nbflow "
                f"knows ({head}). Upgrade nbflow."
            )
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # One migrator at a time; the others find the schema current once they get
                    # the lock (it is released when this transaction ends).
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": _MIGRATION_LOCK})
                    if MigrationContext.configure(conn).get_current_revision() == head:
                        return
                command.upgrade(_alembic_config(conn), "head")
        except sa.exc.DBAPIError:
            # SQLite: another process opening the same new database may have migrated it first:
            # that is fine if the schema is now current, and a real error otherwise.
            for _ in range(50):
                with self.engine.connect() as conn:
                    if MigrationContext.configure(conn).get_current_revision() == head:
                        return
                time.sleep(0.1)
            raise

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, **values: Any) -> None:
        values.setdefault("started_at", now())
        values.setdefault("heartbeat_at", values["started_at"])
        values.setdefault("status", RunStatus.RUNNING.value)
        with self.engine.begin() as conn:
            conn.execute(t.runs.insert().values(**values))

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(**values))

    def heartbeat(self, run_id: str) -> None:
        self.update_run(run_id, heartbeat_at=now())

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        self.update_run(run_id, status=status.value, error=_text(error), finished_at=now())

    def mark_interrupted(self, stale_after: float) -> list[str]:
        """Runs still `running` whose driver has not heartbeated for ``stale_after`` seconds."""
        cutoff = now() - dt.timedelta(seconds=stale_after)
        with self.engine.connect() as conn:
            stale = [
                r.id
                for r in conn.execute(
                    sa.select(t.runs.c.id).where(
                        t.runs.c.status == RunStatus.RUNNING.value, t.runs.c.heartbeat_at < cutoff
                    )
                )
            ]
        if not stale:
            return []
        open_states = [TaskStatus.PENDING.value, TaskStatus.RUNNING.value]
        with self.engine.begin() as conn:
            conn.execute(
                t.runs.update()
                .where(t.runs.c.id.in_(stale), t.runs.c.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.INTERRUPTED.value, finished_at=now(),
                        error="the driver stopped heartbeating (killed or crashed)")
            )
            conn.execute(
                t.tasks.update()
                .where(t.tasks.c.run_id.in_(stale), t.tasks.c.status.in_(open_states))
                .values(status=TaskStatus.CANCELLED.value, error="run interrupted")
            )
        return stale

    def close_open_tasks(self, run_id: str, reason: str) -> None:
        """Mark every task and attempt of the run still pending or running as cancelled."""
        open_states = [TaskStatus.PENDING.value, TaskStatus.RUNNING.value]
        stamp = now()
        with self.engine.begin() as conn:
            open_ids = sa.select(t.tasks.c.id).where(t.tasks.c.run_id == run_id).scalar_subquery()
            conn.execute(
                t.attempts.update()
                .where(t.attempts.c.task_id.in_(open_ids), t.attempts.c.status.in_(open_states))
                .values(status=TaskStatus.CANCELLED.value, error=reason, finished_at=stamp)
            )
            conn.execute(
                t.tasks.update()
                .where(t.tasks.c.run_id == run_id, t.tasks.c.status.in_(open_states))
                .values(status=TaskStatus.CANCELLED.value, error=reason, finished_at=stamp)
            )

    def runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Row]:
        q = sa.select(t.runs).order_by(t.runs.c.started_at.desc(), t.runs.c.id.desc())
        if flow is not None:
            q = q.where(t.runs.c.flow == flow)
        if status is not None:
            q = q.where(t.runs.c.status == status)
        if tag is not None:
            q = q.where(t.runs.c.id.in_(sa.select(t.tags.c.run_id).where(t.tags.c.name == tag)))
        q = q.offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(q)]

    def run(self, run_id: str) -> Row | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(t.runs).where(t.runs.c.id == run_id)).first()
        return None if r is None else _row(r._mapping)

    def task_counts(self, run_ids: list[str]) -> dict[str, dict[str, int]]:
        """Tasks per status for each run, in one query (a page of the run history)."""
        out: dict[str, dict[str, int]] = {r: {} for r in run_ids}
        if not run_ids:
            return out
        q = (sa.select(t.tasks.c.run_id, t.tasks.c.status, sa.func.count())
             .where(t.tasks.c.run_id.in_(run_ids))
             .group_by(t.tasks.c.run_id, t.tasks.c.status))
        with self.engine.connect() as conn:
            for run_id, status, n in conn.execute(q):
                out[run_id][status] = int(n)
        return out

    def artifact(self, key: str) -> Row | None:
        """Size and type of the artifact ``key``, and one task that made it."""
        q = sa.select(t.outputs, t.tasks.c.run_id, t.tasks.c.step).join(
            t.tasks, t.tasks.c.id == t.outputs.c.task_id).where(t.outputs.c.hash == key).limit(1)
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
            return _row(r._mapping) if r is not None else None

    # -- tags and notes ------------------------------------------------------------------------
    def add_tags(self, run_id: str, names: Iterable[str]) -> None:
        """Tag a run (a tag it has already is kept as it is)."""
        with self.engine.begin() as conn:
            have = {r.name for r in conn.execute(
                sa.select(t.tags.c.name).where(t.tags.c.run_id == run_id))}
            new = sorted(set(names) - have)
            if new:
                stamp = now()
                conn.execute(t.tags.insert(), [{"run_id": run_id, "name": n, "created_at": stamp}
                                               for n in new])

    def remove_tags(self, run_id: str, names: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.tags.delete().where(t.tags.c.run_id == run_id,
                                               t.tags.c.name.in_(sorted(set(names)))))

    def tags(self, run_ids: list[str]) -> dict[str, list[str]]:
        """Each run's tags, sorted (one query for a page of runs)."""
        out: dict[str, list[str]] = {r: [] for r in run_ids}
        if not run_ids:
            return out
        q = (sa.select(t.tags.c.run_id, t.tags.c.name).where(t.tags.c.run_id.in_(run_ids))
             .order_by(t.tags.c.name))
        with self.engine.connect() as conn:
            for run_id, name in conn.execute(q):
                out[run_id].append(name)
        return out

    def tag_counts(self) -> list[tuple[str, int]]:
        """Every tag in use and how many runs have it, by name."""
        q = (sa.select(t.tags.c.name, sa.func.count()).group_by(t.tags.c.name)
             .order_by(t.tags.c.name))
        with self.engine.connect() as conn:
            return [(name, int(n)) for name, n in conn.execute(q)]

    def set_note(self, run_id: str, note: str | None) -> None:
        self.update_run(run_id, note=_text(note) or None)

    # -- code ----------------------------------------------------------------------------------
    def _keep_code(self, conn: sa.Connection, text: str) -> str:
        """Keep a step body once, under its hash, in the transaction that records its tasks (so
        that a concurrent ``nbflow gc`` never sees it unreferenced); its hash. A body this
        process recorded a task with already is not written again (a cache hit in a kernel
        stays a few statements): that task, in a run still going, keeps it referenced."""
        import xxhash

        key = xxhash.xxh3_128(text.encode()).hexdigest()
        if key in self._kept_codes:
            return key
        values = {"hash": key, "text": _text(text)}
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects import sqlite

            conn.execute(sqlite.insert(t.codes).values(**values).on_conflict_do_nothing())
        elif conn.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            conn.execute(postgresql.insert(t.codes).values(**values).on_conflict_do_nothing())
        elif conn.execute(sa.select(t.codes.c.hash).where(t.codes.c.hash == key)).first() is None:
            conn.execute(t.codes.insert().values(**values))
        return key

    def forget_kept_codes(self) -> None:
        """After step bodies may have been deleted (``nbflow gc``): write them again when next
        recorded."""
        self._kept_codes.clear()

    def codes(self, keys: Iterable[str | None]) -> dict[str, str]:
        """Step bodies by hash (missing and None keys are left out)."""
        wanted = sorted({k for k in keys if k})
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return {r.hash: r.text for r in conn.execute(
                sa.select(t.codes).where(t.codes.c.hash.in_(wanted)))}

    def flows(self) -> list[str]:
        with self.engine.connect() as conn:
            q = sa.select(t.runs.c.flow).distinct().order_by(t.runs.c.flow)
            return [r.flow for r in conn.execute(q)]

    # -- steps ---------------------------------------------------------------------------------
    def record_steps(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        values = [{"run_id": run_id, **r} for r in rows]
        if values:
            with self.engine.begin() as conn:
                conn.execute(t.steps.insert(), values)

    def save_step(self, run_id: str, row: Mapping[str, Any]) -> None:
        """Record a step of a run, replacing an earlier version of it (interactive runs)."""
        with self.engine.begin() as conn:
            conn.execute(t.steps.delete().where(t.steps.c.run_id == run_id,
                                                t.steps.c.name == row["name"]))
            conn.execute(t.steps.insert().values(run_id=run_id, **row))

    def steps(self, run_id: str) -> list[Row]:
        with self.engine.connect() as conn:
            q = sa.select(t.steps).where(t.steps.c.run_id == run_id).order_by(t.steps.c.cell)
            return [_row(r._mapping) for r in conn.execute(q)]

    # -- tasks ---------------------------------------------------------------------------------
    def create_task(self, **values: Any) -> int:
        return self.create_tasks([values])[0]

    def start_attempt(self, task_id: int, number: int) -> None:
        started = now()
        with self.engine.begin() as conn:
            conn.execute(
                t.tasks.update()
                .where(t.tasks.c.id == task_id)
                .values(status=TaskStatus.RUNNING.value, attempts=number,
                        started_at=sa.func.coalesce(t.tasks.c.started_at, started))
            )
            conn.execute(
                t.attempts.insert().values(task_id=task_id, number=number,
                                           status=TaskStatus.RUNNING.value, started_at=started)
            )

    def finish_attempt(self, task_id: int, number: int, status: TaskStatus, *,
                       worker: str | None = None, error: str | None = None,
                       **values: Any) -> None:
        values.setdefault("finished_at", now())
        with self.engine.begin() as conn:
            conn.execute(
                t.attempts.update()
                .where(t.attempts.c.task_id == task_id, t.attempts.c.number == number)
                .values(status=status.value, worker=worker, error=_text(error), **values)
            )

    def finish_task(
        self,
        task_id: int,
        status: TaskStatus,
        *,
        outputs: Mapping[str, ArtifactRef] | None = None,
        attempt: int | None = None,
        **values: Any,
    ) -> None:
        """Record a task's end (and, with ``attempt``, that attempt's end) in one transaction."""
        values.setdefault("finished_at", now())
        if "error" in values:
            values["error"] = _text(values["error"])
        with self.engine.begin() as conn:
            if attempt is not None:
                conn.execute(
                    t.attempts.update()
                    .where(t.attempts.c.task_id == task_id, t.attempts.c.number == attempt)
                    .values(status=status.value, worker=values.get("worker"),
                            error=values.get("error"), finished_at=values["finished_at"],
                            **({"started_at": values["started_at"]} if "started_at" in values
                               else {}))
                )
            conn.execute(
                t.tasks.update().where(t.tasks.c.id == task_id).values(status=status.value, **values)
            )
            if outputs:
                conn.execute(
                    t.outputs.insert(),
                    [{"task_id": task_id, "name": n, "hash": r.hash, "size": r.size, "type": r.type}
                     for n, r in outputs.items()],
                )

    def tasks(self, run_id: str, step: str | None = None) -> list[Row]:
        q = sa.select(t.tasks).where(t.tasks.c.run_id == run_id)
        if step is not None:
            q = q.where(t.tasks.c.step == step)
        q = q.order_by(t.tasks.c.id)
        with self.engine.connect() as conn:
            rows = [_row(r._mapping) for r in conn.execute(q)]
            self._attach_outputs(conn, rows)
        return rows

    def task(self, task_id: int) -> Row | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).first()
            if r is None:
                return None
            rows = [_row(r._mapping)]
            self._attach_outputs(conn, rows)
        return rows[0]

    def attempts(self, task_id: int) -> list[Row]:
        with self.engine.connect() as conn:
            q = sa.select(t.attempts).where(t.attempts.c.task_id == task_id).order_by(
                t.attempts.c.number)
            return [_row(r._mapping) for r in conn.execute(q)]

    def cache_candidates(self, cache_keys: list[str], limit: int = 5) -> dict[str, list[Row]]:
        """For each key, its succeeded tasks (newest first, at most ``limit``) with outputs."""
        out: dict[str, list[Row]] = {}
        if not cache_keys:
            return out
        q = (
            sa.select(t.tasks)
            .where(t.tasks.c.cache_key.in_(sorted(set(cache_keys))),
                   t.tasks.c.status == TaskStatus.SUCCEEDED.value)
            .order_by(t.tasks.c.id.desc())
        )
        with self.engine.connect() as conn:
            rows = []
            for r in conn.execute(q):
                found = out.setdefault(r.cache_key, [])
                if len(found) < limit:
                    row = _row(r._mapping)
                    found.append(row)
                    rows.append(row)
            self._attach_outputs(conn, rows)
        return out

    def create_tasks(self, rows: list[dict[str, Any]], *, start: bool = False,
                     code: str | None = None) -> list[int]:
        """Insert tasks in one transaction; with ``start``, running with their first attempt;
        with ``code``, the step body they run (kept in ``codes``, their ``code_hash``)."""
        if not rows:
            return []
        created = now()
        ids = []
        with self.engine.begin() as conn:
            code_hash = self._keep_code(conn, code) if code is not None else None
            for values in rows:
                if code_hash is not None:
                    values = {**values, "code_hash": code_hash}
                values = {"created_at": created, "attempts": 0,
                          "status": TaskStatus.PENDING.value, **values}
                if start:
                    values.update(status=TaskStatus.RUNNING.value, attempts=1, started_at=created)
                key = conn.execute(t.tasks.insert().values(**values)).inserted_primary_key
                assert key is not None
                ids.append(int(key[0]))
            if start:
                conn.execute(t.attempts.insert(), [
                    {"task_id": i, "number": 1, "status": TaskStatus.RUNNING.value,
                     "started_at": created} for i in ids])
        if code_hash is not None:
            self._kept_codes.add(code_hash)  # committed with a task that uses it
        return ids

    def record_cached_tasks(self, pairs: list[tuple[dict[str, Any], Row]], *,
                            code: str | None = None) -> list[int]:
        """Insert finished ``cached`` tasks, each reusing the outputs of the task ``hit``
        (``code`` as for ``create_tasks``)."""
        if not pairs:
            return []
        stamp = now()
        ids = []
        with self.engine.begin() as conn:
            code_hash = self._keep_code(conn, code) if code is not None else None
            for values, hit in pairs:
                if code_hash is not None and not values.get("code_hash"):
                    values = {**values, "code_hash": code_hash}  # a reused task keeps its own
                values = {**values, "status": TaskStatus.CACHED.value, "attempts": 0,
                          "created_at": stamp, "started_at": stamp, "finished_at": stamp,
                          "cached_from": hit["id"], "files": hit["files"], "worker": hit["worker"],
                          "stdout_path": hit["stdout_path"], "stderr_path": hit["stderr_path"],
                          "display": hit.get("display")}
                key = conn.execute(t.tasks.insert().values(**values)).inserted_primary_key
                assert key is not None
                ids.append(int(key[0]))
                outputs = hit["outputs"]
                if outputs:
                    conn.execute(t.outputs.insert(), [
                        {"task_id": ids[-1], "name": n, "hash": r.hash, "size": r.size,
                         "type": r.type} for n, r in outputs.items()])
        if code_hash is not None:
            self._kept_codes.add(code_hash)  # committed with a task that uses it
        return ids

    @staticmethod
    def _attach_outputs(conn: sa.Connection, rows: list[Row]) -> None:
        by_id = {r["id"]: r for r in rows}
        for r in rows:
            r["outputs"] = {}
        if not by_id:
            return
        q = sa.select(t.outputs).where(t.outputs.c.task_id.in_(list(by_id)))
        for o in conn.execute(q):
            by_id[o.task_id]["outputs"][o.name] = ArtifactRef(o.hash, o.size, o.type)
