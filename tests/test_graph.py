"""Tests for nbflow.graph: notebook cells -> the DAG of steps, table-driven.

Each row of a table is a small notebook (a list of cell sources; a cell may be ``(source, tags)``)
and what the graph must say about it, in the style of marimo's dataflow tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from nbflow.analyze import AnalysisError
from nbflow.graph import Cell, FlowGraph, GraphError, Node, build_graph, topological_order

CellSpec = str | tuple[str, tuple[str, ...]]


def make_cells(specs: Sequence[CellSpec], numbers: Sequence[int] | None = None) -> list[Cell]:
    """Cells numbered 1, 2, ... (or by ``numbers``, e.g. to leave gaps for markdown cells)."""
    numbers = list(numbers) if numbers is not None else list(range(1, len(specs) + 1))
    cells = []
    for number, spec in zip(numbers, specs, strict=True):
        source, tags = (spec, ()) if isinstance(spec, str) else spec
        cells.append(Cell(number, source, tuple(tags)))
    return cells


def graph_of(*specs: CellSpec) -> FlowGraph:
    return build_graph(make_cells(specs))


def node(graph: FlowGraph, name: str) -> Node:
    matches = [n for n in graph.nodes if n.name == name]
    assert len(matches) == 1, f"no single node named {name!r} in {[n.name for n in graph.nodes]}"
    return matches[0]


def assert_valid_order(graph: FlowGraph, order: list[str]) -> None:
    assert sorted(order) == sorted(graph.steps)
    position = {name: i for i, name in enumerate(order)}
    for upstream, step in graph.edges():
        assert position[upstream] < position[step], f"{upstream} must come before {step}"


# ---------------------------------------------------------------------------------------------
# Good notebooks


@dataclass(frozen=True)
class Flow:
    cells: list[CellSpec]
    edges: set[tuple[str, str]]
    order: list[str]
    by_value: dict[str, tuple[str, ...]] = field(default_factory=dict)  # steps not listed: ()
    upstream: dict[str, dict[str, str]] = field(default_factory=dict)  # node name -> upstream
    parameters: tuple[str, ...] = ()


FLOWS = [
    pytest.param(
        Flow(
            cells=[
                "%%step load\ndata = [1, 2, 3]",
                "%%step clean\ncleaned = [d * 2 for d in data]",
                "%%step report\ntotal = sum(cleaned)",
            ],
            edges={("load", "clean"), ("clean", "report")},
            order=["load", "clean", "report"],
            upstream={"clean": {"data": "load"}, "report": {"cleaned": "clean"}},
        ),
        id="chain",
    ),
    pytest.param(
        Flow(
            cells=[
                "%%step src\nraw = list(range(10))",
                "%%step left\nevens = [r for r in raw if r % 2 == 0]",
                "%%step right\nodds = [r for r in raw if r % 2]",
                "%%step join\nboth = evens + odds",
            ],
            edges={("src", "left"), ("src", "right"), ("left", "join"), ("right", "join")},
            order=["src", "left", "right", "join"],
            upstream={"join": {"evens": "left", "odds": "right"}},
        ),
        id="diamond",
    ),
    pytest.param(
        Flow(
            cells=[
                "%%step a1\na = 1",
                "%%step b1\nb = 2",
                "%%step a2\naa = a + 1",
                "%%step b2\nbb = b + 1",
            ],
            edges={("a1", "a2"), ("b1", "b2")},
            order=["a1", "b1", "a2", "b2"],
        ),
        id="two-independent-branches",
    ),
    pytest.param(
        Flow(
            cells=[
                "%%step first\nx = 1",
                "%%step reader\ny = x + 1",
                "%%step redefine\nx = y * 100",
                "%%step late_reader\nz = x",
            ],
            # reader takes x from `first` (latest EARLIER binder), not from the later `redefine`
            edges={("first", "reader"), ("reader", "redefine"), ("redefine", "late_reader")},
            order=["first", "reader", "redefine", "late_reader"],
            upstream={"reader": {"x": "first"}, "late_reader": {"x": "redefine"}},
        ),
        id="latest-earlier-binder-wins",
    ),
    pytest.param(
        Flow(
            cells=["x = 0", "%%step a\ny = x", "%%step b\nx = 5"],
            # an earlier plain binding wins over a later step: by value, no forward edge
            edges=set(),
            order=["a", "b"],
            by_value={"a": ("x",)},
        ),
        id="earlier-plain-beats-later-step",
    ),
    pytest.param(
        Flow(
            cells=["%%step a\nx = 1", "x = x * 10", "%%step b\ny = x"],
            edges=set(),
            order=["a", "b"],
            by_value={"b": ("x",)},
            upstream={"cell 2": {"x": "a"}, "b": {}},
        ),
        id="plain-cell-redefines-step-output",
    ),
    pytest.param(
        Flow(
            cells=[("alpha = 0.5\nn_iter = 3", ("parameters",)),
                   "%%step fit\nmodel = alpha * n_iter"],
            edges=set(),
            order=["fit"],
            by_value={"fit": ("alpha", "n_iter")},
            parameters=("alpha", "n_iter"),
        ),
        id="parameters-by-value",
    ),
    pytest.param(
        Flow(
            cells=["import math", ("seed = 42", ("parameters", "other-tag")),
                   "%%step draw\nvalue = seed * math.pi"],
            edges=set(),
            order=["draw"],
            by_value={"draw": ("seed", "math")},
            parameters=("seed",),
        ),
        id="parameters-cell-not-first",
    ),
    pytest.param(
        Flow(
            cells=["Cs = [0.1, 1, 10]", "%%step fit --foreach C in Cs\nscore = C * 2"],
            edges=set(),
            order=["fit"],
            by_value={"fit": ("Cs",)},
        ),
        id="foreach-over-plain-list",
    ),
    pytest.param(
        Flow(
            cells=["w = 3", "%%step grid\nCs = [1, 2]",
                   "%%step fit --foreach C in Cs --retry 2\nscore = C * w"],
            edges={("grid", "fit")},
            order=["grid", "fit"],
            by_value={"fit": ("w",)},
            upstream={"fit": {"Cs": "grid"}},
        ),
        id="foreach-over-step-output",
    ),
    pytest.param(
        Flow(
            cells=["C = 5", "lo = 1", "%%step fit --foreach C in range(lo, 3)\ny = C"],
            # the VAR is bound per task, never an input; names in EXPR are
            edges=set(),
            order=["fit"],
            by_value={"fit": ("lo",)},
        ),
        id="foreach-var-is-not-an-input",
    ),
    pytest.param(
        Flow(
            cells=["%%step report\ntotal = sum(cleaned)", "%%step clean\ncleaned = [1, 2]"],
            edges={("clean", "report")},
            order=["clean", "report"],
            upstream={"report": {"cleaned": "clean"}},
        ),
        id="forward-reference",
    ),
    pytest.param(
        Flow(
            cells=["%%step use\ny = x", "%%step p\nx = 1", "%%step q\nx = y + 1"],
            # no earlier binder: the FIRST later step that binds x
            edges={("p", "use"), ("use", "q")},
            order=["p", "use", "q"],
            upstream={"use": {"x": "p"}, "q": {"y": "use"}},
        ),
        id="forward-reference-first-later-step",
    ),
    pytest.param(
        Flow(
            cells=["%%step a\nx = 1", "print(x)", "y = x + 1", "%%step b\nz = y"],
            edges=set(),
            order=["a", "b"],
            by_value={"b": ("y",)},
            upstream={"cell 2": {"x": "a"}, "cell 3": {"x": "a"}},
        ),
        id="plain-cells-read-step-outputs",
    ),
    pytest.param(
        Flow(
            cells=["import numpy as np\nfrom math import sqrt", "%%step a\ny = np.sqrt(sqrt(4.0))"],
            edges=set(),
            order=["a"],
            by_value={"a": ("np", "sqrt")},
        ),
        id="plain-imports-by-value",
    ),
    pytest.param(
        Flow(
            cells=["%%step a\nimport math\ny = math.pi", "%%step b\nz = math.e + y"],
            # a module imported in a step is that step's output like any other name
            edges={("a", "b")},
            order=["a", "b"],
            upstream={"b": {"math": "a", "y": "a"}},
        ),
        id="step-import-is-step-output",
    ),
    pytest.param(
        Flow(
            cells=["k = 2", "%%step a\nx = 1", "%%step b\ny = x * k"],
            edges={("a", "b")},
            order=["a", "b"],
            by_value={"b": ("k",)},
            upstream={"b": {"x": "a"}},
        ),
        id="mixed-by-value-and-upstream",
    ),
    pytest.param(
        Flow(
            cells=["%%step a\nx = 1", "%%step b\nx = x + 1", "%%step c\ny = x"],
            edges={("a", "b"), ("b", "c")},
            order=["a", "b", "c"],
            upstream={"b": {"x": "a"}, "c": {"x": "b"}},
        ),
        id="step-rebinds-its-input",
    ),
    pytest.param(
        Flow(
            cells=["def f(v):\n    return v + 1\n\nclass K:\n    pass",
                   "%%step a\ny = f(1)\nk = K()"],
            edges=set(),
            order=["a"],
            by_value={"a": ("f", "K")},
        ),
        id="plain-function-and-class-by-value",
    ),
    pytest.param(
        Flow(
            cells=["%%step a\ny = len(range(3))\nprint(y)\ndisplay(y)"],
            edges=set(),
            order=["a"],
        ),
        id="builtins-are-not-inputs",
    ),
    pytest.param(
        Flow(
            cells=["%%step a\nx = 1", "%%step b\ny = x\nz = x * 2\nw = (x, y, z)"],
            edges={("a", "b")},
            order=["a", "b"],
            upstream={"b": {"x": "a"}},
        ),
        id="repeated-reads-one-edge",
    ),
    pytest.param(
        Flow(
            cells=["%%step make-data\nrows = [1]", "%%resources cpus=2 memory=1G\n%%step fit_model\n"
                   "n = len(rows)"],
            edges={("make-data", "fit_model")},
            order=["make-data", "fit_model"],
        ),
        id="hyphenated-name-and-resources-first",
    ),
    pytest.param(
        Flow(
            cells=["%matplotlib inline\nimport os", "!echo hi", "%%step a\nsep = os.sep"],
            edges=set(),
            order=["a"],
            by_value={"a": ("os",)},
        ),
        id="plain-cells-with-ipython-lines",
    ),
]


@pytest.mark.parametrize("flow", FLOWS)
def test_flow(flow: Flow) -> None:
    graph = build_graph(make_cells(flow.cells))

    assert set(graph.edges()) == flow.edges
    assert len(graph.edges()) == len(set(graph.edges())), "edges are not repeated"
    order = graph.order()
    assert order == flow.order
    assert_valid_order(graph, order)
    for name, step in graph.steps.items():
        assert step.by_value == flow.by_value.get(name, ()), name
        # every input of a step is accounted for exactly once: upstream or by value
        assert set(step.upstream) | set(step.by_value) == set(step.inputs), name
        assert not set(step.upstream) & set(step.by_value), name
    for name, upstream in flow.upstream.items():
        assert node(graph, name).upstream == upstream, name
    assert graph.parameters == flow.parameters


def test_flow_table_is_large_enough() -> None:
    assert len(FLOWS) >= 15
    ids = [p.id for p in FLOWS]
    assert len(ids) == len(set(ids))


def test_nodes_keep_every_code_cell_in_order() -> None:
    cells = make_cells(["x = 1", "%%step a\ny = x", "print(y)", "%%step b\nz = y"], [2, 4, 5, 9])
    graph = build_graph(cells)
    assert [n.cell for n in graph.nodes] == cells
    assert [n.name for n in graph.nodes] == ["cell 2", "a", "cell 5", "b"]
    assert [n.is_step for n in graph.nodes] == [False, True, False, True]
    assert list(graph.steps) == ["a", "b"]
    assert graph.steps["b"].upstream_steps == ("a",)
    assert graph.steps["a"].options is not None and graph.steps["a"].options.name == "a"


def test_parameters_tag_marks_node() -> None:
    graph = graph_of("x = 1", ("a = 1\nb = 2", ("parameters",)), "%%step s\nc = a + b + x")
    assert [n.is_parameters for n in graph.nodes] == [False, True, False]
    assert graph.parameters == ("a", "b")
    assert graph.steps["s"].by_value == ("a", "b", "x")


def test_foreach_options_are_kept() -> None:
    graph = graph_of("grid = [1, 2]", "%%step fit --foreach g in grid --retry 3\nr = g")
    options = graph.steps["fit"].options
    assert options is not None and options.foreach is not None
    assert (options.foreach.var, options.foreach.expr, options.retry) == ("g", "grid", 3)
    assert graph.steps["fit"].inputs == ("grid",)


# ---------------------------------------------------------------------------------------------
# Bad notebooks: the error names the cell, the line and the name


@dataclass(frozen=True)
class Bad:
    cells: list[CellSpec]
    cell: int | None
    line: int | None
    fragments: tuple[str, ...]  # all must appear in str(error)
    error: type[AnalysisError] = GraphError


BAD = [
    pytest.param(
        Bad(["%%step load\nx = 1", "y = 2", "%%step load\nz = 3"], 3, 1,
            ("'load'", "twice", "cell 1", "cell 3", "unique name")),
        id="duplicate-step",
    ),
    pytest.param(
        Bad(["%%step a\nx = 1", "\n\n%%step a --retry 1\ny = 2"], 2, 3,
            ("'a'", "cell 1 and cell 2")),
        id="duplicate-step-after-blank-lines",
    ),
    pytest.param(
        Bad(["%%step a\nx = y", "%%step b\ny = x"], 1, None,
            ("cycle", "a -> b -> a", "b (cell 2) reads x from a", "a (cell 1) reads y from b")),
        id="cycle-of-two",
    ),
    pytest.param(
        Bad(["%%step a\nx = z", "%%step b\ny = x", "%%step c\nz = y"], 1, None,
            ("cycle", "a (cell 1) reads z from c", "b (cell 2) reads x from a",
             "c (cell 3) reads y from b")),
        id="cycle-of-three",
    ),
    pytest.param(
        Bad(["%%step ok\nv = 1", "%%step c\nz = w + v", "%%step d\nw = z"], 2, None,
            ("cycle", "c (cell 2) reads w from d", "d (cell 3) reads z from c")),
        id="cycle-after-good-step",
    ),
    pytest.param(
        Bad(["%%step a\n\nx = 1\ny = q + x"], 1, 4,
            ("'q'", "no cell defines it", "cell 1, line 4")),
        id="undefined-in-step",
    ),
    pytest.param(
        Bad(["x = 1", "y = x + missing"], 2, 1, ("'missing'", "no cell defines it")),
        id="undefined-in-plain-cell",
    ),
    pytest.param(
        Bad(["%%step a\nx = 1", "%%step b\ny = x\nfor i in range(3):\n    z = x + i + nope"], 2, 4,
            ("'nope'", "no cell defines it", "cell 2, line 4")),
        id="undefined-in-loop-body",
    ),
    pytest.param(
        Bad(["%%step a\nx = 1", "%%step b\ny = x\nz = w", "w = 3"], 2, 3,
            ("'w'", "later plain cell (cell 3)", "move cell 3 above")),
        id="bound-only-by-later-plain-cell",
    ),
    pytest.param(
        Bad(["y = w + 1", "w = 3"], 1, 1, ("'w'", "cell 2", "move cell 2 above")),
        id="plain-reads-later-plain",
    ),
    pytest.param(
        Bad(["x = 1", "%%step\nx = 1"], 2, 1, ("missing step name",), AnalysisError),
        id="header-missing-name",
    ),
    pytest.param(
        Bad(["x = 1", "%%step a --retyr 2\ny = x"], 2, 1,
            ("unknown option --retyr", "did you mean --retry"), AnalysisError),
        id="header-unknown-option",
    ),
    pytest.param(
        Bad(["\n%%step a --retry many\ny = 1"], 1, 2, ("--retry", "'many'"), AnalysisError),
        id="header-bad-retry",
    ),
    pytest.param(
        Bad(["%%step a\n%%step b\ny = 1"], 1, 2, ("second `%%step` line",), AnalysisError),
        id="header-two-steps",
    ),
    pytest.param(
        Bad(["%%step a\ny = 1\n%%resources cpus=2"], 1, 3, ("not at the top",), AnalysisError),
        id="header-not-at-top",
    ),
    pytest.param(
        Bad(["%%resources cpus=2\ny = 1"], 1, 1, ("without a step",), AnalysisError),
        id="resources-without-step",
    ),
    pytest.param(
        Bad(["%%step a\n%%resources memory=lots\ny = 1"], 1, 2, ("memory 'lots'",), AnalysisError),
        id="resources-bad-memory",
    ),
    pytest.param(
        Bad(["%%step a\n%%resources gpu=1\ny = 1"], 1, 2, ("unknown resource 'gpu'", "gpus"),
            AnalysisError),
        id="resources-unknown",
    ),
    pytest.param(
        Bad(["%%step 1abc\ny = 1"], 1, 1, ("invalid step name '1abc'",), AnalysisError),
        id="header-invalid-name",
    ),
    pytest.param(
        Bad(["%%step a\ny = 1\n!ls"], 1, 3, ("IPython-only line '!ls'",), AnalysisError),
        id="ipython-line-in-step",
    ),
    pytest.param(
        Bad(["%%step a\ny = (1,"], 1, 2, ("SyntaxError",), AnalysisError),
        id="syntax-error-in-step",
    ),
]


@pytest.mark.parametrize("bad", BAD)
def test_bad_notebook(bad: Bad) -> None:
    with pytest.raises(bad.error) as info:
        build_graph(make_cells(bad.cells))
    err = info.value
    message = str(err)
    assert (err.cell, err.line) == (bad.cell, bad.line), message
    if bad.cell is not None:
        assert f"cell {bad.cell}" in message
    if bad.line is not None:
        assert f"line {bad.line}" in message
    for fragment in bad.fragments:
        assert fragment in message


def test_cycle_error_names_every_step_on_it() -> None:
    cells = ["%%step a\nx = z", "%%step b\ny = x", "%%step c\nz = y", "%%step d\nfree = 1"]
    with pytest.raises(GraphError) as info:
        graph_of(*cells)
    message = str(info.value)
    for name in ("a", "b", "c"):
        assert f"{name} (cell " in message
    assert "d (cell" not in message


def test_graph_error_is_an_analysis_error_and_pickles() -> None:
    import pickle

    with pytest.raises(GraphError) as info:
        graph_of("y = q")
    assert isinstance(info.value, AnalysisError)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)


# Bugs in error lines (see the report): each test states the expected behaviour.


def test_undefined_foreach_expr_name_points_at_header_line() -> None:
    with pytest.raises(GraphError) as info:
        graph_of("%%step fit --foreach C in Cs\ny = C")
    assert (info.value.cell, info.value.line) == (1, 1)


def test_undefined_name_in_plain_cell_with_magic_reports_real_line() -> None:
    with pytest.raises(GraphError) as info:
        graph_of("%matplotlib inline\nimport os\ny = undefined_name")
    assert (info.value.cell, info.value.line) == (1, 3)


def test_duplicate_step_points_at_step_line_even_with_resources() -> None:
    with pytest.raises(GraphError) as info:
        graph_of("%%step a\nx = 1", "%%step a\n%%resources cpus=2\ny = 2")
    assert (info.value.cell, info.value.line) == (2, 1)


# ---------------------------------------------------------------------------------------------
# Traversal: downstream, descendants, edges


@pytest.fixture
def wide() -> FlowGraph:
    #   src -> left -> join -> report
    #   src -> right -> join
    #   other (independent)
    return graph_of(
        "%%step src\nraw = [1, 2]",
        "%%step left\nl = raw[0]",
        "%%step right\nr = raw[1]",
        "%%step join\nj = l + r",
        "%%step other\no = 0",
        "%%step report\nrep = (j, raw)",
    )


def test_edges_in_notebook_then_read_order(wide: FlowGraph) -> None:
    assert wide.edges() == [
        ("src", "left"), ("src", "right"), ("left", "join"), ("right", "join"),
        ("join", "report"), ("src", "report"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("src", {"left", "right", "report"}),
        ("left", {"join"}),
        ("join", {"report"}),
        ("report", set()),
        ("other", set()),
        ("nosuch", set()),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_downstream(wide: FlowGraph, name: str, expected: set[str]) -> None:
    assert wide.downstream(name) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["src"], {"src", "left", "right", "join", "report"}),
        (["right"], {"right", "join", "report"}),
        (["join"], {"join", "report"}),
        (["report"], {"report"}),
        (["other"], {"other"}),
        (["left", "other"], {"left", "other", "join", "report"}),
        ([], set()),
    ],
    ids=["src", "right", "join", "leaf", "isolated", "two-roots", "none"],
)
def test_descendants(wide: FlowGraph, names: list[str], expected: set[str]) -> None:
    assert wide.descendants(names) == expected
    assert wide.descendants(iter(names)) == expected  # any iterable


def test_descendants_follow_forward_edges() -> None:
    graph = graph_of("%%step b\ny = x + 1", "%%step a\nx = 1", "%%step c\nz = y")
    assert graph.edges() == [("a", "b"), ("b", "c")]
    assert graph.descendants(["a"]) == {"a", "b", "c"}
    assert graph.downstream("a") == {"b"}


# ---------------------------------------------------------------------------------------------
# Topological order: ties broken by notebook order


def test_independent_steps_in_notebook_order() -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    graph = graph_of(*(f"%%step {n}\nv_{i} = {i}" for i, n in enumerate(names)))
    assert graph.order() == names


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))),
                         ids=lambda p: "-".join(map(str, p)))
def test_order_follows_cell_numbers_not_input_order(perm: tuple[int, ...]) -> None:
    # The same independent steps handed over in any order: order() sorts by cell number.
    specs = [f"%%step s{i}\nv{i} = {i}" for i in range(4)]
    cells = make_cells(specs, [10 * (i + 1) for i in range(4)])
    nodes = build_graph([cells[i] for i in perm]).steps.values()
    assert topological_order(nodes) == ["s0", "s1", "s2", "s3"]


def test_order_ties_among_ready_steps_go_by_notebook_order() -> None:
    # c is ready from the start; b only after a. The earliest ready step is always taken, so
    # the order is the notebook's own wherever the dependencies allow it.
    graph = graph_of("%%step a\nx = 1", "%%step b\ny = x", "%%step c\nz = 2")
    order = graph.order()
    assert order == ["a", "b", "c"]
    assert_valid_order(graph, order)


def test_order_with_forward_edges() -> None:
    graph = graph_of("%%step report\nr = model + 1", "%%step prep\nd = 1",
                     "%%step train\nmodel = d * 2")
    assert graph.order() == ["prep", "train", "report"]
    assert_valid_order(graph, graph.order())


def test_order_uses_cell_numbers_with_gaps() -> None:
    cells = make_cells(["%%step late\na = 1", "%%step early\nb = 2"], [7, 3])
    assert build_graph(cells).order() == ["early", "late"]


def test_empty_and_plain_only_notebooks() -> None:
    empty = build_graph([])
    assert (empty.nodes, empty.steps, empty.edges(), empty.order()) == ((), {}, [], [])
    plain = graph_of("x = 1", "y = x", "")
    assert plain.steps == {} and plain.order() == [] and plain.parameters == ()
    assert node(plain, "cell 2").upstream == {}
