"""Benchmark 7's baseline: the shortest Metaflow flow, two trivial steps (start, end).

(10-step run - this run) / 8 is Metaflow's marginal time per step; ``end`` writes ``v`` (2).
"""

from __future__ import annotations

from metaflow import FlowSpec, step
from stamp import stamp


class Chain2Flow(FlowSpec):
    @step
    def start(self) -> None:
        self.v = 1
        self.next(self.end)

    @step
    def end(self) -> None:
        self.v = self.v + 1
        stamp("result", self.v)


if __name__ == "__main__":
    Chain2Flow()
