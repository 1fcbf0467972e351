"""Artifact handles: what the kernel gets instead of a step output too big to bring back.

An output larger than ``nbflow.interactive.max-bind-size`` (256 MiB by default) stays in the store.
The kernel name is bound to an ``ArtifactHandle`` that says what the value is (name, type, size,
where it lives) and ``.load()``s it on demand. Passing the handle to a later step sends only its
reference: the worker reads the data from the store itself, so it never passes through the kernel.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import dask.utils

from nbflow.model import ArtifactRef

if TYPE_CHECKING:
    from nbflow.store import Store
    from nbflow.worker import InputSpec


class ArtifactHandle:
    """A step output left in the store; ``.load()`` brings it into the kernel."""

    def __init__(self, name: str, spec: InputSpec, store: Store, *, run_id: str, step: str) -> None:
        self.name = name
        self.spec = spec
        self._store = store
        self.run_id = run_id
        self.step = step

    @property
    def refs(self) -> list[ArtifactRef]:
        kind, value = self.spec
        return list(value) if kind == "gather" else [value]

    @property
    def type(self) -> str:
        kind, value = self.spec
        return f"list[{value[0].type if value else 'object'}]" if kind == "gather" else value.type

    @property
    def size(self) -> int:
        return sum(r.size for r in self.refs)

    @property
    def location(self) -> str:
        """Where the bytes are: the store path of the artifact (of the first, for a foreach)."""
        refs = self.refs
        where = self._store.artifacts.path(refs[0].hash) if refs else self._store.url
        return where if len(refs) == 1 else f"{where} and {len(refs) - 1} more"

    def load(self) -> Any:
        """The value itself, read from the store (verified against its hash)."""
        get = self._store.artifacts.get
        kind, value = self.spec
        return [get(r.hash) for r in value] if kind == "gather" else get(value.hash)

    def _summary(self) -> str:
        return (f"{self.name}: {self.type}, {dask.utils.format_bytes(self.size)}, left in the store "
                f"(step {self.step!r}, run {self.run_id}) at {self.location}")

    def __repr__(self) -> str:
        return f"<ArtifactHandle {self._summary()}; .load() to bring it into the kernel>"

    def _repr_html_(self) -> str:
        return (f"<div><b>{html.escape(self.name)}</b>: <code>{html.escape(self.type)}</code>, "
                f"{html.escape(dask.utils.format_bytes(self.size))}, left in the store (step "
                f"<code>{html.escape(self.step)}</code>, run <code>{html.escape(self.run_id)}</code>)"
                f"<br><small>{html.escape(self.location)}</small><br>"
                f"<code>{html.escape(self.name)}.load()</code> brings it into the kernel; later "
                "steps take it as it is, without loading it here.</div>")
