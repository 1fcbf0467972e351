"""The metadata tables (SQLAlchemy Core). Changes to them go through an Alembic migration.

``runs``      one execution of a flow; ``heartbeat_at`` is refreshed by its driver
``steps``     the steps of a run as analysed: code, options, inputs, outputs, upstream steps
``tasks``     one execution of a step in a run (one per foreach item): status, cache key, timings
``attempts``  each try of a task (``--retry``), with its worker and error
``outputs``   task -> artifact hash, one row per output name
``tags``      run -> tag names (``nbflow tag``)
``codes``     each distinct step body once, by hash; tasks point at the code they ran
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("flow", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("notebook_path", sa.Text),
    sa.Column("notebook_hash", sa.String(64)),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("environment", sa.JSON, nullable=False),
    sa.Column("resumed_from", sa.String(40)),
    sa.Column("cluster", sa.JSON),
    sa.Column("store_url", sa.Text),
    sa.Column("db_url", sa.Text),  # the metadata database, password hidden
    sa.Column("driver", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("note", sa.Text),  # free text, `nbflow note`
    sa.Column("started_at", TS, nullable=False, index=True),
    sa.Column("finished_at", TS),
    sa.Column("heartbeat_at", TS),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("cell", sa.Integer),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("upstream", sa.JSON, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("step", sa.String(200), nullable=False),
    sa.Column("idx", sa.Integer),
    sa.Column("item", sa.Text),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("cache_key", sa.String(64), index=True),
    sa.Column("cached_from", sa.Integer),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.Text),
    sa.Column("resources", sa.JSON),
    sa.Column("inputs", sa.JSON),
    sa.Column("files", sa.JSON),
    sa.Column("stdout_path", sa.Text),
    sa.Column("stderr_path", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("error_type", sa.String(200)),
    # The stored rich display of the step's last expression ({"hash", "size", "type"}), if any.
    sa.Column("display", sa.JSON),
    # What the task ran: its step body (in ``codes``) and environment (python, the packages the
    # step imports, hashes of local modules): the same for a cached task as for its original.
    sa.Column("code_hash", sa.String(32)),
    sa.Column("environment", sa.JSON),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("worker", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
)

outputs = sa.Table(
    "outputs",
    metadata,
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_tags_name", "name"),
)

codes = sa.Table(
    "codes",
    metadata,
    sa.Column("hash", sa.String(32), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)
