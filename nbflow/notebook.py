"""Reading a notebook file (nbformat) into code cells, with clear errors for files that are not one.

Also decides what a plain cell's IPython-only lines mean in a headless run: display-only magics are
skipped, anything else is refused up front with the cell and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import xxhash

from nbflow.analyze import AnalysisError
from nbflow.graph import Cell, cells_from_notebook

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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookError(f"{path}: cannot read it: {exc}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{path}: not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno} "
            f"({exc.msg}). Open it in Jupyter to repair it, or restore it from version control."
        ) from None
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except (nbformat.ValidationError, KeyError, TypeError, AttributeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotebookError(
            f"{path}: not a valid notebook (nbformat 4): {message}. Open and save it in Jupyter "
            "to repair it."
        ) from None
    language = (nb.metadata.get("kernelspec", {}).get("language")
                or nb.metadata.get("language_info", {}).get("name") or "python")
    if str(language).lower() != "python":
        raise NotebookError(
            f"{path}: this notebook's kernel language is {language!r}; nbflow runs Python "
            "notebooks only."
        )
    cells = cells_from_notebook(nb)
    h = xxhash.xxh3_128()
    for c in cells:
        h.update(c.source.encode())
        h.update(b"\0")
    return Notebook(path=path.resolve(), cells=cells, content_hash=h.hexdigest())


def headless_source(cell: Cell, magic_lines: tuple[tuple[int, str], ...]) -> str:
    """A plain cell's source runnable as Python: skippable magics blanked, others refused."""
    lines = cell.source.splitlines()
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
