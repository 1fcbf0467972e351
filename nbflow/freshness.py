"""Long-lived processes see edits: local modules whose source changed are dropped from ``sys.modules``.

A Dask worker (and the nbflow daemon's driver) outlives the runs it serves. A step that imports a
local module (a ``helpers.py`` next to the notebook, not an installed package) would otherwise keep
the version the process first imported, while the step's cache key, which hashes that source, says
it changed. Workers call ``drop_changed()`` before and after each task: when any local module's
file changed since it was recorded (or is gone), every local module is forgotten, since one that
imported the changed one holds its old objects; the step's own ``import`` then reads the new
sources. ``drop_all()`` forgets them all outright, for a worker moving to another notebook's
folder, whose ``utils.py`` is not this one's. Installed packages, the standard library, nbflow
itself, the process's ``__main__`` and compiled extension modules are never dropped: re-importing
C extensions is unsafe, and an upgraded package needs a fresh process (the daemon restarts itself
for that).
"""

from __future__ import annotations

import os
import sys
import threading

from nbflow.environment import is_installed_path

# module name -> (its file, (mtime_ns, size) or None if it was missing) when recorded;
# None for a module that is not local (installed, built in, stdlib, compiled, or without a file).
_seen: dict[str, tuple[str, tuple[int, int] | None] | None] = {}
_lock = threading.RLock()
_COMPILED = (".so", ".pyd", ".dylib")


def _signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _local_file(name: str, module: object) -> str | None:
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or name.split(".")[0] in sys.stdlib_module_names:
        return None
    if name == "nbflow" or name.startswith("nbflow.") or path.endswith(_COMPILED):
        return None  # nbflow itself: the daemon restarts when its source changes
    if name.startswith("__"):  # __main__, __mp_main__: the process's own entry point
        return None
    return None if is_installed_path(path) else path


def _record() -> list[str]:
    """Record the modules not seen yet; the local ones that are loaded now."""
    local = []
    for name, module in list(sys.modules.items()):
        if name in _seen:
            entry = _seen[name]
        else:
            path = _local_file(name, module)
            _seen[name] = entry = None if path is None else (path, _signature(path))
        if entry is not None:
            local.append(name)
    return local


def local_modules() -> set[str]:
    """The names of the local modules imported in this process."""
    with _lock:
        return set(_record())


def drop_changed() -> list[str]:
    """If a local module's source changed since recorded, forget every local module; returns
    the names forgotten (none if nothing changed)."""
    with _lock:
        local = _record()
        if all(_signature(entry[0]) == entry[1]
               for entry in (_seen[name] for name in local) if entry is not None):
            return []
        return _forget(local)


def drop_all() -> list[str]:
    """Forget every local module: the next imports read them afresh, wherever they are found."""
    with _lock:
        return _forget(_record())


def drop(names: set[str]) -> None:
    """Forget ``names`` (and their submodules) outright."""
    with _lock:
        _forget([n for n in sys.modules if n in names or any(n.startswith(x + ".") for x in names)])


def _forget(names: list[str]) -> list[str]:
    for name in names:
        sys.modules.pop(name, None)
        _seen.pop(name, None)
    return sorted(names)
