"""Benchmark 10: the 10-step chain whose last step fails unless told otherwise.

``end`` first writes the ``last-started`` timestamp, then raises when ``NBFLOW_BENCH_FAIL=1``.
The harness runs it failing, then times ``python resume_flow.py ... resume`` until that
timestamp: how long resuming takes to get back to the failed step's code.
"""

from __future__ import annotations

import os

from metaflow import FlowSpec, step
from stamp import stamp


class ResumeFlow(FlowSpec):
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
        stamp("last-started")
        if os.environ.get("NBFLOW_BENCH_FAIL") == "1":
            raise RuntimeError("planned failure of the last step")
        self.v = self.v + 1
        stamp("result", self.v)


if __name__ == "__main__":
    ResumeFlow()
