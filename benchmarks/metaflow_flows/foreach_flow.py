"""Benchmark 8: a foreach over 100 items and its join (start, sq x 100, join, end).

Metaflow's last step may not be a join, so the flow has four steps; nbflow's notebook has the same
four (``items``, ``sq --foreach x in xs``, ``total``, a trivial ``done``). ``end`` writes the sum
of squares to the stamp folder so the harness can check the run.
"""

from __future__ import annotations

from typing import Any

from metaflow import FlowSpec, step
from stamp import stamp


class ForeachFlow(FlowSpec):
    @step
    def start(self) -> None:
        self.xs = list(range(100))
        self.next(self.sq, foreach="xs")

    @step
    def sq(self) -> None:
        self.y = self.input * self.input
        self.next(self.join)

    @step
    def join(self, inputs: Any) -> None:
        self.s = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self) -> None:
        stamp("result", self.s)


if __name__ == "__main__":
    ForeachFlow()
