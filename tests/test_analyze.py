"""Tests for nbflow.analyze: header options, inputs, outputs, imports by static analysis."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from nbflow.analyze import (
    AnalysisError,
    CellAnalysis,
    analyze_cell,
    analyze_code,
    is_step_cell,
    normalize_code,
    parse_header,
    parse_resources,
)
from nbflow.model import Foreach, Resources, StepOptions


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# Inputs and outputs: (code, expected inputs, expected outputs)

IO_CASES: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("simple-assign", "y = x + 1", ("x",), ("y",)),
    ("read-then-bind", "x = x + 1", ("x",), ("x",)),
    ("bound-then-read", "x = 1\ny = x", (), ("x", "y")),
    ("first-read-order", "a = c + b + c", ("c", "b"), ("a",)),
    ("augassign", "total += step", ("total", "step"), ("total",)),
    ("augassign-after-bind", "total = 0\ntotal += 1", (), ("total",)),
    ("annassign-value", "x: int = y", ("y",), ("x",)),
    ("annassign-only", "x: int", (), ()),
    ("annassign-only-reads-annotation", "x: MyType", ("MyType",), ()),
    # `from __future__` is a compiler directive: no output; annotations are no longer evaluated
    ("future-annotations", "from __future__ import annotations\nx: MyType\ndef f(a: T): pass",
     (), ("f",)),
    ("tuple-unpack", "a, (b, c) = pair", ("pair",), ("a", "b", "c")),
    ("starred-assign", "first, *rest = items", ("items",), ("first", "rest")),
    ("chained-assign", "a = b = f()", ("f",), ("a", "b")),
    ("subscript-target", 'df["x"] = 1', ("df",), ()),
    ("attribute-target", "a.b = 2", ("a",), ()),
    ("subscript-target-index", "d[k] = v", ("v", "d", "k"), ()),
    ("augassign-subscript", "d[k] += 1", ("d", "k"), ()),
    ("for-loop", "for i in range(n):\n    acc = i * w", ("n", "w"), ("i", "acc")),
    ("for-iter-before-target", "for x in x:\n    pass", ("x",), ("x",)),
    ("for-else", "for i in r:\n    pass\nelse:\n    done = i", ("r",), ("i", "done")),
    ("while", "while cond():\n    n = n - 1", ("cond", "n"), ("n",)),
    ("if-both-branches", "if c:\n    x = 1\nelse:\n    x = 2\nprint(x)", ("c",), ("x",)),
    ("if-else-reads-body-name", "if c:\n    x = 1\nelse:\n    y = x", ("c", "x"), ("x", "y")),
    ("with-as", "with open(p) as fh:\n    data = fh.read()", ("p",), ("fh", "data")),
    ("walrus", "if (n := len(a)) > 3:\n    m = n", ("a",), ("n", "m")),
    # the walrus binds y in the cell while the value is evaluated, before ys is bound
    ("walrus-in-comprehension", "ys = [y := f(x) for x in xs]\nz = y", ("xs", "f"),
     ("y", "ys", "z")),
    ("import", "import numpy as np\nimport os.path\nfrom a.b import c as d, e", (),
     ("np", "os", "d", "e")),
    ("def-name-and-global-read", "def f(a):\n    return a + g", ("g",), ("f",)),
    ("def-reads-name-bound-later", "def f():\n    return later\nlater = 1", (), ("f", "later")),
    ("def-reads-name-bound-before", "k = 2\ndef f():\n    return k", (), ("k", "f")),
    ("def-locals-any-order", "def f():\n    if c:\n        v = 1\n    return v", ("c",), ("f",)),
    ("def-defaults-immediate", "def f(a=default, *, b=kw):\n    pass\ndefault = 1",
     ("default", "kw"), ("f", "default")),
    ("def-decorator-immediate", "@deco\ndef f():\n    pass", ("deco",), ("f",)),
    ("def-annotations-immediate", "def f(a: T) -> R:\n    pass", ("T", "R"), ("f",)),
    ("recursive-def", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", (), ("fact",)),
    ("async-def", "async def f():\n    await g()\n    async for i in h():\n        pass",
     ("g", "h"), ("f",)),
    ("lambda", "f = lambda a, b=d: a + b + e", ("d", "e"), ("f",)),
    ("lambda-reads-later-binding", "f = lambda: z\nz = 1", (), ("f", "z")),
    ("closure", "def outer():\n    v = 1\n    def inner():\n        return v + w\n    return inner",
     ("w",), ("outer",)),
    ("nonlocal", "def outer():\n    v = 0\n    def inner():\n        nonlocal v\n        v += q\n"
     "    return inner", ("q",), ("outer",)),
    ("global-in-function-binds", "def setup():\n    global CONFIG\n    CONFIG = load()", ("load",),
     ("setup", "CONFIG")),
    ("global-read-in-function", "def f():\n    global G\n    return G", ("G",), ("f",)),
    ("class-body-immediate", "class A(Base):\n    x = y\n    z = x", ("Base", "y"), ("A",)),
    ("class-body-reads-own-name", "class A:\n    me = A", ("A",), ("A",)),
    ("class-scope-hidden-from-methods",
     "class A:\n    x = 1\n    def m(self):\n        return x", ("x",), ("A",)),
    ("class-method-reads-later-global", "class A:\n    def m(self):\n        return g\ng = 1",
     (), ("A", "g")),
    # the first iterable, then the conditions, then the element: evaluation order
    ("comprehension-locals", "ys = [x * k for x in xs if x > t]", ("xs", "t", "k"), ("ys",)),
    ("comprehension-first-iter-outer", "x = [x for x in x]", ("x",), ("x",)),
    ("nested-comprehension", "p = [(a, b) for a in A for b in f(a)]", ("A", "f"), ("p",)),
    ("dict-set-genexp", "d = {k: v for k, v in it}\ns = {e for e in d}\ng = sum(q for q in s)",
     ("it",), ("d", "s", "g")),
    ("comprehension-in-class", "class A:\n    xs = [1]\n    ys = [x + k for x in xs]",
     ("k",), ("A",)),
    ("comprehension-var-not-leaked", "[i for i in r]\nprint(i)", ("r", "i"), ()),
    ("try-except-as", "try:\n    v = f()\nexcept E as err:\n    log(err)", ("f", "E", "log"),
     ("v",)),
    ("except-name-unbound-after", "try:\n    pass\nexcept E as e:\n    pass\nprint(e)",
     ("E", "e"), ()),
    ("except-name-bound-elsewhere", "e = 1\ntry:\n    pass\nexcept E as e:\n    pass",
     ("E",), ("e",)),
    ("try-finally-else", "try:\n    a = 1\nexcept Exception:\n    a = None\nelse:\n    b = a\n"
     "finally:\n    c = a", (), ("a", "b", "c")),
    ("handler-sees-body-bindings", "try:\n    fh = open(p)\nexcept OSError:\n    fh.close()",
     ("p",), ("fh",)),
    ("del-bound", "tmp = 1\nresult = tmp\ndel tmp", (), ("result",)),
    ("del-unbound-reads", "del old", ("old",), ()),
    ("del-then-rebind", "a = 1\ndel a\na = 2", (), ("a",)),
    ("builtins-not-inputs", "n = len(range(3))\nprint(__name__, display, get_ipython)", (),
     ("n",)),
    ("rebind-builtin", "list = [1]\nx = list", (), ("list", "x")),
    ("match", "match cmd:\n    case Point(x=0, y=yy):\n        r = yy\n    case [first, *rest]:\n"
     "        r = first\n    case {'k': v, **others}:\n        r = v\n    case Color.RED | 1:\n"
     "        r = 0\n    case other if other > lim:\n        r = other",
     ("cmd", "Point", "Color", "lim"), ("yy", "r", "first", "rest", "v", "others", "other")),
    ("fstring", 'msg = f"{name!r}: {value:{width}}"', ("name", "value", "width"), ("msg",)),
    ("async-with-for", "async with lock as l:\n    async for item in stream:\n        got = item",
     ("lock", "stream"), ("l", "item", "got")),
    ("top-level-await", "res = await fetch(url)", ("fetch", "url"), ("res",)),
    ("lambda-in-comprehension", "fs = [lambda: i for i in range(3)]", (), ("fs",)),
    ("decorated-class", "@dataclass\nclass P:\n    x: int = field(default=0)",
     ("dataclass", "field"), ("P",)),
    ("global-statement-top-level", "global g\ng = 1", (), ("g",)),
]


@pytest.mark.parametrize(
    ("source", "inputs", "outputs"),
    [pytest.param(src, i, o, id=name) for name, src, i, o in IO_CASES],
)
def test_inputs_outputs(source: str, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    got_inputs, got_outputs, _ = analyze_code(source)
    assert got_inputs == inputs
    assert got_outputs == outputs


def test_enough_io_cases() -> None:
    assert len(IO_CASES) >= 45
    assert len({case[0] for case in IO_CASES}) == len(IO_CASES)


# ---------------------------------------------------------------------------------------------
# Imports


@pytest.mark.parametrize(
    ("source", "imports"),
    [
        pytest.param("import os.path", ("os",), id="dotted"),
        pytest.param("from sklearn.linear_model import X", ("sklearn",), id="from"),
        pytest.param("import numpy as np, pandas as pd", ("numpy", "pandas"), id="several"),
        pytest.param("from . import sibling\nfrom .pkg import x", (), id="relative-ignored"),
        pytest.param("def f():\n    import json\n    import zlib", ("json", "zlib"), id="nested"),
        pytest.param("import b\nimport a\nimport b.c", ("a", "b"), id="sorted-unique"),
        pytest.param("from __future__ import annotations", (), id="future-ignored"),
    ],
)
def test_imports(source: str, imports: tuple[str, ...]) -> None:
    assert analyze_code(source)[2] == imports


# ---------------------------------------------------------------------------------------------
# Header lines -> StepOptions


HEADER_CASES: list[tuple[str, list[str], StepOptions]] = [
    ("name-only", ["%%step train"], StepOptions("train")),
    ("name-with-dash", ["%%step load-data_2"], StepOptions("load-data_2")),
    ("retry", ["%%step s --retry 2"], StepOptions("s", retry=2)),
    ("retry-equals", ["%%step s --retry=2"], StepOptions("s", retry=2)),
    ("retry-zero", ["%%step s --retry 0"], StepOptions("s")),
    ("timeout-float", ["%%step s --timeout 1.5"], StepOptions("s", timeout=1.5)),
    ("timeout-equals", ["%%step s --timeout=60"], StepOptions("s", timeout=60.0)),
    ("flags", ["%%step s --catch --force"], StepOptions("s", catch=True, force=True)),
    ("foreach", ["%%step s --foreach C in [0.1, 1, 10]"],
     StepOptions("s", foreach=Foreach("C", "[0.1, 1, 10]"))),
    ("foreach-then-options", ["%%step s --foreach C in [0.1, 1, 10] --retry 2 --catch"],
     StepOptions("s", foreach=Foreach("C", "[0.1, 1, 10]"), retry=2, catch=True)),
    ("foreach-string-with-option", ['%%step s --foreach v in ["--catch", "a b"] --force'],
     StepOptions("s", foreach=Foreach("v", '["--catch", "a b"]'), force=True)),
    ("foreach-unbracketed-expr", ["%%step s --foreach i in range(n) + extra --timeout 5"],
     StepOptions("s", foreach=Foreach("i", "range(n) + extra"), timeout=5.0)),
    ("options-any-order", ["%%step s --force --timeout 10 --foreach f in files --retry 1"],
     StepOptions("s", foreach=Foreach("f", "files"), retry=1, timeout=10.0, force=True)),
    ("resources-after", ["%%step s", "%%resources memory=64G cpus=8 gpus=1"],
     StepOptions("s", resources=Resources(memory=64_000_000_000, cpus=8.0, gpus=1))),
    ("resources-before", ["%%resources memory=512MiB", "%%step s --retry 1"],
     StepOptions("s", retry=1, resources=Resources(memory=512 * 2**20))),
    ("resources-bytes-and-float-cpus", ["%%step s", "%%resources memory=2000000 cpus=0.5 gpus=0"],
     StepOptions("s", resources=Resources(memory=2_000_000, cpus=0.5, gpus=0))),
]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [pytest.param(lines, expected, id=name) for name, lines, expected in HEADER_CASES],
)
def test_parse_header(lines: list[str], expected: StepOptions) -> None:
    assert parse_header(lines) == expected


def test_parse_resources() -> None:
    assert parse_resources("memory=64G cpus=8 gpus=1") == Resources(64_000_000_000, 8.0, 1)
    assert parse_resources("") == Resources()
    assert parse_resources("%%resources gpus=2") == Resources(gpus=2)


# ---------------------------------------------------------------------------------------------
# Errors: (cell source, expected substrings of str(error)); all analyzed as cell 4


ERROR_CASES: list[tuple[str, str, list[str]]] = [
    ("unknown-option", "%%step train --retyr 2",
     ["cell 4, line 1", "unknown option --retyr", "'%%step train --retyr 2'",
      "Known options: --foreach, --retry, --timeout, --catch, --force", "--retry?"]),
    ("unknown-option-line-2", "\n%%step train --frce",
     ["cell 4, line 2", "unknown option --frce", "--force"]),
    ("missing-name", "%%step --retry 2", ["cell 4, line 1", "missing step name"]),
    ("bad-name", "%%step 1train", ["line 1", "invalid step name '1train'"]),
    ("two-names", "%%step a b", ["line 1", "unexpected 'b'"]),
    ("retry-missing-value", "%%step s --retry", ["line 1", "missing value for --retry"]),
    ("retry-missing-value-before-flag", "%%step s --retry --catch",
     ["missing value for --retry"]),
    ("retry-negative", "%%step s --retry -1", ["--retry needs a whole number >= 0", "'-1'"]),
    ("retry-float", "%%step s --retry 1.5", ["--retry needs a whole number", "'1.5'"]),
    ("timeout-zero", "%%step s --timeout 0", ["--timeout needs a number of seconds > 0"]),
    ("timeout-text", "%%step s --timeout soon", ["'soon'"]),
    ("option-twice", "%%step s --retry 1 --retry 2", ["option --retry given twice"]),
    ("flag-with-value", "%%step s --catch=yes", ["--catch takes no value"]),
    ("foreach-no-in", "%%step s --foreach x of y", ["expected `in` after --foreach x"]),
    ("foreach-bad-var", "%%step s --foreach 1x in y", ["--foreach needs a variable name"]),
    ("foreach-missing-expr", "%%step s --foreach x in --retry 1", ["missing EXPR"]),
    ("foreach-typo-after-expr", "%%step s --foreach c in cs --frce",
     ["unknown option --frce", "did you mean --force?"]),
    ("foreach-bad-expr", "%%step s --foreach x in [1, 2", ["line 1", "'[1, 2'",
                                                           "not a Python expression"]),
    ("two-steps", "%%step a\n%%step b", ["cell 4, line 2", "second `%%step` line"]),
    ("two-resources", "%%step a\n%%resources cpus=1\n%%resources gpus=1",
     ["cell 4, line 3", "second `%%resources` line"]),
    ("resources-without-step", "%%resources cpus=2\nx = 1",
     ["cell 4, line 1", "add a `%%step NAME` line"]),
    ("resources-unknown-key", "%%step a\n%%resources memroy=4G",
     ["cell 4, line 2", "unknown resource 'memroy'", "memory, cpus, gpus", "did you mean memory"]),
    ("resources-no-equals", "%%step a\n%%resources cpus", ["line 2", "'cpus' is not key=value"]),
    ("resources-duplicate", "%%step a\n%%resources cpus=1 cpus=2", ["resource 'cpus' given twice"]),
    ("resources-bad-memory", "%%step a\n%%resources memory=abc",
     ["line 2", "memory 'abc' is not an amount of bytes", "memory=64G"]),
    ("resources-zero-memory", "%%step a\n%%resources memory=0", ["memory must be > 0"]),
    ("resources-bad-cpus", "%%step a\n%%resources cpus=0", ["cpus must be a number > 0"]),
    ("resources-float-gpus", "%%step a\n%%resources gpus=1.5", ["gpus must be a whole number"]),
    ("resources-empty", "%%step a\n%%resources", ["line 2", "empty `%%resources` line"]),
    ("step-shell-line", "%%step a\nx = 1\n!ls -l",
     ["cell 4, line 3", "'!ls -l'", "step cells run on Dask workers as plain Python"]),
    ("step-line-magic", "%%step a\n%%resources cpus=1\n    %time f()",
     ["cell 4, line 3", "'%time f()'", "plain Python"]),
    ("step-header-not-at-top", "%%step a\nx = 1\n%%resources cpus=1",
     ["cell 4, line 3", "not at the top of the cell"]),
    ("step-syntax-error", "%%step a\nx = 1\ny = (", ["cell 4, line 3", "SyntaxError"]),
    ("step-syntax-error-after-blank", "\n\n%%step a\nif x\n    pass",
     ["cell 4, line 4", "SyntaxError", "'if x'"]),
    ("plain-syntax-error", "x = 1\n\ndef f(:\n    pass", ["cell 4, line 3", "SyntaxError"]),
    ("compile-time-error", "%%step a\nreturn 1", ["cell 4, line 2", "'return' outside function"]),
    ("star-import", "%%step a\nimport os\nfrom numpy import *",
     ["cell 4, line 3", "star import `from numpy import *` hides which names the cell defines",
      "import the names you use"]),
    ("star-import-plain", "from x import *",
     ["cell 4, line 1", "star import `from x import *`"]),
]


@pytest.mark.parametrize(
    ("source", "expected"),
    [pytest.param(src, expected, id=name) for name, src, expected in ERROR_CASES],
)
def test_errors(source: str, expected: list[str]) -> None:
    with pytest.raises(AnalysisError) as info:
        analyze_cell(source, cell=4)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_error_format_and_attributes() -> None:
    err = AnalysisError("bad thing", cell=3, line=2, hint="do this")
    assert str(err) == "cell 3, line 2: bad thing. Fix: do this"
    assert (err.cell, err.line, err.hint, err.reason) == (3, 2, "do this", "bad thing")
    assert isinstance(err, ValueError)
    assert str(AnalysisError("only reason")) == "only reason"
    assert str(AnalysisError("r", line=5)) == "line 5: r"
    assert str(AnalysisError("r", cell=1)) == "cell 1: r"
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.cell, copy.line, copy.hint) == (str(err), 3, 2, "do this")


def test_unknown_option_message_exact() -> None:
    with pytest.raises(AnalysisError) as info:
        analyze_cell("\n%%step train --retyr 2", cell=3)
    assert str(info.value).startswith(
        "cell 3, line 2: unknown option --retyr in '%%step train --retyr 2'. "
        "Known options: --foreach, --retry, --timeout, --catch, --force."
    )
    assert info.value.line == 2


def test_analyze_code_line_offset() -> None:
    with pytest.raises(AnalysisError) as info:
        analyze_code("x = 1\ny = (", cell=2, line_offset=10)
    assert info.value.line == 12
    assert info.value.cell == 2


def test_parse_header_errors_number_lines() -> None:
    with pytest.raises(AnalysisError) as info:
        parse_header(["%%step a", "%%resources gpus=x"], cell=7)
    assert (info.value.cell, info.value.line) == (7, 2)


# ---------------------------------------------------------------------------------------------
# Whole cells


def test_step_cell() -> None:
    source = code(
        """
        %%resources memory=4G cpus=2
        %%step train --foreach C in Cs[:limit] --retry 2

        model = fit(X, y, C=C)
        score = model.score(X_test, y_test)
        """
    )
    result = analyze_cell(source, cell=5)
    assert isinstance(result, CellAnalysis)
    assert result.options == StepOptions(
        "train",
        foreach=Foreach("C", "Cs[:limit]"),
        retry=2,
        resources=Resources(memory=4_000_000_000, cpus=2.0),
    )
    assert result.body_line == 3
    assert result.body == "\nmodel = fit(X, y, C=C)\nscore = model.score(X_test, y_test)\n"
    assert result.inputs == ("Cs", "limit", "fit", "X", "y", "X_test", "y_test")
    assert result.outputs == ("model", "score")
    assert result.magic_lines == ()


def test_step_cell_leading_blank_lines_and_rebound_foreach_var() -> None:
    result = analyze_cell("\n\n%%step s --foreach v in vals\nv = v * 2\nw = v\n", cell=1)
    assert result.body_line == 4
    assert result.body == "v = v * 2\nw = v\n"
    assert result.inputs == ("vals",)
    assert result.outputs == ("v", "w")


def test_step_cell_empty_body() -> None:
    result = analyze_cell("%%step nothing")
    assert result.options == StepOptions("nothing")
    assert (result.body, result.body_line, result.inputs, result.outputs) == ("", 2, (), ())


def test_plain_cell_magic_lines() -> None:
    source = code(
        """
        import pandas as pd
        %matplotlib inline
        !pip install x
        files = !ls
        for f in files:
            %time process(f)
        text = '''
        %not a magic
        '''
        value = (a
                 % b)
        df?
        """
    )
    result = analyze_cell(source, cell=2)
    assert result.options is None
    assert result.body == source
    assert result.body_line == 1
    assert result.magic_lines == (
        (2, "%matplotlib inline"),
        (3, "!pip install x"),
        (4, "files = !ls"),
        (6, "    %time process(f)"),
        (12, "df?"),
    )
    assert result.inputs == ("process", "a", "b")  # `df?` is help, not a read
    assert result.outputs == ("pd", "files", "f", "text", "value")
    assert result.imports == ("pandas",)


def test_plain_cell_python_cell_magic() -> None:
    result = analyze_cell("%%time\nx = slow(y)\n")
    assert result.magic_lines == ((1, "%%time"),)
    assert (result.inputs, result.outputs) == (("slow", "y"), ("x",))


def test_plain_cell_other_language_cell_magic() -> None:
    result = analyze_cell("%%bash\nfor f in *; do echo $f; done\n")
    assert result.options is None
    assert result.magic_lines == ((1, "%%bash"),)
    assert (result.inputs, result.outputs, result.imports) == ((), (), ())


def test_plain_cell_syntax_error_line_preserved_after_magic() -> None:
    with pytest.raises(AnalysisError) as info:
        analyze_cell("%load_ext foo\nx = = 1", cell=9)
    assert (info.value.cell, info.value.line) == (9, 2)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("%%step a\nx = 1", True, id="step"),
        pytest.param("\n  \n%%step a", True, id="leading-blank"),
        pytest.param("%%resources cpus=1\n%%step a", True, id="resources-first"),
        pytest.param("x = 1\n%%step a", False, id="not-first"),
        pytest.param("%%stepper a", False, id="other-magic"),
        pytest.param("%%time\nx = 1", False, id="cell-magic"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_step_cell(source: str, expected: bool) -> None:
    assert is_step_cell(source) is expected


# ---------------------------------------------------------------------------------------------
# normalize_code


def test_normalize_code_ignores_comments_and_spacing() -> None:
    a = "x = f( 1,2 )  # call f\n\n\ny=[ i for i in x ]\n"
    b = "# setup\nx = f(1, 2)\ny = [i for i in x]"
    assert normalize_code(a) == normalize_code(b)
    assert normalize_code("s = 'a'") == normalize_code('s = "a"')


def test_normalize_code_sees_real_changes() -> None:
    assert normalize_code("x = f(1, 2)") != normalize_code("x = f(1, 3)")
    assert normalize_code("x = a + b") != normalize_code("x = b + a")


def test_normalize_code_syntax_error() -> None:
    with pytest.raises(AnalysisError):
        normalize_code("x = (")
