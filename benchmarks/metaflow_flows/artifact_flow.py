"""Benchmark 9: a 1 GiB random float64 array made in one step and read in the next.

``start`` makes the array as ``self.x`` and writes the ``made`` timestamp as its last line;
Metaflow then persists ``self.x`` (its local datastore pickles and compresses artifacts). ``end``
writes ``use-started`` first, reads the whole array (``sum``; Metaflow loads an artifact when it
is first accessed) and writes ``used``. ``used - made`` is the artifact's trip from one step to
the next, the same interval nbflow's notebook stamps.
"""

from __future__ import annotations

import numpy as np
from metaflow import FlowSpec, step
from stamp import stamp

ELEMENTS = 2**27  # float64: 1 GiB


class ArtifactFlow(FlowSpec):
    @step
    def start(self) -> None:
        self.x = np.random.default_rng(0).random(ELEMENTS)
        stamp("made")
        self.next(self.end)

    @step
    def end(self) -> None:
        stamp("use-started")
        total = float(self.x.sum())
        stamp("used")
        stamp("result", round(total))


if __name__ == "__main__":
    ArtifactFlow()
