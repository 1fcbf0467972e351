"""Cache keys of tasks, and whether an earlier task's outputs can stand in for a new execution.

A task's key hashes what determines its outputs: the step's normalized code, the hashes of its input
artifacts, the tokens of its by-value inputs (see ``nbflow.tokenize``), the foreach item, the outputs
it binds, the Python version, the versions of the packages the step imports, and the source of any
local (non-installed) module it imports. The data files the task read are not known before it runs;
they are recorded with it and rechecked here before its outputs are reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import xxhash

from nbflow import environment
from nbflow.model import DataFile
from nbflow.store import Store
from nbflow.worker import InputSpec, describe_file

KEY_FORMAT = 2


def hash_json(obj: Any) -> str:
    return xxhash.xxh3_128(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def input_hashes(inputs: Mapping[str, InputSpec], by_value_tokens: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, value) in inputs.items():
        if kind == "artifact":
            out[name] = value.hash
        elif kind == "gather":
            out[name] = [r.hash for r in value]
        else:
            out[name] = by_value_tokens[name]
    return out


def step_environment(modules: Iterable[str]) -> dict[str, Any]:
    """What a step's cache key takes from the environment (Python, the versions of the packages
    it imports, hashes of local modules it imports); recorded with each of its tasks."""
    modules = sorted(set(modules))
    return {**environment.fingerprint(modules), "sources": environment.local_sources(modules)}


def task_key(
    *,
    step: str,
    code: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, Any],
    item_token: str | None,
    outputs: Iterable[str],
    modules: Iterable[str] = (),
    env: Mapping[str, Any] | None = None,
) -> str:
    """``env`` is ``step_environment(modules)``, when the caller has it already."""
    env = dict(env) if env is not None else step_environment(modules)
    sources = env.pop("sources", {})
    return hash_json({
        "format": KEY_FORMAT,
        "step": step,
        "code": code,
        "options": {k: v for k, v in options.items() if k in ("foreach", "catch")},
        "inputs": dict(inputs),
        "item": item_token,
        "outputs": list(outputs),
        "env": env,
        "sources": sources,
    })


def file_unchanged(f: DataFile) -> bool:
    """Same size and mtime, or else the same content hash."""
    try:
        st = os.stat(f.path)
    except OSError:
        return False
    if st.st_size != f.size:
        return False
    if st.st_mtime_ns == f.mtime_ns:
        return True
    now = describe_file(f.path)
    return now is not None and now.hash == f.hash


def usable(store: Store, candidates: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest candidate task whose data files are unchanged and whose outputs are still
    there, whole (a truncated output makes the step run again, which rewrites it). The outputs
    and logs of the one chosen are claimed (``ArtifactStore.claim``, ``claim_file``), so a
    concurrent gc keeps them."""
    for cand in candidates:
        files = [DataFile.from_json(f) for f in cand.get("files") or []]
        if not all(file_unchanged(f) for f in files):
            continue
        if not claim_task(store, cand):
            continue
        return cand
    return None


def claim_task(store: Store, task: dict[str, Any]) -> bool:
    """Claim what reusing ``task`` shows: its outputs (whole) and its log files; False if one
    is gone (a concurrent gc took it first)."""
    return (all(store.artifacts.claim(r.hash, r.size) for r in task["outputs"].values())
            and all(store.artifacts.claim_file(p)
                    for p in (task.get("stdout_path"), task.get("stderr_path")) if p))
