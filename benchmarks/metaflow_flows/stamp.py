"""Timestamps and results that the benchmark flows' steps write for the harness to read.

Shared by the Metaflow flows in this folder (imported from the flow file's folder, which Python
puts first on ``sys.path``). The nbflow notebooks in ``benchmarks/peers.py`` define the same
function in a plain cell. ``NBFLOW_BENCH_STAMPS`` is a folder the harness empties before each run.
"""

from __future__ import annotations

import os
import time


def stamp(name: str, value: object = None) -> None:
    """Write ``time.time()`` (or ``value``) to ``$NBFLOW_BENCH_STAMPS/name``."""
    folder = os.environ.get("NBFLOW_BENCH_STAMPS")
    if folder:
        with open(os.path.join(folder, name), "w") as f:
            f.write(repr(time.time() if value is None else value))
