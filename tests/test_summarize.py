"""Tests for nbflow.summarize: how two values differ, table-driven.

Each row of CASES is a pair of values and the fields its summary must have; every row is also
checked for the invariants of every summary (JSON without NaN, one short text line).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nbflow.summarize import compare, short_repr

NAN, INF = float("nan"), float("inf")
BY = "\N{MULTIPLICATION SIGN}"  # rows by columns


class EqRaises:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")

    __hash__ = object.__hash__


class EqArray:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> Any:
        return np.array([True, False])

    __hash__ = object.__hash__


class Plain:
    def __init__(self, x: Any, y: Any = 0) -> None:
        self.x, self.y = x, y


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")


def frame(**columns: Any) -> pd.DataFrame:
    index = columns.pop("index", None)
    return pd.DataFrame(columns, index=index)


def with_cell(df: pd.DataFrame, row: int, column: str, value: Any) -> pd.DataFrame:
    df = df.copy()
    df.iloc[row, df.columns.get_loc(column)] = value
    return df


def with_item(x: np.ndarray, index: Any, value: Any) -> np.ndarray:
    x = x.copy()
    x[index] = value
    return x


BASE = frame(x=[1.0, 2.0, 3.0, 4.0], y=[1, 2, 3, 4], s=["a", "b", "c", "d"])
FLOATS = np.arange(100.0)

# (a, b, expected fields: a value is compared with ==, a dict recursively, a callable is a predicate)
CASES: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    # numbers
    "float": (0.91, 0.94, {"kind": "number", "same": False, "delta": pytest.approx(0.03),
                           "relative": pytest.approx(0.03 / 0.91),
                           "text": "0.91 → 0.94 (+0.03, +3.3%)"}),
    "int": (3, 5, {"kind": "number", "same": False, "delta": 2, "relative": pytest.approx(2 / 3),
                   "text": "3 → 5 (+2, +67%)"}),
    "negative base": (-2.0, -3.0, {"delta": -1.0, "relative": -0.5, "text": "-2 → -3 (-1, -50%)"}),
    "zero base": (0, 4, {"delta": 4, "relative": None, "text": "0 → 4 (+4)"}),
    "nan same": (NAN, NAN, {"kind": "number", "same": True, "delta": "nan", "a": "nan"}),
    "nan appears": (1.0, NAN, {"same": False, "b": "nan", "text": "1 → nan"}),
    "to inf": (1.0, INF, {"same": False, "delta": "inf", "relative": "inf", "text": "1 → inf (+inf)"}),
    "int to equal float": (1, 1.0, {"kind": "number", "same": False, "type": {"a": "int", "b": "float"},
                                    "text": "int → float: equal values"}),
    "numpy scalar same": (np.float64(0.5), np.float64(0.5), {"kind": "number", "same": True}),
    "huge ints": (10**400, 10**400 + 1, {"kind": "number", "same": False, "delta": 1}),
    # bools, None, types
    "bool": (True, False, {"kind": "bool", "same": False, "a": True, "b": False, "text": "True → False"}),
    "bool same": (np.bool_(True), np.bool_(True), {"kind": "bool", "same": True}),
    "none": (None, None, {"kind": "none", "same": True}),
    "int to str": (1, "1", {"kind": "type", "same": False, "text": "int → str",
                            "type": {"a": "int", "b": "str"}}),
    "none to int": (None, 0, {"kind": "type", "text": "NoneType → int"}),
    "bool to int": (True, 1, {"kind": "type", "same": False}),
    "bool to numpy bool": (True, np.bool_(True), {
        "kind": "bool", "same": False, "text": lambda t: t.startswith("builtins.bool → numpy.bool")}),
    # text and bytes
    "short text": ("abc", "abd", {"kind": "text", "same": False, "text": "'abc' → 'abd'",
                                  "lines_changed": 1, "length": {"a": 3, "b": 3}}),
    "multi-line text": ("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n", {
        "kind": "text", "same": False, "lines_changed": 2, "text": "str of 8 → 10 chars: 2 lines changed",
        "details": lambda d: {"-b", "+B", "+e"} <= set(d) and len(d) <= 12}),
    "long text diff": ("\n".join(map(str, range(500))),
                       "\n".join(str(i * (i % 7 != 0)) for i in range(500)), {
        "same": False, "lines_changed": 71, "details": lambda d: len(d) == 12}),
    "trailing newline": ("a\nb", "a\nb\n", {"same": False, "lines_changed": 1}),
    "text same": ("x" * 1000, "x" * 1000, {"kind": "text", "same": True, "lines_changed": 0}),
    "bytes": (b"abc", b"abd", {"kind": "bytes", "same": False, "first_difference": 2}),
    "bytes longer": (b"ab", b"abc", {"same": False, "first_difference": 2, "length": {"a": 2, "b": 3}}),
    "bytes big": (bytes(200_000), with_item(np.zeros(200_000, np.uint8), 150_001, 1).tobytes(),
                  {"same": False, "first_difference": 150_001}),
    "bytes same": (b"abc", b"abc", {"kind": "bytes", "same": True, "first_difference": None}),
    # numpy arrays
    "array same": (FLOATS.reshape(20, 5), FLOATS.reshape(20, 5).copy(), {
        "kind": "array", "same": True, "changed": 0, "max_abs_diff": 0.0,
        "stats": {"a": {"min": 0.0, "max": 99.0, "mean": 49.5, "nan": 0}}}),
    "array one element": (FLOATS, with_item(FLOATS, 17, 17.375), {
        "kind": "array", "same": False, "changed": 1, "max_abs_diff": 0.375,
        "text": lambda t: t.startswith("float64 array (100,): 1 of 100 elements differ, max |Δ| 0.375")}),
    "array uint8 no wraparound": (np.array([10, 200], np.uint8), np.array([250, 200], np.uint8), {
        "changed": 1, "max_abs_diff": 240.0, "stats": {"a": {"min": 10, "max": 200}}}),
    "array shape": (np.zeros((2, 3)), np.zeros((3, 2)), {
        "kind": "array", "same": False, "changed": None, "max_abs_diff": None,
        "shape": {"a": [2, 3], "b": [3, 2]}, "text": "float64 array (2, 3) → (3, 2)"}),
    "array dtype": (np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]), {
        "same": False, "changed": 0, "dtype": {"a": "int64", "b": "float64"},
        "text": "int64 → float64 array (3,): equal values"}),
    "array nan same place": (np.array([1.0, NAN, 3.0]), np.array([1.0, NAN, 3.0]), {
        "same": True, "changed": 0, "stats": {"a": {"nan": 1, "mean": 2.0, "std": 1.0}}}),
    "array nan moved": (np.array([1.0, NAN, 3.0]), np.array([NAN, 2.0, 3.0]), {
        "same": False, "changed": 2}),
    "array inf": (np.array([1.0, 2.0]), np.array([1.0, INF]), {
        "changed": 1, "max_abs_diff": "inf", "stats": {"b": {"max": "inf"}}}),
    "array bool": (np.array([True, False, True]), np.array([True, True, True]), {
        "kind": "array", "same": False, "changed": 1, "max_abs_diff": None, "stats": None}),
    "array 2-D": (np.zeros((4, 5)), with_item(with_item(np.zeros((4, 5)), (1, 2), 1.0), (3, 4), -2.0), {
        "changed": 2, "max_abs_diff": 2.0, "stats": {"b": {"min": -2.0, "max": 1.0, "mean": -0.05}}}),
    "array strings": (np.array(["a", "b"]), np.array(["a", "c"]), {"changed": 1, "stats": None}),
    "array str to int": (np.array(["a", "b"]), np.array([1, 2]), {"same": False}),
    "array 0-d": (np.array(1.5), np.array(2.5), {"changed": 1, "max_abs_diff": 1.0, "shape": {"a": []}}),
    "array empty": (np.array([]), np.array([]), {"same": True, "stats": {"a": {"min": None, "mean": None}}}),
    "array of objects": (np.array([{"a": 1}, None]), np.array([{"a": 2}, None]), {"changed": 1}),
    "array of arrays": (np.array([np.arange(2), np.arange(3)], dtype=object),
                        np.array([np.arange(2), np.arange(3)], dtype=object), {"same": True}),
    "datetime NaT": (np.array(["2024-01-01", "NaT"], "datetime64[D]"),
                     np.array(["2024-01-02", "NaT"], "datetime64[D]"), {"changed": 1}),
    # pandas
    "frame same": (BASE, BASE.copy(), {"kind": "frame", "same": True, "changed_columns": [],
                                       "text": f"DataFrame 4{BY}3: same"}),
    "frame nan same place": (frame(x=[1.0, NAN]), frame(x=[1.0, NAN]), {"same": True}),
    "frame column added and removed": (BASE, BASE.drop(columns="s").assign(z=0), {
        "kind": "frame", "same": False, "columns_added": ["'z'"], "columns_removed": ["'s'"],
        "changed_columns": [], "text": f"DataFrame 4{BY}3: column 'z' added; column 's' removed"}),
    "frame dtype": (BASE, BASE.astype({"y": "float64"}), {
        "same": False, "dtype_changes": [{"column": "'y'", "a": "int64", "b": "float64"}],
        "changed_columns": [], "text": lambda t: "dtype of 'y' int64 → float64" in t}),
    "frame one cell": (BASE, with_cell(BASE, 2, "x", 30.0), {
        "same": False, "index_changed": False,
        "changed_columns": [{"column": "'x'", "rows_changed": 1,
                             "stats": {"a": {"max": 4.0, "mean": 2.5}, "b": {"max": 30.0, "mean": 9.25}}}],
        "text": f"DataFrame 4{BY}3: column 'x' (1 row) changed"}),
    "frame text cell": (BASE, with_cell(BASE, 0, "s", "z"), {
        "changed_columns": lambda cols: cols == [{"column": "'s'", "rows_changed": 1}]}),
    "frame reordered rows": (BASE, BASE.iloc[::-1], {
        "same": False, "index_changed": True, "aligned": "index", "rows_added": 0, "rows_removed": 0,
        "changed_columns": [], "text": f"DataFrame 4{BY}3: rows reordered"}),
    "frame reindexed rows": (BASE, BASE.set_axis([1, 2, 3, 4]), {
        "index_changed": True, "aligned": "index", "rows_added": 1, "rows_removed": 1,
        "changed_columns": [{"column": "'x'", "rows_changed": 3}, {"column": "'y'", "rows_changed": 3},
                            {"column": "'s'", "rows_changed": 3}]}),
    "frame non-unique index": (frame(x=[1, 2, 3], index=[0, 0, 1]), frame(x=[1, 5, 3], index=[0, 0, 1]), {
        "same": False, "index_changed": False, "changed_columns": [{"column": "'x'", "rows_changed": 1}]}),
    "frame non-unique index positional": (frame(x=[1, 2, 3], index=[0, 0, 1]),
                                          frame(x=[1, 2, 3, 4], index=[0, 0, 1, 1]), {
        "index_changed": True, "aligned": "position", "rows_added": 1, "rows_removed": 0,
        "changed_columns": []}),
    "frame duplicate columns": (pd.DataFrame([[1, 2]], columns=["a", "a"]),
                                pd.DataFrame([[1, 3]], columns=["a", "a"]), {
        "same": False, "changed_columns": [{"column": "'a'", "rows_changed": 1}]}),
    "frame nullable": (frame(n=pd.array([1, None, 3], "Int64")), frame(n=pd.array([1, None, 4], "Int64")), {
        "changed_columns": [{"column": "'n'", "rows_changed": 1, "stats": {"a": {"nan": 1, "max": 3.0}}}]}),
    "frame array cells": (frame(a=[np.arange(2), 1, None]), frame(a=[np.arange(2), 2, None]), {
        "same": False, "changed_columns": [{"column": "'a'", "rows_changed": 1}]}),
    "frame categories": (frame(c=pd.Categorical(["a", "b"])), frame(c=pd.Categorical(["a", "c"])), {
        "changed_columns": [{"column": "'c'", "rows_changed": 1}]}),
    "series": (pd.Series([1.0, 2.0, 3.0], name="s"), pd.Series([1.0, 2.0, 6.0], name="s"), {
        "kind": "series", "same": False, "rows_changed": 1, "stats": {"b": {"max": 6.0}},
        "text": "Series 's' float64 (3): 1 row changed, mean 2 → 3"}),
    "series renamed": (pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b"), {
        "same": False, "rows_changed": 0, "name": {"a": "'a'", "b": "'b'"}}),
    "series same": (pd.Series([1.0, NAN]), pd.Series([1.0, NAN]), {"kind": "series", "same": True}),
    "series longer": (pd.Series([1, 2]), pd.Series([1, 2, 3]), {"rows_added": 1, "rows_changed": 0}),
    "frame to series": (BASE, BASE["x"], {"kind": "type", "text": "DataFrame → Series"}),
    # containers
    "list": ([1, 2, 3], [1, 5, 3, 4], {
        "kind": "sequence", "same": False, "length": {"a": 3, "b": 4}, "changed": 1, "added": 1,
        "removed": 0, "examples": [{"index": 1, "text": "2 → 5 (+3, +150%)"}],
        "text": "list of 3 → 4 items: 1 added, 1 changed"}),
    "list same": ([1, "a", None], [1, "a", None], {"same": True, "changed": 0}),
    "list of arrays": ([np.arange(3)], [np.arange(3)], {"same": True}),
    "list of arrays changed": ([np.arange(3.0)], [np.array([0.0, 1.0, 2.5])], {
        "same": False, "changed": 1, "examples": [{"index": 0, "text": lambda t: "max |Δ| 0.5" in t}]}),
    "tuple": ((1, 2), (2,), {"kind": "sequence", "changed": 1, "removed": 1, "added": 0}),
    "list to tuple": ([1, 2], (1, 2), {"kind": "sequence", "same": False,
                                       "text": "list → tuple: equal values"}),
    "long list": (list(range(20_000)), [*range(15_000), -1, *range(15_001, 20_000)], {
        "same": False, "changed": 0, "text": lambda t: "first 10,000 items compared" in t}),
    "dict nested": ({"a": 1, "b": {"x": [1, 2]}, "c": 3}, {"b": {"x": [1, 3]}, "c": 3, "d": 4}, {
        "kind": "mapping", "same": False, "added": ["'d'"], "removed": ["'a'"], "changed": ["'b'"],
        "added_count": 1, "removed_count": 1, "changed_count": 1,
        "examples": [{"key": "'b'", "text": "dict of 1 key: 1 changed ('x')"}],
        "details": lambda d: d == ["'b': dict of 1 key: 1 changed ('x')"]}),
    "dict same": ({"a": [1.0], "b": np.arange(3)}, {"a": [1.0], "b": np.arange(3)}, {"same": True}),
    "set": ({1, 2, 3}, {2, 3, 4}, {"kind": "set", "same": False, "added": ["4"], "removed": ["1"],
                                   "added_count": 1, "removed_count": 1}),
    "frozenset same": (frozenset("ab"), frozenset("ba"), {"kind": "set", "same": True}),
    # other objects
    "eq raises, same state": (EqRaises(1), EqRaises(1), {"kind": "object", "same": True}),
    "eq raises, other state": (EqRaises(1), EqRaises(2), {
        "kind": "object", "same": False, "attributes_changed": ["value"],
        "text": "test_summarize.EqRaises: differs"}),
    "eq returns an array": (EqArray(1), EqArray(1), {"kind": "object", "same": True}),
    "eq returns an array, other state": (EqArray(1), EqArray(2), {"same": False}),
    "plain objects": (Plain(1), Plain(1), {"same": True}),
    "plain objects differ": (Plain(1, [1]), Plain(2, [1]), {"same": False, "attributes_changed": ["x"],
                                                            "details": ["attribute x: 1 → 2 (+1, +100%)"]}),
    "lock": (threading.Lock(), threading.Lock(), {
        "kind": "object", "same": False, "comparable": False,
        "text": "_thread.lock: cannot compare (no == or pickle)"}),
    "estimator": (LogisticRegression(C=1.0), LogisticRegression(C=0.1), {
        "kind": "object", "same": False, "params_changed": ["C"], "attributes_changed": [],
        "text": "sklearn.linear_model.LogisticRegression: differs (params C)",
        "details": ["param C: 1 → 0.1 (-0.9, -90%)"]}),
    "estimator same": (LogisticRegression(C=0.5), LogisticRegression(C=0.5), {"same": True}),
    "estimator type": (LogisticRegression(), Plain(1), {"kind": "type", "same": False}),
    "opaque objects": (datetime.date(2024, 1, 1), datetime.date(2024, 1, 2), {
        "kind": "object", "same": False, "text": "datetime.date: differs",
        "details": ["a: datetime.date(2024, 1, 1)", "b: datetime.date(2024, 1, 2)"]}),
    "bad repr": (BadRepr(), BadRepr(), {"kind": "object"}),
    "bad repr in a list": ([BadRepr()], [BadRepr(), 1], {"added": 1}),
}


def check(actual: Any, expected: Any, where: str = "") -> None:
    if callable(expected) and not isinstance(expected, type):
        assert expected(actual), f"{where}: {actual!r}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} missing from {sorted(actual)}"
            check(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            check(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.mark.parametrize(("a", "b", "expected"), CASES.values(), ids=CASES.keys())
def test_compare(a: Any, b: Any, expected: dict[str, Any]) -> None:
    check(compare(a, b), expected, "result")


@pytest.mark.parametrize(("a", "b"), [(a, b) for a, b, _ in CASES.values()], ids=CASES.keys())
def test_every_summary_is_short_strict_json(a: Any, b: Any) -> None:
    result = compare(a, b)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert {"kind", "same", "text", "details"} <= set(result)
    assert isinstance(result["same"], bool)
    assert isinstance(result["text"], str) and "\n" not in result["text"]
    assert all(len(line) <= 160 for line in [result["text"], *result["details"]])
    assert compare(a, a)["same"]  # a value equals itself, whatever its == says


def test_fitted_estimators_list_changed_attributes() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    a = LogisticRegression().fit(x, [0, 0, 1, 1])
    b = LogisticRegression().fit(x, [0, 1, 1, 1])
    result = compare(a, b)
    assert result["same"] is False and result["params_changed"] == []
    assert {"coef_", "intercept_"} <= set(result["attributes_changed"])
    assert any(line.startswith("attribute coef_: float64 array (1, 1): 1 of 1 elements differ")
               for line in result["details"])


@pytest.mark.parametrize("shape", [(2_500_000,), (3, 700_000), (2, 3, 400_000)])
def test_chunked_arrays_match_numpy(shape: tuple[int, ...]) -> None:
    a = np.random.default_rng(0).normal(size=shape)
    b = a.copy()
    flat = b.reshape(-1)
    flat[[0, 1_000_003, flat.size - 1]] += [1.0, -2.5, 0.25]
    flat[7] = NAN
    result = compare(a, b)
    assert result["changed"] == 4 and result["max_abs_diff"] == 2.5
    for side, x in (("a", a), ("b", b)):
        stats = result["stats"][side]
        assert stats["nan"] == int(np.isnan(x).sum())
        assert stats["min"] == np.nanmin(x) and stats["max"] == np.nanmax(x)
        assert stats["mean"] == pytest.approx(np.nanmean(x)) and stats["std"] == pytest.approx(np.nanstd(x))
    strided_a, strided_b = a[..., ::2], b[..., ::2]  # views that are not contiguous
    differ = ~((strided_a == strided_b) | (np.isnan(strided_a) & np.isnan(strided_b)))
    assert compare(strided_a, strided_b)["changed"] == int(np.count_nonzero(differ))
    assert compare(strided_a, strided_a.copy())["same"]


def test_depth_and_examples_are_bounded() -> None:
    a: Any = 1
    b: Any = 2
    for _ in range(200):
        a, b = [a], [b]
    result = compare(a, b)
    assert result["changed"] == 1 and len(result["examples"]) == 1
    many = compare(list(range(50)), [-i for i in range(50)], max_items=3)
    assert many["changed"] == 49 and len(many["examples"]) == 3 and len(many["details"]) == 3


def test_short_repr() -> None:
    assert short_repr("abc") == "'abc'"
    assert len(short_repr("x" * 1000)) <= 60 and len(short_repr(list(range(10**5)), 20)) == 20
    assert short_repr(BadRepr()).startswith("<BadRepr")
    assert "\n" not in short_repr(BASE)
    assert short_repr(10**5000)  # str(int) refuses this many digits


def test_import_does_not_load_pandas_or_numpy() -> None:
    code = ("import sys, nbflow.summarize as s; s.compare({'a': [1.5]}, {'a': [2]}); "
            "print(sorted({'pandas', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_nested_non_finite_values() -> None:
    result = compare({"x": NAN, "y": np.array([NAN, INF])}, {"x": INF, "y": np.array([-INF, NAN])})
    assert result["changed"] == ["'x'", "'y'"]
    assert [e["text"] for e in result["examples"]] == [
        "nan → inf", "float64 array (2,): 2 of 2 elements differ; mean inf → -inf"]
    stats = compare(np.array([NAN, INF]), np.array([-INF, NAN]))["stats"]
    assert stats == {"a": {"min": "inf", "max": "inf", "mean": "inf", "std": "nan", "nan": 1},
                     "b": {"min": "-inf", "max": "-inf", "mean": "-inf", "std": "nan", "nan": 1}}
    json.dumps(stats, allow_nan=False)
