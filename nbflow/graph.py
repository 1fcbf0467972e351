"""A notebook's cells -> the DAG of its steps. Pure functions over analysed cells; no execution.

Rules (the notebook is read top to bottom, like a person reads it):

- Each name a cell reads comes from the latest *earlier* cell that binds it. If that cell is a step,
  the reader depends on that step (an edge); if it is a plain cell, the name is a *by-value* input,
  shipped from the driver's namespace.
- A name no earlier cell binds may come from a *later step* (a notebook written out of order); that
  makes a forward edge, which is how cycles can arise: they are reported with every step on them.
- A name nothing binds, a name only a later plain cell binds, and two steps of one name are errors
  naming the cell and line.
- Topological order breaks ties by notebook order.
"""

from __future__ import annotations

import ast
import graphlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbflow.analyze import AnalysisError, CellAnalysis, analyze_cell, is_step_cell
from nbflow.model import StepOptions

PARAMETERS_TAG = "parameters"


class GraphError(AnalysisError):
    """The cells do not form a valid flow (cycle, duplicate step, undefined input)."""


@dataclass(frozen=True)
class Cell:
    """A code cell of the notebook. ``number`` is its 1-based position among all cells."""

    number: int
    source: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    """An analysed code cell; a step when ``options`` is set, else a plain cell run in the driver."""

    cell: Cell
    analysis: CellAnalysis
    upstream: dict[str, str] = field(default_factory=dict)  # input name -> step that produces it
    by_value: tuple[str, ...] = ()  # inputs bound only by earlier plain cells

    @property
    def options(self) -> StepOptions | None:
        return self.analysis.options

    @property
    def is_step(self) -> bool:
        return self.analysis.options is not None

    @property
    def name(self) -> str:
        return self.analysis.options.name if self.analysis.options else f"cell {self.cell.number}"

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.analysis.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.analysis.outputs

    @property
    def upstream_steps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.upstream.values()))

    @property
    def is_parameters(self) -> bool:
        return PARAMETERS_TAG in self.cell.tags


@dataclass(frozen=True)
class FlowGraph:
    """The analysed notebook: every code cell in order, and the steps among them by name."""

    nodes: tuple[Node, ...]

    @property
    def steps(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes if n.is_step}

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(name for n in self.nodes if n.is_parameters for name in n.outputs)

    def order(self) -> list[str]:
        """Step names in a topological order; ties broken by notebook order."""
        return topological_order(self.steps.values())

    def downstream(self, name: str) -> set[str]:
        return {s.name for s in self.steps.values() if name in s.upstream_steps}

    def descendants(self, names: Iterable[str]) -> set[str]:
        """``names`` and every step that depends on them, directly or not."""
        out: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in out:
                out.add(name)
                todo.extend(self.downstream(name))
        return out

    def ancestors(self, name: str) -> set[str]:
        """``name`` and every step it depends on, directly or not."""
        out: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current not in out:
                out.add(current)
                todo.extend(self.steps[current].upstream_steps)
        return out

    def consumed(self, step: str) -> set[str]:
        """The outputs of ``step`` that some cell reads from it."""
        return {name for n in self.nodes for name, up in n.upstream.items() if up == step}

    def edges(self) -> list[tuple[str, str]]:
        return [(u, s.name) for s in self.steps.values() for u in s.upstream_steps]


def step_line(cell: Cell) -> int:
    """The line of the cell's ``%%step`` header (1 if it has none)."""
    for number, line in enumerate(cell.source.splitlines(), start=1):
        if line.lstrip().startswith("%%step"):
            return number
    return 1


def first_read_line(analysis: CellAnalysis, name: str, cell: Cell | None = None) -> int:
    """The cell line where ``name`` is first read (for error messages); the body start if unknown."""
    opts = analysis.options
    if cell is not None and opts is not None and opts.foreach is not None:
        expr = ast.parse(opts.foreach.expr, mode="eval")
        if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(expr)):
            return step_line(cell)
    body = analysis.body.splitlines()
    for number, _text in analysis.magic_lines:  # blank IPython-only lines so the body parses
        index = number - analysis.body_line
        if 0 <= index < len(body):
            body[index] = ""
    try:
        tree = ast.parse("\n".join(body))
    except SyntaxError:
        return analysis.body_line
    lines = [n.lineno for n in ast.walk(tree)
             if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load | ast.Del)]
    return analysis.body_line + min(lines) - 1 if lines else analysis.body_line


def build_graph(cells: Sequence[Cell]) -> FlowGraph:
    """Analyse ``cells`` (code cells in notebook order) and connect the steps."""
    analysed = [(c, analyze_cell(c.source, cell=c.number)) for c in cells]

    seen: dict[str, Cell] = {}
    for c, a in analysed:
        if a.options is None:
            continue
        if a.options.name in seen:
            first = seen[a.options.name]
            raise GraphError(
                f"step name {a.options.name!r} is used twice, by cell {first.number} and cell "
                f"{c.number}",
                cell=c.number, line=step_line(c),
                hint="give each %%step a unique name",
            )
        seen[a.options.name] = c

    nodes: list[Node] = []
    for i, (c, a) in enumerate(analysed):
        upstream: dict[str, str] = {}
        by_value: list[str] = []
        for name in a.inputs:
            earlier = _latest_binder(analysed[:i], name)
            if earlier is not None:
                if earlier[1].options is not None:
                    upstream[name] = earlier[1].options.name
                else:
                    by_value.append(name)
                continue
            later = _latest_binder(analysed[i + 1 :], name, latest=False, steps_only=True)
            if later is not None and later[1].options is not None:
                upstream[name] = later[1].options.name
                continue
            binder = _latest_binder(analysed[i + 1 :], name, latest=False)
            line = first_read_line(a, name, c)
            if binder is not None:
                raise GraphError(
                    f"{name!r} is read here but first bound by a later plain cell "
                    f"(cell {binder[0].number})",
                    cell=c.number, line=line, hint=f"move cell {binder[0].number} above this one",
                )
            raise GraphError(
                f"{name!r} is read here but no cell defines it",
                cell=c.number, line=line,
                hint=f"define {name!r} in an earlier cell (or in the parameters cell), or fix the "
                "spelling",
            )
        nodes.append(Node(c, a, upstream, tuple(by_value)))
    graph = FlowGraph(tuple(nodes))
    topological_order(graph.steps.values())  # raises on a cycle
    return graph


def _latest_binder(
    analysed: Sequence[tuple[Cell, CellAnalysis]],
    name: str,
    *,
    latest: bool = True,
    steps_only: bool = False,
) -> tuple[Cell, CellAnalysis] | None:
    seq = reversed(analysed) if latest else iter(analysed)
    for c, a in seq:
        if steps_only and a.options is None:
            continue
        if name in a.outputs:
            return c, a
    return None


def topological_order(steps: Iterable[Node]) -> list[str]:
    """Step names, upstream first, in notebook order wherever the dependencies allow."""
    steps = list(steps)
    position = {s.name: s.cell.number for s in steps}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for s in steps:
        sorter.add(s.name, *s.upstream_steps)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]
        by_name = {s.name: s for s in steps}
        links = []
        for a, b in itertools.pairwise(cycle):
            names = [n for n, up in by_name[b].upstream.items() if up == a] if b in by_name else []
            links.append(f"{b} (cell {position.get(b, '?')}) reads {', '.join(names)} from {a}")
        first = by_name.get(cycle[0])
        raise GraphError(
            "steps form a cycle: " + " -> ".join(cycle) + "; " + "; ".join(links),
            cell=first.cell.number if first else None,
            hint="a step can only read what earlier cells define; move one definition above the "
            "other or rename one of the names",
        ) from None
    # Always take the earliest ready step in notebook order, so the order is the notebook's own
    # wherever the dependencies allow it.
    order: list[str] = []
    ready: list[str] = []
    while sorter.is_active():
        ready.extend(sorter.get_ready())
        ready.sort(key=lambda n: position[n])
        name = ready.pop(0)
        order.append(name)
        sorter.done(name)
    return order


def cells_until(cells: Sequence[Cell], step: str) -> list[Cell]:
    """The cells a run needs to compute ``step`` alone (``nbflow run --until STEP``, one task of a
    scheduled flow): ``step`` and the steps it depends on, and the plain cells before it, except
    those that read what the left-out steps make. The rest of the notebook is left out."""
    graph = build_graph(cells)
    if step not in graph.steps:
        raise GraphError(f"--until {step}: no such step; the notebook has "
                         f"{', '.join(graph.steps) or 'no steps'}")
    needed = graph.ancestors(step)
    target = graph.steps[step].cell.number
    missing: set[str] = set()
    kept = []
    for node in graph.nodes:
        keep = (node.name in needed if node.is_step
                else node.cell.number < target and not set(node.inputs) & missing)
        if keep:
            kept.append(node.cell)
            missing -= set(node.outputs)
        else:
            missing |= set(node.outputs)
    build_graph(kept)  # what is left must still be a flow (it is, unless a needed step reads a
    return kept  # name that only a left-out plain cell binds: then the error names it)


def cells_from_notebook(nb: Mapping[str, Any]) -> list[Cell]:
    """The code cells of a notebook (nbformat 4 JSON), numbered by their position among all
    cells; a source given as a list of lines is joined, as nbformat does."""
    cells = []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        tags = tuple(cell.get("metadata", {}).get("tags", ()))
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        cells.append(Cell(number=number, source=source, tags=tags))
    return cells


__all__ = [
    "PARAMETERS_TAG",
    "Cell",
    "FlowGraph",
    "GraphError",
    "Node",
    "build_graph",
    "cells_from_notebook",
    "cells_until",
    "first_read_line",
    "is_step_cell",
    "topological_order",
]
