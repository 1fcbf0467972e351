"""The vocabulary of nbflow as plain data: states, resources, step options, steps, artifact references.

This module does no I/O and imports no framework; everything else in nbflow speaks in these types.

Task states (``TaskStatus``)::

    pending   the task is known to the run but not dispatched yet (waiting for its inputs)
    running   dispatched to the cluster; an attempt is under way
    succeeded the step's code finished and every output was saved
    failed    the code raised, an output could not be saved, or the worker died (after all retries)
    timed_out the task ran past its ``--timeout``; its worker was restarted so the work really stopped
    cached    not executed: a finished task with the same cache key supplied the outputs
    cancelled never ran to an end: an upstream step failed, or the run was interrupted

Run states (``RunStatus``)::

    running     the driver is alive and heartbeating
    succeeded   every task succeeded, was cached, or failed under ``--catch``
    failed      at least one task failed without ``--catch``, or the driver hit an error
    interrupted the driver stopped heartbeating while tasks were open (killed, crashed, machine lost)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CACHED = "cached"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING)

    @property
    def ok(self) -> bool:
        """Whether the task's outputs are usable downstream."""
        return self in (TaskStatus.SUCCEEDED, TaskStatus.CACHED)


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


RESOURCE_NAMES = ("memory", "cpus", "gpus")


@dataclass(frozen=True)
class Resources:
    """What one task of a step asks of a worker; maps one to one onto Dask worker resources."""

    memory: int | None = None  # bytes
    cpus: float | None = None
    gpus: int | None = None

    def as_dask(self) -> dict[str, float]:
        """Dask worker resources; a zero request is no restriction at all."""
        return {k: float(v) for k, v in self.to_json().items() if v}

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RESOURCE_NAMES if getattr(self, k) is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Resources:
        return cls(**(data or {}))

    def __bool__(self) -> bool:
        return bool(self.to_json())


@dataclass(frozen=True)
class Foreach:
    """``--foreach VAR in EXPR``: one task per item of EXPR, with VAR bound to the item."""

    var: str
    expr: str


@dataclass(frozen=True)
class StepOptions:
    """Everything the header lines of a step cell say."""

    name: str
    foreach: Foreach | None = None
    retry: int = 0
    timeout: float | None = None
    catch: bool = False
    force: bool = False
    resources: Resources = field(default_factory=Resources)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "foreach": None if self.foreach is None else {"var": self.foreach.var,
                                                           "expr": self.foreach.expr},
            "retry": self.retry,
            "timeout": self.timeout,
            "catch": self.catch,
            "force": self.force,
            "resources": self.resources.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepOptions:
        fe = data.get("foreach")
        return cls(
            name=data["name"],
            foreach=None if fe is None else Foreach(fe["var"], fe["expr"]),
            retry=data.get("retry", 0),
            timeout=data.get("timeout"),
            catch=data.get("catch", False),
            force=data.get("force", False),
            resources=Resources.from_json(data.get("resources")),
        )


@dataclass(frozen=True)
class ArtifactRef:
    """A stored value: the hash of its serialized bytes is also its address in the store."""

    hash: str
    size: int
    type: str  # qualified type name of the value, for display

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "size": self.size, "type": self.type}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(hash=data["hash"], size=data["size"], type=data["type"])


@dataclass(frozen=True)
class DataFile:
    """A file a task read while it ran; rechecked before its cached outputs are reused."""

    path: str
    size: int
    mtime_ns: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "hash": self.hash}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataFile:
        return cls(**data)


TAG_MAX = 100


def check_tag(name: str) -> str:
    """A run tag as given, if it is one: 1 to 100 characters, none of them whitespace or control
    characters (so that tags print, and filter, as typed); else ValueError naming it."""
    if not isinstance(name, str) or not name:
        raise ValueError("a tag cannot be empty")
    if len(name) > TAG_MAX:
        raise ValueError(f"tag {name[:20]!r}… is {len(name)} characters; at most {TAG_MAX}")
    bad = next((c for c in name if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"tag {name!r} contains {bad!r}: tags cannot contain whitespace or "
                         "control characters (use - or _ instead)")
    return name
