"""The same notebook runs unchanged against a remote Dask scheduler, with its artifacts on S3 and
its metadata in PostgreSQL.

Real components, no mocks (see cluster_support.py): worker hosts are network namespaces on a
bridge, each running ``dask worker`` (w1: 1 thread, memory=2e9 cpus=1; w2: 2 threads, memory=6e9
cpus=2) for a ``dask scheduler`` on the host address; S3 is moto's server on the host address
(why moto: cluster_support's docstring); PostgreSQL is conftest's private server (a fresh
database per test). The driver is ``nbflow`` run as a subprocess of this Python, as a user runs
it. The refusal tests use a cluster of their own: one worker that cannot see a folder of the
driver's and has another version of a package the driver has.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cluster_support
import dask.config
import pytest
import sqlalchemy as sa
from cluster_support import (
    DaskCluster,
    Hosts,
    S3Server,
    build_probe_package,
    described,
    environ,
    log_line,
    make_hosts,
    nbflow,
    nbflow_popen,
    run_id_of,
)
from conftest import PostgresDatabases, write_notebook
from test_kernel import started_kernel

from nbflow.client import Run
from nbflow.store import open_store

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parent.parent
WORKERS = ("w1", "w2")
pytestmark = pytest.mark.timeout(300)


# -- fixtures ------------------------------------------------------------------------------------


def _clear_s3fs_cache() -> None:
    import s3fs  # type: ignore[import-untyped]

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def hosts(pytestconfig: pytest.Config) -> Iterator[Hosts]:
    """Three worker hosts: w1, w2 of the main cluster, and one for the refusal cluster."""
    cluster_support.PYTEST_CONFIG = pytestconfig
    made = make_hosts(3)
    try:
        yield made
    finally:
        made.remove()
        cluster_support.forget_registered()


@pytest.fixture(scope="module")
def s3(hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on the host address, with this process's AWS settings pointing at it
    (the ``nbflow`` subprocesses and the client API read the store with them)."""
    server = S3Server(hosts.host_ip, tmp_path_factory.mktemp("s3"))
    try:
        with environ(server.env):
            _clear_s3fs_cache()
            yield server
    finally:
        _clear_s3fs_cache()
        server.stop()


@pytest.fixture(scope="module")
def cluster(hosts: Hosts, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[DaskCluster]:
    made = DaskCluster(hosts, tmp_path_factory.mktemp("dask"), s3.env, "main")
    try:
        made.start_worker("w1", 0, nthreads=1, resources="memory=2e9,cpus=1")
        made.start_worker("w2", 1, nthreads=2, resources="memory=6e9,cpus=2")
        made.wait_for_workers(WORKERS)
        yield made
    finally:
        made.close()


@dataclass
class Remote:
    """One test's view: the main cluster, its own S3 prefix and its own PostgreSQL database."""

    cluster: DaskCluster
    s3: S3Server
    hosts: Hosts
    db: str
    prefix: str
    folder: Path

    @property
    def store_url(self) -> str:
        return f"s3://{S3Server.BUCKET}/{self.prefix}"

    @property
    def store_flags(self) -> list[str]:
        return ["--store", self.store_url, "--db", self.db]

    @property
    def flags(self) -> list[str]:
        return ["--cluster", self.cluster.address, *self.store_flags]

    def run(self, notebook: str, *extra: str) -> Any:
        return nbflow("run", notebook, *self.flags, *extra, cwd=self.folder)

    def show(self, run_id: str, env: dict[str, str] | None = None, flags: bool = True
             ) -> dict[str, Any]:
        proc = nbflow("show", run_id, "--json", *(self.store_flags if flags else []),
                      cwd=self.folder, env=env)
        assert proc.returncode == 0, described(proc)
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def fail(self, proc: Any) -> str:
        return f"{described(proc)}\n{self.cluster.logs()}"

    def output_hashes(self, run_id: str | None = None) -> set[str]:
        """Every artifact key of the outputs table (of one run's tasks)."""
        engine = sa.create_engine(self.db)
        try:
            with engine.connect() as conn:
                query = "SELECT o.hash FROM outputs o JOIN tasks t ON o.task_id = t.id"
                if run_id is None:
                    rows = conn.execute(sa.text(query)).all()
                else:
                    rows = conn.execute(sa.text(query + " WHERE t.run_id = :r"), {"r": run_id}).all()
        finally:
            engine.dispose()
        return {r[0] for r in rows}

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/objects/{key[:2]}/{key[2:]}"

    def worker_host(self, address: str | None) -> str:
        assert address, "a task without a recorded worker"
        return address.removeprefix("tcp://").rsplit(":", 1)[0]

    def load_everything(self, run_id: str) -> dict[str, list[Any]]:
        """Every output artifact of the run, loaded through the client API: name -> the values
        of the tasks that have it, in task order (a foreach step's tasks in item order)."""
        store = open_store(self.store_url, self.db)
        try:
            values: dict[str, list[Any]] = {}
            tasks = sorted(Run(run_id, store).tasks, key=lambda t: (t.step, t.index or 0))
            for task in tasks:
                for name, artifact in task.outputs.items():
                    values.setdefault(name, []).append(artifact.load())
            return values
        finally:
            store.close()


@pytest.fixture
def remote(cluster: DaskCluster, s3: S3Server, hosts: Hosts, make_postgres_db: PostgresDatabases,
           tmp_path: Path, request: pytest.FixtureRequest) -> Remote:
    cluster.wait_for_workers(WORKERS)  # a worker killed by an earlier test is back
    prefix = f"{request.node.name.replace('[', '-').strip(']')[:40]}-{uuid.uuid4().hex[:8]}"
    return Remote(cluster, s3, hosts, make_postgres_db(), prefix, tmp_path)


# -- a. the quickstart end to end -----------------------------------------------------------------


def test_quickstart_on_remote_workers_with_s3_and_postgres(remote: Remote, tmp_path: Path) -> None:
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", tmp_path / "quickstart.ipynb")
    proc = remote.run("quickstart.ipynb")
    assert proc.returncode == 0, remote.fail(proc)
    run_id = run_id_of(proc.stderr)

    data = remote.show(run_id)
    assert data["status"] == "succeeded"
    assert data["cluster"]["kind"] == "address"
    assert data["cluster"]["scheduler"] == remote.cluster.address
    assert data["store"] == remote.store_url
    assert data["db"] == remote.db  # recorded too (it has no password to hide here)
    assert not (tmp_path / ".nbflow").exists()  # nothing fell back to a local store

    # Every artifact recorded in the outputs table is an object in the bucket.
    hashes = remote.output_hashes(run_id)
    assert len(hashes) >= 10  # load, split (4), logreg (2 x 4), forest (2), pick (4) outputs
    keys = remote.s3.keys(remote.prefix + "/")
    assert {remote.object_key(h) for h in hashes} <= keys, sorted(
        h for h in hashes if remote.object_key(h) not in keys)

    # The tasks ran on the namespace workers.
    worker_ips = set(remote.hosts.worker_ips[:2])
    hosts_used = {remote.worker_host(t["worker"]) for t in data["tasks"]}
    assert hosts_used <= worker_ips, hosts_used

    # Workers write artifacts to S3 themselves: no object (nor its temporary upload) comes from
    # the driver's address; every output's object was written from a worker's.
    if remote.hosts.isolated:
        bucket = f"/{S3Server.BUCKET}/{remote.prefix}/"
        uploads = [r for r in remote.s3.requests()
                   if r.writes and r.key_path.startswith(bucket) and r.status < 300]
        from_driver = [r for r in uploads if r.client not in worker_ips]
        relayed = [r for r in from_driver
                   if r.key_path.startswith((bucket + "objects/", bucket + "tmp/"))]
        assert not relayed, f"the driver uploaded artifact bytes: {relayed}"
        by_workers = {r.key_path for r in uploads if r.client in worker_ips}
        missing = [h for h in hashes
                   if f"/{S3Server.BUCKET}/{remote.object_key(h)}" not in by_workers]
        assert not missing, f"outputs not written by a worker: {missing}"
        log_line("quickstart: the driver's own uploads were only "
                 f"{sorted({r.key_path.removeprefix(bucket).split('/')[0] for r in from_driver})}"
                 f" ({len(from_driver)} requests, no artifact)")

    # Again: every task is a cache hit.
    again = remote.run("quickstart.ipynb")
    assert again.returncode == 0, remote.fail(again)
    second = remote.show(run_id_of(again.stderr))
    assert second["status"] == "succeeded"
    assert second["tasks"] and {t["status"] for t in second["tasks"]} == {"cached"}, [
        (t["step"], t["status"]) for t in second["tasks"]]


# -- b. the same through Dask config environment variables --------------------------------------


def test_cluster_store_and_db_from_dask_config_env_vars(remote: Remote, tmp_path: Path) -> None:
    write_notebook(tmp_path / "squares.ipynb", [
        "%%step numbers\nvalues = [i * i for i in range(5)]\nprint('squares', values)",
        "%%step total\nresult = sum(values)",
        "assert result == 30, result",
    ])
    env = {"DASK_NBFLOW__CLUSTER__ADDRESS": remote.cluster.address,
           "DASK_NBFLOW__STORE": remote.store_url, "DASK_NBFLOW__DB": remote.db}
    proc = nbflow("run", "squares.ipynb", cwd=tmp_path, env=env)
    assert proc.returncode == 0, remote.fail(proc)
    run_id = run_id_of(proc.stderr)

    data = remote.show(run_id, env=env, flags=False)  # read back through the same settings
    assert data["status"] == "succeeded"
    assert data["cluster"]["kind"] == "address"
    assert data["cluster"]["scheduler"] == remote.cluster.address
    assert data["store"] == remote.store_url
    assert {t["step"]: t["status"] for t in data["tasks"]} == {"numbers": "succeeded",
                                                              "total": "succeeded"}
    assert {remote.worker_host(t["worker"]) for t in data["tasks"]} <= set(remote.hosts.worker_ips[:2])
    hashes = remote.output_hashes(run_id)
    assert hashes and {remote.object_key(h) for h in hashes} <= remote.s3.keys(remote.prefix + "/")
    assert remote.load_everything(run_id)["result"] == [30]
    assert not (tmp_path / ".nbflow").exists()


# -- b2. the same notebook cells in a kernel: %nbflow cluster tcp://... --------------------------


def test_a_kernel_runs_step_cells_on_the_remote_cluster_with_s3_and_postgres(
        remote: Remote, tmp_path: Path) -> None:
    env = {**os.environ, "DASK_NBFLOW__STORE": remote.store_url, "DASK_NBFLOW__DB": remote.db,
           "JPY_SESSION_NAME": str(tmp_path / "analysis.ipynb")}
    env.pop("DASK_NBFLOW__CLUSTER__ADDRESS", None)
    with started_kernel(env, tmp_path) as kernel:
        switched = kernel.run(f"%nbflow cluster {remote.cluster.address}")
        assert switched.status == "ok", switched.error
        assert switched.result is not None and "'kind': 'address'" in switched.result["text/plain"]
        made = kernel.run("%%step make\nimport socket\nxs = list(range(5))\n"
                          "print('made on', socket.gethostname())")
        assert made.status == "ok", made.error
        assert "made on" in made.stream()
        total = kernel.run("%%step total\nt = sum(xs)\nt")
        assert total.status == "ok", total.error
        assert total.result is not None and total.result["text/plain"] == "10"
        bound = kernel.run("print(t, xs)")
        assert bound.stream().strip() == "10 [0, 1, 2, 3, 4]"
    # The kernel's interactive run is in PostgreSQL, its artifacts in S3, its tasks on the workers.
    store = open_store(remote.store_url, remote.db)
    try:
        (run,) = [Run(r["id"], store) for r in store.meta.runs(limit=10)]
        assert run.to_json()["cluster"]["scheduler"] == remote.cluster.address
        tasks = {t.step: t for t in run.tasks}
        assert set(tasks) == {"make", "total"}
        assert {remote.worker_host(t.worker) for t in tasks.values()} <= set(
            remote.hosts.worker_ips[:2])
        assert tasks["total"].outputs["t"].load() == 10
    finally:
        store.close()
    hashes = remote.output_hashes()
    assert hashes and {remote.object_key(h) for h in hashes} <= remote.s3.keys(remote.prefix + "/")
    assert not (tmp_path / ".nbflow").exists()


# -- c. resources pick the worker ----------------------------------------------------------------


def test_resources_send_tasks_to_the_worker_that_has_them(remote: Remote, tmp_path: Path) -> None:
    # Several tasks per request: were resources ignored, some would land on w1.
    write_notebook(tmp_path / "sized.ipynb", [
        "%%step big --foreach i in range(4)\n%%resources memory=4G\nbig = i",
        "%%step wide --foreach i in range(3)\n%%resources cpus=2\nwide = i",
        "%%step anywhere\nanywhere = 1",
    ])
    proc = remote.run("sized.ipynb")
    assert proc.returncode == 0, remote.fail(proc)
    data = remote.show(run_id_of(proc.stderr))
    assert data["status"] == "succeeded"
    addresses = remote.cluster.worker_addresses()
    where = {(t["step"], t["index"]): t["worker"] for t in data["tasks"]}
    assert len(where) == 8
    for (step, index), worker in where.items():
        if step in ("big", "wide"):
            assert worker == addresses["w2"], (step, index, worker, addresses)
        else:
            assert worker in (addresses["w1"], addresses["w2"]), (step, worker, addresses)
    if remote.hosts.isolated:
        assert remote.worker_host(addresses["w2"]) == remote.hosts.worker_ips[1]


# -- e. two runs at once ------------------------------------------------------------------------


def test_two_concurrent_runs_share_scheduler_store_and_db(remote: Remote, tmp_path: Path) -> None:
    # The same notebook twice at once: same artifacts written concurrently to the same keys.
    write_notebook(tmp_path / "parts.ipynb", [
        "%%step parts --foreach i in range(4)\nimport time\ntime.sleep(1)\npart = [i] * 1000\n"
        "print('part', i)",
        "%%step joined\ntotal = sum(sum(p) for p in part)",
        "assert total == 6000, total",
    ])
    procs = [nbflow_popen("run", "parts.ipynb", *remote.flags, cwd=tmp_path) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        results.append((p.returncode, out, err))
    for code, out, err in results:
        assert code == 0, remote.fail((code, out, err))
    run_ids = [run_id_of(err) for _, _, err in results]
    assert run_ids[0] != run_ids[1]

    listed = nbflow("runs", "--json", *remote.store_flags, cwd=tmp_path)
    assert listed.returncode == 0, described(listed)
    assert {r["id"] for r in json.loads(listed.stdout)} == set(run_ids)
    for run_id in run_ids:
        data = remote.show(run_id)
        assert data["status"] == "succeeded"
        assert len(data["tasks"]) == 5
        assert {t["status"] for t in data["tasks"]} <= {"succeeded", "cached"}
        values = remote.load_everything(run_id)
        assert values["total"] == [6000]
        assert values["part"] == [[i] * 1000 for i in range(4)]
        for task in data["tasks"]:
            assert task["status"] == "cached" or task["worker"], task


# -- f. the sidebar's REST API over the PostgreSQL-backed S3 store ---------------------------------


async def test_sidebar_api_reads_a_remote_run(jp_fetch: Any, remote: Remote, tmp_path: Path) -> None:
    write_notebook(tmp_path / "sidebar.ipynb", [
        "%%step answer\nvalue = {'answer': 42}\nprint('line one')\nprint('line two')",
    ])
    proc = remote.run("sidebar.ipynb")
    assert proc.returncode == 0, remote.fail(proc)
    run_id = run_id_of(proc.stderr)

    async def get(*path: str, **params: str) -> Any:
        response = await jp_fetch("nbflow", "api", *path, params=params)
        assert response.code == 200
        return json.loads(response.body)

    with dask.config.set({"nbflow.store": remote.store_url, "nbflow.db": remote.db}):
        runs = await get("runs")
        assert runs["store"] == remote.store_url
        assert [(r["id"], r["status"]) for r in runs["runs"]] == [(run_id, "succeeded")]
        assert runs["runs"][0]["counts"] == {"succeeded": 1}
        run = await get("runs", run_id)
        assert run["cluster"]["kind"] == "address"
        (task,) = run["tasks"]
        assert task["step"] == "answer" and task["status"] == "succeeded"
        assert remote.worker_host(task["worker"]) in remote.hosts.worker_ips[:2]
        art = await get("artifacts", task["outputs"]["value"])
        assert art["run"] == run_id and art["step"] == "answer" and art["type"] == "dict"
        assert art["preview"] == {"kind": "text", "text": "{'answer': 42}"}
        logs = await get("runs", run_id, "tasks", str(task["id"]), "logs")
        assert logs["text"] == "line one\nline two\n" and logs["lines"] == 2


# -- d. a worker killed mid-step, and the run resumed ------------------------------------------------


def test_worker_killed_mid_step_then_resume(remote: Remote, tmp_path: Path) -> None:
    marker, release = tmp_path / "slow-started", tmp_path / "slow-may-finish"
    # The namespaces share the machine's filesystem: the step can leave its pid in tmp_path.
    write_notebook(tmp_path / "fragile.ipynb", [
        "%%step first\nbase = 21\nprint('first ran')",
        "%%step slow\nimport os\nimport time\n"
        f"if not os.path.exists({str(release)!r}):\n"
        f"    with open({str(marker)!r} + '.tmp', 'w') as f:\n"
        "        f.write(str(os.getpid()))\n"
        f"    os.replace({str(marker)!r} + '.tmp', {str(marker)!r})\n"
        "    time.sleep(600)\n"
        "doubled = base * 2",
        "%%step after\nanswer = doubled",
    ])
    proc = nbflow_popen("run", "fragile.ipynb", *remote.flags, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, remote.fail((proc.returncode, *proc.communicate()))
            assert time.monotonic() < deadline, "the slow step never started"
            time.sleep(0.1)
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the worker process running the step
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, remote.fail((proc.returncode, out, err))
    original = run_id_of(err)
    data = remote.show(original)
    assert data["status"] == "failed"
    status = {t["step"]: t for t in data["tasks"]}
    assert status["first"]["status"] == "succeeded"
    assert status["slow"]["status"] == "failed"
    assert "worker" in status["slow"]["error"] and "died" in status["slow"]["error"], status["slow"]
    assert "after" not in status or status["after"]["status"] == "cancelled"

    # The nanny starts a new worker process in the same namespace; resume on it.
    release.write_text("go")
    remote.cluster.wait_for_workers(WORKERS)
    resumed = nbflow("resume", original, *remote.flags, cwd=tmp_path)
    assert resumed.returncode == 0, remote.fail(resumed)
    new = run_id_of(resumed.stderr)
    assert new != original
    data = remote.show(new)
    assert data["status"] == "succeeded" and data["resumed_from"] == original
    tasks = {t["step"]: t for t in data["tasks"]}
    assert tasks["first"]["status"] == "cached"
    assert tasks["first"]["cached_from"] == status["first"]["id"]
    assert tasks["slow"]["status"] == "succeeded" and tasks["after"]["status"] == "succeeded"
    assert remote.worker_host(tasks["slow"]["worker"]) in remote.hosts.worker_ips[:2]
    values = remote.load_everything(new)
    assert values["base"] == [21] and values["doubled"] == [42] and values["answer"] == [42]


# -- g. refusals ------------------------------------------------------------------------------------


@dataclass
class RefusalCluster:
    cluster: DaskCluster
    hidden: Path  # a folder of this machine the cluster's worker cannot see
    probe_driver: Path  # PYTHONPATH with nbflowprobe 1.0 (the worker has 2.0)


@pytest.fixture(scope="module")
def refusal(hosts: Hosts, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RefusalCluster]:
    """A scheduler with one worker (memory=2e9 cpus=1) in a mount namespace of its own where
    ``hidden`` is an empty tmpfs, and with nbflowprobe 2.0 on its PYTHONPATH."""
    if os.geteuid() != 0:
        pytest.skip("hiding a folder from a worker (unshare --mount) needs root")
    root = tmp_path_factory.mktemp("refusal")
    hidden = root / "hidden"
    hidden.mkdir()
    build_probe_package(root / "src", root / "probe-1.0", "1.0")
    build_probe_package(root / "src", root / "probe-2.0", "2.0")
    made = DaskCluster(hosts, root, s3.env, "refusal")
    try:
        made.start_worker("r1", 2, nthreads=1, resources="memory=2e9,cpus=1",
                          env={"PYTHONPATH": str(root / "probe-2.0")}, hide=str(hidden))
        made.wait_for_workers(["r1"])
        yield RefusalCluster(made, hidden, root / "probe-1.0")
    finally:
        made.close()


def test_refuses_a_local_store_the_workers_cannot_see(refusal: RefusalCluster,
                                                       tmp_path: Path) -> None:
    store = refusal.hidden / f"store-{uuid.uuid4().hex[:8]}"
    write_notebook(tmp_path / "flow.ipynb", ["%%step one\nx = 1"])
    proc = nbflow("run", "flow.ipynb", "--cluster", refusal.cluster.address, "--store", str(store),
                  cwd=tmp_path)
    # The premise: the driver has the folder, the worker does not.
    assert store.is_dir()
    seen = refusal.cluster.client().run(os.path.isdir, str(store))
    assert list(seen.values()) == [False], seen

    assert proc.returncode == 2, described(proc)
    assert "cannot reach the artifact store" in proc.stderr, described(proc)
    assert str(store) in proc.stderr, described(proc)
    listed = nbflow("runs", "--json", "--store", str(store), cwd=tmp_path)
    assert listed.returncode == 0, described(listed)
    for run in json.loads(listed.stdout):
        shown = nbflow("show", run["id"], "--json", "--store", str(store), cwd=tmp_path)
        assert shown.returncode == 0, described(shown)
        started = [t for t in json.loads(shown.stdout)["tasks"] if t["started_at"] is not None]
        assert not started, f"tasks recorded as started: {started}"


def test_refuses_package_versions_that_differ_from_the_workers(
        refusal: RefusalCluster, s3: S3Server, make_postgres_db: PostgresDatabases,
        tmp_path: Path) -> None:
    store = ["--store", f"s3://{S3Server.BUCKET}/probe-{uuid.uuid4().hex[:8]}",
             "--db", make_postgres_db()]
    driver_env = {"PYTHONPATH": str(refusal.probe_driver)}
    write_notebook(tmp_path / "probe.ipynb", [
        "%%step probe\nimport nbflowprobe\nversion = nbflowprobe.__version__",
    ])
    proc = nbflow("run", "probe.ipynb", "--cluster", refusal.cluster.address, *store,
                  cwd=tmp_path, env=driver_env)
    assert proc.returncode == 2, described(proc)
    for needed in ("package versions differ", "nbflowprobe", "1.0", "2.0"):
        assert needed in proc.stderr, f"{needed!r} missing: {described(proc)}"

    # A step that does not import it runs on that cluster.
    write_notebook(tmp_path / "plain.ipynb", [
        "%%step plain\nimport json\ntext = json.dumps([1, 2])",
    ])
    fine = nbflow("run", "plain.ipynb", "--cluster", refusal.cluster.address, *store,
                  cwd=tmp_path, env=driver_env)
    assert fine.returncode == 0, f"{described(fine)}\n{refusal.cluster.logs()}"
