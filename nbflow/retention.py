"""``nbflow gc``: delete old runs and the artifacts and logs no kept run reaches.

Which runs go is decided by rules (``Policy``): ``--older-than`` (only runs started before then),
``--keep-last N`` (each flow's newest N stay), ``--keep-tagged``; a run still ``running`` always
stays. What a kept run reaches always stays: its tasks' outputs, rich displays and logs (a cached
task reuses the outputs and logs of the task it was cached from, in whatever run that was).

Safe while other runs write to the store:

- the metadata of the runs to delete goes first, in one transaction, so no new cache lookup finds
  them; what is still referenced is read after that;
- an object is deleted only if it is older than a cutoff: the start of the oldest run still in
  progress, and ``nbflow.gc.grace`` ago. A run in progress writes every object it makes, even one
  that exists already (which refreshes its mtime), and a cache hit or resume claims the objects it
  reuses (``ArtifactStore.claim``); ``ArtifactStore.collect`` re-checks the mtime after moving an
  object aside, so a claim just before the move keeps it and one just after finds it gone and
  makes it again;
- logs are handled alike: a cache hit or resume claims the log files of the task it reuses
  (``ArtifactStore.claim_file``), and a log of a run no longer recorded is collected
  (``collect_file``) only when older than the cutoff, so a later gc takes what this one left.

The default is a dry run, which reports what would be freed.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask.utils
import sqlalchemy as sa

from nbflow import config
from nbflow.model import RunStatus
from nbflow.store import schema as t

if TYPE_CHECKING:
    from nbflow.store import Store

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


class RetentionError(ValueError):
    """The gc options do not say what to keep or delete."""


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w``, ``1d12h``, ``90m``, ``45s`` as a timedelta."""
    raw = text.strip().lower()
    parts = _DURATION.findall(raw)
    if not raw or not parts or _DURATION.sub("", raw).strip():
        raise RetentionError(
            f"--older-than {text!r}: not a duration; write a number and a unit (s, m, h, d, w), "
            "e.g. 30d, 12h or 1d12h")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


@dataclass(frozen=True)
class Policy:
    """What ``nbflow gc`` keeps; runs outside every keep rule are deleted."""

    keep_last: int | None = None
    keep_tagged: bool = False
    older_than: dt.timedelta | None = None
    flow: str | None = None  # only this flow's runs are considered

    def check(self) -> None:
        if self.keep_last is None and self.older_than is None:
            raise RetentionError(
                "say which runs may go: --keep-last N (keep each flow's newest N runs) and/or "
                "--older-than DURATION (only runs started longer ago than that), e.g. "
                "`nbflow gc --keep-last 10 --keep-tagged`")
        if self.keep_last is not None and self.keep_last < 0:
            raise RetentionError(f"--keep-last {self.keep_last}: must be 0 or more")


@dataclass
class Report:
    """What gc deleted (or, in a dry run, would delete)."""

    dry_run: bool
    runs: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # reason -> runs kept for it
    tasks: int = 0
    objects: int = 0
    object_bytes: int = 0
    objects_in_use: int = 0  # unreferenced but too new to collect (a run in progress)
    logs: int = 0
    log_bytes: int = 0
    leftovers: int = 0  # temporary files of writers (or gc runs) killed half-way
    leftover_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "runs": self.runs, "kept": self.kept,
                "tasks": self.tasks, "objects": self.objects, "object_bytes": self.object_bytes,
                "objects_in_use": self.objects_in_use, "logs": self.logs,
                "log_bytes": self.log_bytes, "leftovers": self.leftovers,
                "leftover_bytes": self.leftover_bytes,
                "freed_bytes": self.object_bytes + self.log_bytes + self.leftover_bytes}

    def render(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        kept = ", ".join(f"{n} {why}" for why, n in self.kept.items() if n) or "none"
        lines = [
            f"nbflow gc: {verb} {len(self.runs)} run(s) ({self.tasks} tasks); kept: {kept}",
            f"  artifacts: {verb} {self.objects} ({dask.utils.format_bytes(self.object_bytes)})",
            f"  logs: {verb} {self.logs} file(s) ({dask.utils.format_bytes(self.log_bytes)})",
        ]
        if self.leftovers:
            lines.append(f"  temporary files left by killed writers: {verb} {self.leftovers} "
                         f"({dask.utils.format_bytes(self.leftover_bytes)})")
        if self.objects_in_use:
            lines.append(f"  {self.objects_in_use} unreferenced artifact(s) kept: written or "
                         "used since the cutoff (a run in progress, or within nbflow.gc.grace)")
        if self.dry_run:
            lines.append("  dry run: nothing was deleted; add --delete to delete")
        return "\n".join(lines)


def _chunks(items: list[Any], n: int = 500) -> list[list[Any]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def choose(store: Store, policy: Policy, now: dt.datetime) -> tuple[list[str], dict[str, int]]:
    """The runs to delete, oldest first, and how many were kept for each reason."""
    policy.check()
    store.meta.mark_interrupted(float(config.get("heartbeat.timeout") or 30))
    runs = store.meta.runs()  # newest first
    tagged = {r for r, tags in store.meta.tags([r["id"] for r in runs]).items() if tags}
    kept = {"running": 0, "newest": 0, "tagged": 0, "newer": 0, "other flows": 0}
    seen: dict[str, int] = {}
    delete = []
    for r in runs:
        seen[r["flow"]] = seen.get(r["flow"], 0) + 1
        if policy.flow is not None and r["flow"] != policy.flow:
            kept["other flows"] += 1
        elif r["status"] == RunStatus.RUNNING.value:
            kept["running"] += 1
        elif policy.keep_last is not None and seen[r["flow"]] <= policy.keep_last:
            kept["newest"] += 1
        elif policy.keep_tagged and r["id"] in tagged:
            kept["tagged"] += 1
        elif policy.older_than is not None and r["started_at"] > now - policy.older_than:
            kept["newer"] += 1
        else:
            delete.append(r["id"])
    return delete[::-1], kept


def _referenced(store: Store, excluding: set[str]) -> tuple[set[str], set[str]]:
    """Object keys and log paths that tasks of runs not in ``excluding`` reach."""
    objects: set[str] = set()
    logs: set[str] = set()
    with store.meta.engine.connect() as conn:
        q = sa.select(t.tasks.c.run_id, t.outputs.c.hash).join(
            t.tasks, t.tasks.c.id == t.outputs.c.task_id)
        objects.update(h for run, h in conn.execute(q) if run not in excluding)
        q2 = sa.select(t.tasks.c.run_id, t.tasks.c.display, t.tasks.c.stdout_path,
                       t.tasks.c.stderr_path)
        for run, display, out, err in conn.execute(q2):
            if run in excluding:
                continue
            if isinstance(display, dict) and display.get("hash"):
                objects.add(display["hash"])
            logs.update(p for p in (out, err) if p)
    return objects, logs


def _cutoff(store: Store, now: float) -> float:
    """Objects modified at or after this (epoch seconds) may belong to a run in progress."""
    grace = dask.utils.parse_timedelta(config.get("gc.grace", "1h"), default="s") or 0.0
    cutoff = now - float(grace)
    for r in store.meta.runs(status=RunStatus.RUNNING.value):
        cutoff = min(cutoff, r["started_at"].timestamp() - 1.0)
    return cutoff


def _delete_metadata(store: Store, run_ids: list[str]) -> int:
    """Delete the runs' rows (tasks, attempts, outputs, steps, tags) in one transaction; the
    number of tasks deleted. Step bodies no task uses any more go too."""
    tasks = 0
    with store.meta.engine.begin() as conn:
        for chunk in _chunks(run_ids):
            ids = sa.select(t.tasks.c.id).where(t.tasks.c.run_id.in_(chunk)).scalar_subquery()
            conn.execute(t.outputs.delete().where(t.outputs.c.task_id.in_(ids)))
            conn.execute(t.attempts.delete().where(t.attempts.c.task_id.in_(ids)))
            tasks += conn.execute(t.tasks.delete().where(t.tasks.c.run_id.in_(chunk))).rowcount
            conn.execute(t.steps.delete().where(t.steps.c.run_id.in_(chunk)))
            conn.execute(t.tags.delete().where(t.tags.c.run_id.in_(chunk)))
            conn.execute(t.runs.delete().where(t.runs.c.id.in_(chunk)))
        used = sa.select(t.tasks.c.code_hash).where(t.tasks.c.code_hash.is_not(None))
        conn.execute(t.codes.delete().where(t.codes.c.hash.not_in(used)))
    store.meta.forget_kept_codes()
    return tasks


def _count_tasks(store: Store, run_ids: list[str]) -> int:
    n = 0
    with store.meta.engine.connect() as conn:
        for chunk in _chunks(run_ids):
            n += int(conn.execute(sa.select(sa.func.count()).select_from(t.tasks)
                                  .where(t.tasks.c.run_id.in_(chunk))).scalar_one())
    return n


def collect(store: Store, policy: Policy, *, dry_run: bool = True) -> Report:
    """Apply ``policy`` to the store (see the module docstring)."""
    started = time.time()
    delete, kept = choose(store, policy, dt.datetime.now(dt.UTC))
    report = Report(dry_run=dry_run, runs=delete, kept=kept)
    doomed = set(delete)
    if dry_run:
        report.tasks = _count_tasks(store, delete)
        objects, logs = _referenced(store, doomed)
    else:
        report.tasks = _delete_metadata(store, delete) if delete else 0
        objects, logs = _referenced(store, set())  # read after the delete: see the docstring
    cutoff = _cutoff(store, started)
    for key, size, mtime in list(store.artifacts.iter_objects()):
        if key in objects:
            continue
        if mtime >= cutoff:
            report.objects_in_use += 1
        elif dry_run or store.artifacts.collect(key, cutoff):
            report.objects += 1
            report.object_bytes += size
        else:
            report.objects_in_use += 1
    for path, size, mtime in list(store.artifacts.iter_files("tmp")):
        if mtime < cutoff:  # no writer touched it since: its process is gone
            if not dry_run:
                store.artifacts.remove(path)
            report.leftovers += 1
            report.leftover_bytes += size
    # Logs of runs no longer recorded (those deleted now, and any an earlier gc had to leave),
    # unless a kept task shows them or a cache hit claimed them lately (mtime >= cutoff).
    with store.meta.engine.connect() as conn:
        recorded = {r for (r,) in conn.execute(sa.select(t.runs.c.id))} - doomed
    for path, size, mtime in list(store.artifacts.iter_files("logs")):
        parts = path.split("/")
        if len(parts) < 3 or parts[1] in recorded or path in logs or mtime >= cutoff:
            continue
        if dry_run or store.artifacts.collect_file(path, cutoff):
            report.logs += 1
            report.log_bytes += size
    return report
