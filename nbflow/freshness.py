"""Long-lived processes see edits: local modules whose source changed are dropped from ``sys.modules``.

A Dask worker (and the nbflow daemon's driver) outlives the runs it serves. A step that imports a
local module (a ``helpers.py`` next to the notebook, not an installed package) would otherwise keep
the version the process first imported, while the step's cache key, which hashes that source, says
it changed. Before each task, ``drop_changed()`` forgets every local module whose file changed
since it was first seen (and its submodules), so the step's own ``import`` reads the new source.
Installed packages and the standard library are never dropped: re-importing C extensions is unsafe,
and an upgraded package needs a fresh process (the daemon restarts itself for that).
"""

from __future__ import annotations

import os
import sys
import threading

from nbflow.environment import is_installed_path

# module name -> (its file, (mtime_ns, size) or None if it was missing) when first seen;
# None for a module that is not local (installed, built in, stdlib, or without a file).
_seen: dict[str, tuple[str, tuple[int, int] | None] | None] = {}
_lock = threading.Lock()


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
    if name == "nbflow" or name.startswith("nbflow."):
        return None  # nbflow itself: the daemon restarts when its source changes
    return None if is_installed_path(path) else path


def local_modules() -> set[str]:
    """The names of the local modules imported in this process."""
    drop_changed()
    return {name for name, entry in _seen.items() if entry is not None and name in sys.modules}


def drop_changed() -> list[str]:
    """Forget the local modules whose source changed since first seen; returns their names."""
    with _lock:
        changed: set[str] = set()
        for name, module in list(sys.modules.items()):
            if name in _seen:
                entry = _seen[name]
            else:
                path = _local_file(name, module)
                _seen[name] = entry = None if path is None else (path, _signature(path))
            if entry is not None and _signature(entry[0]) != entry[1]:
                changed.add(name)
        if not changed:
            return []
        dropped = sorted(n for n in list(sys.modules)
                         if n in changed or any(n.startswith(c + ".") for c in changed))
        for name in dropped:
            sys.modules.pop(name, None)
            _seen.pop(name, None)
        return dropped


def drop(names: set[str]) -> None:
    """Forget ``names`` (and their submodules) outright: the next import reads them afresh."""
    with _lock:
        for name in list(sys.modules):
            if name in names or any(name.startswith(n + ".") for n in names):
                sys.modules.pop(name, None)
                _seen.pop(name, None)
