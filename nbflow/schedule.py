"""``nbflow schedule``: a flow module as a scheduled job for cron, systemd, Airflow, Argo or Kubernetes.

Every target runs the flow module made by ``nbflow export`` with the same engine as
``nbflow run``. The orchestrators that know about tasks (Airflow, Argo) get one task per step, with
the step's ``--retry`` and ``--timeout`` and the graph's dependencies; each task runs
``FLOW.py run --until STEP``, which takes the upstream steps from the cache (their own tasks ran
them) and executes that step, and a last ``complete`` task runs the whole flow, all cache hits by
then, so the history holds one complete run per schedule tick and the notebook's trailing plain
cells run. cron, systemd and the Kubernetes CronJob run the whole flow as one job.

Everything a target needs is written out explicitly (interpreter, folder, store, database,
cluster), so the generated files can be reviewed and do not depend on the environment they run
in. Container targets (Argo, Kubernetes) need a store and database that every pod can reach.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nbflow import flowfile
from nbflow.cronexpr import ScheduleError, check_cron, check_timezone, to_systemd
from nbflow.graph import FlowGraph, build_graph

TARGETS = ("cron", "systemd", "airflow", "argo", "kubernetes")


@dataclass
class Job:
    """What every target needs to know about the flow and where it runs."""

    module: Path  # the flow module, absolute
    flow: str
    graph: FlowGraph
    cron: str
    timezone: str | None = None
    python: str = sys.executable
    cluster: str | None = None
    store: str | None = None
    db: str | None = None
    image: str | None = None
    workdir: str = "/app"  # where the project is inside the image
    project: Path = field(default_factory=Path.cwd)  # the project folder the image contains
    env: dict[str, str] = field(default_factory=dict)

    def args(self, until: str | None = None) -> list[str]:
        out = ["run"]
        if until is not None:
            out += ["--until", until]
        for flag, value in (("--cluster", self.cluster), ("--store", self.store), ("--db", self.db)):
            if value:
                out += [flag, value]
        return out

    @property
    def in_image(self) -> str:
        """The module's path relative to the project folder (by default the working directory
        of `nbflow schedule`), which is ``workdir`` in the image."""
        relative = os.path.relpath(self.module, self.project)
        if relative.startswith(".."):
            raise ScheduleError(f"{self.module} is outside the project folder ({self.project}): "
                                "run `nbflow schedule` from the project folder the image contains")
        return relative.replace(os.sep, "/")

    def local_command(self, until: str | None = None) -> str:
        return " ".join(shlex.quote(p) for p in [self.python, str(self.module), *self.args(until)])

    @property
    def dns_name(self) -> str:
        name = re.sub(r"[^a-z0-9-]+", "-", self.flow.lower()).strip("-") or "flow"
        return f"nbflow-{name}"[:52]  # CronJob names are at most 52 characters


def load_job(module: str | os.PathLike[str], *, cron: str, timezone: str | None = None,
             **options: Any) -> Job:
    path = Path(module).resolve()
    if path.suffix != ".py":
        raise ScheduleError(f"{module}: schedule a flow module; make one from the notebook with "
                            f"`nbflow export {module} -o flows/{path.stem}.py`")
    nb = flowfile.load(path)
    return Job(module=path, flow=nb.flow_name, graph=build_graph(nb.cells), cron=check_cron(cron),
               timezone=check_timezone(timezone) if timezone else None,
               **{k: v for k, v in options.items() if v is not None})


# -- cron and systemd: the whole flow as one job ---------------------------------------------------
def cron_line(job: Job) -> str:
    log = job.module.with_suffix(".log")
    command = f"cd {shlex.quote(str(job.module.parent))} && {job.local_command()} >> " \
              f"{shlex.quote(str(log))} 2>&1"
    return f"{job.cron} {command.replace('%', chr(92) + '%')}  # nbflow:{job.flow}"


def cron_file(job: Job) -> str:
    lines = [f"# nbflow: flow {job.flow!r}, from {job.module.name}. Install with",
             f"#   nbflow schedule {job.module.name} --target cron --cron '{job.cron}' --install"]
    if job.timezone:  # cronie (Fedora, RHEL) honours CRON_TZ; Debian's cron uses the system zone
        lines.append(f"CRON_TZ={job.timezone}")
    return "\n".join([*lines, cron_line(job), ""])


def install_crontab(job: Job) -> str:
    """Add (or replace) this flow's line in the user's crontab; idempotent. Returns the line."""
    line = cron_line(job)
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    kept = [x for x in current.stdout.splitlines() if current.returncode == 0
            and not x.endswith(f"# nbflow:{job.flow}")]
    if job.timezone:
        kept = [x for x in kept if x != f"CRON_TZ={job.timezone}"] + [f"CRON_TZ={job.timezone}"]
    done = subprocess.run(["crontab", "-"], input="\n".join([*kept, line, ""]), text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise ScheduleError(f"crontab refused the new table: {done.stderr.strip()}")
    return line


def systemd_units(job: Job) -> dict[str, str]:
    calendar = to_systemd(job.cron) + (f" {job.timezone}" if job.timezone else "")
    service = "\n".join([
        "[Unit]", f"Description=nbflow flow {job.flow} ({job.module.name})",
        "Wants=network-online.target", "After=network-online.target", "",
        "[Service]", "Type=oneshot", f"WorkingDirectory={job.module.parent}",
        f"ExecStart={job.local_command()}", ""])
    timer = "\n".join([
        "[Unit]", f"Description=Run nbflow flow {job.flow} on schedule {job.cron}", "",
        "[Timer]", f"OnCalendar={calendar}", "Persistent=true",
        f"Unit={job.dns_name}.service", "", "[Install]", "WantedBy=timers.target", ""])
    return {f"{job.dns_name}.service": service, f"{job.dns_name}.timer": timer}


# -- Airflow: one task per step ---------------------------------------------------------------------
def airflow_dag(job: Job) -> str:
    dag_id = re.sub(r"\W", "_", f"nbflow_{job.flow}")
    tz = job.timezone or "UTC"
    lines = [
        f'"""Airflow DAG for nbflow flow {job.flow!r} ({job.module.name}), made by `nbflow schedule`.',
        "",
        "One task per step, running `FLOW.py run --until STEP` (upstream steps come from the cache),",
        'then `complete`: the whole flow, all cache hits by then, recorded as one run."""',
        "",
        "from datetime import timedelta",
        "",
        "import pendulum",
        "from airflow import DAG",
        "",
        "try:  # Airflow 3",
        "    from airflow.providers.standard.operators.bash import BashOperator",
        "except ImportError:  # Airflow 2",
        "    from airflow.operators.bash import BashOperator",
        "",
        f"FOLDER = {str(job.module.parent)!r}",
        f"RUN = {job.local_command()!r}",
        "",
        "with DAG(",
        f"    dag_id={dag_id!r},",
        f"    schedule={job.cron!r},",
        f"    start_date=pendulum.datetime(2024, 1, 1, tz={tz!r}),",
        "    catchup=False,",
        "    max_active_runs=1,",
        '    tags=["nbflow"],',
        ") as dag:",
    ]
    names = {}
    for name, node in job.graph.steps.items():
        opts = node.options
        assert opts is not None
        var = names[name] = re.sub(r"\W", "_", f"step_{name}")
        extra = [f"retries={opts.retry},"]
        if opts.timeout:
            extra.append(f"execution_timeout=timedelta(seconds={opts.timeout:g}),")
        lines += [f"    {var} = BashOperator(", f"        task_id={name!r},",
                  f"        bash_command=RUN + {' --until ' + shlex.quote(name)!r},",
                  "        cwd=FOLDER,", *[f"        {e}" for e in extra], "    )"]
    lines += ["    complete = BashOperator(", '        task_id="complete",',
              "        bash_command=RUN,", "        cwd=FOLDER,", "    )"]
    for up, down in job.graph.edges():
        lines.append(f"    {names[up]} >> {names[down]}")
    leaves = [names[s] for s in job.graph.steps if not job.graph.downstream(s)]
    if leaves:
        lines.append(f"    [{', '.join(leaves)}] >> complete")
    return "\n".join([*lines, ""])


# -- containers: Argo and Kubernetes ----------------------------------------------------------------
def _container_job(job: Job) -> None:
    if not job.image:
        raise ScheduleError("--image is required for this target: a container image with the "
                            "project (the flow module, its notebook's folder) and nbflow installed")
    for flag, value in (("--store", job.store), ("--db", job.db)):
        if not value or value.startswith(("file:", "/", ".", "sqlite:")) or "://" not in value:
            raise ScheduleError(
                f"{flag} {value or '(not given)'}: each pod has its own disk, so a container target "
                "needs a store and database every pod reaches, e.g. --store s3://bucket/nbflow "
                "--db postgresql+psycopg://user@host/nbflow")


def _container(job: Job, until: str | None) -> dict[str, Any]:
    return {"image": job.image, "workingDir": job.workdir, "command": ["python", job.in_image],
            "args": job.args(until)}


def argo_cron_workflow(job: Job) -> str:
    _container_job(job)
    templates: list[dict[str, Any]] = []
    tasks = []
    for name, node in job.graph.steps.items():
        opts = node.options
        assert opts is not None
        template: dict[str, Any] = {"name": _dns(name), "container": _container(job, name)}
        if opts.retry:
            template["retryStrategy"] = {"limit": str(opts.retry)}
        if opts.timeout:
            template["activeDeadlineSeconds"] = int(opts.timeout)
        templates.append(template)
        task: dict[str, Any] = {"name": _dns(name), "template": _dns(name)}
        if node.upstream_steps:
            task["dependencies"] = sorted({_dns(u) for u in node.upstream_steps})
        tasks.append(task)
    templates.append({"name": "complete", "container": _container(job, None)})
    leaves = sorted(_dns(s) for s in job.graph.steps if not job.graph.downstream(s))
    tasks.append({"name": "complete", "template": "complete", "dependencies": leaves})
    spec: dict[str, Any] = {"schedules": [job.cron]}  # Argo >= 3.6 (`schedule` before)
    if job.timezone:
        spec["timezone"] = job.timezone
    spec.update({"concurrencyPolicy": "Forbid", "workflowSpec": {
        "entrypoint": "flow",
        "templates": [{"name": "flow", "dag": {"tasks": tasks}}, *templates]}})
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
           "metadata": {"name": job.dns_name}, "spec": spec}
    return _yaml(job, doc)


def kubernetes_cronjob(job: Job) -> str:
    _container_job(job)
    if not job.cluster:
        raise ScheduleError("--cluster tcp://SCHEDULER:8786 is required for kubernetes: the "
                            "CronJob's pod drives the flow, and its steps run on that Dask cluster")
    container = {"name": "flow", **_container(job, None)}
    spec: dict[str, Any] = {"schedule": job.cron}
    if job.timezone:
        spec["timeZone"] = job.timezone
    spec.update({
        "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": {"backoffLimit": 0,  # nbflow retries steps itself (--retry)
                                 "template": {"spec": {"restartPolicy": "Never",
                                                       "containers": [container]}}}}})
    doc = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": job.dns_name},
           "spec": spec}
    return _yaml(job, doc)


def _dns(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "step"


def _yaml(job: Job, doc: dict[str, Any]) -> str:
    head = f"# nbflow flow {job.flow!r} ({job.module.name}), made by `nbflow schedule`.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


# -- writing ------------------------------------------------------------------------------------------
def render(job: Job, target: str) -> dict[str, str]:
    """File name -> content for ``target``."""
    if target == "cron":
        return {f"{job.dns_name}.cron": cron_file(job)}
    if target == "systemd":
        return systemd_units(job)
    if target == "airflow":
        return {f"{re.sub(r'[^A-Za-z0-9_]', '_', job.flow)}_dag.py": airflow_dag(job)}
    if target == "argo":
        return {f"{job.dns_name}.argo.yaml": argo_cron_workflow(job)}
    if target == "kubernetes":
        return {f"{job.dns_name}.cronjob.yaml": kubernetes_cronjob(job)}
    raise ScheduleError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def write(job: Job, target: str, out_dir: str | os.PathLike[str] | None) -> list[Path]:
    files = render(job, target)  # everything is made before anything is written
    folder = Path(out_dir) if out_dir else job.module.parent
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
