"""The Jupyter server the UI tests run against (`jupyter lab --config jupyter_server_test_config.py`).

Galata's standard test configuration (port 8888, no token, no XSRF check, the app exposed to the
page, Galata's helper extension): never use it for anything but tests. Its root folder is a fresh
temporary folder (or $JUPYTERLAB_GALATA_ROOT_DIR); each test works in its own subfolder there, so
each test's notebook gets its own `.nbflow/` store next to it.
"""

from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # type: ignore[name-defined]  # noqa: F821

# nbflow (the kernel, and the server extension the sidebar reads) uses the nearest `.nbflow/`
# above a notebook's folder, like `.git`: a stray one above the test root would collect every
# test's runs. Refuse to start rather than mix them.
_root = Path(c.ServerApp.root_dir).resolve()  # type: ignore[name-defined]  # noqa: F821
for _folder in (_root, *_root.parents):
    if (_folder / ".nbflow").is_dir():
        raise SystemExit(
            f"ui-tests: {_folder / '.nbflow'} exists above the test root {_root}; nbflow would "
            "record the tests' runs there. Remove it, or set JUPYTERLAB_GALATA_ROOT_DIR elsewhere."
        )

# Kernels are shut down with the server; don't ask.
c.ServerApp.shutdown_no_activity_timeout = 0  # type: ignore[name-defined]  # noqa: F821
c.LabApp.news_url = None  # type: ignore[name-defined]  # noqa: F821
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"  # type: ignore[name-defined]  # noqa: F821
