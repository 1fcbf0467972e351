"""The error raised for a bad cell.

This module owns ``AnalysisError`` (the message names the cell, the line and what to do) and
``_rebuild_error``, which lets the error survive pickling (e.g. across Dask workers).
"""

from __future__ import annotations

from typing import Any


class AnalysisError(ValueError):
    """Bad cell: message names the cell, the line and what to do."""

    def __init__(
        self,
        message: str,
        *,
        cell: int | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = message
        self.cell = cell
        self.line = line
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.cell is not None:
            where.append(f"cell {self.cell}")
        if self.line is not None:
            where.append(f"line {self.line}")
        text = (", ".join(where) + ": " if where else "") + self.reason
        if self.hint:
            if not text.endswith((".", "!", "?")):
                text += "."
            text += f" Fix: {self.hint}"
        return text

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.reason, self.cell, self.line, self.hint))


def _rebuild_error(
    reason: str, cell: int | None, line: int | None, hint: str | None
) -> AnalysisError:
    return AnalysisError(reason, cell=cell, line=line, hint=hint)
