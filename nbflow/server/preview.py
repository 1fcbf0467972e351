"""Artifact previews for the sidebar: small, safe to show, never the whole value.

A preview is ``{"kind": "html" | "text" | "image", ...}``: HTML only from producers that escape
what they render (pandas' ``to_html``), text always as plain text (the client shows it as text, and
the server never builds HTML around it), images as base64 PNG. Values larger than
``MAX_LOAD`` are not loaded at all.
"""

from __future__ import annotations

import base64
import io
from typing import Any

MAX_LOAD = 64 << 20  # bytes of serialized artifact we are willing to load for a preview
MAX_TEXT = 20_000
ROWS = 20


def preview(value: Any) -> dict[str, Any]:
    image = _image(value)
    if image is not None:
        return {"kind": "image", "mimetype": "image/png", "data": image}
    to_html = getattr(value, "to_html", None)
    if callable(to_html) and type(value).__module__.startswith("pandas"):
        head = value.head(ROWS) if hasattr(value, "head") else value
        html = head.to_html(escape=True, max_cols=20) if hasattr(head, "columns") else None
        if html is not None:
            return {"kind": "html", "html": html, "shape": list(getattr(value, "shape", []))}
    return {"kind": "text", "text": _text(value)}


def _text(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the sidebar
        text = f"<{type(value).__name__}: repr() failed: {exc}>"
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n… ({len(text):,} characters)"
    return text


def _image(value: Any) -> str | None:
    """A PNG of image-like values: matplotlib figures, PIL images, uint8 image arrays."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    buf = io.BytesIO()
    try:
        if kind.startswith("matplotlib.figure."):
            value.savefig(buf, format="png", dpi=72)
        elif kind.startswith("PIL."):
            value.save(buf, format="PNG")
        elif kind == "numpy.ndarray" and str(value.dtype) == "uint8" and (
                value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (3, 4))) \
                and max(value.shape[:2]) <= 4096:
            from PIL import Image  # Pillow, when installed; else the array shows as text

            Image.fromarray(value).save(buf, format="PNG")
        else:
            return None
    except Exception:
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")
