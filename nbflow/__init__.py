"""nbflow: a Jupyter notebook as a versioned, parallel, resumable flow on Dask.

The public API is the read-only client over past runs (``Flow``, ``Run``, ``Step``, ``Task``,
``Artifact``) and ``load_ipython_extension`` for ``%load_ext nbflow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Artifact", "Flow", "Run", "Step", "Task", "__version__", "load_ipython_extension"]

if TYPE_CHECKING:
    from nbflow.client import Artifact, Flow, Run, Step, Task


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext nbflow``: registers ``%%step``, ``%%resources`` and ``%nbflow``."""
    from nbflow.magics import load_ipython_extension as load

    load(ip)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension is (``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "nbflow-labextension"}]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import nbflow` on a Dask worker stays cheap.
    if name in ("Artifact", "Flow", "Run", "Step", "Task"):
        from nbflow import client

        return getattr(client, name)
    raise AttributeError(name)
