"""Inputs, outputs and imports of plain Python code by static analysis; no execution.

An input is a name the code reads that an earlier cell must define; an output is a name it
binds at top level. Inputs and outputs follow Python's scoping rules with a stack of scopes
(module, class, function, comprehension), in the order Python evaluates the code:

* at top level a name read before the cell binds it is an input; ``x = x + 1`` reads ``x``
  first, so ``x`` is both an input and an output;
* function and lambda bodies run later: a global name they read is an input only if the cell
  never binds it at top level; decorators, defaults and annotations are read immediately;
* class bodies run immediately but their names are invisible to functions nested in them;
* comprehensions have their own scope; their first iterable is read in the enclosing scope;
* ``except E as e`` unbinds ``e`` after the handler; ``del x`` unbinds ``x`` (or reads it, if
  the cell never bound it);
* names bound in only one branch of an ``if``/``try``/``match`` count as bound afterwards.

This module owns that analysis (``_Analyzer``, ``_Scope``, ``_LocalNames``, ``_analyze``),
parsing code with cell-aware syntax errors (``_parse``), and its public entry points
``analyze_code`` and ``normalize_code``.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from nbflow.errors import AnalysisError
from nbflow.header import python_lines

# Names a cell may read without any cell defining them.
IGNORED_NAMES = frozenset(dir(builtins)) | {
    "display",
    "get_ipython",
    "__name__",
    "__file__",
    "__builtins__",
    "__doc__",
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
            lines = python_lines(code)
            text = e.text
            if not text and e.lineno and 0 < e.lineno <= len(lines):
                text = lines[e.lineno - 1]
            where = f" in '{text.strip()}'" if text and text.strip() else ""
            lineno = e.lineno
            if lineno is None and "\0" in code:  # Python names no line for a NUL byte
                lineno = len(python_lines(code[: code.index("\0")] + "_"))
            raise AnalysisError(
                f"{type(e).__name__}: {e.msg}{where}",
                cell=cell,
                line=None if lineno is None else lineno + line_offset,
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
