"""How two Python values differ: the value-level summaries behind `nbflow diff`.

This module owns comparing two loaded artifact values and describing the difference for a human
(one short line plus a few detail lines) and for a program (kind-specific fields), as a
JSON-serializable dict. It is pure: no I/O and no store access. numpy and pandas are never
imported here: they are taken from `sys.modules` only when a value is one of theirs, which means
they are already loaded. Work is bounded: arrays are compared in chunks, containers up to
`_ITEM_CAP` items, nested summaries up to `_MAX_DEPTH` levels, and nothing raises.
"""

from __future__ import annotations

import difflib
import math
import numbers
import pickle
import re
import reprlib
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import Any, TypeVar

__all__ = ["compare", "short_repr"]

_T = TypeVar("_T")
_D = TypeVar("_D")

_TEXT_LIMIT = 160  # characters of a "text" or "details" line
_ITEM_CAP = 10_000  # items of a container (or lines of a text) compared
_MAX_DEPTH = 2  # levels of nested summaries (examples) below the top value
_CHUNK = 1 << 20  # array elements compared at a time
_TEXT_CHARS = 2_000_000  # characters of a text split into lines
_DIFF_LINES = 12  # lines of unified diff in a text's details
_TIMES = "\N{MULTIPLICATION SIGN}"  # as in "DataFrame 1000 rows by 4 columns"

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 2, 80, 80, 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = _repr.maxfrozenset = 6


def short_repr(value: Any, limit: int = 60) -> str:
    """A one-line repr of value of at most limit characters, even when repr raises or is huge."""
    try:
        text = re.sub(r"\s+", " ", _repr.repr(value))
    except Exception:
        text = f"<{_type_name(value)} object>"
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def compare(a: Any, b: Any, *, max_items: int = 10) -> dict[str, Any]:
    """How value b differs from value a, as a JSON-serializable dict (json.dumps must work on it,
    no NaN/inf floats: write them as the strings "nan", "inf", "-inf").

    Always has "kind", "same", "text" (one line) and "details" (a list of lines), plus fields
    that depend on the kind; at most max_items examples are listed per container."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _compare(a, b, 0, max(max_items, 0))
    except Exception as exc:  # a last resort: a summary must never break `nbflow diff`
        result = _result("object", a is b, f"{_type_name(a)}: could not compare ({type(exc).__name__})",
                         [short_repr(exc, _TEXT_LIMIT)])
    return dict(_jsonable(result))


# --- dispatch -------------------------------------------------------------------------------------


def _kind(x: Any) -> str:
    np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
    if x is None:
        return "none"
    if isinstance(x, bool) or (np is not None and isinstance(x, np.bool_)):
        return "bool"
    if isinstance(x, numbers.Real):
        return "number"
    if isinstance(x, str):
        return "text"
    if isinstance(x, bytes | bytearray):
        return "bytes"
    if np is not None and isinstance(x, np.ndarray | np.generic):
        return "array"
    if pd is not None and isinstance(x, pd.DataFrame):
        return "frame"
    if pd is not None and isinstance(x, pd.Series):
        return "series"
    if isinstance(x, Mapping):
        return "mapping"
    if isinstance(x, list | tuple):
        return "sequence"
    if isinstance(x, set | frozenset):
        return "set"
    return "object"


def _compare(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    kind = _kind(a)
    ta, tb = _type_name(a, qualified=False), _type_name(b, qualified=False)
    if ta == tb and type(a) is not type(b):  # e.g. bool and numpy.bool
        ta, tb = (f"{type(x).__module__}.{type(x).__qualname__}" for x in (a, b))
    if kind != _kind(b) or (kind == "object" and type(a) is not type(b)):
        return _result("type", False, f"{ta} → {tb}", [f"a: {short_repr(a)}", f"b: {short_repr(b)}"],
                       type={"a": ta, "b": tb}, repr={"a": short_repr(a), "b": short_repr(b)})
    result = _COMPARERS[kind](a, b, depth, max_items)
    if type(a) is not type(b):  # e.g. int and float, list and tuple: equal values still differ
        inner = "equal values" if result["same"] else result["text"]
        result.update(same=False, text=_clip(f"{ta} → {tb}: {inner}"), type={"a": ta, "b": tb})
    return result


def _result(kind: str, same: bool, text: str, details: list[str] | None = None,
            **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "same": bool(same), "text": _clip(text),
            "details": [_clip(line) for line in details or []], **fields}


def _nested(a: Any, b: Any, depth: int, max_items: int) -> str:
    """The one-line summary of a nested pair of values (callers stop at _MAX_DEPTH)."""
    return str(_compare(a, b, depth, max_items)["text"])


# --- scalars --------------------------------------------------------------------------------------


def _compare_none(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    return _result("none", True, "None (same)")


def _compare_bool(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    a, b = bool(a), bool(b)
    return _result("bool", a == b, f"{a} (same)" if a == b else f"{a} → {b}", a=a, b=b)


def _compare_number(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    a, b = _plain(a), _plain(b)
    same = a == b or (_is_nan(a) and _is_nan(b))
    delta: int | float | None = None
    relative: float | None = None
    try:
        delta = b - a
        relative = None if a == 0 else delta / abs(a)
    except (ArithmeticError, ValueError):  # ints too large for a float
        pass
    if same:
        text = f"{_fmt(a)} (same)"
    else:
        change = [] if delta is None or _is_nan(delta) else [_fmt(delta, sign=True)]
        if relative is not None and math.isfinite(relative):
            change.append(_fmt(relative * 100, sign=True, digits=2 if abs(relative) < 1 else 6) + "%")
        text = f"{_fmt(a)} → {_fmt(b)}" + (f" ({', '.join(change)})" if change else "")
    return _result("number", same, text, a=a, b=b, delta=delta, relative=relative)


def _compare_text(a: str, b: str, depth: int, max_items: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"length": {"a": len(a), "b": len(b)}, "lines_changed": 0}
    if a == b:
        return _result("text", True, f"str of {len(a):,} chars (same)", **fields)
    lines_a, lines_b = a[:_TEXT_CHARS].splitlines(True), b[:_TEXT_CHARS].splitlines(True)
    capped = max(len(a), len(b)) > _TEXT_CHARS or max(len(lines_a), len(lines_b)) > _ITEM_CAP
    lines_a, lines_b = lines_a[:_ITEM_CAP], lines_b[:_ITEM_CAP]
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b)
    fields["lines_changed"] = changed = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2
                                            in matcher.get_opcodes() if tag != "equal")
    if max(len(a), len(b)) <= 70 and "\n" not in a and "\n" not in b:
        text = f"{short_repr(a, 75)} → {short_repr(b, 75)}"
    else:
        text = f"str of {len(a):,} → {len(b):,} chars: {changed:,} line{_s(changed)} changed"
        text += f" (first {_ITEM_CAP:,} lines compared)" if capped else ""
    details: list[str] = []
    for group in matcher.get_grouped_opcodes(1):
        details.append(f"@@ -{group[0][1] + 1} +{group[0][3] + 1} @@")
        for tag, i1, i2, j1, j2 in group:
            marks = [(" ", lines_a[i1:i2])] if tag == "equal" else [("-", lines_a[i1:i2]),
                                                                    ("+", lines_b[j1:j2])]
            details += [mark + line.rstrip("\r\n") for mark, lines in marks for line in lines]
    return _result("text", False, text, details[:_DIFF_LINES], **fields)


def _compare_bytes(a: bytes, b: bytes, depth: int, max_items: int) -> dict[str, Any]:
    first, n = None, min(len(a), len(b))
    for start in range(0, n, 1 << 16):  # compare in C, then locate
        end = min(start + (1 << 16), n)
        if a[start:end] != b[start:end]:
            first = next(i for i in range(start, end) if a[i] != b[i])
            break
    if first is None and len(a) != len(b):
        first = min(len(a), len(b))
    fields: dict[str, Any] = {"length": {"a": len(a), "b": len(b)}, "first_difference": first}
    if first is None:
        return _result("bytes", True, f"bytes of {len(a):,} (same)", **fields)
    details = [f"{side} at {first}: {bytes(v[first:first + 16]).hex(' ') or '(end)'}"
               for side, v in (("a", a), ("b", b))]
    return _result("bytes", False, f"bytes of {len(a):,} → {len(b):,}: first difference at offset "
                   f"{first:,}", details, **fields)


# --- containers -----------------------------------------------------------------------------------


def _compare_sequence(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    n = min(len(a), len(b))
    changed_at = [i for i in range(min(n, _ITEM_CAP)) if not _same(a[i], b[i])]
    capped = n > _ITEM_CAP
    same = len(a) == len(b) and not changed_at and (not capped or _same(a[_ITEM_CAP:], b[_ITEM_CAP:]))
    examples = [{"index": i, "text": _nested(a[i], b[i], depth + 1, max_items)}
                for i in changed_at[:max_items]] if depth < _MAX_DEPTH else []
    added, removed = max(len(b) - len(a), 0), max(len(a) - len(b), 0)
    head = _sized(a, b, "item")
    parts = [f"{count:,} {what}" for count, what in ((added, "added"), (removed, "removed"),
                                                      (len(changed_at), "changed")) if count]
    text = f"{head}: same" if same else f"{head}: {', '.join(parts) or 'items differ'}"
    text += f" (first {_ITEM_CAP:,} items compared)" if capped else ""
    return _result("sequence", same, text, [f"[{e['index']}] {e['text']}" for e in examples],
                   length={"a": len(a), "b": len(b)}, changed=len(changed_at), added=added,
                   removed=removed, examples=examples)


def _compare_mapping(a: Mapping[Any, Any], b: Mapping[Any, Any], depth: int,
                     max_items: int) -> dict[str, Any]:
    added = [k for k in b if k not in a]
    removed = [k for k in a if k not in b]
    common = [k for k in a if k in b]
    changed = [k for k in common[:_ITEM_CAP] if not _same(a[k], b[k])]
    capped = len(common) > _ITEM_CAP
    examples = [{"key": short_repr(k), "text": _nested(a[k], b[k], depth + 1, max_items)}
                for k in changed[:max_items]] if depth < _MAX_DEPTH else []
    same = not (added or removed or changed) and (
        not capped or all(_same(a[k], b[k]) for k in common[_ITEM_CAP:]))
    head = _sized(a, b, "key")
    parts = [f"{len(keys):,} {what} ({_names(keys)})" for keys, what in (
        (added, "added"), (removed, "removed"), (changed, "changed")) if keys]
    text = f"{head}: same" if same else f"{head}: {'; '.join(parts) or 'values differ'}"
    text += f" (first {_ITEM_CAP:,} keys compared)" if capped else ""
    return _result("mapping", same, text, [f"{e['key']}: {e['text']}" for e in examples],
                   length={"a": len(a), "b": len(b)},
                   added=[short_repr(k) for k in added[:max_items]], added_count=len(added),
                   removed=[short_repr(k) for k in removed[:max_items]], removed_count=len(removed),
                   changed=[short_repr(k) for k in changed[:max_items]], changed_count=len(changed),
                   examples=examples)


def _compare_set(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    added, removed = b - a, a - b
    shown_added, shown_removed = _some(added, max_items), _some(removed, max_items)
    head = _sized(a, b, "item")
    parts = [f"{len(s):,} {what}" for s, what in ((added, "added"), (removed, "removed")) if s]
    details = [f"{what}: {', '.join(shown)}" for shown, what in ((shown_added, "added"),
                                                                  (shown_removed, "removed")) if shown]
    return _result("set", not parts, f"{head}: {', '.join(parts) or 'same'}", details,
                   length={"a": len(a), "b": len(b)}, added=shown_added, added_count=len(added),
                   removed=shown_removed, removed_count=len(removed))


# --- numpy ----------------------------------------------------------------------------------------


def _blocks(*arrays: Any) -> Iterator[tuple[Any, ...]]:
    """Views of equally shaped arrays, each of at most about _CHUNK elements."""
    first = arrays[0]
    if first.ndim == 0 or first.size <= _CHUNK:
        yield arrays
    elif first.ndim == 1:
        for i in range(0, len(first), _CHUNK):
            yield tuple(x[i:i + _CHUNK] for x in arrays)
    else:
        rows = max(_CHUNK // (first.size // first.shape[0]), 1)
        for i in range(0, first.shape[0], rows):
            if rows == 1:
                yield from _blocks(*(x[i] for x in arrays))
            else:
                yield tuple(x[i:i + rows] for x in arrays)


def _missing(x: Any) -> Any:
    np = sys.modules["numpy"]
    return np.isnan(x) if x.dtype.kind in "fc" else np.isnat(x) if x.dtype.kind in "mM" else None


def _array_changes(a: Any, b: Any) -> tuple[int | None, float | None]:
    """Elements that differ between equally shaped arrays (NaN equal to NaN), and the largest
    |b - a| over them for numeric arrays; (None, None) when the elements cannot be compared."""
    np = sys.modules["numpy"]
    a, b = np.asarray(a), np.asarray(b)  # subclasses (np.matrix) do not slice down to rows
    numeric = a.dtype.kind in "iuf" and b.dtype.kind in "iuf"
    changed, largest = 0, None
    try:
        with np.errstate(all="ignore"):
            for xa, xb in _blocks(a, b):
                ne = np.asarray(xa != xb, dtype=bool)
                if ne.shape != xa.shape:
                    return None, None
                na, nb = _missing(xa), _missing(xb)
                if na is not None and nb is not None:
                    ne &= ~(na & nb)
                count = int(np.count_nonzero(ne))
                changed += count
                if numeric and count:
                    diff = np.abs(np.subtract(xa[ne], xb[ne], dtype=np.float64))
                    diff = diff[~np.isnan(diff)]
                    if diff.size:
                        largest = max(largest or 0.0, float(diff.max()))
    except Exception:
        return None, None
    return changed, 0.0 if numeric and not changed else largest


def _array_stats(x: Any) -> dict[str, Any]:
    """min, max, mean, std and NaN count of a numeric array, in one chunked pass."""
    np = sys.modules["numpy"]
    n, mean, m2, nan, low, high = 0, 0.0, 0.0, 0, None, None
    with np.errstate(all="ignore"):
        for (block,) in _blocks(x):
            v = block.reshape(-1)
            if v.dtype.kind == "f":
                missing = np.isnan(v)
                nan += int(np.count_nonzero(missing))
                v = v[~missing]
            if not v.size:
                continue
            low = v.min() if low is None else min(low, v.min())
            high = v.max() if high is None else max(high, v.max())
            # merge this block's mean and sum of squared deviations into the running ones (Chan)
            f = v.astype(np.float64)
            block_mean = float(f.mean())
            delta, total = block_mean - mean, n + v.size
            m2 += float(((f - block_mean) ** 2).sum()) + delta * delta * n * v.size / total
            mean += delta * v.size / total
            n = total
    return {"min": _plain(low), "max": _plain(high), "mean": mean if n else None,
            "std": math.sqrt(m2 / n) if n else None, "nan": nan}


def _compare_array(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    np = sys.modules["numpy"]
    a, b = np.asarray(a), np.asarray(b)
    same_shape = a.shape == b.shape
    changed, largest = _array_changes(a, b) if same_shape else (None, None)
    if changed is None and same_shape:
        same = bool(_object_equal(a, b))
    else:
        same = same_shape and a.dtype == b.dtype and changed == 0
    stats = {side: _array_stats(x) for side, x in (("a", a), ("b", b)) if x.dtype.kind in "iuf"}
    dtype = str(a.dtype) if a.dtype == b.dtype else f"{a.dtype} → {b.dtype}"
    shape = str(a.shape) if same_shape else f"{a.shape} → {b.shape}"
    text = f"{dtype} array {shape}"
    if same:
        text += ": same"
    elif changed is not None:
        text += f": {changed:,} of {a.size:,} elements differ" if changed else ": equal values"
        text += f", max |Δ| {_fmt(largest)}" if changed and largest is not None else ""
    if len(stats) == 2 and not same and stats["a"]["mean"] != stats["b"]["mean"]:
        text += f"; mean {_fmt(stats['a']['mean'])} → {_fmt(stats['b']['mean'])}"
    return _result("array", same, text, [f"{side}: {_stats_line(s)}" for side, s in stats.items()],
                   shape={"a": list(a.shape), "b": list(b.shape)},
                   dtype={"a": str(a.dtype), "b": str(b.dtype)}, changed=changed,
                   max_abs_diff=largest if same_shape else None, stats=stats or None)


# --- pandas ---------------------------------------------------------------------------------------


def _align_rows(a: Any, b: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Positions of a's and b's rows to compare pairwise (None: all), and the index fields:
    rows are matched by label when both indexes are unique, else by position."""
    index_changed = not _guard(lambda: bool(a.index.equals(b.index)), False)
    info: dict[str, Any] = {"index_changed": index_changed, "aligned": "index",
                            "rows_added": 0, "rows_removed": 0}
    if not index_changed:
        return None, None, info
    if a.index.is_unique and b.index.is_unique:
        common = a.index.intersection(b.index, sort=False)
        info.update(rows_added=len(b) - len(common), rows_removed=len(a) - len(common))
        return a.index.get_indexer(common), b.index.get_indexer(common), info
    info.update(aligned="position", rows_added=max(len(b) - len(a), 0),
                rows_removed=max(len(a) - len(b), 0))
    rows = slice(0, min(len(a), len(b)))
    return rows, rows, info


def _numeric_values(s: Any) -> Any:
    """A Series' values as a numeric numpy array, or None when it is not numeric."""
    np, types = sys.modules["numpy"], sys.modules["pandas"].api.types
    if isinstance(s.dtype, np.dtype):
        return s.to_numpy() if s.dtype.kind in "iuf" else None
    if types.is_numeric_dtype(s.dtype) and not types.is_bool_dtype(s.dtype):
        return _guard(lambda: s.to_numpy(dtype="float64", na_value=np.nan), None)
    return None


def _column(sa: Any, sb: Any, rows_a: Any, rows_b: Any) -> dict[str, Any]:
    """rows_changed (None: not comparable) and, for changed numeric columns, stats of two Series."""
    def changes() -> int | None:
        xa = (sa if rows_a is None else sa.iloc[rows_a]).reset_index(drop=True)
        xb = (sb if rows_b is None else sb.iloc[rows_b]).reset_index(drop=True)
        # as they are, as objects (categoricals with other categories), then cell by cell (arrays)
        for left, right in ((xa, xb), (xa.astype(object), xb.astype(object))):
            try:
                ne = (left != right).to_numpy(dtype=bool, na_value=True)
                both_missing = left.isna().to_numpy(dtype=bool) & right.isna().to_numpy(dtype=bool)
                return int((ne & ~both_missing).sum())
            except (TypeError, ValueError):
                continue
        return None if len(xa) > _ITEM_CAP else sum(not _same(x, y) for x, y in zip(xa, xb, strict=True))

    out: dict[str, Any] = {"rows_changed": _guard(changes, None)}
    va, vb = (_numeric_values(sa), _numeric_values(sb)) if out["rows_changed"] != 0 else (None, None)
    if va is not None and vb is not None:
        out["stats"] = {"a": _array_stats(va), "b": _array_stats(vb)}
    return out


def _compare_frame(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    if a.columns.is_unique and b.columns.is_unique:
        pos_a, pos_b = {c: i for i, c in enumerate(a.columns)}, {c: i for i, c in enumerate(b.columns)}
        pairs = [(c, i, pos_b[c]) for c, i in pos_a.items() if c in pos_b]
        added, removed = [c for c in b.columns if c not in pos_a], [c for c in a.columns if c not in pos_b]
    else:  # duplicate labels: columns by position
        pairs = [(a.columns[i], i, i) for i in range(min(a.shape[1], b.shape[1]))]
        added, removed = list(b.columns[a.shape[1]:]), list(a.columns[b.shape[1]:])
    rows_a, rows_b, info = _align_rows(a, b)
    dtype_changes: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for label, i, j in pairs:
        sa, sb = a.iloc[:, i], b.iloc[:, j]
        if sa.dtype != sb.dtype:
            dtype_changes.append({"column": short_repr(label), "a": str(sa.dtype), "b": str(sb.dtype)})
        column = _column(sa, sb, rows_a, rows_b)
        if column["rows_changed"] != 0:
            changed.append({"column": short_repr(label), **column})
    reordered = not (added or removed) and list(a.columns) != list(b.columns)
    same = not (added or removed or dtype_changes or changed or reordered or info["index_changed"])
    parts = [f"column{_s(len(cols))} {_names(cols)} {what}"
             for cols, what in ((added, "added"), (removed, "removed")) if cols]
    parts += ["columns reordered"] if reordered else []
    parts += _row_parts(info)
    if changed:
        parts.append(f"column{_s(len(changed))} " + _names(
            [f"{c['column']} ({_count(c['rows_changed'], 'row', 'not comparable')})" for c in changed],
            quote=False)
            + " changed")
    parts += [f"dtype of {d['column']} {d['a']} → {d['b']}" for d in dtype_changes[:2]]
    shape = f"{a.shape[0]:,}{_TIMES}{a.shape[1]:,}" + (
        f" → {b.shape[0]:,}{_TIMES}{b.shape[1]:,}" if a.shape != b.shape else "")
    text = f"DataFrame {shape}: " + ("same" if same else "; ".join(parts) or "values differ")
    details = [f"{c['column']}: {_changed_rows(c['rows_changed'])}{_stats_change(c.get('stats'))}"
               for c in changed[:max_items]]
    details += [f"dtype of {d['column']}: {d['a']} → {d['b']}" for d in dtype_changes[:max_items]]
    return _result("frame", same, text, details, shape={"a": list(a.shape), "b": list(b.shape)},
                   columns_added=[short_repr(c) for c in added],
                   columns_removed=[short_repr(c) for c in removed],
                   dtype_changes=dtype_changes, changed_columns=changed, **info)


def _compare_series(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    rows_a, rows_b, info = _align_rows(a, b)
    column = _column(a, b, rows_a, rows_b)
    rows_changed, stats = column["rows_changed"], column.get("stats")
    names = {"a": short_repr(a.name), "b": short_repr(b.name)}
    same = (rows_changed == 0 and a.dtype == b.dtype and not info["index_changed"]
            and names["a"] == names["b"])
    head = "Series" + ("" if a.name is None else f" {names['a']}") + f" {a.dtype} ({len(a):,})"
    if a.dtype != b.dtype or len(a) != len(b) or names["a"] != names["b"]:
        renamed = f"{names['b']} " if names["a"] != names["b"] else ""
        head += f" → {renamed}{b.dtype} ({len(b):,})"
    parts = [] if rows_changed == 0 else [_changed_rows(rows_changed)]
    parts += _row_parts(info)
    if stats and stats["a"]["mean"] != stats["b"]["mean"]:
        parts.append(f"mean {_fmt(stats['a']['mean'])} → {_fmt(stats['b']['mean'])}")
    text = f"{head}: " + ("same" if same else ", ".join(parts) or "values differ")
    details = [f"{side}: {_stats_line(s)}" for side, s in (stats or {}).items()]
    return _result("series", same, text, details, shape={"a": [len(a)], "b": [len(b)]},
                   dtype={"a": str(a.dtype), "b": str(b.dtype)}, name=names,
                   rows_changed=rows_changed, stats=stats, **info)


def _row_parts(info: dict[str, Any]) -> list[str]:
    parts = [f"{_count(info[key], 'row')} {what}" for key, what in (("rows_added", "added"),
                                                                   ("rows_removed", "removed")) if info[key]]
    if parts or not info["index_changed"]:
        return parts
    return ["rows reordered" if info["aligned"] == "index" else "index changed"]


# --- other objects --------------------------------------------------------------------------------


def _object_equal(a: Any, b: Any) -> bool | None:
    """a == b when that gives a plain bool (and is not mere identity), else equal pickles;
    None when neither works."""
    if a is b:
        return True
    if getattr(type(a), "__eq__", None) is not object.__eq__:
        outcome = _guard(lambda: a == b, None)
        if isinstance(outcome, bool):
            return outcome
    return _guard(lambda: pickle.dumps(a, protocol=5) == pickle.dumps(b, protocol=5), None)


def _attr_changes(a: Mapping[str, Any], b: Mapping[str, Any], what: str, depth: int,
                  max_items: int) -> tuple[list[str], list[str]]:
    keys = list(a) + [k for k in b if k not in a]
    changed = [k for k in keys[:_ITEM_CAP] if k not in a or k not in b or not _same(a[k], b[k])]
    details = [f"{what} {k}: " + (_nested(a[k], b[k], depth + 1, max_items) if k in a and k in b
                                  else "added" if k in b else "removed") for k in changed[:max_items]]
    return [str(k) for k in changed[:max_items]], details


def _members(x: Any, what: str) -> Mapping[str, Any] | None:
    """x's scikit-learn parameters (what == "param") or attributes; None when it has none."""
    found = _guard(lambda: x.get_params(deep=False) if what == "param" else vars(x), None)
    return found if isinstance(found, Mapping) else None


def _compare_object(a: Any, b: Any, depth: int, max_items: int) -> dict[str, Any]:
    equal, name = _object_equal(a, b), _type_name(a)
    fields: dict[str, Any] = {"type": name, "comparable": equal is not None}
    details: list[str] = []
    if not equal and depth < _MAX_DEPTH:
        for what, field in (("param", "params_changed"), ("attribute", "attributes_changed")):
            va, vb = _members(a, what), _members(b, what)
            if va is not None and vb is not None:
                if what == "attribute":  # parameters are attributes too: report them once
                    va, vb = ({k: v for k, v in m.items() if k not in fields.get("params_changed", ())}
                              for m in (va, vb))
                fields[field], lines = _attr_changes(va, vb, what, depth, max_items)
                details += lines
    status = "same" if equal else "differs" if equal is not None else "cannot compare (no == or pickle)"
    params = fields.get("params_changed")
    text = f"{name}: {status}" + (f" (params {', '.join(params)})" if params else "")
    if not (equal or details):  # an opaque value: its repr is all there is to show
        details = [f"a: {short_repr(a, 150)}", f"b: {short_repr(b, 150)}"]
    return _result("object", bool(equal), text, details[:max_items * 2], **fields)


_COMPARERS: dict[str, Callable[[Any, Any, int, int], dict[str, Any]]] = {
    "none": _compare_none, "bool": _compare_bool, "number": _compare_number, "text": _compare_text,
    "bytes": _compare_bytes, "array": _compare_array, "frame": _compare_frame,
    "series": _compare_series, "sequence": _compare_sequence, "mapping": _compare_mapping,
    "set": _compare_set, "object": _compare_object,
}


# --- helpers --------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Whether two nested values are equal: cheap, with NaN equal to NaN, never raising."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    kind = _kind(a)
    if kind == "number":
        return bool(a == b or (_is_nan(a) and _is_nan(b)))
    if kind == "array":
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        changed = _array_changes(a, b)[0]
        return changed == 0 if changed is not None else bool(_object_equal(a, b))
    if kind in ("frame", "series"):
        return _guard(lambda: bool(a.equals(b)), False)
    return bool(_object_equal(a, b))


def _guard(call: Callable[[], _T], default: _D) -> _T | _D:
    try:
        return call()
    except Exception:
        return default


def _plain(x: Any) -> Any:
    """A number as a Python int or float (None stays None)."""
    if x is None or type(x) in (int, float):
        return x
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def _is_nan(x: Any) -> bool:
    return not isinstance(x, int) and bool(x != x)


def _fmt(x: Any, sign: bool = False, digits: int = 6) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int) and abs(x) < 10**15:
        return f"{x:+,}" if sign else f"{x:,}"
    try:
        return f"{float(x):{'+' if sign else ''}.{digits}g}"
    except OverflowError:
        return f"{'-' if x < 0 else '+' if sign else ''}{x.bit_length() * 0.30103:.0f}-digit int"


def _stats_line(s: Mapping[str, Any]) -> str:
    line = f"min {_fmt(s['min'])}, max {_fmt(s['max'])}, mean {_fmt(s['mean'])}, std {_fmt(s['std'])}"
    return line + (f", {s['nan']:,} NaN" if s["nan"] else "")


def _stats_change(stats: Mapping[str, Any] | None) -> str:
    """"; mean 1 → 2, max 3 → 5": the statistics that differ between stats["a"] and stats["b"]."""
    if not stats:
        return ""
    keys = [k for k in ("mean", "std", "min", "max", "nan") if stats["a"][k] != stats["b"][k]]
    return "".join(f"; {k} {_fmt(stats['a'][k])} → {_fmt(stats['b'][k])}" for k in keys)


def _names(labels: list[Any], limit: int = 3, quote: bool = True) -> str:
    shown = [short_repr(x, 40) if quote else str(x) for x in labels[:limit]]
    return ", ".join(shown) + (f" and {len(labels) - limit:,} more" if len(labels) > limit else "")


def _some(items: Any, limit: int) -> list[str]:
    """Reprs of up to limit items of a set, sorted when they can be."""
    chosen = _guard(lambda: sorted(items), None) if len(items) <= _ITEM_CAP else None
    if chosen is None:
        return sorted(short_repr(x) for x in islice(items, limit))
    return [short_repr(x) for x in chosen[:limit]]


def _sized(a: Any, b: Any, noun: str) -> str:
    """"list of 3 → 4 items": a container's type and sizes."""
    sizes = f"{len(a):,}" + (f" → {len(b):,}" if len(a) != len(b) else "")
    return f"{_type_name(a, qualified=False)} of {sizes} {noun}{_s(len(b))}"


def _count(n: int | None, noun: str, unknown: str = "unknown") -> str:
    return unknown if n is None else f"{n:,} {noun}{_s(n)}"


def _changed_rows(n: int | None) -> str:
    return "rows not comparable" if n is None else f"{_count(n, 'row')} changed"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _clip(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


def _type_name(x: Any, qualified: bool = True) -> str:
    """builtins and numpy/pandas types by name; others as public.module.path.Name."""
    t = type(x)
    module = getattr(t, "__module__", "") or ""
    if not qualified or module in ("builtins", "numpy", "pandas") or module.startswith("pandas."):
        return t.__qualname__
    public = [part for part in module.split(".") if not part.startswith("_")] or [module]
    return ".".join([*public, t.__qualname__])


def _jsonable(x: Any) -> Any:
    """x with NaN/inf as strings, huge ints as text and anything else unknown as a short repr."""
    if x is None or isinstance(x, bool | str):
        return x
    if isinstance(x, numbers.Integral):
        return int(x) if int(x).bit_length() <= 1000 else _fmt(int(x))
    if isinstance(x, numbers.Real):
        f = float(x)
        return f if math.isfinite(f) else str(f)
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return short_repr(x)
