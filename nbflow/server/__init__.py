"""nbflow's Jupyter server extension: the REST API under ``/nbflow/api/`` that the JupyterLab
sidebar reads. The only package that imports jupyter_server; enabled on install by
``jupyter-config/jupyter_server_config.d/nbflow.json``.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbflow.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from nbflow.server.handlers import setup_handlers

    setup_handlers(serverapp.web_app, root_dir=serverapp.root_dir)
    serverapp.log.info("nbflow: REST API at %snbflow/api/", serverapp.base_url)
