"""The wheel alone installs everything: built here, installed into a fresh virtual environment
without Node on its PATH, it brings the prebuilt JupyterLab extension and enables the server
extension — users never need Node."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900,
                          **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


def test_the_wheel_ships_the_prebuilt_lab_extension(tmp_path) -> None:
    package = json.loads((REPO / "labextension" / "package.json").read_text())["name"]
    built = REPO / "nbflow" / "labextension" / "package.json"
    assert built.is_file(), "build the extension first (`pip install -e .` runs the build hook)"
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(REPO)])
    (wheel,) = wheels.glob("nbflow-*.whl")
    listing = run([sys.executable, "-m", "zipfile", "-l", str(wheel)]).stdout
    assert f"share/jupyter/labextensions/{package}/package.json" in listing
    assert "etc/jupyter/jupyter_server_config.d/nbflow.json" in listing
    assert "node_modules" not in listing

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    bin_dir = venv / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         str(wheel)])
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "LANG": os.environ.get("LANG", "C.UTF-8")}
    assert shutil.which("node", path=env["PATH"]) is None  # no Node where the user runs it
    labs = run([str(bin_dir / "jupyter"), "labextension", "list"], env=env)
    text = plain(labs.stdout + labs.stderr)
    line = next((x for x in text.splitlines() if package in x), "")
    assert "enabled" in line and "OK" in line, text
    assert str(venv) in text  # found in the new environment, not elsewhere
    servers = run([str(bin_dir / "jupyter"), "server", "extension", "list"], env=env)
    listed = plain(servers.stdout + servers.stderr)
    assert "nbflow.server enabled" in " ".join(listed.split()), listed


def plain(text: str) -> str:
    """Without the colour codes jupyter's listings use."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
