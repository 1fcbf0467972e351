"""Reading a notebook file (nbformat 4 JSON) into code cells, with clear errors for files that are not one.

Also decides what a plain cell's IPython-only lines mean in a headless run: display-only magics are
skipped, anything else is refused up front with the cell and line.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from nbflow.analyze import AnalysisError
from nbflow.graph import Cell, cells_from_notebook
from nbflow.header import python_lines

# Line magics a headless run can skip: they only change how things are displayed or loaded, or
# (`%nbflow run`, `%nbflow runs`) drive nbflow from the notebook, which a run of it must not repeat.
SKIPPED_MAGICS = ("load_ext", "reload_ext", "matplotlib", "config", "autoreload", "aimport", "nbflow")
_MAGIC = re.compile(r"^\s*%(\w+)")


class NotebookError(Exception):
    """The file cannot be read as a Python notebook."""


@dataclass(frozen=True)
class Notebook:
    """A notebook's code cells (or a flow module's, read back as cells: ``nbflow.flowfile``)."""

    path: Path
    cells: list[Cell]
    content_hash: str  # of the code cells' sources: outputs and metadata do not change it
    folder_override: Path | None = None  # where it runs, when not next to ``path``

    @property
    def flow_name(self) -> str:
        return self.path.stem

    @property
    def folder(self) -> Path:
        """Where it runs (working directory and ``sys.path``): the notebook's folder."""
        return self.folder_override or self.path.parent


def load(path: str | Path) -> Notebook:
    """A notebook, or a flow module made by ``nbflow export`` (a ``.py`` file)."""
    path = Path(path)
    if path.suffix == ".py":
        from nbflow import flowfile

        return flowfile.load(path)
    nb = read(path)
    metadata = nb.get("metadata", {})
    language = (metadata.get("kernelspec", {}).get("language")
                or metadata.get("language_info", {}).get("name") or "python")
    if str(language).lower() != "python":
        raise NotebookError(
            f"{path}: this notebook's kernel language is {language!r}; nbflow runs Python "
            "notebooks only. Open it with a Python kernel, or run it with its own kernel's tools."
        )
    cells = cells_from_notebook(nb)
    h = xxhash.xxh3_128()
    for c in cells:
        h.update(c.source.encode())
        h.update(b"\0")
    return Notebook(path=path.resolve(), cells=cells, content_hash=h.hexdigest())


def read(path: str | Path) -> dict[str, Any]:
    """The notebook at ``path`` as nbformat 4 JSON, or a ``NotebookError`` saying what is wrong.

    nbformat 4, what every Jupyter of the last decade writes, is read as it is on disk after a
    check of the structure nbflow relies on (cells, their type, source and tags; the kernel's
    language): importing nbformat costs seconds where jsonschema's format checkers are installed
    (they build grammars at import), and ``nbflow run`` should not pay that for every run. Older
    versions are converted by nbformat.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook file") from None
    except OSError as exc:
        raise NotebookError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    repair = "Open and save it in Jupyter to repair it, or restore it from version control."
    if not data.strip():
        raise NotebookError(f"{path}: not a notebook: the file is empty. {repair}")
    try:
        text = data.decode("utf-8-sig")  # a byte order mark is harmless
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise NotebookError(
            f"{path}: not a notebook: it is not UTF-8 text (byte 0x{data[exc.start]:02x} at line "
            f"{line}, column {column}); notebooks are UTF-8 JSON. If it is a notebook in another "
            "encoding, re-save it as UTF-8; else restore it from version control."
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{path}: not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno} "
            f"({exc.msg}). Open it in Jupyter to repair it, or restore it from version control."
        ) from None
    except RecursionError:
        raise NotebookError(f"{path}: not a notebook: JSON nested too deeply. {repair}") from None
    problem = _structure_problem(raw)
    if problem:
        raise NotebookError(f"{path}: not a valid notebook: {problem}. {repair}")
    if raw.get("nbformat") == 4:
        return dict(raw)
    try:
        import nbformat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat's notes on missing cell ids and the like
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
    except Exception as exc:  # nbformat raises many types (ValidationError, AssertionError, ...)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        version = "nbformat 3, not convertible to 4" if raw.get("nbformat") == 3 else "nbformat 4"
        raise NotebookError(
            f"{path}: not a valid notebook ({version}): {message[:300]}. {repair}"
        ) from None
    converted: dict[str, Any] = json.loads(json.dumps(nb))
    problem = _structure_problem(converted)
    if problem:
        raise NotebookError(f"{path}: not a valid notebook: {problem}. {repair}")
    return converted


def _structure_problem(raw: object) -> str | None:
    """What makes parsed JSON not an nbformat 4 notebook (checked before nbformat, whose own
    errors on such input are Python errors), or None. nbformat 3 is left to nbformat to convert."""
    if not isinstance(raw, dict):
        return f"the JSON is {_a(raw)}, not an object with \"cells\", \"metadata\" and \"nbformat\""
    version = raw.get("nbformat")
    if version == 3:
        return None
    if "nbformat" in raw and version != 4:
        return (f"nbformat version {version!r} is not supported (nbflow reads nbformat 4, and "
                "converts 3); save it with a Jupyter that writes nbformat 4")
    if not isinstance(raw.get("nbformat_minor", 0), int):
        return f"\"nbformat_minor\" is {raw['nbformat_minor']!r}, not a whole number"
    if "cells" not in raw:
        return "it has no \"cells\" list"
    if not isinstance(raw["cells"], list):
        return f"\"cells\" is {_a(raw['cells'])}, not a list"
    if not isinstance(raw.get("metadata", {}), dict):
        return f"\"metadata\" is {_a(raw['metadata'])}, not an object"
    for key in ("kernelspec", "language_info"):
        if not isinstance(raw.get("metadata", {}).get(key, {}), dict):
            return f"\"metadata.{key}\" is {_a(raw['metadata'][key])}, not an object"
    for number, cell in enumerate(raw["cells"], start=1):
        if not isinstance(cell, dict):
            return f"cell {number} is {_a(cell)}, not an object"
        if not isinstance(cell.get("cell_type"), str):
            return f"cell {number} has no \"cell_type\" (code, markdown or raw)"
        source = cell.get("source")
        if "source" not in cell:
            return f"cell {number} has no \"source\""
        if isinstance(source, list):
            bad = next((s for s in source if not isinstance(s, str)), "")
            if not isinstance(bad, str):
                return f"cell {number}'s \"source\" list holds {_a(bad)}, not only lines of text"
        elif not isinstance(source, str):
            return f"cell {number}'s \"source\" is {_a(source)}, not text or a list of lines"
    return None


def _a(value: object) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value))
    return kind or f"a number ({value!r})"[:60]


def headless_source(cell: Cell, magic_lines: tuple[tuple[int, str], ...]) -> str:
    """A plain cell's source runnable as Python: skippable magics blanked, others refused."""
    lines = python_lines(cell.source)
    for number, text in magic_lines:
        m = _MAGIC.match(text)
        if m and m.group(1) in SKIPPED_MAGICS:
            original = lines[number - 1]
            indent = original[: len(original) - len(original.lstrip())]
            lines[number - 1] = f"{indent}pass"
            continue
        raise AnalysisError(
            f"{text.strip()!r} is IPython syntax that a headless run cannot execute",
            cell=cell.number, line=number,
            hint="do it in Python (e.g. subprocess.run for a shell command), or move it out of "
            f"the flow; headless runs skip only these magics: {', '.join(SKIPPED_MAGICS)}",
        )
    return "\n".join(lines)
