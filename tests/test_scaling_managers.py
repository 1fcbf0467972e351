"""Scale this cell on dask-jobqueue (SLURM, PBS), the dask-kubernetes operator and dask-gateway.

The SLURM test runs real dask-jobqueue with real worker processes; only the batch system is a test
double (there is no SLURM here): fake ``sbatch``/``scancel``/``squeue`` executables on PATH.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from nbflow.scaling import scaler_for
from nbflow.scaling.gateway import GatewayScaler, sized_options
from nbflow.scaling.jobqueue import JobQueueScaler, merge_worker_args
from nbflow.scaling.kubernetes import KubeScaler, quantity_bytes
from tests.schema_check import _kubernetes_validator, kubernetes_versions

SCHEDULER_OPTIONS = {"dashboard_address": ":0", "host": "127.0.0.1"}

# -- a fake SLURM ---------------------------------------------------------------------------------
# There is no SLURM here, so these stand in for the batch system only: `sbatch SCRIPT` runs the job
# script with bash in the background, in a session of its own (as a job's processes are apart from
# the submitter), and prints what sbatch prints; `scancel ID` kills that job's process group. dask-
# jobqueue calls only sbatch and scancel; `squeue` lists the jobs whose processes are alive.

SBATCH = """
import os, shutil, subprocess, sys
state = os.environ["FAKE_SLURM_DIR"]
n = 1
while True:
    try:
        fd = os.open(os.path.join(state, f"{n}.id"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        break
    except FileExistsError:
        n += 1
script = os.path.join(state, f"{n}.sh")
shutil.copy(sys.argv[-1], script)  # dask-jobqueue deletes its temporary script after submitting
log = open(os.path.join(state, f"{n}.log"), "wb")
proc = subprocess.Popen(["bash", script], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                        start_new_session=True)
os.write(fd, str(proc.pid).encode())
os.close(fd)
print(f"Submitted batch job {n}")
"""

SCANCEL = """
import os, signal, sys
state = os.environ["FAKE_SLURM_DIR"]
for job in sys.argv[1:]:
    try:
        pid = int(open(os.path.join(state, f"{job}.id")).read())
        os.killpg(pid, signal.SIGTERM)
    except (OSError, ValueError):
        print(f"scancel: error: Invalid job id specified: {job}", file=sys.stderr)
"""

SQUEUE = """
import glob, os
state = os.environ["FAKE_SLURM_DIR"]
print("JOBID STATE")
for path in sorted(glob.glob(os.path.join(state, "*.id"))):
    pid = int(open(path).read() or 0)
    try:
        os.kill(pid, 0)
    except OSError:
        continue
    print(os.path.basename(path)[:-3], "RUNNING")
"""


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, code in (("sbatch", SBATCH), ("scancel", SCANCEL), ("squeue", SQUEUE)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{textwrap.dedent(code)}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    try:
        yield state
    finally:  # the jobs' processes are not this process's children: stop any left over
        for path in state.glob("*.id"):
            pid = int(path.read_text() or 0)
            if pid and _alive(pid):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)


def _job_pid(state: Path, script_text: str) -> int:
    """The pid of the fake job whose script contains ``script_text``."""
    for path in state.glob("*.sh"):
        if script_text in path.read_text():
            return int((state / f"{path.stem}.id").read_text())
    raise AssertionError(f"no job script with {script_text!r} in {state}")


def _worker_named(client: Client, name: str) -> dict[str, Any] | None:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return next((w for w in workers.values() if w.get("name") == name), None)


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_slurm_scaler_adds_a_sized_worker_and_retires_it(fake_slurm: Path) -> None:
    from dask_jobqueue import SLURMCluster

    with (
        SLURMCluster(cores=1, memory="1GiB", processes=1, walltime="00:10:00", death_timeout=60,
                     python=sys.executable, scheduler_options=SCHEDULER_OPTIONS) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        cluster.scale(1)
        client.wait_for_workers(1, timeout=60)
        scaler = scaler_for(cluster)
        assert isinstance(scaler, JobQueueScaler)
        assert scaler.kind == "SLURMCluster"
        wanted = {"memory": 3e9, "cpus": 2.0}
        assert scaler.refuse(wanted) is None

        name = scaler.add(wanted)
        assert name.startswith("nbflow-scaled-")
        script = cluster.workers[name].job_script()
        assert "#SBATCH --cpus-per-task=2" in script
        assert "#SBATCH --mem=3G" in script  # SLURM's G is GiB: 2862MiB rounded up
        assert "--nthreads 2" in script
        assert "--resources cpus=2,memory=3000000000" in script
        pid = _job_pid(fake_slurm, f"--name {name} ")

        info = _wait(lambda: _worker_named(client, name), 60, f"worker {name}")
        assert info["resources"]["memory"] >= 3e9
        assert info["resources"]["cpus"] >= 2
        assert info["nthreads"] == 2
        # os.getpid: a function the worker can import (this test module is not importable there)
        address = next(a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()
                       if w.get("name") == name)
        worker_pid = client.run(os.getpid, workers=[address])[address]
        assert client.submit(os.getpid, resources={"memory": 3e9}, pure=False).result(60) == worker_pid

        scaler.retire(name)
        assert name not in cluster.worker_spec
        _wait(lambda: _worker_named(client, name) is None, 60, f"worker {name} to leave")
        _wait(lambda: not _alive(pid), 30, "the fake job's process to end")
        assert len(client.scheduler_info()["workers"]) == 1  # the cluster's own worker stays


def test_slurm_job_for_gpus_replaces_the_clusters_size_directives() -> None:
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(cores=1, memory="1GiB", processes=2, job_mem="2G",
                      job_extra_directives=["--mem-per-cpu=1G", "--gres=gpu:1", "--qos=long"],
                      worker_extra_args=["--resources", "ssd=1", "--lifetime", "1h"],
                      scheduler_options=SCHEDULER_OPTIONS) as cluster:
        scaler = JobQueueScaler(cluster)
        options = scaler.job_options({"memory": 64e9, "cpus": 8, "gpus": 2})
        script = cluster.job_cls(scheduler="tcp://127.0.0.1:8786", name="n", **options).job_script()
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=60G" in script
    assert "#SBATCH --gres=gpu:2" in script and "--gres=gpu:1" not in script
    assert "--mem-per-cpu" not in script and "#SBATCH --qos=long" in script
    assert "--nworkers" not in script and "--nthreads 8" in script
    assert "--lifetime 1h --resources cpus=8,gpus=2,memory=64000000000,ssd=1" in script


def test_pbs_job_script_asks_for_gpus_in_the_select_statement() -> None:
    from dask_jobqueue import PBSCluster
    from dask_jobqueue.pbs import PBSJob

    with PBSCluster(cores=1, memory="1GiB", processes=1, queue="gpu",
                    scheduler_options=SCHEDULER_OPTIONS) as cluster:
        scaler = scaler_for(cluster)
        assert isinstance(scaler, JobQueueScaler)
        assert scaler.refuse({"gpus": 1}) is None
        options = scaler.job_options({"memory": 8e9, "cpus": 4, "gpus": 2})
    script = PBSJob(scheduler="tcp://127.0.0.1:8786", name="n", **options).job_script()
    assert "#PBS -l select=1:ncpus=4:mem=7630MB:ngpus=2" in script
    assert "#PBS -q gpu" in script
    assert "--nthreads 4" in script
    assert "--resources cpus=4,gpus=2,memory=8000000000" in script


def test_pbs_custom_select_is_resized_and_other_forms_are_refused() -> None:
    from dask_jobqueue import PBSCluster

    with PBSCluster(cores=1, memory="1GiB", resource_spec="select=1:ncpus=1:mem=1GB:model=a100",
                    scheduler_options=SCHEDULER_OPTIONS) as cluster:
        options = JobQueueScaler(cluster).job_options({"cpus": 2, "gpus": 1})
        assert options["resource_spec"] == "select=1:ncpus=2:mem=1024MB:model=a100:ngpus=1"
    with PBSCluster(cores=1, memory="1GiB", resource_spec="nodes=1:ppn=1",
                    scheduler_options=SCHEDULER_OPTIONS) as cluster:
        why = JobQueueScaler(cluster).refuse({"cpus": 2})
        assert why is not None and "resource_spec='nodes=1:ppn=1'" in why


def test_jobqueue_refusals_say_why() -> None:
    from dask_jobqueue import LSFCluster, SGECluster, SLURMCluster

    with SGECluster(cores=1, memory="1GiB", scheduler_options=SCHEDULER_OPTIONS) as cluster:
        why = JobQueueScaler(cluster).refuse({"cpus": 2})
        assert why is not None and "SGEJob" in why and "--resources" in why
    with LSFCluster(cores=1, memory="1GiB", lsf_units="MB",
                    scheduler_options=SCHEDULER_OPTIONS) as cluster:
        scaler = JobQueueScaler(cluster)
        assert scaler.refuse({"cpus": 2, "memory": 4e9}) is None
        why = scaler.refuse({"gpus": 1})
        assert why is not None and "GPUs" in why
    with SLURMCluster(cores=1, memory="1GiB", job_directives_skip=["--mem"],
                      scheduler_options=SCHEDULER_OPTIONS) as cluster:
        scaler = JobQueueScaler(cluster)
        why = scaler.refuse({"memory": 4e9})
        assert why is not None and "job_directives_skip" in why
        assert scaler.refuse({"cpus": 0}) is not None
        assert scaler.refuse({"memory": -1.0}) is not None
        with pytest.raises(ValueError, match="is not a size"):
            scaler.add({"memory": float("nan")})


def test_merge_worker_args_keeps_other_flags_and_resources() -> None:
    args = ["dask-worker", "--nthreads=4", "--resources", "ssd=1,memory=1", "--lifetime", "1h"]
    assert merge_worker_args(args, {"memory": 8e9, "cpus": 2.0}, nthreads=2, memory_limit=2**33) == [
        "dask-worker", "--lifetime", "1h", "--nthreads", "2", "--memory-limit", str(2**33),
        "--resources", "cpus=2,memory=8000000000,ssd=1"]


# -- dask-kubernetes operator ---------------------------------------------------------------------
class RecordingKubeCluster:
    """Stands in for an operator ``KubeCluster``: there is no Kubernetes API server here, so
    ``add_worker_group``/``delete_worker_group`` are recorded instead of creating resources. It
    has the attributes ``KubeCluster.__init__`` sets that the scaler reads."""

    def __init__(self, **attrs: Any) -> None:
        self.name = "flow"
        self.resources: dict[str, Any] = {}
        self.worker_command = ["dask-worker"]
        self.scheduler_info: dict[str, Any] = {"workers": {}}
        self.scheduler_comm: Any = None
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.__dict__.update(attrs)

    def add_worker_group(self, name: str, **kwargs: Any) -> None:
        self.calls.append(("add_worker_group", (name,), kwargs))

    def delete_worker_group(self, name: str) -> None:
        self.calls.append(("delete_worker_group", (name,), {}))

    def sync(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)


def _pod_problems(pod_spec: dict[str, Any]) -> list[str]:
    validator = _kubernetes_validator("pod", "v1", kubernetes_versions()[-1])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": pod_spec}
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(pod)]


def _after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_kube_scaler_adds_a_one_pod_worker_group_with_a_valid_pod_spec() -> None:
    from dask_kubernetes.operator import make_worker_spec

    cluster = RecordingKubeCluster(worker_command=["dask", "cuda", "worker", "--nthreads", "1"])
    scaler = KubeScaler(cluster)
    assert scaler.refuse({"memory": 3e9, "cpus": 2, "gpus": 1}) is None
    name = scaler.add({"memory": 3e9, "cpus": 2, "gpus": 1})
    assert name.startswith("nbflow-scaled-")
    (call, args, kwargs), = cluster.calls
    assert (call, args) == ("add_worker_group", (name,))
    size = {"cpu": "2", "memory": "2862Mi", "nvidia.com/gpu": "1"}
    assert kwargs["n_workers"] == 1
    assert kwargs["resources"] == {"requests": size, "limits": size}
    command = kwargs["worker_command"]
    assert command[:3] == ["dask", "cuda", "worker"] and command.count("--nthreads") == 1
    assert _after(command, "--nthreads") == "2"
    assert _after(command, "--memory-limit") == str(2862 * 2**20)
    assert _after(command, "--resources") == "cpus=2,gpus=1,memory=3000000000"

    # What the operator makes of these arguments: dask-kubernetes' own spec builder.
    worker = make_worker_spec(image="ghcr.io/dask/dask:latest", n_workers=1, env={},
                              resources=kwargs["resources"], worker_command=command)
    assert _pod_problems(worker["spec"]) == []
    container = worker["spec"]["containers"][0]
    assert _after(container["args"], "--resources") == "cpus=2,gpus=1,memory=3000000000"
    assert quantity_bytes(container["resources"]["limits"]["memory"]) >= 3e9

    cluster.scheduler_info = {"workers": {"tcp://10.0.0.9:1": {"name": f"flow-{name}-worker-ab12"},
                                          "tcp://10.0.0.8:1": {"name": "flow-default-worker-cd34"}}}
    retired: list[list[str]] = []

    class Comm:
        def retire_workers(self, names: list[str]) -> None:
            retired.append(names)

    cluster.scheduler_comm = Comm()
    scaler.retire(name)
    assert retired == [[f"flow-{name}-worker-ab12"]]
    assert cluster.calls[-1] == ("delete_worker_group", (name,), {})


def test_kube_scaler_copies_a_custom_cluster_specs_worker() -> None:
    from dask_kubernetes.operator import make_cluster_spec

    custom = make_cluster_spec(name="flow", image="registry.example/flow:1",
                               resources={"limits": {"memory": "1Gi"}}, env={"A": "1"})
    cluster = RecordingKubeCluster(_custom_cluster_spec=custom)
    kwargs = KubeScaler(cluster).worker_group({"cpus": 4})
    spec = kwargs["custom_spec"]
    container = spec["spec"]["containers"][0]
    assert spec["replicas"] == 1
    assert container["image"] == "registry.example/flow:1"
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "1024Mi"}
    assert _after(container["args"], "--resources") == f"cpus=4,memory={2**30}"
    assert _pod_problems(spec["spec"]) == []
    assert custom["spec"]["worker"]["spec"]["containers"][0]["resources"] == {
        "limits": {"memory": "1Gi"}}  # the cluster's own spec is untouched


# -- dask-gateway ----------------------------------------------------------------------------------
def _gateway_options() -> Any:
    from dask_gateway.options import Float, Integer, Options

    # As dask-gateway's documentation and Helm chart example define them.
    return Options(Integer("worker_cores", 1, min=1, max=4, label="Worker Cores"),
                   Float("worker_memory", 1, min=1, max=8, label="Worker Memory (GiB)"))


class RecordingGatewayCluster:
    """Stands in for a ``GatewayCluster`` (which needs a gateway server): the options it was
    started with, as ``GatewayCluster.__init__`` keeps them."""

    def __init__(self, options: Any, **kwargs: Any) -> None:
        self._cluster_options = options
        self._cluster_kwargs = kwargs
        self.gateway = None


def test_gateway_options_sized_to_a_request() -> None:
    options = _gateway_options()
    assert sized_options(options, {"memory": 8e9, "cpus": 2}) == (
        {"worker_memory": 7.46, "worker_cores": 2}, [])
    sized, problems = sized_options(options, {"memory": 16e9, "cpus": 8, "gpus": 1})
    assert sized == {}
    assert any(p.startswith("worker_memory=14.91: worker_memory must be <= 8") for p in problems)
    assert any(p.startswith("worker_cores=8:") for p in problems)
    assert any("GPU" in p for p in problems)
    assert sized_options({"worker_memory": "2GiB"}, {"memory": 3e9}) == (
        {"worker_memory": "2862MiB"}, [])


def test_gateway_scaler_refuses_and_names_the_options() -> None:
    options = _gateway_options()
    scaler = GatewayScaler(RecordingGatewayCluster(options, worker_cores=2))
    why = scaler.refuse({"memory": 8e9, "cpus": 2})
    assert why is not None
    assert "worker_cores=2" in why and "worker_memory=1" in why  # what this cluster has
    assert "{worker_memory: 7.46, worker_cores: 2}" in why
    assert "--resources" not in why and "cpus=2,memory=8000000000" in why
    why = scaler.refuse({"memory": 64e9})
    assert why is not None and "cannot start workers" in why and "<= 8" in why
    with pytest.raises(RuntimeError, match="no way to add one worker"):
        scaler.add({"memory": 8e9})
    assert dict(options) == {"worker_cores": 1, "worker_memory": 1.0}  # the user's, unchanged
