"""nbflow's settings, read through Dask's config system under the ``nbflow:`` key.

Defaults ship in ``nbflow/nbflow.yaml``; users override them in ``~/.config/dask/*.yaml`` or with
``DASK_NBFLOW__…`` environment variables, exactly like any other Dask setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.config
import yaml

_DEFAULTS = Path(__file__).with_name("nbflow.yaml")


def _register() -> None:
    with _DEFAULTS.open() as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)


_register()


def get(key: str, default: Any = None) -> Any:
    """``nbflow.<key>`` from Dask's config (``get("cluster.address")``)."""
    return dask.config.get(f"nbflow.{key}", default=default)


def set(**values: Any) -> Any:
    """Context manager / setter for ``nbflow.*`` keys: ``config.set(store="memory://x")``."""
    return dask.config.set({f"nbflow.{k.replace('_', '-')}": v for k, v in values.items()})


def find_store_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest ``.nbflow`` folder at or above ``start`` (like ``.git``), else ``start/.nbflow``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".nbflow"
        if candidate.is_dir():
            return candidate
    return here / ".nbflow"
