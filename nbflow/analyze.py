"""A cell's header options, inputs, outputs by static analysis; no execution.

This module is the public facade for analysing one notebook cell: ``analyze_cell`` and
``is_step_cell``, the ``CellAnalysis`` they return, and the handling of IPython-only lines
(``%magic``, ``!shell``, ``obj?``). The work is shared with ``nbflow.header`` (the ``%%step``
and ``%%resources`` header lines), ``nbflow.scope`` (inputs, outputs and imports of plain
Python) and ``nbflow.errors`` (``AnalysisError``), whose public names are re-exported here.

Plain (non-step) cells may contain IPython-only lines; they are blanked to ``pass`` for the
analysis and reported in ``CellAnalysis.magic_lines``. Step cells run on Dask workers as plain
Python, so such lines are an error there.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from nbflow.errors import AnalysisError
from nbflow.errors import _rebuild_error as _rebuild_error  # pickles made before the split
from nbflow.header import (
    RESOURCES_MAGIC,
    STEP_MAGIC,
    STEP_OPTIONS,
    _header_kind,
    _parse_header,
    _scan_one,
    _ScanState,
    parse_header,
    parse_resources,
    python_lines,
)
from nbflow.model import StepOptions
from nbflow.scope import IGNORED_NAMES as IGNORED_NAMES
from nbflow.scope import _analyze, _Analyzer, analyze_code, normalize_code

__all__ = [
    "RESOURCES_MAGIC",
    "STEP_MAGIC",
    "STEP_OPTIONS",
    "AnalysisError",
    "CellAnalysis",
    "analyze_cell",
    "analyze_code",
    "is_step_cell",
    "normalize_code",
    "parse_header",
    "parse_resources",
]

# Cell magics whose body is Python run in the kernel's namespace; any other cell magic
# (%%bash, %%html, %%writefile, ...) makes the whole cell opaque to the analysis.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit"})

_TIME_MAGIC_RE = re.compile(r"(?P<indent>\s*)%time\s+(?P<code>\S.*)")
_MAGIC_ASSIGN_RE = re.compile(
    r"(?P<indent>\s*)(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=\s*[!%]"
)


@dataclass(frozen=True)
class CellAnalysis:
    """Everything static analysis learns from one cell."""

    options: StepOptions | None  # None for a plain (non-step) cell
    body: str  # the source with the header lines removed
    body_line: int  # 1-based line in the cell where body starts
    inputs: tuple[str, ...]  # names read before being defined, in order of first read
    outputs: tuple[str, ...]  # names bound at top level, in order of first binding
    imports: tuple[str, ...]  # top-level module names imported anywhere, sorted
    magic_lines: tuple[tuple[int, str], ...] = ()  # plain cells: IPython-only lines blanked


# ---------------------------------------------------------------------------------------------
# Cells


def is_step_cell(source: str) -> bool:
    """Whether the first non-empty line of the cell is a ``%%step`` or ``%%resources`` line."""
    for line in python_lines(source):
        if line.strip():
            return _header_kind(line) is not None
    return False


def analyze_cell(source: str, *, cell: int | None = None) -> CellAnalysis:
    """Header options, inputs, outputs and imports of one cell's source."""
    lines = python_lines(source, keepends=True)
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = start
    while end < len(lines) and _header_kind(lines[end]) is not None:
        end += 1
    if end == start:
        return _analyze_plain(source, cell)

    options = _parse_header(
        [line.rstrip("\r\n") for line in lines[start:end]], cell=cell, first_line=start + 1
    )
    body = "".join(lines[end:])
    body_line = end + 1
    for lineno, text in _find_magic_lines(body):
        stripped = text.strip()
        if _header_kind(stripped) is not None:
            raise AnalysisError(
                f"header line '{stripped}' is not at the top of the cell",
                cell=cell,
                line=body_line + lineno - 1,
                hint="stack all `%%step` and `%%resources` lines as the first lines of the cell",
            )
        raise AnalysisError(
            f"IPython-only line '{stripped}' in step '{options.name}'; "
            "step cells run on Dask workers as plain Python",
            cell=cell,
            line=body_line + lineno - 1,
            hint="move it to a plain cell, or write it in Python (e.g. subprocess.run for `!cmd`)",
        )

    prebound: tuple[str, ...] = ()
    expr_inputs: tuple[str, ...] = ()
    if options.foreach is not None:
        tree = ast.parse(options.foreach.expr, mode="eval")
        visitor = _Analyzer(cell=cell, line_offset=0)
        visitor.visit(tree)
        expr_inputs = visitor.result()[0]
        prebound = (options.foreach.var,)
    inputs, outputs, imports = _analyze(
        body, cell=cell, line_offset=body_line - 1, prebound=prebound
    )
    return CellAnalysis(
        options=options,
        body=body,
        body_line=body_line,
        inputs=tuple(dict.fromkeys(expr_inputs + inputs)),
        outputs=outputs,
        imports=imports,
    )


def _analyze_plain(source: str, cell: int | None) -> CellAnalysis:
    lines = python_lines(source)
    magic: list[tuple[int, str]] = []
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic.append((first + 1, lines[first]))
        name = lines[first].lstrip()[2:].split(maxsplit=1)
        if not name or name[0] not in PYTHON_CELL_MAGICS:
            # The body is another language (or Python run elsewhere): nothing to analyze.
            return CellAnalysis(None, source, 1, (), (), (), tuple(magic))
        lines[first] = _blank(lines[first])
    code_lines = list(lines)
    for lineno, text in _find_magic_lines("\n".join(lines)):
        magic.append((lineno, text))
        assign = _MAGIC_ASSIGN_RE.match(text)
        timed = None if text.rstrip().endswith("\\") else _TIME_MAGIC_RE.fullmatch(text)
        if assign:
            code_lines[lineno - 1] = f"{assign['indent']}{assign['names']} = None"
        elif timed:  # `%time STATEMENT` runs the statement in the notebook's namespace
            code_lines[lineno - 1] = f"{timed['indent']}{timed['code']}"
        else:
            code_lines[lineno - 1] = _blank(text)
    inputs, outputs, imports = _analyze("\n".join(code_lines), cell=cell, line_offset=0)
    return CellAnalysis(None, source, 1, inputs, outputs, imports, tuple(sorted(magic)))


def _blank(line: str) -> str:
    return line[: len(line) - len(line.lstrip())] + "pass"


# ---------------------------------------------------------------------------------------------
# Lexical scanning: which lines start a Python statement, where brackets and strings are


def _scan(text: str, state: _ScanState) -> int:
    """Advance ``state`` over one line; return where a comment starts (or ``len(text)``)."""
    state.continued = False
    i, n = 0, len(text)
    comment = n
    while i < n:
        if state.quote is None and text[i] == "#":
            comment = i
            break
        i = _scan_one(text, i, state)
    code = text[:comment].rstrip()
    if state.quote is not None and len(state.quote) == 1:
        # A one-line string only goes on past a backslash-newline.
        state.continued = text.endswith("\\")
        if not state.continued:
            state.quote = None
    elif state.quote is None:
        state.continued = comment == n and code.endswith("\\")
    return comment


def _find_magic_lines(code: str) -> list[tuple[int, str]]:
    """(1-based line, text) of each IPython-only line that stands where a statement would."""
    found: list[tuple[int, str]] = []
    state = _ScanState()
    in_magic = False  # a magic line ending with a backslash goes on to the next line
    for lineno, text in enumerate(python_lines(code), start=1):
        stripped = text.strip()
        if in_magic:
            found.append((lineno, text))
            in_magic = stripped.endswith("\\")
            continue
        if state.at_statement_start and stripped.startswith(("%", "!", "?")):
            found.append((lineno, text))
            in_magic = stripped.endswith("\\")
            continue
        if state.at_statement_start and _MAGIC_ASSIGN_RE.match(text):
            found.append((lineno, text))
            in_magic = stripped.endswith("\\")
            continue
        was_start = state.at_statement_start
        comment = _scan(text, state)
        code_part = text[:comment].rstrip()
        if was_start and state.at_statement_start and code_part.endswith("?"):
            found.append((lineno, text))  # `obj?` / `obj??` help
    return found
