"""`nbflow schedule` and `run --until`: each target's files, checked by the real tool where one runs
here (crontab, systemd-analyze, Apache Airflow) and by the published schema otherwise (Argo,
Kubernetes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nbflow.cli import SCHEDULE_TARGETS
from nbflow.client import Run
from nbflow.cronexpr import ScheduleError, check_cron, to_systemd
from nbflow.export import export_file
from nbflow.runner import run_notebook
from nbflow.schedule import TARGETS, load_job, render, write

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    return export_file(tmp_path / "quickstart.ipynb", tmp_path / "flows" / "quickstart.py")


def nbflow(*args: str, cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbflow.cli", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **(env or {})}, check=False,
                          timeout=300)


def test_the_cli_offers_every_target() -> None:
    assert SCHEDULE_TARGETS == TARGETS


@pytest.mark.parametrize(("expr", "message"), [
    ("0 2 * *", "has 4 field(s); it needs 5"),
    ("61 * * * *", "minute field '61': 61 is outside 0-59"),
    ("0 2 * * funday", "day of week field 'funday': 'funday' is not a number or a name"),
    ("*/0 * * * *", "step '0' must be a whole number > 0"),
    ("0 5-2 * * *", "range '5-2' runs backwards"),
])
def test_a_bad_cron_expression_is_refused_naming_the_field(flow, expr, message) -> None:
    done = nbflow("schedule", str(flow), "--cron", expr, "--target", "cron", cwd=flow.parent)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not list(flow.parent.glob("*.cron"))  # nothing written


def test_a_bad_timezone_is_refused(flow) -> None:
    done = nbflow("schedule", str(flow), "--cron", "@daily", "--target", "systemd", "--timezone",
                  "Mars/Olympus", cwd=flow.parent)
    assert done.returncode == 2 and "unknown time zone 'Mars/Olympus'" in done.stderr


def test_a_notebook_must_be_exported_first(tmp_path) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    done = nbflow("schedule", "quickstart.ipynb", "--cron", "@daily", "--target", "cron",
                  cwd=tmp_path)
    assert done.returncode == 2 and "nbflow export quickstart.ipynb -o flows/quickstart.py" in \
        done.stderr


@pytest.mark.parametrize(("expr", "calendar"), [
    ("0 2 * * *", "*-*-* 02:00:00"),
    ("*/15 * * * *", "*-*-* *:00,15,30,45:00"),
    ("0 9-17/2 * * mon-fri", "Mon,Tue,Wed,Thu,Fri *-*-* 09,11,13,15,17:00:00"),
    ("30 4 1,15 * *", "*-*-1,15 04:30:00"),
    ("0 0 * * 0,7", "Sun *-*-* 00:00:00"),
    ("@weekly", "Sun *-*-* 00:00:00"),
    ("5 0 1 jan,jul *", "*-1,7-1 00:05:00"),
])
def test_cron_to_systemd_calendar_agrees_with_systemd(expr: str, calendar: str) -> None:
    assert to_systemd(check_cron(expr)) == calendar
    checked = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_cron_either_or_days_are_refused_for_systemd() -> None:
    with pytest.raises(ScheduleError, match="either/or"):
        to_systemd(check_cron("0 0 1 * mon"))


def test_systemd_units_pass_systemd_analyze_verify(flow) -> None:
    done = nbflow("schedule", str(flow), "--cron", "0 2 * * 1-5", "--target", "systemd",
                  "--timezone", "Europe/Paris", cwd=flow.parent)
    assert done.returncode == 0, done.stderr
    service, timer = flow.parent / "nbflow-quickstart.service", flow.parent / "nbflow-quickstart.timer"
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:00:00 Europe/Paris" in timer.read_text()
    assert f"ExecStart={sys.executable} {flow} run --store " in service.read_text()
    verified = subprocess.run(["systemd-analyze", "verify", str(service), str(timer)],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr


@pytest.fixture
def user_crontab() -> Iterator[None]:
    """The real `crontab`, with the user's table put back afterwards."""
    if shutil.which("crontab") is None:
        pytest.fail("`crontab` is missing: `bash scripts/test` installs Debian's cron package")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    try:
        yield
    finally:
        if before.returncode == 0:
            subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True, check=False)


def test_cron_install_is_idempotent(flow, user_crontab) -> None:
    subprocess.run(["crontab", "-"], input="MAILTO=\"\"\n0 1 * * * true  # someone else's\n",
                   text=True, check=True)
    for expr in ("0 2 * * *", "0 2 * * *", "30 3 * * *"):  # twice the same, then a new time
        done = nbflow("schedule", str(flow), "--cron", expr, "--target", "cron", "--install",
                      cwd=flow.parent)
        assert done.returncode == 0, done.stderr
    table = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
    mine = [line for line in table.splitlines() if line.endswith("# nbflow:quickstart")]
    assert len(mine) == 1 and mine[0].startswith("30 3 * * * cd ")
    assert "0 1 * * * true  # someone else's" in table and 'MAILTO=""' in table
    assert (flow.parent / "nbflow-quickstart.cron").read_text().splitlines()[-1] == mine[0]


def test_the_cron_line_runs_the_flow(flow, dask_client) -> None:
    """The command in the crontab line, run by a shell as cron would, runs the flow."""
    job = load_job(flow, cron="0 2 * * *", cluster=dask_client.scheduler.address,
                   store=str(flow.parent / "store"))
    line = render(job, "cron")["nbflow-quickstart.cron"].splitlines()[-1]
    command = line.split(" ", 5)[5].rsplit("  # nbflow:", 1)[0]
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=False,
                          timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr
    log = flow.with_suffix(".log").read_text()
    assert "succeeded (8 succeeded)" in log and "The best model is" in log


def test_run_until_a_step_runs_only_what_it_needs(notebook, store, executor) -> None:
    path = notebook([
        ("n = 2", ["parameters"]),
        "%%step a\nx = n + 1",
        "%%step b\nunrelated = 5",
        "side = unrelated * 2",  # reads a step --until a leaves out: skipped
        "%%step c\ny = x * 10",
        "print('after c')",
    ], name="until")
    run = Run(run_notebook(path, store=store, executor=executor, until="c"), store)
    assert run.status.value == "succeeded"
    assert {s.name for s in run.steps} == {"a", "c"}
    assert run["c"].task.outputs["y"].load() == 30
    again = Run(run_notebook(path, store=store, executor=executor, until="c"), store)
    assert {t.status.value for t in again.tasks} == {"cached"}


def test_run_until_an_unknown_step_is_refused(flow) -> None:
    done = nbflow("run", str(flow), "--until", "nope", cwd=flow.parent)
    assert done.returncode == 2
    assert "--until nope: no such step; the notebook has load, split, logreg, forest, pick" in \
        done.stderr


def test_container_targets_need_an_image_and_a_shared_store(flow) -> None:
    for extra, message in [([], "--image is required"),
                           (["--image", "acme/ml:1"], "--store (not given): each pod has its own"),
                           (["--image", "acme/ml:1", "--store", "s3://b/p", "--db",
                             "sqlite:///x.db"], "--db sqlite:///x.db: each pod"),
                           (["--image", "acme/ml:1", "--store", "s3://b/p", "--db",
                             "postgresql://h/d"], "--cluster tcp://SCHEDULER:8786 is required")]:
        done = nbflow("schedule", str(flow), "--cron", "@daily", "--target", "kubernetes",
                      *extra, cwd=flow.parent.parent)
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_kubernetes_cronjob_matches_the_schema(flow) -> None:
    from schema_check import kubernetes_cronjob_problems

    job = load_job(flow, cron="0 2 * * *", timezone="Europe/Paris", image="ghcr.io/acme/ml:1",
                   store="s3://bucket/nbflow", db="postgresql+psycopg://u@db/nbflow",
                   cluster="tcp://dask-scheduler:8786", project=flow.parent.parent)
    (path,) = write(job, "kubernetes", flow.parent)
    doc = yaml.safe_load(path.read_text())
    assert kubernetes_cronjob_problems(doc) == []
    container = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "flows/quickstart.py"]  # relative to the project
    assert container["args"][:1] == ["run"] and "--until" not in container["args"]
    assert doc["spec"]["timeZone"] == "Europe/Paris" and doc["spec"]["schedule"] == "0 2 * * *"


def test_argo_cron_workflow_matches_the_schema(flow) -> None:
    from schema_check import argo_cron_workflow_problems

    job = load_job(flow, cron="0 2 * * *", timezone="Europe/Paris", image="ghcr.io/acme/ml:1",
                   store="s3://bucket/nbflow", db="postgresql+psycopg://u@db/nbflow",
                   project=flow.parent.parent)
    (path,) = write(job, "argo", flow.parent)
    doc = yaml.safe_load(path.read_text())
    assert argo_cron_workflow_problems(doc) == []
    templates = {t["name"]: t for t in doc["spec"]["workflowSpec"]["templates"]}
    tasks = {t["name"]: t for t in templates["flow"]["dag"]["tasks"]}
    assert tasks["pick"]["dependencies"] == ["forest", "logreg"]
    assert tasks["complete"]["dependencies"] == ["pick"]
    assert templates["logreg"]["container"]["args"][:3] == ["run", "--until", "logreg"]
    assert set(templates) == {"flow", "load", "split", "logreg", "forest", "pick", "complete"}


def test_step_options_reach_argo_and_airflow(notebook, tmp_path) -> None:
    path = notebook(["%%step slow --retry 3 --timeout 90\nx = 1", "%%step after\ny = x"],
                    name="opts")
    module = export_file(path, tmp_path / "opts.py")
    job = load_job(module, cron="@hourly", image="i:1", store="s3://b/p", db="postgresql://h/d",
                   project=tmp_path)
    argo = yaml.safe_load(render(job, "argo")["nbflow-opts.argo.yaml"])
    slow = next(t for t in argo["spec"]["workflowSpec"]["templates"] if t["name"] == "slow")
    assert slow["retryStrategy"] == {"limit": "3"} and slow["activeDeadlineSeconds"] == 90
    dag = render(job, "airflow")["opts_dag.py"]
    assert "retries=3," in dag and "execution_timeout=timedelta(seconds=90)," in dag
    assert "step_slow >> step_after" in dag and "[step_after] >> complete" in dag


def test_airflow_runs_the_generated_dag(flow, dask_client) -> None:
    """The DAG file, run by real Apache Airflow (`airflow dags test`, in its own virtual
    environment built by tests/airflow_support.py): one task per step, then `complete`."""
    from airflow_support import dags_test

    from nbflow.store import open_store

    store_dir = flow.parent / "store"
    job = load_job(flow, cron="0 2 * * *", timezone="Europe/Paris",
                   cluster=dask_client.scheduler.address, store=str(store_dir),
                   db=f"sqlite:///{store_dir}/nbflow.db")
    (dag_file,) = write(job, "airflow", flow.parent / "dags")
    done = dags_test(dag_file, "nbflow_quickstart")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "DagRun Finished: dag_id=nbflow_quickstart" in done.stdout
    assert "state=success" in done.stdout.split("DagRun Finished:")[-1].splitlines()[0]
    store = open_store(str(store_dir), f"sqlite:///{store_dir}/nbflow.db")
    try:
        runs = [Run(r["id"], store) for r in store.meta.runs(flow="quickstart", limit=20)]
        assert len(runs) == 6 and all(r.status.value == "succeeded" for r in runs)
        complete = runs[0]  # newest: the `complete` task's run, every step from the cache
        assert {s.name for s in complete.steps} == {"load", "split", "logreg", "forest", "pick"}
        assert {t.status.value for t in complete.tasks} == {"cached"}
        executed = sorted(t.step for r in runs for t in r.tasks if t.status.value == "succeeded")
        assert executed == ["forest", "load", "logreg", "logreg", "logreg", "logreg", "pick",
                            "split"]  # each step executed once, by its own task
    finally:
        store.close()


def test_airflow_stops_at_a_failing_step(notebook, tmp_path, dask_client) -> None:
    from airflow_support import dags_test

    path = notebook(["%%step first\nx = 1", "%%step broken\nraise ValueError('no good')",
                     "%%step later\ny = 2"], name="failing")
    module = export_file(path, tmp_path / "flows" / "failing.py")
    store_dir = tmp_path / "store"
    job = load_job(module, cron="@daily", cluster=dask_client.scheduler.address,
                   store=str(store_dir), db=f"sqlite:///{store_dir}/nbflow.db")
    (dag_file,) = write(job, "airflow", tmp_path / "dags")
    done = dags_test(dag_file, "nbflow_failing")
    assert done.returncode == 1
    finished = done.stdout.split("DagRun Finished:")[-1].splitlines()[0]
    assert "state=failed" in finished
    assert "ValueError: no good" in done.stdout
