"""Benchmark 7: ten trivial steps in a chain (start, s2 ... s9, end), each adding one to ``v``.

Run by ``benchmarks/peers.py`` as ``python chain10_flow.py --datastore=local --metadata=local run``;
the end step writes ``v`` (10) to the stamp folder so the harness can check the run.
"""

from __future__ import annotations

from metaflow import FlowSpec, step
from stamp import stamp


class Chain10Flow(FlowSpec):
    @step
    def start(self) -> None:
        self.v = 1
        self.next(self.s2)

    @step
    def s2(self) -> None:
        self.v = self.v + 1
        self.next(self.s3)

    @step
    def s3(self) -> None:
        self.v = self.v + 1
        self.next(self.s4)

    @step
    def s4(self) -> None:
        self.v = self.v + 1
        self.next(self.s5)

    @step
    def s5(self) -> None:
        self.v = self.v + 1
        self.next(self.s6)

    @step
    def s6(self) -> None:
        self.v = self.v + 1
        self.next(self.s7)

    @step
    def s7(self) -> None:
        self.v = self.v + 1
        self.next(self.s8)

    @step
    def s8(self) -> None:
        self.v = self.v + 1
        self.next(self.s9)

    @step
    def s9(self) -> None:
        self.v = self.v + 1
        self.next(self.end)

    @step
    def end(self) -> None:
        self.v = self.v + 1
        stamp("result", self.v)


if __name__ == "__main__":
    Chain10Flow()
