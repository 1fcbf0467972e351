"""A cell's header options, inputs, outputs by static analysis; no execution.

This module owns what can be learned from a cell's source without running it: the options of
its header lines (``%%step`` and ``%%resources``), its inputs (names it reads that an earlier
cell must define), its outputs (names it binds at top level) and the modules it imports.

Inputs and outputs follow Python's scoping rules with a stack of scopes (module, class,
function, comprehension), in the order Python evaluates the code:

* at top level a name read before the cell binds it is an input; ``x = x + 1`` reads ``x``
  first, so ``x`` is both an input and an output;
* function and lambda bodies run later: a global name they read is an input only if the cell
  never binds it at top level; decorators, defaults and annotations are read immediately;
* class bodies run immediately but their names are invisible to functions nested in them;
* comprehensions have their own scope; their first iterable is read in the enclosing scope;
* ``except E as e`` unbinds ``e`` after the handler; ``del x`` unbinds ``x`` (or reads it, if
  the cell never bound it);
* names bound in only one branch of an ``if``/``try``/``match`` count as bound afterwards.

Plain (non-step) cells may contain IPython-only lines (``%magic``, ``!shell``, ``obj?``); they
are blanked to ``pass`` for the analysis and reported in ``CellAnalysis.magic_lines``. Step
cells run on Dask workers as plain Python, so such lines are an error there.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import difflib
import keyword
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from dask.utils import parse_bytes

from nbflow.model import RESOURCE_NAMES, Foreach, Resources, StepOptions

__all__ = [
    "AnalysisError",
    "CellAnalysis",
    "analyze_cell",
    "analyze_code",
    "is_step_cell",
    "normalize_code",
    "parse_header",
    "parse_resources",
]

STEP_MAGIC = "%%step"
RESOURCES_MAGIC = "%%resources"
STEP_OPTIONS = ("--foreach", "--retry", "--timeout", "--catch", "--force")

# Names a cell may read without any cell defining them.
IGNORED_NAMES = frozenset(dir(builtins)) | {
    "display",
    "get_ipython",
    "__name__",
    "__file__",
    "__builtins__",
    "__doc__",
}

# Cell magics whose body is Python run in the kernel's namespace; any other cell magic
# (%%bash, %%html, %%writefile, ...) makes the whole cell opaque to the analysis.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit"})

_STEP_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_OPTION_AT_RE = re.compile(r"--(foreach|retry|timeout|catch|force)(?=[\s=]|$)")
_TIME_MAGIC_RE = re.compile(r"(?P<indent>\s*)%time\s+(?P<code>\S.*)")
_MAGIC_ASSIGN_RE = re.compile(
    r"(?P<indent>\s*)(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=\s*[!%]"
)


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
    for line in source.splitlines():
        if line.strip():
            return _header_kind(line) is not None
    return False


def analyze_cell(source: str, *, cell: int | None = None) -> CellAnalysis:
    """Header options, inputs, outputs and imports of one cell's source."""
    lines = source.splitlines(keepends=True)
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
    lines = source.splitlines()
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


@dataclass
class _ScanState:
    depth: int = 0  # open brackets
    quote: str | None = None  # the delimiter of the string we are inside
    continued: bool = False  # the previous line ended with a backslash

    @property
    def at_statement_start(self) -> bool:
        return self.depth == 0 and self.quote is None and not self.continued


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
    for lineno, text in enumerate(code.splitlines(), start=1):
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


def _split_outside_brackets(text: str) -> list[tuple[int, str]]:
    """Whitespace-separated tokens of one line that are outside brackets and strings, with
    their offsets; text inside brackets or strings stays in the token it started in."""
    tokens: list[tuple[int, str]] = []
    state = _ScanState()
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not (text[i].isspace() and state.depth == 0 and state.quote is None):
            i = _scan_one(text, i, state)
        tokens.append((start, text[start:i]))
    return tokens


def _scan_one(text: str, i: int, state: _ScanState) -> int:
    """Advance over the lexical unit at ``text[i]``; return the index after it."""
    c = text[i]
    if state.quote is not None:
        if c == "\\":
            return min(i + 2, len(text))
        if text.startswith(state.quote, i):
            end = i + len(state.quote)
            state.quote = None
            return end
        return i + 1
    if c in "([{":
        state.depth += 1
    elif c in ")]}":
        state.depth = max(0, state.depth - 1)
    elif c in "'\"":
        state.quote = c * 3 if text.startswith(c * 3, i) else c
        return i + len(state.quote)
    return i + 1


# ---------------------------------------------------------------------------------------------
# Header lines


def _header_kind(line: str) -> str | None:
    stripped = line.strip()
    for magic in (STEP_MAGIC, RESOURCES_MAGIC):
        if stripped == magic or (
            stripped.startswith(magic) and stripped[len(magic)].isspace()
        ):
            return magic
    return None


def parse_header(lines: list[str], *, cell: int | None = None) -> StepOptions:
    """Options of a step from its header lines (each a ``%%step`` or ``%%resources`` line).

    Line numbers in errors count from 1 at the first of ``lines``; blank lines are skipped.
    """
    return _parse_header(lines, cell=cell, first_line=1)


def _parse_header(lines: list[str], *, cell: int | None, first_line: int) -> StepOptions:
    step: tuple[int, str] | None = None
    resources = Resources()
    resources_line: int | None = None
    for i, raw in enumerate(lines):
        lineno = first_line + i
        line = raw.strip()
        if not line:
            continue
        kind = _header_kind(line)
        if kind == STEP_MAGIC:
            if step is not None:
                raise AnalysisError(
                    f"second `%%step` line '{line}' (the first is on line {step[0]})",
                    cell=cell,
                    line=lineno,
                    hint="keep one `%%step` line per cell",
                )
            step = (lineno, line)
        elif kind == RESOURCES_MAGIC:
            if resources_line is not None:
                raise AnalysisError(
                    f"second `%%resources` line '{line}' (the first is on line "
                    f"{resources_line})",
                    cell=cell,
                    line=lineno,
                    hint="put all resources on one `%%resources` line",
                )
            resources_line = lineno
            resources = parse_resources(line[len(RESOURCES_MAGIC):], cell=cell, line=lineno)
            if not resources:
                raise AnalysisError(
                    f"empty `%%resources` line '{line}'",
                    cell=cell,
                    line=lineno,
                    hint="write e.g. `%%resources memory=16G cpus=4 gpus=1`, or drop the line",
                )
        else:
            raise AnalysisError(
                f"'{line}' is not a `%%step` or `%%resources` line",
                cell=cell,
                line=lineno,
            )
    if step is None:
        raise AnalysisError(
            "`%%resources` without a step",
            cell=cell,
            line=resources_line,
            hint="add a `%%step NAME` line",
        )
    options = _parse_step_line(step[1], cell=cell, lineno=step[0])
    return dataclasses.replace(options, resources=resources) if resources else options


def _closest(word: str, known: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.5)
    return match[0] if match else None


def _parse_step_line(line: str, *, cell: int | None, lineno: int | None) -> StepOptions:
    """Options of one ``%%step NAME [--foreach VAR in EXPR] [--retry N] ...`` line."""

    def fail(reason: str, hint: str | None = None, after: str = "") -> AnalysisError:
        return AnalysisError(f"{reason} in '{line}'{after}", cell=cell, line=lineno, hint=hint)

    offset = len(STEP_MAGIC)
    tokens = [(start + offset, tok) for start, tok in _split_outside_brackets(line[offset:])]
    name: str | None = None
    seen: set[str] = set()
    foreach: Foreach | None = None
    retry = 0
    timeout: float | None = None
    catch = force = False
    i = 0
    while i < len(tokens):
        tok = tokens[i][1]
        i += 1
        if not tok.startswith("--"):
            if name is not None:
                raise fail(
                    f"unexpected '{tok}' after the step name '{name}'",
                    hint="options start with `--`, and a step has one NAME",
                )
            if not _STEP_NAME_RE.fullmatch(tok):
                raise fail(
                    f"invalid step name '{tok}'",
                    hint="a step name starts with a letter or `_` and has only letters, "
                    "digits, `_` and `-`",
                )
            name = tok
            continue
        opt, eq, inline = tok.partition("=")
        if opt not in STEP_OPTIONS:
            raise _unknown_option(opt, fail)
        if opt in seen:
            raise fail(f"option {opt} given twice", hint=f"keep one {opt}")
        seen.add(opt)
        if opt in ("--catch", "--force"):
            if eq:
                raise fail(f"{opt} takes no value (got '{tok}')", hint=f"write just {opt}")
            catch = catch or opt == "--catch"
            force = force or opt == "--force"
        elif opt == "--foreach":
            foreach, i = _parse_foreach(line, tokens, i, inline if eq else None, fail)
        else:
            value = ""
            if eq:
                value = inline
            elif i < len(tokens) and not tokens[i][1].startswith("--"):
                value = tokens[i][1]
                i += 1
            if opt == "--retry":
                retry = _parse_retry(value, fail)
            else:
                timeout = _parse_timeout(value, fail)
    if name is None:
        raise fail("missing step name", hint="write `%%step NAME [options]`")
    return StepOptions(
        name=name, foreach=foreach, retry=retry, timeout=timeout, catch=catch, force=force
    )


class _FailFn(Protocol):
    def __call__(
        self, reason: str, hint: str | None = None, after: str = ""
    ) -> AnalysisError: ...


class _ResFailFn(Protocol):
    def __call__(self, reason: str, hint: str | None = None) -> AnalysisError: ...


def _unknown_option(opt: str, fail: _FailFn) -> AnalysisError:
    guess = _closest(opt, STEP_OPTIONS)
    return fail(
        f"unknown option {opt}",
        hint=f"did you mean {guess}?" if guess else None,
        after=f". Known options: {', '.join(STEP_OPTIONS)}.",
    )


def _parse_retry(value: str, fail: _FailFn) -> int:
    if not value:
        raise fail("missing value for --retry", hint="write e.g. `--retry 2`")
    try:
        retry = int(value)
    except ValueError:
        retry = -1
    if retry < 0:
        raise fail(
            f"--retry needs a whole number >= 0, got '{value}'", hint="write e.g. `--retry 2`"
        )
    return retry


def _parse_timeout(value: str, fail: _FailFn) -> float:
    if not value:
        raise fail("missing value for --timeout", hint="write e.g. `--timeout 3600`")
    try:
        timeout = float(value)
    except ValueError:
        timeout = math.nan
    if not (math.isfinite(timeout) and timeout > 0):
        raise fail(
            f"--timeout needs a number of seconds > 0, got '{value}'",
            hint="write e.g. `--timeout 3600` or `--timeout 0.5`",
        )
    return timeout


def _parse_foreach(
    line: str, tokens: list[tuple[int, str]], i: int, var: str | None, fail: _FailFn
) -> tuple[Foreach, int]:
    """Parse ``VAR in EXPR`` from ``tokens[i:]``; return it and the index after EXPR."""
    hint = "write e.g. `--foreach C in [0.1, 1, 10]`"
    if var is None:
        if i >= len(tokens) or tokens[i][1].startswith("--"):
            raise fail("missing `VAR in EXPR` after --foreach", hint=hint)
        var = tokens[i][1]
        i += 1
    if not var.isidentifier() or keyword.iskeyword(var):
        raise fail(f"--foreach needs a variable name, got '{var}'", hint=hint)
    if i >= len(tokens) or tokens[i][1] != "in":
        got = f", got '{tokens[i][1]}'" if i < len(tokens) else ""
        raise fail(f"expected `in` after --foreach {var}{got}", hint=hint)
    i += 1
    start = tokens[i][0] if i < len(tokens) else len(line)
    end = i
    while end < len(tokens) and not _OPTION_AT_RE.match(tokens[end][1]):
        # `a --b` is valid Python, but far likelier a mistyped option swallowed into EXPR.
        if re.match(r"--[A-Za-z]", tokens[end][1]):
            raise _unknown_option(tokens[end][1].partition("=")[0], fail)
        end += 1
    stop = tokens[end][0] if end < len(tokens) else len(line)
    expr = line[start:stop].strip()
    if not expr:
        raise fail(f"missing EXPR after --foreach {var} in", hint=hint)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError) as e:
        msg = getattr(e, "msg", str(e))
        raise fail(
            f"--foreach EXPR '{expr}' is not a Python expression ({msg})", hint=hint
        ) from None
    return Foreach(var=var, expr=expr), end


def parse_resources(
    text: str, *, cell: int | None = None, line: int | None = None
) -> Resources:
    """Resources from ``key=value`` tokens, e.g. ``"memory=64G cpus=8 gpus=1"``.

    A leading ``%%resources`` is allowed. An empty text gives empty ``Resources()``.
    """
    text = text.strip()
    if _header_kind(text) == RESOURCES_MAGIC:
        text = text[len(RESOURCES_MAGIC):].strip()
    known = ", ".join(RESOURCE_NAMES)
    values: dict[str, Any] = {}

    def fail(reason: str, hint: str | None = None) -> AnalysisError:
        return AnalysisError(
            f"{reason} in '%%resources {text}'", cell=cell, line=line, hint=hint
        )

    for token in text.split():
        key, eq, value = token.partition("=")
        if not eq:
            raise fail(
                f"'{token}' is not key=value",
                hint=f"write e.g. `memory=16G cpus=4 gpus=1` (keys: {known})",
            )
        if key not in RESOURCE_NAMES:
            guess = _closest(key, RESOURCE_NAMES)
            raise fail(
                f"unknown resource '{key}' (known: {known})",
                hint=f"did you mean {guess}?" if guess else None,
            )
        if key in values:
            raise fail(f"resource '{key}' given twice", hint=f"keep one {key}=...")
        if not value:
            raise fail(f"missing value for '{key}'", hint=f"write e.g. `{_EXAMPLES[key]}`")
        values[key] = _RESOURCE_PARSERS[key](value, fail)
    return Resources(**values)


_EXAMPLES = {"memory": "memory=64G", "cpus": "cpus=8", "gpus": "gpus=1"}


def _parse_memory(value: str, fail: _ResFailFn) -> int:
    hint = "write e.g. `memory=64G`, `memory=512MiB` or `memory=2000000` (bytes)"
    try:
        memory = int(parse_bytes(value))
    except (ValueError, TypeError):
        raise fail(f"memory '{value}' is not an amount of bytes", hint=hint) from None
    if memory <= 0:
        raise fail(f"memory must be > 0, got '{value}'", hint=hint)
    return memory


def _parse_cpus(value: str, fail: _ResFailFn) -> float:
    try:
        cpus = float(value)
    except ValueError:
        cpus = math.nan
    if not (math.isfinite(cpus) and cpus > 0):
        raise fail(f"cpus must be a number > 0, got '{value}'", hint="write e.g. `cpus=8`")
    return cpus


def _parse_gpus(value: str, fail: _ResFailFn) -> int:
    try:
        gpus = int(value)
    except ValueError:
        gpus = -1
    if gpus < 0:
        raise fail(
            f"gpus must be a whole number >= 0, got '{value}'", hint="write e.g. `gpus=1`"
        )
    return gpus


_RESOURCE_PARSERS: dict[str, Callable[[str, _ResFailFn], Any]] = {
    "memory": _parse_memory,
    "cpus": _parse_cpus,
    "gpus": _parse_gpus,
}


# ---------------------------------------------------------------------------------------------
# Python code


def analyze_code(
    code: str, *, cell: int | None = None, line_offset: int = 0
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(inputs, outputs, imports) of plain Python code; ``line_offset`` shifts error lines."""
    return _analyze(code, cell=cell, line_offset=line_offset)


def normalize_code(body: str) -> str:
    """The code with comments and formatting removed, for cache keys."""
    return ast.unparse(_parse(body, cell=None, line_offset=0))


def _analyze(
    code: str, *, cell: int | None, line_offset: int, prebound: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    tree = _parse(code, cell=cell, line_offset=line_offset)
    visitor = _Analyzer(cell=cell, line_offset=line_offset, prebound=prebound)
    try:
        visitor.visit(tree)
    except RecursionError:
        raise AnalysisError("the code is nested too deeply to analyze", cell=cell) from None
    return visitor.result()


def _parse(code: str, *, cell: int | None, line_offset: int) -> ast.Module:
    """Parse and compile (without running) so every SyntaxError shows up here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning / DeprecationWarning on odd literals
        try:
            tree = ast.parse(code)
            compile(
                tree, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
            )
        except SyntaxError as e:
            lines = code.splitlines()
            text = e.text
            if not text and e.lineno and 0 < e.lineno <= len(lines):
                text = lines[e.lineno - 1]
            where = f" in '{text.strip()}'" if text and text.strip() else ""
            raise AnalysisError(
                f"{type(e).__name__}: {e.msg}{where}",
                cell=cell,
                line=None if e.lineno is None else e.lineno + line_offset,
                hint="correct the Python syntax",
            ) from None
        except (ValueError, RecursionError, MemoryError) as e:
            raise AnalysisError(f"cannot parse the code: {e}", cell=cell) from None
    return tree


@dataclass
class _Scope:
    kind: str  # "module", "class", "function" or "comprehension"
    # module / class: names bound so far (sequential); function: every local (known up
    # front, as Python decides); comprehension: the loop targets
    names: set[str] = field(default_factory=set)
    globals: set[str] = field(default_factory=set)
    nonlocals: set[str] = field(default_factory=set)


_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
_ComprehensionNode = ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp


class _Analyzer(ast.NodeVisitor):
    """Walks code in evaluation order, tracking what each scope has bound."""

    def __init__(
        self, *, cell: int | None, line_offset: int, prebound: Iterable[str] = ()
    ) -> None:
        self.cell = cell
        self.line_offset = line_offset
        self.module = _Scope("module", set(prebound))
        self.scopes: list[_Scope] = [self.module]
        self.reads: list[tuple[str, bool]] = []  # (name, deferred) in order of reading
        self.ever_bound: set[str] = set(prebound)
        self.bind_order: dict[str, None] = {}
        self.imports: set[str] = set()
        self.future_annotations = False

    def result(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        inputs: dict[str, None] = {}
        for name, deferred in self.reads:
            if name in IGNORED_NAMES or (deferred and name in self.ever_bound):
                continue
            inputs.setdefault(name)
        outputs = tuple(n for n in self.bind_order if n in self.module.names)
        return tuple(inputs), outputs, tuple(sorted(self.imports))

    # -- names ------------------------------------------------------------------------------

    def _load(self, name: str) -> None:
        deferred = False
        last = len(self.scopes) - 1
        for index in range(last, 0, -1):
            scope = self.scopes[index]
            if scope.kind == "class":
                if index != last:
                    continue  # class scope is invisible to scopes nested in it
                if name in scope.globals:
                    break
                if name in scope.names:
                    return
            elif scope.kind == "function":
                deferred = True
                if name in scope.globals:
                    break
                if name in scope.names and name not in scope.nonlocals:
                    return
            elif name in scope.names:  # comprehension
                return
        if deferred:
            self.reads.append((name, True))
        elif name not in self.module.names:
            self.reads.append((name, False))

    def _bind_module(self, name: str) -> None:
        self.module.names.add(name)
        self.ever_bound.add(name)
        self.bind_order.setdefault(name)

    def _store(self, name: str, scope: _Scope | None = None) -> None:
        scope = scope or self.scopes[-1]
        if scope.kind == "module" or name in scope.globals:
            self._bind_module(name)
        elif scope.kind == "class":
            scope.names.add(name)
        # function locals are known up front; comprehension targets are local to it

    def _delete(self, name: str) -> None:
        scope = self.scopes[-1]
        if scope.kind == "function" and name not in scope.globals:
            return
        if scope.kind == "class" and name not in scope.globals:
            if name in scope.names:
                scope.names.discard(name)
            else:
                self._load(name)
            return
        if name in self.module.names and scope.kind == "module":
            self.module.names.discard(name)
        else:
            self._load(name)  # `del` reads the name

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._store(node.id)
        else:
            self._delete(node.id)

    # -- branches ---------------------------------------------------------------------------

    def _snapshot(self) -> frozenset[str]:
        return frozenset(self.scopes[-1].names)

    def _restore(self, names: Iterable[str]) -> None:
        scope = self.scopes[-1]
        if scope.kind in ("module", "class"):
            scope.names.clear()
            scope.names.update(names)

    def _merge(self, *states: frozenset[str]) -> None:
        if self.scopes[-1].kind in ("module", "class"):
            self.scopes[-1].names.update(*states)

    def _block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    # -- statements -------------------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
            self.visit(node.value)
            self._store(node.target.id)
        else:
            self.visit(node.target)
            self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        if isinstance(node.target, ast.Name):
            if node.value is not None:
                self._store(node.target.id)
        else:
            self.visit(node.target)
        if self.scopes[-1].kind != "function":  # annotations of locals are never evaluated
            self._annotation(node.annotation)

    def _annotation(self, node: ast.expr | None) -> None:
        if node is not None and not self.future_annotations:
            self.visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        start = self._snapshot()
        self.visit(node.target)
        self._block(node.body)
        self._merge(start)  # the loop may run zero times
        self._block(node.orelse)

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        start = self._snapshot()
        self._block(node.body)
        self._merge(start)
        self._block(node.orelse)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        start = self._snapshot()
        self._block(node.body)
        after_body = self._snapshot()
        self._restore(start)
        self._block(node.orelse)
        self._merge(after_body)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        self._block(node.body)

    visit_AsyncWith = visit_With

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        start = self._snapshot()
        self._block(node.body)
        after_body = self._snapshot()
        # A handler may start anywhere in the body: count its names as (maybe) bound.
        handler_start = start | after_body
        ends: list[frozenset[str]] = []
        for handler in node.handlers:
            self._restore(handler_start)
            self._handler(handler)
            ends.append(self._snapshot())
        self._restore(after_body)
        self._block(node.orelse)
        ends.append(self._snapshot())
        self._restore(handler_start)
        self._merge(*ends)
        self._block(node.finalbody)

    visit_TryStar = visit_Try

    def _handler(self, handler: ast.ExceptHandler) -> None:
        if handler.type is not None:
            self.visit(handler.type)
        scope = self.scopes[-1]
        name = handler.name
        if name is None or (scope.kind == "function" and name not in scope.globals):
            self._block(handler.body)
            return
        # `except E as e` binds e for the handler only: Python deletes it afterwards.
        target = self.module if scope.kind == "module" or name in scope.globals else scope
        was_bound = name in target.names
        target.names.add(name)
        if target is self.module:
            self.ever_bound.add(name)
        self._block(handler.body)
        if not was_bound:
            target.names.discard(name)

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        start = self._snapshot()
        ends = [start]  # no case may match
        for case in node.cases:
            self._restore(start)
            self.visit(case.pattern)
            if case.guard is not None:
                self.visit(case.guard)
            self._block(case.body)
            ends.append(self._snapshot())
        self._merge(*ends)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name is not None:
            self._store(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self._store(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for key in node.keys:
            self.visit(key)
        for pattern in node.patterns:
            self.visit(pattern)
        if node.rest is not None:
            self._store(node.rest)

    def visit_Global(self, node: ast.Global) -> None:
        if self.scopes[-1].kind == "class":
            self.scopes[-1].globals.update(node.names)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            self.imports.add(top)
            self._store(alias.asname or top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if any(alias.name == "*" for alias in node.names):
            raise AnalysisError(
                f"star import `from {module} import *` hides which names the cell defines",
                cell=self.cell,
                line=node.lineno + self.line_offset,
                hint=f"import the names you use, e.g. `from {module} import name1, name2`",
            )
        if node.module == "__future__":
            # A compiler directive: binds no name worth sharing and needs no package.
            if any(alias.name == "annotations" for alias in node.names):
                self.future_annotations = True
            return
        if node.level == 0 and node.module:
            self.imports.add(node.module.split(".")[0])
        for alias in node.names:
            self._store(alias.asname or alias.name)

    # -- functions and classes --------------------------------------------------------------

    def _signature(self, args: ast.arguments, annotate: bool) -> None:
        for default in args.defaults:
            self.visit(default)
        for kw_default in args.kw_defaults:
            if kw_default is not None:
                self.visit(kw_default)
        if annotate:
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            every += [a for a in (args.vararg, args.kwarg) if a is not None]
            for arg in every:
                self._annotation(arg.annotation)

    def _function_scope(self, node: _FunctionNode) -> _Scope:
        collector = _LocalNames()
        if isinstance(node, ast.Lambda):
            collector.visit(node.body)
        else:
            for stmt in node.body:
                collector.visit(stmt)
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        params += [a for a in (args.vararg, args.kwarg) if a is not None]
        names = {a.arg for a in params} | collector.names
        names -= collector.globals | collector.nonlocals
        return _Scope("function", names, collector.globals, collector.nonlocals)

    @contextmanager
    def _scope(self, scope: _Scope) -> Iterator[None]:
        self.scopes.append(scope)
        try:
            yield
        finally:
            self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._signature(node.args, annotate=True)
        self._annotation(node.returns)
        self._store(node.name)
        with self._scope(self._function_scope(node)):
            self._block(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._signature(node.args, annotate=False)
        with self._scope(self._function_scope(node)):
            self.visit(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in node.bases:
            self.visit(base)
        for kw in node.keywords:
            self.visit(kw.value)
        with self._scope(_Scope("class")):
            self._block(node.body)
        self._store(node.name)

    # -- expressions ------------------------------------------------------------------------

    def _comprehension(self, node: _ComprehensionNode, parts: list[ast.expr]) -> None:
        generators = node.generators
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        targets = {
            n.id
            for g in generators
            for n in ast.walk(g.target)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        with self._scope(_Scope("comprehension", targets)):
            for index, generator in enumerate(generators):
                if index:
                    self.visit(generator.iter)
                self.visit(generator.target)
                for condition in generator.ifs:
                    self.visit(condition)
            for part in parts:
                self.visit(part)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node, [node.elt])

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node, [node.elt])

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        # The walrus binds in the nearest scope that is not a comprehension.
        scope = next(s for s in reversed(self.scopes) if s.kind != "comprehension")
        self._store(node.target.id, scope)


class _LocalNames(ast.NodeVisitor):
    """The names a function body binds (its locals, as Python decides them), plus its
    ``global`` and ``nonlocal`` declarations. Does not look inside nested scopes' bodies."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.in_comprehension = False

    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load) and not self.in_comprehension:
            self.names.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.names.add(node.target.id)
        self.visit(node.value)

    def visit_Global(self, node: ast.Global) -> None:
        self.globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.nonlocals.update(node.names)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.names.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.names.add(alias.asname or alias.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name is not None:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name is not None:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self.names.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest is not None:
            self.names.add(node.rest)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.names.add(node.name)
        for expr in node.decorator_list:
            self.visit(expr)
        self.visit(node.args)  # defaults and annotations; no bindings but walrus
        if node.returns is not None:
            self.visit(node.returns)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arguments(self, node: ast.arguments) -> None:
        for expr in [*node.defaults, *node.kw_defaults]:
            if expr is not None:
                self.visit(expr)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.names.add(node.name)
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)

    def _comprehension(self, node: _ComprehensionNode) -> None:
        outer = self.in_comprehension
        self.in_comprehension = True  # loop targets are the comprehension's own
        self.generic_visit(node)
        self.in_comprehension = outer

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node)
