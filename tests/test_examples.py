"""Every example notebook in notebooks/ executed end to end in a real kernel by nbclient.

The notebooks are copied to a temporary folder (their store and files land there) and run against
the session's LocalCluster. Each test appends one cell that prints, as JSON, what the notebook's
cells bound in the kernel, and asserts on that and on what the cells printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from distributed import Client
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str, tmp_path: Path, dask_client: Client, report: str,
            companions: tuple[str, ...] = ()) -> tuple[list[str], dict[str, Any], Any]:
    """Run notebooks/NAME in tmp_path with a cell appended that prints ``report`` (an expression)
    as JSON; returns each code cell's text output, the report, and the executed notebook."""
    for file in (name, *companions):
        shutil.copy(NOTEBOOKS / file, tmp_path / file)
    nb = nbformat.read(tmp_path / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        f"import json as _json\nprint('REPORT', _json.dumps({report}))"))
    env = {**os.environ,
           "DASK_NBFLOW__CLUSTER__ADDRESS": dask_client.scheduler.address,
           "DASK_NBFLOW__STORE": str(tmp_path / ".nbflow"),
           "JPY_SESSION_NAME": str(tmp_path / name)}
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.outputs:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.data.get("text/plain", ""))
            elif out.output_type == "error":
                parts.append("\n".join(out.traceback))
        texts.append("".join(parts))
    line = next(x for x in texts[-1].splitlines() if x.startswith("REPORT "))
    return texts, json.loads(line.removeprefix("REPORT ")), nb


def test_foreach(tmp_path, dask_client) -> None:
    texts, bound, _ = execute("foreach.ipynb", tmp_path, dask_client,
                              "{'shard_pi': shard_pi, 'pi': pi}")
    assert len(bound["shard_pi"]) == 8 and 3.0 < bound["pi"] < 3.3
    assert "8 shards:" in texts[3]
    assert "from 8 shards of 20000 samples" in texts[4]
    assert texts[4].rstrip().endswith(repr(round(bound["pi"], 2)))  # the displayed last value
    for seed in range(8):
        assert f"shard {seed}: " in texts[2]


def test_resources(tmp_path, dask_client) -> None:
    texts, bound, _ = execute("resources.ipynb", tmp_path, dask_client,
                              "{'n': len(column_sums), 'total': float(column_sums.sum())}")
    assert bound == {"n": 10_000, "total": 10_000_000.0}
    assert "'workers': 2" in texts[1]
    assert "on a worker with at least 1 GB" in texts[2] and "10000000.0" in texts[2]
    assert texts[3].startswith("nbflow: step 'enormous'") and "no worker can ever provide it" in texts[3]
    assert "largest worker" in texts[3] and "Traceback" not in texts[3]
    assert "still here" in texts[4]


def test_caching(tmp_path, dask_client) -> None:
    texts, bound, _ = execute("caching.ipynb", tmp_path, dask_client, "{'squares': squares}")
    first, again, _, changed, forced, _ = texts[2:8]
    assert "computed [0, 2, 8, 18, 32]" in first and "cached" not in first
    assert "step 'slow_square' cached (from run " in again and "computed" not in again
    assert "computed [0, 3, 12, 27, 48]" in changed and "cached" not in changed
    assert "computed [0, 3, 12, 27, 48]" in forced and "cached" not in forced
    assert bound == {"squares": [0, 3, 12, 27, 48]}


def test_big_outputs(tmp_path, dask_client) -> None:
    texts, bound, _ = execute("big_outputs.ipynb", tmp_path, dask_client,
                              "{'type': type(walks).__name__, 'size': walks.size, "
                              "'spread': spread, 'n': n_walks}")
    assert bound["type"] == "ArtifactHandle" and bound["n"] == 400
    assert bound["size"] > 32_000_000 and 50 < bound["spread"] < 150
    assert "'walks' is bigger than nbflow.interactive.max-bind-size" in texts[2]
    assert "walks: numpy.ndarray, 30.52 MiB, left in the store" in texts[3]
    assert "ArtifactHandle 400" in texts[4]
    assert "400 walks, spread of final positions" in texts[5]
    assert "loaded (10000,) float64" in texts[6]


def test_failure_and_resume(tmp_path, dask_client) -> None:
    texts, _, _ = execute("failure_and_resume.ipynb", tmp_path, dask_client, "{}",
                              companions=("failure_and_resume_flow.ipynb",))
    failed, resumed, runs = texts[2], texts[4], texts[5]
    assert "nbflow: histogram failed: ZeroDivisionError: float division by zero" in failed
    assert "step 'histogram': ZeroDivisionError" in failed and "%nbflow resume" in failed
    assert "report" in failed and "cancelled" in failed
    assert "nbflow: prepare cached (from run" in resumed
    assert "histogram: " in resumed and "succeeded (1 cached, 2 succeeded)" in resumed
    assert runs.count("failure_and_resume_flow") == 2
    assert "succeeded" in runs and "failed" in runs


def test_parameters(tmp_path, dask_client) -> None:
    texts, bound, _ = execute("parameters.ipynb", tmp_path, dask_client, "{'n': len(x)}")
    assert bound == {"n": 500}  # the kernel's own values
    fits = re.findall(r"fit on (\d+) points: y = ([\d.]+) x \+ ([\d.]+)", texts[3] + texts[4])
    assert [int(n) for n, _, _ in fits] == [500, 2000]  # the kernel's values, then the override
    assert all(abs(float(a) - 3) < 0.05 and abs(float(b) - 2) < 0.2 for _, a, b in fits)
    assert "[fit] fit on 2000 points" in texts[4] and "succeeded" in texts[4]
    assert "headless {'n_points': 2000, 'noise': 0.5}" in texts[5]
    assert "interactive {}" in texts[5]


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_example_has_its_test(name: str) -> None:
    tested = {"foreach", "resources", "caching", "big_outputs", "failure_and_resume", "parameters"}
    companions = {"failure_and_resume_flow", "quickstart"}  # the flow of one; the CLI's own
    assert Path(name).stem in tested | companions
