"""Flow modules made by ``nbflow export``: the markers they use, reading them back, running them.

A flow module is ordinary, importable Python: ``@step`` and ``@cell`` only tag their functions, so
``flows.quickstart.load()`` can be called in a test like any function. To *run* the flow, nbflow
does not call the functions: it reads the module's source (``load``), turns each decorated
function's body back into the notebook cell it came from (header lines rebuilt from the decorator,
body dedented, the trailing ``return`` dropped) and the parameters block back into the
``parameters`` cell, then runs those cells exactly like a notebook's. So a module run gives the same
artifacts, and hits the same cache, as ``nbflow run`` of the notebook. The module's ``GRAPH`` is
checked against the graph the code implies: an edit that changes the dataflow without updating
``GRAPH`` (or the reverse) is refused, so the declared graph a reviewer reads is the one that runs.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import xxhash

from nbflow.graph import PARAMETERS_TAG, Cell, GraphError, build_graph
from nbflow.notebook import Notebook, NotebookError

F = TypeVar("F", bound=Callable[..., Any])


class FlowModuleError(NotebookError):
    """The file is not a flow module nbflow can run."""


# -- the markers (no effect at import time) --------------------------------------------------------
def step(name: str, *, cell: int, foreach: str | None = None, retry: int = 0,
         timeout: float | None = None, catch: bool = False, force: bool = False,
         resources: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Marks a function as the step ``name`` (notebook cell ``cell``) with its options."""

    def mark(fn: F) -> F:
        fn.__nbflow_step__ = name  # type: ignore[attr-defined]
        return fn

    return mark


def cell(number: int) -> Callable[[F], F]:
    """Marks a function as plain notebook cell ``number`` (run in the driver)."""

    def mark(fn: F) -> F:
        fn.__nbflow_cell__ = number  # type: ignore[attr-defined]
        return fn

    return mark


def parameters(*, cell: int) -> None:
    """Ends the module-level parameters block (notebook cell ``cell``)."""


def main(path: str, argv: Sequence[str] | None = None) -> None:
    """``python FLOW.py run [--param NAME=VALUE]... [--cluster ADDR] [--store URL] ...``: the
    same options as ``nbflow run``."""
    from nbflow.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "run":
        print(f"usage: python {os.path.basename(path)} run [--param NAME=VALUE]... "
              "[--cluster ADDRESS] [--store URL] [--db URL] [--force]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(cli_main(["run", path, *args[1:]]))


# -- reading a module back as cells ----------------------------------------------------------------
def _keywords(call: ast.Call, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise FlowModuleError(f"line {kw.lineno}: **kwargs are not allowed in a marker")
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise FlowModuleError(f"line {kw.lineno}: {kw.arg}= must be a literal, not "
                                  f"{ast.get_source_segment(source, kw.value)!r}") from None
    return out


def _header(name: str, options: dict[str, Any]) -> list[str]:
    line = f"%%step {name}"
    if options.get("foreach"):
        line += f" --foreach {options['foreach']}"
    if options.get("retry"):
        line += f" --retry {options['retry']}"
    if options.get("timeout") is not None:
        line += f" --timeout {options['timeout']}"
    if options.get("catch"):
        line += " --catch"
    if options.get("force"):
        line += " --force"
    lines = [line]
    resources = options.get("resources") or {}
    if resources:
        lines.append("%%resources " + " ".join(f"{k}={v}" for k, v in resources.items()))
    return lines


def _body(fn: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str:
    stmts = list(fn.body)
    if stmts and isinstance(stmts[-1], ast.Return):
        stmts.pop()  # `return outputs`, added by the export
    if not stmts:
        return ""
    start = stmts[0].lineno
    if hasattr(stmts[0], "decorator_list") and stmts[0].decorator_list:
        start = min(d.lineno for d in stmts[0].decorator_list)
    end = stmts[-1].end_lineno or stmts[-1].lineno
    indent = stmts[0].col_offset
    body = []
    for text in lines[start - 1:end]:
        if text.strip() and not text[:indent].isspace():
            raise FlowModuleError(f"line {lines.index(text) + 1}: not indented like the function "
                                  f"body of {fn.name!r}")
        body.append(text[indent:] if text.strip() else "")
    return "\n".join(body)


def read_cells(source: str, filename: str = "<flow>") -> tuple[list[Cell], dict[str, list[str]],
                                                                 str | None]:
    """The notebook cells a flow module stands for, its ``GRAPH`` and its ``FOLDER``."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise FlowModuleError(f"{filename}, line {exc.lineno}: {exc.msg}") from None
    lines = source.splitlines()
    cells: list[Cell] = []
    graph: dict[str, list[str]] | None = None
    folder: str | None = None
    block_start: int | None = None  # first statement after the nbflow import
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "nbflow.flowfile":
            block_start = None
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and not cells \
                and block_start is None and stmt is tree.body[0]:
            continue  # the module docstring
        if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "parameters"):
            number = _keywords(stmt.value, source).get("cell")
            if block_start is None or not isinstance(number, int):
                raise FlowModuleError(f"line {stmt.lineno}: parameters(cell=N) must follow the "
                                      "parameters' assignments")
            text = "\n".join(lines[block_start - 1:stmt.lineno - 1]).strip("\n")
            cells.append(Cell(number=number, source=text, tags=(PARAMETERS_TAG,)))
            block_start = None
            continue
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.decorator_list:
            found = _decorated(stmt, source, lines)
            if found is not None:
                cells.append(found)
                continue
        if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["GRAPH"]:
            graph = ast.literal_eval(stmt.value)
            continue
        if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["FOLDER"]:
            folder = ast.literal_eval(stmt.value)
            continue
        if isinstance(stmt, ast.If):
            continue  # if __name__ == "__main__"
        if block_start is None:
            block_start = stmt.lineno
    if block_start is not None:
        raise FlowModuleError(f"{filename}, line {block_start}: module-level code that is neither "
                              "the parameters block nor a @step/@cell function")
    if graph is None:
        raise FlowModuleError(f"{filename}: no GRAPH = {{...}}: not a module made by nbflow export")
    return sorted(cells, key=lambda c: c.number), graph, folder


def _decorated(fn: ast.FunctionDef | ast.AsyncFunctionDef, source: str,
               lines: list[str]) -> Cell | None:
    for deco in fn.decorator_list:
        if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name)):
            continue
        if deco.func.id == "step":
            options = _keywords(deco, source)
            if not deco.args:
                raise FlowModuleError(f"line {deco.lineno}: @step needs the step's name")
            name = ast.literal_eval(deco.args[0])
            body = _body(fn, lines)
            return Cell(number=int(options.pop("cell")),
                        source="\n".join([*_header(name, options), body]))
        if deco.func.id == "cell":
            number = ast.literal_eval(deco.args[0]) if deco.args else None
            if not isinstance(number, int):
                raise FlowModuleError(f"line {deco.lineno}: @cell needs the cell's number")
            return Cell(number=number, source=_body(fn, lines))
    return None


def load(path: str | os.PathLike[str]) -> Notebook:
    """The flow module at ``path`` as a ``nbflow.notebook.Notebook`` the runner can run."""
    path = Path(path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowModuleError(f"{path}: cannot read it: {exc}") from None
    cells, declared, folder = read_cells(source, str(path))
    graph = build_graph(cells)
    actual = {s: sorted(set(n.upstream_steps)) for s, n in graph.steps.items()}
    declared_sorted = {s: sorted(set(u)) for s, u in declared.items()}
    if actual != declared_sorted:
        diff = [f"{s}: GRAPH says {declared_sorted.get(s)}, the code reads from {actual.get(s)}"
                for s in sorted(set(actual) | set(declared_sorted))
                if actual.get(s) != declared_sorted.get(s)]
        raise GraphError(f"{path.name}: the declared GRAPH does not match the code ("
                         + "; ".join(diff) + "). Re-export the notebook, or fix GRAPH.")
    h = xxhash.xxh3_128()
    for c in cells:
        h.update(c.source.encode())
        h.update(b"\0")
    where = (path.parent / folder).resolve() if folder else path.parent
    return Notebook(path=path, cells=cells, content_hash=h.hexdigest(), folder_override=where)
