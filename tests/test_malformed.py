"""A corpus of malformed notebooks (tests/malformed/) through the real `nbflow` command: each is
refused with exit code 2 and one `nbflow: error:` line naming the file and what is wrong, no
traceback, and no run recorded in (or other change to) an existing store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_notebook

from nbflow.store import open_store

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "malformed"

# file -> what the one error line must say (besides the file's name)
MALFORMED: dict[str, list[str]] = {
    "invalid_json.ipynb": ["invalid JSON at line 1, column 34", "restore it from version control"],
    "truncated.ipynb": ["invalid JSON at line 11"],
    "huge_single_line.ipynb": ["invalid JSON at line 1, column 12"],
    "empty.ipynb": ["the file is empty"],
    "whitespace_only.ipynb": ["the file is empty"],
    "binary.ipynb": ["not UTF-8 text (byte 0x89 at line 1, column 1)"],
    "utf16.ipynb": ["not UTF-8 text (byte 0xff at line 1, column 1)"],
    "non_utf8.ipynb": ["not UTF-8 text (byte 0xe9 at line 1, column 121)", "re-save it as UTF-8"],
    "a_list.ipynb": ["the JSON is a list, not an object"],
    "a_string.ipynb": ["the JSON is a string, not an object"],
    "object_without_cells.ipynb": ['it has no "cells" list'],
    "not_a_notebook_object.ipynb": ['it has no "cells" list'],
    "cells_not_a_list.ipynb": ['"cells" is an object, not a list'],
    "cell_without_cell_type.ipynb": ['cell 1 has no "cell_type"'],
    "cell_without_source.ipynb": ['cell 1 has no "source"'],
    "source_is_a_number.ipynb": ['cell 1\'s "source" is a number (42)'],
    "source_list_with_a_number.ipynb": ['cell 1\'s "source" list holds a number (2)'],
    "nbformat_3_broken.ipynb": ["nbformat 3, not convertible to 4"],
    "nbformat_5.ipynb": ["nbformat version 5 is not supported"],
    "nbformat_4_bad_minor.ipynb": ['"nbformat_minor" is \'five\''],
    "metadata_not_an_object.ipynb": ['"metadata" is a list, not an object'],
    "kernelspec_not_an_object.ipynb": ['"metadata.kernelspec" is a string, not an object'],
    "kernel_r.ipynb": ["kernel language is 'R'", "Python notebooks only"],
    "kernel_julia.ipynb": ["kernel language is 'julia'"],
    "language_info_only_scala.ipynb": ["kernel language is 'scala'"],
}
FINE = ["bom.ipynb", "markdown_step.ipynb"]
# Made by the tests rather than committed: 3 MB of one line.
GENERATED = {"huge_single_line.ipynb": '{"cells": [' + "x" * 3_000_000 + "]}"}


def corpus(name: str, tmp_path: Path) -> Path:
    """The corpus file ``name`` (a generated one is written to ``tmp_path``)."""
    if name in GENERATED:
        path = tmp_path / name
        path.write_text(GENERATED[name], encoding="utf-8")
        return path
    return CORPUS / name


def nbflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ})


def test_the_corpus_is_complete() -> None:
    assert sorted([p.name for p in CORPUS.iterdir()] + list(GENERATED)) == sorted(
        [*MALFORMED, *FINE])


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, dask_client) -> tuple[str, list[str]]:
    """A store with one succeeded run, and its file listing."""
    from nbflow.execute import Executor
    from nbflow.runner import run_notebook

    folder = tmp_path_factory.mktemp("history")
    store = open_store(str(folder / "store"))
    nb = write_notebook(folder / "good.ipynb", ["%%step ok\nv = 1"])
    run_notebook(nb, store=store, executor=Executor(dask_client, "existing"))
    store.close()
    return str(folder / "store"), sorted(str(p) for p in (folder / "store").rglob("*")
                                         if "nbflow.db" not in p.name)


def _check_refused(proc: subprocess.CompletedProcess[str], path: Path, expected: list[str]) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith(f"nbflow: error: {path}: "), line
    for text in expected:
        assert text in line, line
    assert len(line) < 600  # never the file's contents (huge_single_line is 3 MB on one line)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_run_refuses_a_malformed_notebook(tmp_path: Path, history: tuple[str, list[str]],
                                          name: str) -> None:
    store, files = history
    path = corpus(name, tmp_path)
    proc = nbflow("run", str(path), "--store", store, cwd=tmp_path)
    _check_refused(proc, path, MALFORMED[name])
    st = open_store(store)
    try:
        runs = st.meta.runs()
    finally:
        st.close()
    assert [r["flow"] for r in runs] == ["good"] and runs[0]["status"] == "succeeded"
    assert sorted(str(p) for p in Path(store).rglob("*") if "nbflow.db" not in p.name) == files


EXPORT = ["invalid_json.ipynb", "empty.ipynb", "non_utf8.ipynb", "a_list.ipynb",
          "source_is_a_number.ipynb", "nbformat_5.ipynb", "kernel_r.ipynb"]


@pytest.mark.parametrize("name", EXPORT)
def test_export_refuses_a_malformed_notebook(tmp_path: Path, name: str) -> None:
    path = corpus(name, tmp_path)
    proc = nbflow("export", str(path), cwd=tmp_path)
    _check_refused(proc, path, MALFORMED[name])
    assert list(tmp_path.iterdir()) == []  # no flows/ module, no store


@pytest.mark.parametrize(("name", "steps"), [("bom.ipynb", ["a"]),
                                              ("markdown_step.ipynb", ["real"])])
def test_a_bom_and_a_step_in_markdown_are_fine(tmp_path: Path, dask_client, name: str,
                                               steps: list[str]) -> None:
    # A UTF-8 byte order mark is harmless; `%%step` in a Markdown cell is text, not a step.
    store = str(tmp_path / "store")
    proc = nbflow("run", str(CORPUS / name), "--store", store, "--cluster",
                  str(dask_client.scheduler.address), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    st = open_store(store)
    try:
        run = st.meta.runs()[0]
        assert run["status"] == "succeeded"
        assert sorted(t["step"] for t in st.meta.tasks(run["id"])) == steps
    finally:
        st.close()


def test_a_missing_notebook_is_refused(tmp_path: Path) -> None:
    proc = nbflow("export", str(tmp_path / "nope.ipynb"), cwd=tmp_path)
    _check_refused(proc, tmp_path / "nope.ipynb", ["no such notebook file"])
