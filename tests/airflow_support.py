"""Run a generated Airflow DAG file with the real Apache Airflow, from the tests.

Airflow lives in its own virtual environment, never in the main one: its pins (SQLAlchemy, FastAPI,
pydantic, ...) conflict with nbflow's. The tasks of a generated DAG call the main environment's Python
by absolute path, so the two environments never need each other's packages.

Version: Airflow 3.3.2, the newest release, installs cleanly from PyPI on Python 3.11 without the
official constraints file and without any extra pin; `apache-airflow` alone (no extras) brings the
standard provider, which holds `BashOperator` (`airflow.providers.standard.operators.bash`).

Timing on the 2-core machine: building the venv takes about 65 s (pip, ~130 packages, ~300 MB), once
per machine; the venv is then reused from NBFLOW_AIRFLOW_VENV, or `<repo>/.cache/airflow-venv`.
`airflow db migrate` takes ~5 s: it runs once, at build time, into a template database that each
`dags_test` copies. `airflow dags test` of a small DAG then takes ~12 s, ~5 s of it starting the
in-process execution API (CPU, no network).

`dags test` honours retries and their delay; the delay defaults to 300 s, so `dags_test` sets
AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY to 1 s (it applies only to tasks without `retry_delay`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

AIRFLOW_REQUIREMENT = "apache-airflow>=3.3"  # the newest; 2.10 runs the same DAGs
_MARKER = "nbflow-airflow-ok"  # written last: its content is the requirement the venv was built with
_DB_TEMPLATE = "nbflow-db-template"
_BUILD_TIMEOUT = 1800.0
_REPO = Path(__file__).resolve().parents[1]


def _venv_path() -> Path:
    return Path(os.environ.get("NBFLOW_AIRFLOW_VENV") or _REPO / ".cache" / "airflow-venv")


def _clean_env(home: Path) -> dict[str, str]:
    """The caller's environment without its Airflow settings, pointed at a private AIRFLOW_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "VIRTUAL_ENV"}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    return env


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=_BUILD_TIMEOUT, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-20000:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}")
    return proc.stdout


def _healthy(venv: Path) -> bool:
    marker = venv / _MARKER
    return (
        marker.is_file()
        and marker.read_text() == AIRFLOW_REQUIREMENT
        and (venv / "bin" / "airflow").is_file()
        and (venv / _DB_TEMPLATE / "airflow.db").is_file()
    )


def airflow_venv() -> Path:
    """The venv holding Airflow, built on first use and reused after; a lock serialises builders."""
    venv = _venv_path()
    if _healthy(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _healthy(venv):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "creating the Airflow venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        _run([*pip, AIRFLOW_REQUIREMENT], f"pip install {AIRFLOW_REQUIREMENT}")
        template = venv / _DB_TEMPLATE
        env = _clean_env(template)
        version = _run([str(venv / "bin" / "airflow"), "version"], "airflow version", env).strip()
        if not version.splitlines() or not version.splitlines()[-1].startswith("3."):
            raise RuntimeError(f"airflow version printed {version!r}, expected {AIRFLOW_REQUIREMENT}")
        _run([str(venv / "bin" / "airflow"), "db", "migrate"], "airflow db migrate", env)
        (venv / _MARKER).write_text(AIRFLOW_REQUIREMENT)
    return venv


def dags_test(
    dag_file: Path, dag_id: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `airflow dags test DAG_ID` on a copy of `dag_file`, alone in a private AIRFLOW_HOME.

    Returns the finished process, output captured: Airflow's log (tasks' output included) goes to
    stdout, ending `DagRun Finished: dag_id=..., state=success, ...` and exit 0 when every task
    succeeded; on a task that failed after its retries, `state=failed` in stdout, `DagRun failed` in
    stderr and exit 1. A file that does not import, or has no DAG `dag_id`, also exits 1 (traceback in
    stderr). On timeout, kills the whole process group and raises `subprocess.TimeoutExpired`.
    `env` is laid over the environment given to Airflow and so to the tasks' commands.
    """
    venv = airflow_venv()
    with tempfile.TemporaryDirectory(prefix="nbflow-airflow-") as tmp:
        home, dags = Path(tmp) / "home", Path(tmp) / "dags"
        home.mkdir()
        dags.mkdir()
        shutil.copy(venv / _DB_TEMPLATE / "airflow.db", home / "airflow.db")
        shutil.copy(dag_file, dags / dag_file.name)
        full_env = _clean_env(home)
        full_env.update(AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="1")
        full_env.update(env or {})
        cmd = [str(venv / "bin" / "airflow"), "dags", "test", dag_id]
        # A session of its own, so that a timeout also ends the tasks' commands.
        with subprocess.Popen(
            cmd,
            env=full_env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
                raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr) from None
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
