"""Property-based tests (hypothesis) of the header-line parser and of cell analysis.

* Header lines built from generated names, numbers, sizes with units and flags in any order (and
  stacked ``%%step`` / ``%%resources`` lines in either order) parse back to the ``StepOptions`` they
  were built from; corrupted and arbitrary lines raise ``AnalysisError`` naming the line, never
  another exception, and whatever does parse re-parses identically from its canonical spelling.
* Random valid cells from a small statement grammar are analysed and compared with an independent
  oracle that *executes* them (see ``run_oracle``); text that is not Python raises
  ``AnalysisError`` naming the cell and the line.

The bugs these properties found have a plain regression test each at the end of the file.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import string
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nbflow.analyze import AnalysisError, analyze_cell, analyze_code, parse_header
from nbflow.model import Foreach, Resources, StepOptions

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Header lines: generated valid ones

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,12}", fullmatch=True)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s))
spaces = st.sampled_from([" ", "  ", "\t", " \t "])

# Units as the README documents them (Dask's: decimal without `i`, binary with it), any case.
UNITS = {"": 1, "B": 1, "k": 10**3, "kB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9,
         "GB": 10**9, "T": 10**12, "TB": 10**12, "Ki": 2**10, "KiB": 2**10, "Mi": 2**20,
         "MiB": 2**20, "Gi": 2**30, "GiB": 2**30, "Ti": 2**40, "TiB": 2**40}


@st.composite
def memories(draw: st.DrawFn) -> tuple[str, int]:
    unit = draw(st.sampled_from(sorted(UNITS)))
    unit = draw(st.sampled_from([unit, unit.lower(), unit.upper()]))
    if draw(st.booleans()):
        amount = str(draw(st.integers(1, 10**6)))
    else:  # one decimal: 1.5G
        amount = f"{draw(st.integers(0, 999))}.{draw(st.integers(1, 9))}"
    expected = int(float(amount) * UNITS[next(u for u in UNITS if u.lower() == unit.lower())])
    assume(expected > 0)
    return amount + unit, expected


@st.composite
def expressions(draw: st.DrawFn, depth: int = 2) -> str:
    """Python expressions for ``--foreach``; strings may hold spaces and option-like text."""
    atoms = st.one_of(
        identifiers,
        st.integers(-5, 10**6).map(str),
        st.text(alphabet=" ab-=\"'", max_size=8).map(repr),
        st.sampled_from(["'--retry 2'", '"a --catch b"', "'[('", "None"]),
    )
    if depth == 0:
        return draw(atoms)
    sub = expressions(depth - 1)
    form = draw(st.integers(0, 6))
    if form == 0:
        return draw(atoms)
    if form == 1:
        return f"range({draw(sub)})"
    if form == 2:
        return "[" + ", ".join(draw(st.lists(sub, max_size=3))) + "]"
    if form == 3:
        return f"{draw(sub)} + {draw(sub)}"
    if form == 4:
        return f"{{k: v for k, v in {draw(sub)}}}"
    if form == 5:
        return f"f({draw(sub)}, key = {draw(sub)})"
    return f"{draw(sub)}[{draw(sub)}:]"


@dataclass
class Header:
    lines: list[str]
    expected: StepOptions
    step_line: int  # 0-based index of the %%step line in ``lines``
    resources_line: int | None
    tokens: dict[str, str] = field(default_factory=dict)  # option -> its text on the line


@st.composite
def headers(draw: st.DrawFn, blank_lines: bool = True) -> Header:
    name = draw(names)
    parts: list[tuple[str, str]] = [("name", name)]
    kwargs: dict[str, Any] = {}
    inline = st.booleans()
    if draw(st.booleans()):
        var, expr = draw(identifiers), draw(expressions())
        sep = "=" if draw(inline) else draw(spaces)
        parts.append(("--foreach", f"--foreach{sep}{var}{draw(spaces)}in{draw(spaces)}{expr}"))
        kwargs["foreach"] = Foreach(var, expr)
    if draw(st.booleans()):
        retry = draw(st.integers(0, 10**9))
        parts.append(("--retry", f"--retry{'=' if draw(inline) else draw(spaces)}{retry}"))
        kwargs["retry"] = retry
    if draw(st.booleans()):
        timeout = draw(st.one_of(
            st.integers(1, 10**7).map(float),
            st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False)))
        text = str(int(timeout)) if timeout.is_integer() and draw(st.booleans()) else repr(timeout)
        parts.append(("--timeout", f"--timeout{'=' if draw(inline) else draw(spaces)}{text}"))
        kwargs["timeout"] = timeout
    for flag in ("catch", "force"):
        if draw(st.booleans()):
            parts.append((f"--{flag}", f"--{flag}"))
            kwargs[flag] = True
    # The name first or anywhere after complete options (options never swallow a bare word,
    # except --foreach's EXPR, which runs to the next option: keep the name before those).
    order = draw(st.permutations(parts))
    if any(k == "--foreach" for k, _ in order):
        order = [p for p in order if p[0] == "name"] + [p for p in order if p[0] != "name"]
    step = "%%step" + draw(spaces) + draw(spaces).join(text for _, text in order)
    step = draw(st.sampled_from(["", " "])) + step + draw(st.sampled_from(["", " ", "\t"]))

    res_parts: list[str] = []
    res: dict[str, Any] = {}
    keys = draw(st.lists(st.sampled_from(["memory", "cpus", "gpus"]), unique=True, max_size=3))
    for key in keys:
        if key == "memory":
            text, res["memory"] = draw(memories())
        elif key == "cpus":
            cpus = draw(st.one_of(st.integers(1, 512).map(float),
                                  st.floats(min_value=0.01, max_value=512, allow_nan=False)))
            text = repr(cpus) if not cpus.is_integer() or draw(st.booleans()) else str(int(cpus))
            res["cpus"] = cpus
        else:
            res["gpus"] = draw(st.integers(0, 64))
            text = str(res["gpus"])
        res_parts.append(f"{key}={text}")
    lines = [step]
    step_line, resources_line = 0, None
    if res_parts:
        resources = "%%resources" + draw(spaces) + draw(spaces).join(res_parts)
        if draw(st.booleans()):
            lines = [resources, step]
            resources_line, step_line = 0, 1
        else:
            lines = [step, resources]
            resources_line = 1
        kwargs["resources"] = Resources(**res)
    if blank_lines and draw(st.booleans()):
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(["", "   ", "\t"])))
        step_line += step_line >= at
        if resources_line is not None:
            resources_line += resources_line >= at
    return Header(lines, StepOptions(name=name, **kwargs), step_line, resources_line,
                  dict(order))


def canonical(options: StepOptions) -> list[str]:
    """The options spelled out in one canonical way (the inverse of the parser)."""
    step = f"%%step {options.name}"
    if options.foreach:
        step += f" --foreach {options.foreach.var} in {options.foreach.expr}"
    if options.retry:
        step += f" --retry {options.retry}"
    if options.timeout is not None:
        step += f" --timeout {options.timeout!r}"
    step += " --catch" * options.catch + " --force" * options.force
    lines = [step]
    if options.resources:
        lines.append("%%resources " + " ".join(f"{k}={v!r}" for k, v in
                                                options.resources.to_json().items()))
    return lines


@SETTINGS
@given(headers())
def test_valid_headers_parse_to_the_options_they_were_built_from(header: Header) -> None:
    assert parse_header(header.lines, cell=4) == header.expected
    assert parse_header(canonical(header.expected)) == header.expected


@SETTINGS
@given(headers(blank_lines=False), st.sampled_from(["x = 1\n", "", "print(C)\n"]))
def test_a_step_cell_with_generated_headers_has_those_options(header: Header, body: str) -> None:
    analysis = analyze_cell("\n".join(header.lines) + "\n" + body, cell=2)
    assert analysis.options == header.expected
    assert analysis.body == body and analysis.body_line == len(header.lines) + 1


# ---------------------------------------------------------------------------------------------
# Header lines: corrupted and arbitrary ones

# (what to do to the step line's tokens, or to the resources line)
STEP_CORRUPTIONS = [
    ("duplicate", None), ("--retry", "-1"), ("--retry", "x"), ("--retry", "1.5"),
    ("--retry", ""), ("--timeout", "0"), ("--timeout", "-3"), ("--timeout", "nan"),
    ("--timeout", "inf"), ("--timeout", "1e400x"), ("--timeout", ""), ("unknown", "--retri"),
    ("unknown", "--bogus=1"), ("second-name", "extra"), ("bad-name", "9lives"),
    ("bad-name", "a.b"), ("no-name", None), ("--catch", "=1"), ("foreach", "x of y"),
    ("foreach", "x in [1,"), ("foreach", "x in"), ("foreach", "1x in y"),
    ("foreach", "x in a --typo b"), ("foreach", ""), ("foreach", "x in 'unterminated"),
]
RESOURCE_CORRUPTIONS = [
    "memory=12X", "memory=-1G", "memory=0", "memory=1e400", "memory=", "memory=0.1B",
    "cpus=0", "cpus=-1", "cpus=nan", "cpus=inf", "cpus=two", "gpus=-1", "gpus=1.5",
    "gpus=" + "9" * 5000, "disk=1", "memory", "=1", "cpus=1 cpus=2", "memroy=1G",
]


@st.composite
def corrupted_headers(draw: st.DrawFn) -> tuple[list[str], int]:
    """A valid header with one line made invalid; the 1-based number of that line."""
    header = draw(headers())
    lines = list(header.lines)
    if draw(st.booleans()):
        kind, value = draw(st.sampled_from(STEP_CORRUPTIONS))
        tokens = dict(header.tokens)
        name = tokens.pop("name")
        if kind == "duplicate":
            option = draw(st.sampled_from(["--catch", "--force", "--retry 1", "--timeout 2"]))
            opts = [*tokens.values(), option, option]
        elif kind == "unknown":
            opts = [*tokens.values(), str(value)]
        elif kind == "second-name":
            tokens.pop("--foreach", None)  # (else it is read as part of EXPR)
            opts = [*tokens.values(), str(value)]
        elif kind == "bad-name":
            name = str(value)
            opts = list(tokens.values())
        elif kind == "no-name":
            name = ""
            opts = list(tokens.values())
        elif kind == "foreach":
            tokens.pop("--foreach", None)
            opts = [f"--foreach {value}".rstrip(), *tokens.values()]
        elif kind == "--catch":
            tokens.pop("--catch", None)
            opts = [*tokens.values(), f"--catch{value}"]
        else:  # --retry / --timeout with a bad value
            tokens.pop(kind, None)
            sep = draw(st.sampled_from([" ", "="]))
            opts = [*tokens.values(), f"{kind}{sep}{value}".rstrip("= ")]
        lines[header.step_line] = " ".join(["%%step", name, *opts]).replace("  ", " ")
        return lines, header.step_line + 1
    bad = draw(st.sampled_from(RESOURCE_CORRUPTIONS))
    if header.resources_line is None:
        lines.append(f"%%resources {bad}")
        return lines, len(lines)
    good = lines[header.resources_line].split()[1:]
    good = [t for t in good if t.split("=")[0] != bad.split("=")[0]]
    at = draw(st.integers(0, len(good)))
    lines[header.resources_line] = " ".join(["%%resources", *good[:at], bad, *good[at:]])
    return lines, header.resources_line + 1


@SETTINGS
@given(corrupted_headers())
def test_a_corrupted_header_line_is_refused_naming_that_line(case: tuple[list[str], int]) -> None:
    lines, lineno = case
    with pytest.raises(AnalysisError) as info:
        parse_header(lines, cell=5)
    error = info.value
    assert (error.cell, error.line) == (5, lineno), (lines, str(error))
    assert str(error).startswith(f"cell 5, line {lineno}: ")
    # The message quotes the line it is about (the resources line with single spaces).
    quoted = lines[lineno - 1].strip()
    rest = quoted[len("%%resources"):].strip()
    assert f"'{quoted}'" in str(error) or f"'%%resources {rest}'" in str(error)


@SETTINGS
@given(headers(), st.data())
def test_a_second_step_or_resources_line_is_refused(header: Header, data: st.DataObject) -> None:
    lines = list(header.lines)
    extra = data.draw(st.sampled_from(["%%step other", "%%resources cpus=1"]))
    at = data.draw(st.integers(0, len(lines)))
    lines.insert(at, extra)
    first = [i for i, line in enumerate(lines) if line.split()[:1] == extra.split()[:1]]
    if len(first) < 2:  # no resources line before: this one is just added
        assert parse_header(lines).resources == Resources(cpus=1.0)
        return
    with pytest.raises(AnalysisError) as info:
        parse_header(lines)
    assert info.value.line == first[1] + 1 and "second" in info.value.reason


garbage = st.text(
    alphabet=st.one_of(st.sampled_from(list(" -=-_%[](){}'\"\\#:,.\t0123456789Gie")),
                       st.characters()), max_size=40)


def _check_parses_or_names_the_line(lines: list[str], lineno: int) -> None:
    try:
        options = parse_header(lines, cell=9)
    except AnalysisError as error:
        assert error.cell == 9 and error.line in (lineno, None), str(error)
        if error.line is None:  # only when there is no %%step line at all
            assert "without a step" in error.reason
        return
    # Whatever parses is no silent wrong parse: its canonical spelling parses the same, and
    # the name is one of the step line's words.
    assert parse_header(canonical(options)) == options
    assert options.name in lines[0].split()


@SETTINGS
@given(garbage)
def test_arbitrary_text_after_step_parses_or_is_refused_naming_the_line(text: str) -> None:
    _check_parses_or_names_the_line([f"%%step {text}"], 1)


@SETTINGS
@given(garbage)
def test_arbitrary_text_after_resources_parses_or_is_refused_naming_the_line(text: str) -> None:
    _check_parses_or_names_the_line(["%%step s", f"%%resources {text}"], 2)


@SETTINGS
@given(garbage)
def test_arbitrary_header_lines_never_raise_another_exception(text: str) -> None:
    try:
        parse_header([text, "%%step ok"])
    except AnalysisError as error:
        assert error.line == 1 or (error.line == 2 and text.strip().startswith("%%step"))
    try:
        analyze_cell(text + "\n%%step ok\nx = 1", cell=1)
    except AnalysisError as error:
        assert error.cell == 1 and error.line is not None


# ---------------------------------------------------------------------------------------------
# Cell analysis: generated valid cells against an executing oracle
#
# The generator writes cells over small pools of names whose dynamic behaviour is deterministic
# and matches the analysis' "may" semantics exactly, so that executing them is an oracle:
#   * every `if`/`while` test is `(EXPR) or 1` (taken once), every `for` loops over a non-empty
#     list, every `try` body ends in `raise ValueError` (its handler runs), every `match` has one
#     case that always matches: no code that the analysis sees is left unexecuted;
#   * functions and lambdas are registered (`@reg`) and the oracle calls each one after the cell
#     has run, when every name the cell binds is bound - that is when the analysis assumes a
#     function body reads its globals. Function bodies read only globals never deleted (`a`-`d`,
#     imports) and their own locals after assigning them; `global gv` is only written;
#   * `del` (of `t`) only stands at the cell's top level; `except ... as errK` names are used by
#     one nesting depth each; class bodies read only names they bound (a class body's global
#     reads bypass the namespace hook below).
# The oracle executes the cell in a ``dict`` subclass used as globals and locals: CPython looks up
# module-level names (LOAD_NAME), globals of functions and comprehensions (LOAD_GLOBAL, since the
# globals are not an exact dict) and `del` through it, so ``__missing__`` sees every read of an
# unbound name; it records the name and returns a stand-in value so execution goes on. Inputs are
# then exactly the recorded names, outputs exactly the names left bound.

INT_NAMES = ("a", "b", "c", "d")  # int values; read anywhere
DELETABLE = "t"  # int; read and deleted at module level only
OTHER = ("s",)  # lists/dicts from starred targets and mapping rests; read through id()
IMPORTED = {"import os": "os", "import os.path": "os", "import json as js": "js",
            "from os import path as osp": "osp", "from os import sep": "sep"}
CANDIDATES = {*INT_NAMES, DELETABLE, *OTHER, *IMPORTED.values(), "err0", "err1", "err2", "z",
              "f", "g", "gv", "K"}
HELPERS = {"reg", "ctx"}


class _Stand(int):
    """The value of an unbound name: an int (for arithmetic and formatting)."""


class Recorder(dict):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __missing__(self, name: str) -> Any:
        if name not in CANDIDATES:
            raise KeyError(name)  # builtins and helpers: the usual lookup goes on
        self.reads.append(name)
        return _Stand(1)

    def __delitem__(self, name: str) -> None:
        if name not in self:  # `del t` of an unbound t reads it
            self.reads.append(name)
            return
        super().__delitem__(name)


class _Ctx:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


def run_oracle(code: str) -> tuple[set[str], set[str]]:
    """(names read while unbound, names bound at the end) by executing ``code``."""
    registered: list[Any] = []

    def reg(fn: Any) -> Any:
        registered.append(fn)
        return fn

    ns = Recorder()
    dict.__setitem__(ns, "__builtins__", {**builtins.__dict__, "reg": reg, "ctx": _Ctx})
    exec(compile(code, "<cell>", "exec", dont_inherit=True), ns)
    i = 0
    while i < len(registered):  # functions registered while others run are called too
        registered[i](1)
        i += 1
    bound = {n for n in ns if not n.startswith("__")}
    return set(ns.reads), bound


@dataclass
class Ctx:
    kind: str  # "module", "function", "inner", "class"
    depth: int = 0  # nesting of compound statements
    try_depth: int = 0
    locals_: set[str] = field(default_factory=set)  # function: assigned locals so far
    outer: set[str] = field(default_factory=set)  # inner function: the outer one's locals
    comp: tuple[str, ...] = ()  # comprehension targets in scope
    class_names: set[str] = field(default_factory=set)
    top: bool = True  # directly in the module's statement list
    declared: tuple[str, ...] = ()  # `global` / `nonlocal` names declared at the function's top
    pending: tuple[str, ...] = ()  # comprehension targets not bound yet (local, unreadable)


class Gen:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def pick(self, options: Any) -> Any:
        options = list(options)
        return options[self.draw(st.integers(0, len(options) - 1))]

    def chance(self, p: float = 0.5) -> bool:
        return self.draw(st.integers(0, 9)) < p * 10

    # -- expressions --------------------------------------------------------------------------

    def readable(self, ctx: Ctx) -> list[str]:
        if ctx.kind == "class":
            plain = sorted(ctx.class_names) + list(ctx.comp)
        else:
            plain = list(INT_NAMES) + list(ctx.comp)
        if ctx.kind == "module":
            plain.append(DELETABLE)
        elif ctx.kind != "class":
            plain += [*sorted(ctx.locals_ | ctx.outer), "p"]
        return [n for n in dict.fromkeys(plain) if n not in ctx.pending]

    def expr(self, ctx: Ctx, depth: int = 2, walrus: bool = True) -> str:
        form = self.draw(st.integers(0, 9 if depth > 0 else 2))
        names = self.readable(ctx)
        if form == 0 or (form == 1 and not names):
            return str(self.draw(st.integers(0, 99)))
        if form == 1:
            return str(self.pick(names))
        if form == 2:
            other = [*OTHER, *IMPORTED.values()] if ctx.kind != "class" else []
            if ctx.kind == "module":
                other += ["err0", "err1", "f", "K"]
            return f"id({self.pick(other)})" if other else "7"
        sub = depth - 1
        if form == 3:
            return f"({self.expr(ctx, sub, walrus)} + {self.expr(ctx, sub, walrus)})"
        if form == 4:
            # (atoms only: 3.11 allows no nested f-string with the same quotes)
            return f'len(f"{{{self.expr(ctx, 0, False)}}}-{{{self.expr(ctx, 0, False)}!r:>3}}")'
        if form == 5 and walrus and ctx.kind != "class":
            target = self.walrus_target(ctx)
            if target:
                return f"({target} := {self.expr(ctx, sub, walrus)})"
        if form in (5, 6, 7):
            return self.comprehension(ctx, sub, walrus)
        if form == 8:
            return f"-{self.expr(ctx, sub, walrus)}"
        return f"abs({self.expr(ctx, sub, walrus)})"

    def walrus_target(self, ctx: Ctx) -> str | None:
        if ctx.kind == "module":
            # (not `t` in a comprehension: CPython would then compile `del t` to DELETE_GLOBAL,
            # which bypasses the oracle's namespace hook)
            deletable = () if ctx.comp or ctx.pending else (DELETABLE,)
            options = [n for n in (*INT_NAMES, *deletable) if n not in (*ctx.comp, *ctx.pending)]
        elif ctx.kind == "function":
            options = [n for n in ("q", "v") if n not in (*ctx.comp, *ctx.pending)]
        else:
            return None
        return self.pick(options) if options else None

    def comprehension(self, ctx: Ctx, depth: int, walrus: bool) -> str:
        targets = self.draw(st.lists(st.sampled_from(["i", "j", "a", "b"]), min_size=1,
                                     max_size=2, unique=True))
        # The iterables are evaluated without walrus (Python forbids it there).
        first = f"[{self.expr(ctx, depth, False)}, {self.expr(ctx, depth, False)}]"
        inner = Ctx(**{**ctx.__dict__, "comp": (*ctx.comp, targets[0])})
        clauses = f"for {targets[0]} in {first}"
        if len(targets) > 1:
            second = Ctx(**{**inner.__dict__, "pending": (*inner.pending, targets[1])})
            clauses += f" for {targets[1]} in [{targets[0]}, {self.expr(second, depth, False)}]"
            inner = Ctx(**{**inner.__dict__, "comp": (*inner.comp, targets[1])})
        if self.chance(0.3):
            clauses += f" if ({self.expr(inner, depth, walrus)}) or 1"
        kind = self.draw(st.integers(0, 3))
        elt = self.expr(inner, depth, walrus)
        if kind == 0:
            return f"sum([{elt} {clauses}])"
        if kind == 1:
            return f"len({{{elt} {clauses}}})"
        if kind == 2:
            return f"sum({elt} {clauses})"
        return f"len({{{targets[0]}: {elt} {clauses}}})"

    # -- statements ---------------------------------------------------------------------------

    def block(self, ctx: Ctx, indent: str, size: int = 3) -> list[str]:
        count = self.draw(st.integers(1, size))
        lines: list[str] = []
        for _ in range(count):
            lines += self.statement(ctx, indent)
        return lines

    def target(self, ctx: Ctx) -> str:
        if ctx.kind == "module":
            return str(self.pick([*INT_NAMES, DELETABLE]))
        if ctx.kind == "class":
            return str(self.pick(["z", "a"]))
        return str(self.pick(["q", "v"]))

    def bind(self, ctx: Ctx, *names: str) -> None:
        if ctx.kind == "class":
            ctx.class_names.update(names)
        elif ctx.kind in ("function", "inner"):
            ctx.locals_.update(n for n in names if n in ("q", "v", "r"))

    def statement(self, ctx: Ctx, ind: str) -> list[str]:
        nested = ctx.depth < 2
        kinds = ["assign", "assign", "aug", "expr", "ann", "tuple"]
        if ctx.kind == "class":
            kinds = ["assign", "assign", "def"]
        elif ctx.kind == "module":
            kinds += ["import", "def", "lambda", "star"]
            kinds += ["del"] * ctx.top
            kinds += ["class"] * (ctx.depth == 0)
            kinds += ["for", "if", "while", "try", "with", "match"] * nested
        elif ctx.kind == "function":
            kinds += ["global"] * bool(ctx.declared) + ["def"] + ["for", "if", "with"] * nested
        else:  # inner
            kinds += ["nonlocal"] * bool(ctx.declared)
        kind = self.pick(kinds)
        deeper = Ctx(**{**ctx.__dict__, "depth": ctx.depth + 1, "top": False})
        if ctx.kind == "inner" and kind in ("assign", "aug", "ann", "tuple"):
            kind = "assign-r"
        if kind in ("assign", "ann"):
            value = self.expr(ctx)
            name = self.target(ctx)
            self.bind(ctx, name)
            if kind == "ann":
                return [f"{ind}{name}: {self.expr(ctx, 1, False)} = {value}"]
            return [f"{ind}{name} = {value}"]
        if kind == "assign-r":
            value = self.expr(ctx)
            self.bind(ctx, "r")
            return [f"{ind}r = {value}"]
        if kind == "aug":
            name = self.target(ctx)
            op = "=" if ctx.kind == "function" and name not in ctx.locals_ else "+="
            line = f"{ind}{name} {op} {self.expr(ctx)}"
            self.bind(ctx, name)
            return [line]
        if kind == "tuple":
            value = f"{self.expr(ctx)}, {self.expr(ctx)}"
            names = [self.target(ctx), self.target(ctx)]
            self.bind(ctx, *names)
            return [f"{ind}{names[0]}, {names[1]} = {value}"]
        if kind == "star":
            value = f"[{self.expr(ctx)}, {self.expr(ctx)}, {self.expr(ctx)}]"
            name = self.target(ctx)
            return [f"{ind}{name}, *s = {value}"]
        if kind == "expr":
            return [f"{ind}{self.expr(ctx)}"]
        if kind == "import":
            return [f"{ind}{self.pick(sorted(IMPORTED))}"]
        if kind == "del":
            return [f"{ind}del {DELETABLE}"]
        if kind == "global":
            return [f"{ind}gv = {self.expr(ctx)}"]  # declared `global gv` at the top
        if kind == "nonlocal":
            name = self.pick(ctx.declared)
            return [f"{ind}{name} {self.pick(['=', '+='])} {self.expr(ctx)}"]
        if kind == "lambda":
            default = f", o={self.expr(ctx)}" if self.chance(0.3) else ""
            body = self.expr(Ctx("inner", locals_={"o"} if default else set()), 1, False)
            return [f"{ind}{self.pick(['f', 'g'])} = reg(lambda p{default}: {body})"]
        if kind == "def":
            return self.function(ctx, ind)
        if kind == "class":
            cls = Ctx("class", depth=1)
            body = [f"{ind}    z = {self.draw(st.integers(0, 9))}"]
            cls.class_names.add("z")
            body += self.block(cls, ind + "    ", 2)
            return [f"{ind}class K:", *body]
        if kind == "for":
            target = self.target(ctx)
            head = f"{ind}for {target} in [{self.expr(ctx)}, {self.expr(ctx)}]:"
            self.bind(deeper, target)
            body = self.block(deeper, ind + "    ")
            ctx.locals_ |= deeper.locals_
            return [head, *body]
        if kind in ("if", "while"):
            head = f"{ind}{kind} ({self.expr(ctx)}) or 1:"
            body = self.block(deeper, ind + "    ")
            ctx.locals_ |= deeper.locals_
            return [head, *body] + ([f"{ind}    break"] if kind == "while" else [])
        if kind == "with":
            name = self.target(ctx)
            head = f"{ind}with ctx({self.expr(ctx)}) as {name}:"
            self.bind(deeper, name)
            body = self.block(deeper, ind + "    ")
            ctx.locals_ |= deeper.locals_
            return [head, *body]
        if kind == "try":
            err = f"err{ctx.try_depth}"
            lines = [f"{ind}try:", *self.block(deeper, ind + "    "), f"{ind}    raise ValueError"]
            as_ = self.chance(0.7)
            handler = Ctx(**{**deeper.__dict__, "try_depth": ctx.try_depth + 1})
            lines.append(f"{ind}except ValueError{f' as {err}' if as_ else ''}:")
            lines += self.block(handler, ind + "    ")
            if self.chance(0.4):
                lines += [f"{ind}finally:", *self.block(deeper, ind + "    ")]
            return lines
        # match: one case, which always matches
        x = self.target(ctx)
        y = self.pick([n for n in (*INT_NAMES, DELETABLE) if n != x])
        subject, pattern = self.pick([
            ("[{0}, {1}]", f"[{x}, {y}]"), ("[{0}, {1}]", f"[{x}, *s]"),
            ("[{0}, {1}]", f"[{x}, {y}] as s"), ("{{'k': {0}, 'l': {1}}}", f"{{'k': {x}, **s}}"),
            ("{0}", x), ("{0}", "_"), ("[{0}, {1}]", f"[{x}, _]"), ("[{0}, {1}]", f"[{x}, _] | [_, {x}]"),
        ])
        head = f"{ind}match {subject.format(self.expr(ctx), self.expr(ctx))}:"
        guard = f" if ({self.expr(ctx)}) or 1" if self.chance(0.3) else ""
        return [head, f"{ind}    case {pattern}{guard}:", *self.block(deeper, ind + "        ")]

    def function(self, ctx: Ctx, ind: str) -> list[str]:
        if ctx.kind == "class":
            return [f"{ind}@reg", f"{ind}def m(p):",
                    f"{ind}    return {self.expr(Ctx('inner', locals_=set()))} + id(z)"]
        if ctx.kind == "function":
            nonlocal_ = self.draw(st.lists(st.sampled_from(sorted(ctx.locals_) or ["-"]),
                                           unique=True, max_size=2)) if ctx.locals_ else []
            inner = Ctx("inner", outer=set(ctx.locals_), declared=tuple(nonlocal_))
            body = self.block(inner, ind + "    ", 2)
            if nonlocal_:
                body.insert(0, f"{ind}    nonlocal {', '.join(nonlocal_)}")
            return [f"{ind}@reg", f"{ind}def inner(p):", *body,
                    f"{ind}    return {self.expr(inner)}"]
        default = f", o={self.expr(ctx)}" if self.chance(0.3) else ""
        declare = self.chance(0.4)
        fn = Ctx("function", depth=1, locals_={"o"} if default else set(),
                 declared=("gv",) if declare else ())
        body = self.block(fn, ind + "    ", 4)
        if declare:
            body.insert(0, f"{ind}    global gv")
        return [f"{ind}@reg", f"{ind}def {self.pick(['f', 'g'])}(p{default}):", *body,
                f"{ind}    return {self.expr(fn)}"]


@st.composite
def cells(draw: st.DrawFn) -> str:
    gen = Gen(draw)
    code = "\n".join(gen.block(Ctx("module"), "", 6)) + "\n"
    compile(code, "<generated>", "exec", dont_inherit=True)  # the generator writes valid code
    return code


def _static(code: str) -> tuple[set[str], set[str]]:
    inputs, outputs, _ = analyze_code(code, cell=1)
    return set(inputs) - HELPERS, set(outputs)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(cells())
def test_inputs_and_outputs_match_what_executing_the_cell_reads_and_binds(code: str) -> None:
    reads, bound = run_oracle(code)
    inputs, outputs = _static(code)
    assert (inputs, outputs) == (reads, bound), code


@SETTINGS
@given(cells())
def test_a_step_cell_and_a_plain_cell_agree_with_analyze_code(code: str) -> None:
    inputs, outputs, imports = analyze_code(code)
    step = analyze_cell("%%step s --retry 1\n" + code, cell=3)
    plain = analyze_cell(code, cell=3)
    for analysis in (step, plain):
        assert (analysis.inputs, analysis.outputs, analysis.imports) == (inputs, outputs, imports)
    expected_imports = {line.split()[1].split(".")[0] for line in code.splitlines()
                        if line.strip().startswith(("import ", "from "))}
    assert set(imports) == expected_imports


# ---------------------------------------------------------------------------------------------
# Text that is not Python


def _syntax_error_line(code: str) -> int | None:
    try:
        compile(code, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as e:
        return e.lineno
    except ValueError:
        return -1
    return None


@st.composite
def broken_python(draw: st.DrawFn) -> str:
    """Generated cells with one character inserted, deleted or replaced; or arbitrary text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=60))
    code = draw(cells())
    at = draw(st.integers(0, len(code)))
    char = draw(st.sampled_from([*"([{)]}:'\"\\=@,\0", "\n  ", "\tx", "lambda", "def"]))
    how = draw(st.integers(0, 2))
    if how == 0:
        return code[:at] + char + code[at:]
    if how == 1:
        return code[:at] + code[at + 1:]
    return code[:at] + char + code[at + 1:]


@SETTINGS
@given(broken_python())
def test_text_that_is_not_python_raises_an_analysis_error_naming_cell_and_line(text: str) -> None:
    line = _syntax_error_line(text)
    assume(line is not None)
    with pytest.raises(AnalysisError) as info:
        analyze_code(text, cell=7)
    error = info.value
    assert error.cell == 7 and error.line is not None and error.line >= 1, str(error)
    if line != -1:
        assert error.line == line
    assert str(error).startswith(f"cell 7, line {error.line}: ")
    # In a step cell the line counts from the top of the cell, header lines included (unless
    # an IPython-only line comes first: that is refused, naming its line, before parsing).
    with pytest.raises(AnalysisError) as info:
        analyze_cell("%%step s\n%%resources cpus=1\n" + text, cell=7)
    if line != -1 and "IPython-only" not in info.value.reason:
        assert info.value.line == line + 2, str(info.value)


@SETTINGS
@given(st.text(alphabet=string.printable, max_size=80))
def test_arbitrary_printable_text_never_raises_anything_but_analysis_error(text: str) -> None:
    for call in (lambda: analyze_code(text, cell=2), lambda: analyze_cell(text, cell=2),
                 lambda: analyze_cell("%%step s\n" + text, cell=2)):
        try:
            call()
        except AnalysisError as error:
            assert error.cell == 2


# ---------------------------------------------------------------------------------------------
# Regression tests for what the properties found


def test_a_memory_too_big_for_a_float_is_refused_not_an_overflow_error() -> None:
    # was: OverflowError (cannot convert float infinity to integer) escaping parse_bytes
    with pytest.raises(AnalysisError) as info:
        parse_header(["%%step a", "%%resources memory=1e400"], cell=1)
    assert info.value.line == 2 and "memory '1e400' is not an amount of bytes" in str(info.value)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0c", "\x1c", "\x85", "\x0b"])
def test_unicode_line_separators_inside_strings_are_not_line_breaks(separator: str) -> None:
    # was: str.splitlines() split the cell there, so `!b"` looked like a shell line in a step
    # cell, and a plain cell was re-joined with "\n" into an unterminated string
    body = f'x = "a{separator}!b"\ny = x  # {separator}%not a magic\n'
    step = analyze_cell("%%step s\n" + body, cell=1)
    assert (step.inputs, step.outputs) == ((), ("x", "y"))
    plain = analyze_cell(body, cell=1)
    assert (plain.inputs, plain.outputs, plain.magic_lines) == ((), ("x", "y"), ())


def test_headless_source_keeps_unicode_line_separators() -> None:
    from nbflow.graph import Cell
    from nbflow.notebook import headless_source

    source = 'x = "a\u2028b"\n%matplotlib inline\ny = 1'
    analysis = analyze_cell(source, cell=1)
    assert analysis.magic_lines == ((2, "%matplotlib inline"),)
    out = headless_source(Cell(number=1, source=source, tags=()), analysis.magic_lines)
    namespace: dict[str, Any] = {}
    exec(out, namespace)
    assert namespace["x"] == "a\u2028b" and namespace["y"] == 1


def test_a_nul_byte_is_refused_naming_its_line() -> None:
    # was: "source code string cannot contain null bytes" with no line
    with pytest.raises(AnalysisError) as info:
        analyze_code("x = 1\ny = '\0'\n", cell=4)
    assert (info.value.cell, info.value.line) == (4, 2)
    with pytest.raises(AnalysisError) as info:
        analyze_cell("%%step a\nx = 1\n\0", cell=4)
    assert info.value.line == 3
