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
    """A folder on sys.path for modules named fresh_*. The tests' own modules (conftest, this
    one) are local modules too, which dropping forgets: they are put back afterwards."""
    before = dict(sys.modules)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("fresh_")]:
        del sys.modules[name]
    sys.modules.update({n: m for n, m in before.items() if n not in sys.modules})


def fresh(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("fresh_")]


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
    assert not {"yaml", "os", "nbflow", "__main__"} & freshness.local_modules()
    assert fresh(freshness.drop_changed()) == []

    (on_path / "fresh_mod.py").write_text("VALUE = 2\n")
    _touch_later(on_path / "fresh_mod.py")
    # One changed: every local module goes (one may hold the changed one's objects).
    assert fresh(freshness.drop_changed()) == ["fresh_mod", "fresh_pkg", "fresh_pkg.inner"]
    assert "yaml" in sys.modules  # installed packages stay
    assert importlib.import_module("fresh_mod").VALUE == 2
    assert importlib.import_module("fresh_pkg.inner").WORD == "a"
    assert freshness.drop_changed() == []  # recorded as they are now

    (package / "inner.py").write_text("WORD = 'b'\n")
    _touch_later(package / "inner.py")
    assert "fresh_pkg.inner" in freshness.drop_changed()
    assert importlib.import_module("fresh_pkg.inner").WORD == "b"

    importlib.import_module("fresh_mod")
    assert freshness.drop_changed() == []
    (on_path / "fresh_mod.py").unlink()  # a module whose file is gone is dropped too
    assert "fresh_mod" in freshness.drop_changed()
    importlib.import_module("fresh_pkg.inner")
    freshness.drop({"fresh_pkg"})
    assert "fresh_pkg.inner" not in sys.modules
    importlib.import_module("fresh_pkg.inner")
    assert "fresh_pkg.inner" in freshness.drop_all()


def test_an_edit_after_the_import_is_seen_and_drops_the_modules_that_use_it(
        on_path: Path) -> None:
    """As on a worker: a task imports, the worker records after the task, the file changes
    before the next task. A module importing the changed one is dropped with it."""
    (on_path / "fresh_base.py").write_text("VALUE = 1\n")
    (on_path / "fresh_user.py").write_text("from fresh_base import VALUE\n")
    import fresh_user  # type: ignore[import-not-found]

    assert fresh(freshness.drop_changed()) == []  # the end of the task: recorded as imported
    (on_path / "fresh_base.py").write_text("VALUE = 5\n")
    _touch_later(on_path / "fresh_base.py")
    dropped = freshness.drop_changed()  # the start of the next task
    assert {"fresh_base", "fresh_user"} <= set(dropped)
    assert importlib.import_module("fresh_user").VALUE == 5
    assert fresh_user.VALUE == 1  # the old module object, which nothing uses now


def test_a_daemon_serves_one_python_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow import launch

    env = {"HOME": "/root", "PATH": "/usr/bin", "TERM": "xterm"}
    key = launch.environment_key(env)
    assert launch.environment_key({**env, "TERM": "dumb", "COLUMNS": "80"}) == key
    assert launch.environment_key({**env, "PATH": "/opt/bin"}) != key
    monkeypatch.setattr(sys, "prefix", "/some/other/venv")  # a venv shares the base executable
    assert launch.environment_key(env) != key


def test_package_versions_match_importlib_metadata() -> None:
    reference = md.packages_distributions()
    names = [n for n in reference if n.isidentifier() and n not in sys.stdlib_module_names]
    assert len(names) > 20  # this environment has Dask, Jupyter, ...
    for name in names:
        expected = {dist: md.version(dist) for dist in reference[name]}
        assert environment.package_versions([name]) == expected, name
    assert environment.package_versions(["os", "sys", "json"]) == {}
    assert environment.package_versions(["no_such_module_here"]) == {}
