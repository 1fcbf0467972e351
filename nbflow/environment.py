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


@cache
def _distributions() -> dict[str, list[str]]:
    return dict(md.packages_distributions())


@cache
def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def package_versions(modules: Iterable[str]) -> dict[str, str]:
    """Distribution name -> version for top-level module names (stdlib modules map to nothing)."""
    out: dict[str, str] = {}
    for module in sorted(set(modules)):
        top = module.split(".")[0]
        for dist in _distributions().get(top, []):
            version = _version(dist)
            if version is not None:
                out[dist] = version
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
        if origin.startswith(_INSTALLED) or module in sys.stdlib_module_names:
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
