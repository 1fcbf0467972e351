"""The value of a step's last expression, shown as IPython would show it: formatted where it was made.

A step cell that ends in an expression (``df.describe()``) shows its value like an ordinary cell,
with its rich representation (a DataFrame as a table, a figure as an image). The value is formatted
on the worker, by IPython's own ``DisplayFormatter``, into a MIME bundle that is stored with the
task; the kernel only publishes that bundle, so the value itself never travels back, and a cache
hit shows the same output without running anything. As in IPython, a trailing ``;`` or a value of
``None`` shows nothing.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

# A representation larger than this is dropped (text/plain is kept, shortened): a cell output of
# many megabytes makes notebooks unusable, and the value itself is in the store anyway.
MAX_ENTRY = 4 << 20
MAX_TEXT = 100_000


def ends_with_semicolon(code: str) -> bool:
    """IPython's rule: a last line (comments aside) ending in ``;`` suppresses the display."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    for tok in reversed(tokens):
        if tok.type in (tokenize.ENDMARKER, tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT,
                        tokenize.DEDENT, tokenize.INDENT):
            continue
        return tok.type == tokenize.OP and tok.string == ";"
    return False


def split_last_expression(tree: ast.Module, code: str) -> tuple[ast.Module, ast.Expression | None]:
    """The module without its last statement, and that statement as an expression, when the cell
    ends in an expression whose value IPython would display."""
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or ends_with_semicolon(code):
        return tree, None
    last = tree.body[-1]
    body = ast.Module(body=tree.body[:-1], type_ignores=tree.type_ignores)
    return body, ast.Expression(body=last.value)


def format_value(value: Any) -> dict[str, Any] | None:
    """``{"data": {mimetype: ...}, "metadata": {...}}`` for ``value``, as IPython formats it; None
    for ``None``. Never raises: a failing ``_repr_*_`` falls back to ``repr``."""
    if value is None:
        return None
    data: dict[str, Any]
    metadata: dict[str, Any] = {}
    try:
        from IPython.core.formatters import DisplayFormatter

        data, metadata = DisplayFormatter().format(value)
    except Exception:
        data = {}
    if "text/plain" not in data:
        try:
            data["text/plain"] = repr(value)
        except Exception as exc:
            data["text/plain"] = f"<{type(value).__name__}: repr() failed: {exc}>"
    kept = {}
    for mime, content in data.items():
        size = len(content) if isinstance(content, str | bytes) else 0
        if mime == "text/plain" and size > MAX_TEXT:
            kept[mime] = content[:MAX_TEXT] + f"\n… ({size:,} characters; the value is in the store)"
        elif size <= MAX_ENTRY:
            kept[mime] = content
    return {"data": kept, "metadata": {m: v for m, v in metadata.items() if m in kept}}


class Displayed:
    """A formatted bundle that IPython shows as the cell's result (``Out[n]``)."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(self.bundle.get("data") or {}), dict(self.bundle.get("metadata") or {})

    def __repr__(self) -> str:
        return str((self.bundle.get("data") or {}).get("text/plain", ""))
