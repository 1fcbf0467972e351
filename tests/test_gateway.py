"""nbflow on a real dask-gateway: a ``dask-gateway-server`` (its local backend, which starts
schedulers and workers as processes of this machine, and its own proxy) with worker size options,
and ``nbflow run`` with ``nbflow.cluster.class: dask_gateway.GatewayCluster``.

dask-gateway fixes its workers' size when a cluster is made, so nbflow sizes the cluster's options
for the biggest ``%%resources`` of the run (``nbflow.scaling.gateway.sized_kwargs``), and the
gateway's options handler makes the workers declare that size as Dask resources, as
docs/cluster-managers.md shows. A request over the gateway's limits is refused before anything
runs, naming the option.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_notebook

pytestmark = pytest.mark.timeout(300)

GATEWAY_CONFIG = '''
import sys
from dask_gateway_server.options import Float, Integer, Options

c.DaskGateway.address = "127.0.0.1:{api_port}"
c.Proxy.address = "127.0.0.1:{proxy_port}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.LocalBackend.clusters_directory = {clusters!r}
c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
c.ClusterConfig.idle_timeout = 120


def options_handler(options):
    # As docs/cluster-managers.md: the workers declare their size for %%resources.
    memory = int(options.worker_memory * 2**30)
    return {{
        "worker_cores": options.worker_cores,
        "worker_memory": memory,
        "environment": {{
            "DASK_DISTRIBUTED__WORKER__RESOURCES__MEMORY": str(memory),
            "DASK_DISTRIBUTED__WORKER__RESOURCES__CPUS": str(options.worker_cores),
        }},
    }}


c.Backend.cluster_options = Options(
    Integer("worker_cores", 1, min=1, max=2, label="Worker Cores"),
    Float("worker_memory", 0.5, min=0.25, max=3, label="Worker Memory (GiB)"),
    handler=options_handler,
)
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dask-gateway-server exited:\n{log.read_text()[-3000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"dask-gateway-server did not listen on {port}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dask-gateway-server on loopback; yields its public (proxy) address."""
    folder = tmp_path_factory.mktemp("gateway")
    api_port, proxy_port = _port(), _port()
    config = folder / "dask_gateway_config.py"
    config.write_text(GATEWAY_CONFIG.format(api_port=api_port, proxy_port=proxy_port,
                                            clusters=str(folder / "clusters")))
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f", str(config)],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_listening(api_port, proc, log)
        _wait_listening(proxy_port, proc, log)
        # Clients talk to the proxy: it forwards the REST API to the gateway and the Dask
        # traffic (TLS, routed by SNI) to each cluster's scheduler.
        yield f"http://127.0.0.1:{proxy_port}"
    finally:
        # SIGINT: the gateway stops the clusters it started, then itself.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _nbflow(args: list[str], cwd: Path, gateway: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ,
           "DASK_NBFLOW__CLUSTER__CLASS": "dask_gateway.GatewayCluster",
           "DASK_NBFLOW__CLUSTER__KWARGS": json.dumps({"address": gateway, "auth": "basic"}),
           "DASK_NBFLOW__CLUSTER__SCALE": "1",
           "DASK_GATEWAY__AUTH__TYPE": "basic"}
    env.pop("DASK_NBFLOW__CLUSTER__ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "nbflow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_a_run_on_dask_gateway_gets_workers_sized_for_its_biggest_step(
        gateway: str, tmp_path: Path) -> None:
    # The gateway's default worker (0.5 GiB, 1 core) is too small for `big`: nbflow asks for
    # 2 GiB and 2 cores when it makes the cluster, and every worker declares that.
    write_notebook(tmp_path / "sized.ipynb", [
        "%%step small\nbase = 20",
        "%%resources memory=2GiB cpus=2\n%%step big\nimport threading\nsize = base * 2",
        "print('size', size)",
    ])
    proc = _nbflow(["run", "sized.ipynb"], tmp_path, gateway)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "size 40" in proc.stdout
    shown = _nbflow(["runs", "--json"], tmp_path, gateway)
    run_id = json.loads(shown.stdout)[0]["id"]
    data = json.loads(_nbflow(["show", run_id, "--json"], tmp_path, gateway).stdout)
    assert data["status"] == "succeeded"
    assert data["cluster"]["kind"] == "class"
    largest = data["cluster"]["largest_worker"]
    assert largest["memory"] == 2 * 2**30 and largest["cpus"] == 2, largest
    assert data["cluster"]["scaling"] is None  # a gateway cannot add a worker of another size
    assert {t["step"]: t["status"] for t in data["tasks"]} == {"small": "succeeded",
                                                              "big": "succeeded"}


def test_a_request_over_the_gateways_limits_is_refused_naming_the_option(
        gateway: str, tmp_path: Path) -> None:
    write_notebook(tmp_path / "huge.ipynb", ["%%resources memory=8GiB\n%%step huge\nx = 1"])
    proc = _nbflow(["run", "huge.ipynb"], tmp_path, gateway)
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("nbflow: error: the run asks for workers of memory=8.59 GB"), message
    assert "this dask-gateway cannot make them" in message
    assert "worker_memory" in message and "Traceback" not in proc.stderr


def test_the_gateway_options_are_sized_only_upwards() -> None:
    """``sized_kwargs``'s arithmetic on the gateway's own Options objects (no server needed)."""
    from dask_gateway.options import Float, Integer, Options  # type: ignore[import-untyped]

    from nbflow.scaling.gateway import sized_options

    options = Options(Integer("worker_cores", 1, min=1, max=8, label="Worker Cores"),
                      Float("worker_memory", 4, min=1, max=32, label="Worker Memory (GiB)"))
    sized, problems = sized_options(options, {"memory": 6e9, "cpus": 3})
    assert problems == []
    assert sized == {"worker_memory": pytest.approx(5.59, abs=0.01), "worker_cores": 3}
    _, problems = sized_options(options, {"memory": 64e9})
    assert problems and "worker_memory" in problems[0]
