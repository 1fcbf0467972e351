"""The ``%%step`` and ``%%resources`` header lines of a step cell.

This module owns the header syntax: the magic names and the ``--`` options a ``%%step`` line
takes, recognising a header line (``_header_kind``), and parsing the options of the header
(``parse_header``, ``_parse_step_line``) and of ``%%resources`` (``parse_resources``), with
errors that name the line and suggest a fix. It also owns the lexical scanner (``_ScanState``,
``_scan_one``) that splits a header line outside brackets and strings; ``nbflow.analyze``
reuses it to find IPython-only lines.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import keyword
import math
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from dask.utils import parse_bytes

from nbflow.errors import AnalysisError
from nbflow.model import RESOURCE_NAMES, Foreach, Resources, StepOptions

STEP_MAGIC = "%%step"
RESOURCES_MAGIC = "%%resources"
STEP_OPTIONS = ("--foreach", "--retry", "--timeout", "--catch", "--force")

_STEP_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_OPTION_AT_RE = re.compile(r"--(foreach|retry|timeout|catch|force)(?=[\s=]|$)")


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


_LINE_END_RE = re.compile(r"\r\n|\r|\n")


def python_lines(text: str, keepends: bool = False) -> list[str]:
    """``text.splitlines()`` as Python's tokenizer splits lines: at ``\\n``, ``\\r\\n`` and
    ``\\r`` only. ``str.splitlines`` also splits at form feeds, ``\\x1c``-``\\x1e``, ``\\x85``
    and ``\\u2028``/``\\u2029``, which Python allows inside string literals and comments."""
    lines: list[str] = []
    start = 0
    for m in _LINE_END_RE.finditer(text):
        lines.append(text[start:m.end() if keepends else m.start()])
        start = m.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


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
    except (ValueError, TypeError, OverflowError):  # OverflowError: `memory=1e400`
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
