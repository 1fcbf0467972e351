"""The store: artifacts on an fsspec URL plus metadata in SQL, opened together.

``open_store()`` with no arguments uses Dask's config (``nbflow.store``, ``nbflow.db``) and falls back to
the nearest ``.nbflow/`` folder, found by walking up from the working directory like ``.git``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflow import config
from nbflow.store.artifacts import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactStore,
    SerializationError,
)

if TYPE_CHECKING:
    from nbflow.store.metadata import MetadataDB, MetadataError

# Where a running attempt's stdout/stderr lines so far are kept, next to the complete logs that
# the worker writes when the attempt ends (``logs/RUN/TASK.ATTEMPT.STREAM``): written by the run's
# driver about once a second, read by ``nbflow.client.Task`` while the task runs.
LIVE_LOG = "logs/{run}/{task}.{attempt}.{stream}.live"

__all__ = [
    "LIVE_LOG",
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactStore",
    "MetadataDB",
    "MetadataError",
    "SerializationError",
    "Store",
    "StoreError",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # The metadata side (SQLAlchemy, Alembic) is imported when first used: workers, which only
    # read and write artifacts, start faster without it.
    if name in ("MetadataDB", "MetadataError"):
        from nbflow.store import metadata

        return getattr(metadata, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StoreError(Exception):
    """The store cannot be opened."""


class Store:
    """Artifacts (``store.artifacts``) and metadata (``store.meta``) of one nbflow store."""

    def __init__(self, url: str, db_url: str) -> None:
        self.url = url
        self.db_url = db_url
        from nbflow.store.metadata import MetadataDB

        self.artifacts = ArtifactStore(url, fsync=bool(config.get("fsync", True)))
        self.meta = MetadataDB(db_url)

    @property
    def db_display(self) -> str:
        """The database URL with its password hidden, as runs record it."""
        import sqlalchemy as sa

        try:
            return sa.engine.make_url(self.db_url).render_as_string(hide_password=True)
        except Exception:
            return self.db_url

    def close(self) -> None:
        self.meta.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r}, db={self.db_url!r})"


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def resolve(url: str | None = None, db: str | None = None) -> tuple[str, str]:
    """The artifact URL and database URL to use, from arguments, then config, then `.nbflow/`."""
    url = url or config.get("store")
    db = db or config.get("db")
    local_dir: Path | None = None
    if url is None:
        local_dir = config.find_store_dir()
        url = str(local_dir)
    elif _is_local(url):
        local_dir = Path(url.removeprefix("file://")).expanduser().resolve()
        url = str(local_dir)
    if db is None:
        folder = local_dir if local_dir is not None else config.find_store_dir()
        db = f"sqlite:///{folder / 'nbflow.db'}"
    return url, db


def open_store(url: str | None = None, db: str | None = None, *, writable: bool = True) -> Store:
    """The store at ``url``/``db`` (see ``resolve``), its folder created if need be.
    ``writable=False`` for readers (``nbflow runs``, ``show``, the client API, the sidebar): an
    existing store then opens even where it cannot be written (a read-only mount)."""
    url, db = resolve(url, db)
    if not writable and (not _is_local(url) or Path(url).is_dir()):
        return Store(url, db)
    for candidate in (url, db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else None):
        if candidate is None or not _is_local(candidate):
            continue
        folder = Path(candidate) if candidate == url else Path(candidate).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the nbflow store folder {folder}: {exc.strerror}. Choose a writable "
                "place with --store PATH (or DASK_NBFLOW__STORE)."
            ) from exc
        if not os.access(folder, os.W_OK):
            raise StoreError(
                f"the nbflow store folder {folder} is not writable. Fix its permissions or choose "
                "another place with --store PATH (or DASK_NBFLOW__STORE)."
            )
    return Store(url, db)
