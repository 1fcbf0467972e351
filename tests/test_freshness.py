"""Long-lived processes see edited local modules (``nbflow.freshness``); package versions are read
the way ``importlib.metadata`` would give them (``nbflow.environment``)."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflow import environment, freshness


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("fresh_")]:
        del sys.modules[name]


def _touch_later(path: Path) -> None:
    later = time.time() + 5
    os.utime(path, (later, later))


def test_an_edited_local_module_is_dropped_and_imported_afresh(on_path: Path) -> None:
    (on_path / "fresh_mod.py").write_text("VALUE = 1\n")
    package = on_path / "fresh_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "inner.py").write_text("WORD = 'a'\n")
    import fresh_mod  # type: ignore[import-not-found]
    import fresh_pkg.inner  # type: ignore[import-not-found]

    assert fresh_mod.VALUE == 1 and fresh_pkg.inner.WORD == "a"
    assert {"fresh_mod", "fresh_pkg", "fresh_pkg.inner"} <= freshness.local_modules()
    assert not {"yaml", "os", "nbflow"} & freshness.local_modules()  # installed, stdlib, nbflow
    assert freshness.drop_changed() == []

    (on_path / "fresh_mod.py").write_text("VALUE = 2\n")
    _touch_later(on_path / "fresh_mod.py")
    assert freshness.drop_changed() == ["fresh_mod"]
    assert "fresh_pkg" in sys.modules  # untouched modules stay
    assert importlib.import_module("fresh_mod").VALUE == 2

    (package / "__init__.py").write_text("# edited\n")
    _touch_later(package / "__init__.py")
    assert freshness.drop_changed() == ["fresh_pkg", "fresh_pkg.inner"]  # with its submodules
    assert importlib.import_module("fresh_pkg.inner").WORD == "a"

    (on_path / "fresh_mod.py").unlink()  # a module whose file is gone is dropped too
    assert freshness.drop_changed() == ["fresh_mod"]
    freshness.drop({"fresh_pkg"})
    assert "fresh_pkg.inner" not in sys.modules


def test_package_versions_match_importlib_metadata() -> None:
    reference = md.packages_distributions()
    names = [n for n in reference if n.isidentifier() and n not in sys.stdlib_module_names]
    assert len(names) > 20  # this environment has Dask, Jupyter, ...
    for name in names:
        expected = {dist: md.version(dist) for dist in reference[name]}
        assert environment.package_versions([name]) == expected, name
    assert environment.package_versions(["os", "sys", "json"]) == {}
    assert environment.package_versions(["no_such_module_here"]) == {}
