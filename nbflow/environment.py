"""What a run's environment was: Python, nbflow, and the packages behind the modules the cells import.

Captured once per run (shown by ``nbflow show``) and, per step, folded into the cache key, so that
upgrading a package a step imports re-runs that step, and so does editing a local module (one that
is not installed: a ``helpers.py`` next to the notebook), whose source is hashed.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import sys
from collections.abc import Iterable
from functools import cache
from typing import Any

import xxhash

import nbflow
from nbflow.store.artifacts import FORMAT_VERSION

_INSTALLED = tuple(
    os.path.join(os.path.realpath(p), "")
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}
    if p and ("site-packages" in p or "dist-packages" in p or p in (sys.prefix, sys.base_prefix))
)


def is_installed_path(path: str) -> bool:
    """Whether ``path`` lies in this Python's installation or its site-packages."""
    return os.path.realpath(path).startswith(_INSTALLED)


@cache
def _distributions() -> dict[str, list[md.Distribution]]:
    """Top-level module name -> the installed distributions that provide it. Like
    ``importlib.metadata.packages_distributions()``, but read from each distribution's
    ``top_level.txt`` or ``RECORD`` without checking that every listed file exists (seconds on a
    cold disk cache, at the start of every run), and without parsing every distribution's
    metadata: only that of the distributions asked about (``_name_version``)."""
    providers: dict[str, list[md.Distribution]] = {}
    for dist in md.distributions():
        for name in _top_level_names(dist):
            providers.setdefault(name, []).append(dist)
    return providers


_named: dict[int, tuple[str, str | None]] = {}


def _name_version(dist: md.Distribution) -> tuple[str, str | None]:
    key = id(dist)  # the distributions live as long as the cache of _distributions
    if key not in _named:
        meta = dist.metadata
        _named[key] = (meta["Name"] or "", meta["Version"])
    return _named[key]


def _top_level_names(dist: md.Distribution) -> set[str]:
    listed = dist.read_text("top_level.txt")
    if listed:
        names = set(listed.split())
    else:
        names = set()
        for line in (dist.read_text("RECORD") or "").splitlines():
            path = line.split(",", 1)[0]
            first, _, rest = path.partition("/")
            if rest:
                names.add(first)
            elif path.endswith(".py"):
                names.add(path.removesuffix(".py"))
    return {n for n in names if n.isidentifier()}


def package_versions(modules: Iterable[str]) -> dict[str, str]:
    """Distribution name -> version for top-level module names (stdlib modules map to nothing)."""
    out: dict[str, str] = {}
    for module in sorted(set(modules)):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        for dist in _distributions().get(top, []):
            name, version = _name_version(dist)
            if version is not None and name:
                out[name] = version
    return out


def python_version() -> str:
    return platform.python_version()


def capture(modules: Iterable[str], notebook_hash: str | None = None) -> dict[str, Any]:
    """The run's environment record."""
    return {
        "python": python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "nbflow": nbflow.__version__,
        "packages": package_versions(modules),
        "notebook_hash": notebook_hash,
    }


def fingerprint(modules: Iterable[str]) -> dict[str, Any]:
    """The part of the environment a step's cache key depends on."""
    major_minor = ".".join(python_version().split(".")[:2])
    return {"python": major_minor, "format": FORMAT_VERSION, "packages": package_versions(modules)}


def local_sources(modules: Iterable[str]) -> dict[str, str]:
    """Top-level module -> hash of its source, for modules importable here but not installed."""
    out: dict[str, str] = {}
    for module in sorted({m.split(".")[0] for m in modules}):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            continue
        origin = os.path.realpath(spec.origin)
        if is_installed_path(origin) or module in sys.stdlib_module_names:
            continue
        h = xxhash.xxh3_128()
        roots = list(spec.submodule_search_locations or [])
        files = [origin] if not roots else sorted(
            os.path.join(d, f) for root in roots for d, _, fs in os.walk(root)
            for f in fs if f.endswith(".py"))
        for path in files:
            h.update(os.path.relpath(path, os.path.dirname(origin)).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read())
        out[module] = h.hexdigest()
    return out
