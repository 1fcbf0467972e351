"""What a run's environment was: Python, nbflow, and the packages behind the modules the cells import.

Captured once per run (shown by ``nbflow show``) and, per step, folded into the cache key, so that
upgrading a package a step imports re-runs that step.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from collections.abc import Iterable
from functools import cache
from typing import Any

import nbflow
from nbflow.store.artifacts import FORMAT_VERSION


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
