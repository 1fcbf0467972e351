"""A notebook as a plain Python module an engineer can review: ``nbflow export``.

The module (see ``nbflow/flowfile.py`` for how it is read back and run) has, in notebook order:
the parameters cell's code at module level, one function per step with its inputs as parameters
and its outputs returned, one function per plain cell likewise (run in the driver, as in the
notebook), the notebook's Markdown as comments, the graph declared explicitly as ``GRAPH``, the
notebook's folder as ``FOLDER`` (steps run there), and a ``__main__`` entry point::

    python flows/NAME.py run [--param NAME=VALUE]... [--cluster ADDRESS] [--store URL]

The output depends on nothing but the notebook (no dates, no versions, stable order), so the same
notebook always gives a byte-identical file, and re-exporting after a change gives a reviewable
diff. Cells that a module cannot express are refused naming the cell and line: IPython syntax other
than the display-only magics that headless runs skip too (those are dropped), top-level ``await``,
``yield`` or ``global``.
"""

from __future__ import annotations

import ast
import json
import keyword
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from nbconvert.exporters import Exporter

from nbflow import notebook as nbmod
from nbflow.analyze import AnalysisError, analyze_cell
from nbflow.graph import Node, build_graph
from nbflow.model import StepOptions

INDENT = "    "
LINE = 100


def export_notebook(path: str | os.PathLike[str], output: str | os.PathLike[str]) -> str:
    """The module text for the notebook at ``path``, to be written at ``output`` (which only
    decides the relative ``FOLDER``)."""
    nb = nbmod.load(os.fspath(path))  # clear errors for a missing or broken notebook
    raw = [(c.get("cell_type", ""), number, _source(c.get("source", "")),
            tuple(c.get("metadata", {}).get("tags", ())))
           for number, c in enumerate(nbmod.read(nb.path)["cells"], start=1)]
    folder = os.path.relpath(nb.path.parent, Path(output).resolve().parent)
    return render(nb.flow_name, nb.path.name, raw, folder.replace(os.sep, "/"), Path(output).name)


def _source(source: str | list[str]) -> str:
    return "".join(source) if isinstance(source, list) else source


def export_file(notebook: str | os.PathLike[str], output: str | os.PathLike[str] | None) -> Path:
    """Export ``notebook`` to ``output`` (default ``flows/NAME.py``); written only once the whole
    module is made, by a rename, so a refused notebook never leaves a half-written file."""
    target = Path(output) if output else Path("flows") / f"{Path(notebook).stem}.py"
    text = export_notebook(notebook, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def render(flow: str, source_name: str, cells: list[tuple[str, int, str, tuple[str, ...]]],
           folder: str, module_name: str) -> str:
    """``cells``: (kind, number, source, tags) of every cell, kind "code" or "markdown"."""
    from nbflow.graph import Cell

    code = [Cell(number=n, source=s, tags=t) for k, n, s, t in cells if k == "code"]
    graph = build_graph(code)  # cycles, duplicates, undefined names: refused as for a run
    nodes = {n.cell.number: n for n in graph.nodes}
    read_later = _read_later(graph.nodes)
    relative = source_name if folder == "." else f"{folder}/{source_name}"
    out = [_module_docstring(flow, relative, module_name),
           "from nbflow.flowfile import cell, main, parameters, step", ""]
    pending_md: list[str] = []
    names: set[str] = set()
    for kind, number, source, _tags in cells:
        if kind == "markdown":
            pending_md += [*_comments(source), "#"]
            continue
        node = nodes[number]
        if node.is_parameters:
            body = _plain_source(node)
            out += [*pending_md[:-1], f"# Parameters (cell {number}); --param NAME=VALUE overrides "
                    "them.", body.rstrip(), f"parameters(cell={number})", "", ""]
        else:
            body = _plain_source(node) if not node.is_step else node.analysis.body
            if not body.strip():
                pending_md = []
                continue  # e.g. a cell of %load_ext only
            out += [*pending_md[:-1], *_function(node, body, names, read_later[number]), "", ""]
        pending_md = []
    if out[4].startswith("@"):  # isort's rule: two blank lines between imports and a def
        out.insert(3, "")
    out += _graph(graph.edges(), list(graph.steps))
    out += ["", f"FOLDER = {_literal(folder)}  # the notebook's folder: the flow runs there", "", "",
            'if __name__ == "__main__":', f"{INDENT}main(__file__)", ""]
    return "\n".join(out)


def _module_docstring(flow: str, source_name: str, module_name: str) -> str:
    return (f'"""Flow {flow!r}, exported from {source_name} by `nbflow export`.\n\n'
            "From this folder:\n"
            f"  run it:     python {module_name} run [--param NAME=VALUE]... [--cluster ADDRESS]\n"
            f"  regenerate: nbflow export {source_name} -o {module_name}\n\n"
            "Each step is a function: its parameters are the step's inputs and it returns its "
            "outputs. nbflow\nruns the body of each function as the notebook cell it came from, "
            "so results (and the cache)\nare the same as for the notebook.\n"
            '"""\n')


def _comments(markdown: str) -> list[str]:
    """Markdown as comment lines of at most LINE characters."""
    out = []
    for line in markdown.strip().splitlines():
        wrapped = textwrap.wrap(line, LINE - 2, break_long_words=False, break_on_hyphens=False)
        out += [f"# {w}".rstrip() for w in wrapped] or ["#"]
    return out


def _read_later(nodes: tuple[Node, ...] | list[Node]) -> dict[int, set[str]]:
    """For each cell, the names that some later cell reads."""
    out: dict[int, set[str]] = {}
    seen: set[str] = set()
    for node in reversed(list(nodes)):
        out[node.cell.number] = set(seen)
        seen.update(node.inputs)
    return out


def _import_bound(body: str) -> set[str]:
    names: set[str] = set()
    for stmt in ast.parse(body).body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
    return names


def _literal(value: Any) -> str:
    """A Python literal with double-quoted strings (what formatters and reviewers expect)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _plain_source(node: Node) -> str:
    """A plain cell's code with the skippable magics dropped; other IPython syntax refused."""
    lines = node.cell.source.splitlines()
    for number, text in node.analysis.magic_lines:
        word = re.match(r"^\s*%(\w+)", text)
        if word and word.group(1) in nbmod.SKIPPED_MAGICS:
            lines[number - 1] = ""
            continue
        raise AnalysisError(
            f"{text.strip()!r} is IPython syntax that a Python module cannot contain",
            cell=node.cell.number, line=number,
            hint="do it in Python (e.g. subprocess.run for a shell command), or move it out of "
            "the notebook's flow; only these magics are dropped on export: "
            + ", ".join(nbmod.SKIPPED_MAGICS))
    return "\n".join(lines).strip("\n")


def _identifier(name: str, taken: set[str]) -> str:
    ident = re.sub(r"\W", "_", name)
    if keyword.iskeyword(ident) or ident in {"cell", "main", "parameters", "step", "GRAPH",
                                             "FOLDER"}:
        ident += "_"
    while ident in taken:
        ident += "_"
    taken.add(ident)
    return ident


def _check_exportable(node: Node, body: str) -> None:
    tree = ast.parse(body)
    for stmt in tree.body:
        if isinstance(stmt, ast.Global | ast.Nonlocal):
            raise AnalysisError("a top-level `global` statement cannot be exported",
                                cell=node.cell.number, line=node.analysis.body_line + stmt.lineno - 1,
                                hint="remove it: a cell's names are already global in the notebook")
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                continue
            if isinstance(sub, ast.Await | ast.Yield | ast.YieldFrom) and _at_top(stmt, sub):
                raise AnalysisError(
                    "top-level `await`/`yield` cannot be exported", cell=node.cell.number,
                    line=node.analysis.body_line + sub.lineno - 1,
                    hint="wrap the asynchronous code in asyncio.run(...)")


def _at_top(stmt: ast.stmt, target: ast.AST) -> bool:
    """Whether ``target`` sits in ``stmt`` outside any function, lambda or class."""
    stack: list[ast.AST] = [stmt]
    while stack:
        current = stack.pop()
        if current is target:
            return True
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(current))
    return False


def _function(node: Node, body: str, taken: set[str], read_later: set[str]) -> list[str]:
    _check_exportable(node, body)
    analysis = analyze_cell(body, cell=node.cell.number) if not node.is_step else node.analysis
    args = list(node.inputs)
    opts = node.options
    if opts is not None and opts.foreach is not None and opts.foreach.var not in args:
        args.append(opts.foreach.var)
    if opts is not None:
        name = _identifier(opts.name, taken)
        decorator = _step_decorator(opts, node.cell.number)
    else:
        name = _identifier(f"cell_{node.cell.number}", taken)
        decorator = f"@cell({node.cell.number})"
    lines = [decorator, *_wrap(f"def {name}(", args, "):", "")]
    lines += [INDENT + line if line.strip() else "" for line in body.strip("\n").splitlines()]
    # Imports a cell makes for itself are not results: returned only if a later cell uses them.
    imported = _import_bound(body)
    outputs = [o for o in analysis.outputs if o not in imported or o in read_later]
    if outputs:
        lines += _wrap(f"{INDENT}return ", outputs, "", INDENT, parens=True)
    return lines


def _wrap(head: str, items: list[str], tail: str, indent: str, *, parens: bool = False
          ) -> list[str]:
    """``head a, b, c tail`` on one line if it fits, else one item per line."""
    one = f"{head}{', '.join(items)}{tail}"
    if len(one) <= LINE:
        return [one]
    opening, closing = (f"{head}(", f"{indent}){tail}") if parens else (head, f"{indent}{tail}")
    return [opening, *[f"{indent}{INDENT}{item}," for item in items], closing]


def _step_decorator(opts: StepOptions, number: int) -> str:
    parts = [_literal(opts.name), f"cell={number}"]
    if opts.foreach is not None:
        parts.append(f"foreach={_literal(f'{opts.foreach.var} in {opts.foreach.expr}')}")
    if opts.retry:
        parts.append(f"retry={opts.retry}")
    if opts.timeout is not None:
        parts.append(f"timeout={opts.timeout:g}")
    if opts.catch:
        parts.append("catch=True")
    if opts.force:
        parts.append("force=True")
    resources: dict[str, Any] = opts.resources.to_json()
    if resources:
        parts.append(f"resources={_literal(resources)}")
    return f"@step({', '.join(parts)})"


def _graph(edges: list[tuple[str, str]], steps: list[str]) -> list[str]:
    upstream: dict[str, list[str]] = {s: [] for s in steps}
    for up, down in edges:
        upstream[down].append(up)
    lines = ["# The flow's graph: each step and the steps whose outputs it reads. nbflow checks it",
             "# against the code when the module runs.", "GRAPH = {"]
    lines += [f"    {_literal(s)}: {_literal(sorted(set(u), key=steps.index))},"
              for s, u in upstream.items()]
    return [*lines, "}"]


class NbflowExporter(Exporter):
    """nbconvert exporter: a notebook as an nbflow flow module (``--to nbflow``)."""

    output_mimetype = "text/x-python"
    export_from_notebook = "nbflow flow module"

    def _file_extension_default(self) -> str:
        return ".py"

    def from_notebook_node(  # type: ignore[override]  # nbconvert's own exporters return str too
            self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        meta = resources.get("metadata", {})
        name = meta.get("name") or "notebook"
        cells = [(c.get("cell_type", ""), i, c.get("source", ""),
                  tuple(c.get("metadata", {}).get("tags", ())))
                 for i, c in enumerate(nb_copy.cells, start=1)]
        # nbconvert writes next to the notebook by default: its folder is the module's.
        return render(name, f"{name}.ipynb", cells, ".", f"{name}.py"), resources
