"""The `nbflow` command in real subprocesses: the quickstart, bad input, concurrency, a killed driver."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook
from distributed import Client

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"


def nbflow(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbflow.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def scheduler(dask_client: Client) -> str:
    """The address of the session's cluster: CLI processes connect to it like to any remote one."""
    return str(dask_client.scheduler.address)


def test_quickstart_end_to_end_on_the_default_local_cluster(tmp_path: Path) -> None:
    shutil.copy(QUICKSTART, tmp_path / "quickstart.ipynb")
    first = nbflow("run", "quickstart.ipynb", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "The best model is" in first.stdout
    assert "[logreg] C=0.1: accuracy" in first.stdout  # live output relayed from the workers
    assert (tmp_path / ".nbflow" / "nbflow.db").exists()  # the default store, created here

    runs = as_json(nbflow("runs", "--json", cwd=tmp_path))
    assert len(runs) == 1
    run = runs[0]
    assert {"id", "flow", "status", "started_at", "finished_at"} <= set(run)
    assert run["flow"] == "quickstart" and run["status"] == "succeeded"
    assert dt.datetime.fromisoformat(run["started_at"]) < dt.datetime.fromisoformat(
        run["finished_at"])

    shown = as_json(nbflow("show", run["id"], "--json", cwd=tmp_path))
    tasks = shown["tasks"]
    assert {t["step"] for t in tasks} == {"load", "split", "logreg", "forest", "pick"}
    assert sorted(t["index"] for t in tasks if t["step"] == "logreg") == [0, 1, 2, 3]
    for t in tasks:
        assert {"step", "index", "status", "started_at", "finished_at", "cache_key",
                "outputs"} <= set(t)
        assert t["status"] == "succeeded"
        assert all(len(h) == 32 for h in t["outputs"].values())
    assert shown["environment"]["packages"]["scikit-learn"]
    assert shown["params"] == {"test_size": 0.25, "seed": 0, "Cs": [0.01, 0.1, 1.0, 10.0]}

    human = nbflow("show", run["id"], cwd=tmp_path)
    assert "scikit-learn==" in human.stdout and "logreg[3]" in human.stdout

    logs = nbflow("logs", run["id"], "load", cwd=tmp_path)
    assert logs.returncode == 0 and "569 samples, 30 features" in logs.stdout
    per_item = as_json(nbflow("logs", run["id"], "logreg", "--json", cwd=tmp_path))
    assert [t["index"] for t in per_item] == [0, 1, 2, 3]
    assert "C=0.01: accuracy" in per_item[0]["stdout"]

    second = nbflow("run", "quickstart.ipynb", "--param", "seed=0", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "8 cached" in second.stderr


BAD_NOTEBOOKS = [
    ("bad-option", ["%%step a --retyr 2\nx = 1"],
     ["cell 1, line 1", "--retyr", "did you mean --retry"]),
    ("bad-memory", ["%%step a\n%%resources memory=abc\nx = 1"],
     ["cell 1, line 2", "'abc'"]),
    ("unknown-resource", ["%%step a\n%%resources ram=4G\nx = 1"],
     ["cell 1, line 2", "ram", "memory, cpus, gpus"]),
    ("cycle", ["%%step a\nx = y", "%%step b\ny = x"],
     ["cycle", "a", "b"]),
    ("duplicate", ["%%step a\nx = 1", "%%step a\ny = 2"],
     ["cell 2", "'a' is used twice, by cell 1 and cell 2"]),
    ("undefined", ["%%step a\nx = 1\ny = z + x"],
     ["cell 1, line 3", "'z' is read here but no cell defines it"]),
    ("shell-in-plain-cell", ["!ls", "%%step a\nx = 1"],
     ["cell 1, line 1", "'!ls' is IPython syntax"]),
    ("impossible-resources", ["%%step a\n%%resources memory=64T\nx = 1"],
     ["step 'a' (cell 1) asks for memory=64000 GB (58.21 TiB)", "largest worker"]),
]


@pytest.mark.parametrize(("name", "cells", "expected"), BAD_NOTEBOOKS,
                         ids=[b[0] for b in BAD_NOTEBOOKS])
def test_bad_notebooks_exit_2_with_a_clear_message_and_keep_history(
        tmp_path: Path, scheduler: str, name: str, cells: list[str],
        expected: list[str]) -> None:
    store = str(tmp_path / "store")
    good = write_notebook(tmp_path / "good.ipynb", ["%%step ok\nv = 1"])
    assert nbflow("run", str(good), "--store", store, "--cluster", scheduler,
                  cwd=tmp_path).returncode == 0
    bad = write_notebook(tmp_path / f"{name}.ipynb", cells)
    proc = nbflow("run", str(bad), "--store", store, "--cluster", scheduler, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "nbflow: error: " in proc.stderr
    for text in expected:
        assert text in proc.stderr
    assert "Traceback" not in proc.stderr
    runs = as_json(nbflow("runs", "--json", "--flow", "good", "--store", store, cwd=tmp_path))
    assert [r["status"] for r in runs] == ["succeeded"]
    shown = as_json(nbflow("show", runs[0]["id"], "--json", "--store", store, cwd=tmp_path))
    assert shown["tasks"][0]["status"] == "succeeded"


BAD_FILES = [
    ("invalid-json", '{"cells": [', ["invalid JSON at line 1"]),
    ("missing-fields", json.dumps({"cells": [{"cell_type": "code"}], "nbformat": 4,
                                   "nbformat_minor": 5, "metadata": {}}),
     ["not a valid notebook"]),
    ("r-kernel", json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "ir", "display_name": "R", "language": "R"}}}),
     ["kernel language is 'R'"]),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_malformed_notebook_files(tmp_path: Path, name: str, text: str,
                                  expected: list[str]) -> None:
    path = tmp_path / f"{name}.ipynb"
    path.write_text(text)
    proc = nbflow("run", str(path), "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 2
    for e in expected:
        assert e in proc.stderr


def test_environment_problems_exit_2(tmp_path: Path, scheduler: str) -> None:
    nb = write_notebook(tmp_path / "f.ipynb", [("p = 1", ["parameters"]), "%%step a\nx = p"])
    unreachable = nbflow("run", str(nb), "--cluster", "tcp://127.0.0.1:9", "--store",
                         str(tmp_path / "s"), cwd=tmp_path,
                         env={"DASK_NBFLOW__CLUSTER__CONNECT_TIMEOUT": "2s"})
    assert unreachable.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in unreachable.stderr

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = nbflow("run", str(nb), "--store", str(blocker / "store"), cwd=tmp_path)
    assert unwritable.returncode == 2
    assert "cannot create the nbflow store folder" in unwritable.stderr

    bad_url = nbflow("run", str(nb), "--store", "nosuchprotocol://bucket/x", "--db",
                     f"sqlite:///{tmp_path / 'db.sqlite'}", cwd=tmp_path)
    assert bad_url.returncode == 2
    assert "cannot use 'nosuchprotocol://bucket/x' as an artifact store" in bad_url.stderr

    unknown = nbflow("run", str(nb), "--param", "q=1", "--store", str(tmp_path / "s"),
                     "--cluster", scheduler, cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown parameter 'q'" in unknown.stderr

    not_an_address = nbflow("run", str(nb), "--cluster", "notanaddress", "--store",
                            str(tmp_path / "s"), cwd=tmp_path)
    assert not_an_address.returncode == 2
    assert "'notanaddress' is not a Dask scheduler address (missing port" in not_an_address.stderr
    assert "Traceback" not in not_an_address.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = nbflow("runs", cwd=empty)
    assert nothing.returncode == 2 and "no nbflow store" in nothing.stderr
    assert not (empty / ".nbflow").exists()  # reading never creates a store

    missing = nbflow("show", "20200101-000000-abcdef", "--store", str(tmp_path / "s"),
                     cwd=tmp_path)
    assert missing.returncode == 2 and "no run '20200101-000000-abcdef'" in missing.stderr


def test_failed_run_exits_1_and_resume_completes_it(tmp_path: Path, scheduler: str) -> None:
    flag = tmp_path / "fixed"
    nb = write_notebook(tmp_path / "f.ipynb", [
        f"flag = {str(flag)!r}",
        "%%step a\nx = 1",
        "%%step b\nimport os\nassert os.path.exists(flag), 'not yet'\ny = x + 1",
    ])
    common = ["--store", str(tmp_path / "s")]
    failed = nbflow("run", str(nb), *common, "--cluster", scheduler, cwd=tmp_path)
    assert failed.returncode == 1
    assert "AssertionError: not yet" in failed.stderr
    run_id = as_json(nbflow("runs", "--json", *common, cwd=tmp_path))[0]["id"]
    flag.touch()
    resumed = nbflow("resume", run_id, *common, "--cluster", scheduler, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    latest = as_json(nbflow("runs", "--json", *common, cwd=tmp_path))[0]
    assert latest["resumed_from"] == run_id and latest["status"] == "succeeded"


def test_two_runs_at_once_on_one_store(tmp_path: Path, scheduler: str) -> None:
    nb = write_notebook(tmp_path / "f.ipynb", [
        ("tag = 'x'", ["parameters"]),
        "%%step a --foreach i in range(6)\nimport time\ntime.sleep(0.1)\nv = f'{tag}{i}'",
        "%%step b\nw = v",
    ])
    args = [sys.executable, "-m", "nbflow.cli", "run", str(nb), "--store",
            str(tmp_path / "s"), "--cluster", scheduler, "-q"]
    procs = [subprocess.Popen([*args, "--param", f"tag='{t}'"], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for t in "pq"]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = as_json(nbflow("runs", "--json", "--store", str(tmp_path / "s"), cwd=tmp_path))
    assert sorted(r["status"] for r in runs) == ["succeeded", "succeeded"]
    for r in runs:
        shown = as_json(nbflow("show", r["id"], "--json", "--store", str(tmp_path / "s"),
                               cwd=tmp_path))
        assert len(shown["tasks"]) == 7
        assert all(t["status"] == "succeeded" for t in shown["tasks"])


def test_killed_driver_shows_interrupted_and_resume_finishes(tmp_path: Path,
                                                             scheduler: str) -> None:
    go = tmp_path / "go"
    nb = write_notebook(tmp_path / "f.ipynb", [
        f"go = {str(go)!r}",
        "%%step first\nx = 1",
        "%%step wait\nimport os, time\ndeadline = time.time() + 60\n"
        "while not os.path.exists(go) and time.time() < deadline:\n    time.sleep(0.1)\ny = x",
    ])
    env = {"DASK_NBFLOW__HEARTBEAT__INTERVAL": "0.5", "DASK_NBFLOW__HEARTBEAT__TIMEOUT": "3"}
    store = ["--store", str(tmp_path / "s")]
    driver = subprocess.Popen(
        [sys.executable, "-m", "nbflow.cli", "run", str(nb), *store, "--cluster", scheduler],
        cwd=tmp_path, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listed = nbflow("runs", "--json", *store, cwd=tmp_path, env=env)
            # Until the driver has created the store, `runs` says there is none (exit 2).
            runs = json.loads(listed.stdout) if listed.returncode == 0 else []
            if runs:
                tasks = as_json(nbflow("show", runs[0]["id"], "--json", *store, cwd=tmp_path,
                                       env=env))["tasks"]
                if any(t["step"] == "wait" and t["status"] == "running" for t in tasks):
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the step never started")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(timeout=30)
        go.touch()  # lets the orphaned task on the cluster end
    run_id = runs[0]["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = as_json(nbflow("runs", "--json", *store, cwd=tmp_path, env=env))[0]["status"]
        if status != "running":
            break
        time.sleep(0.5)
    assert status == "interrupted"
    shown = as_json(nbflow("show", run_id, "--json", *store, cwd=tmp_path, env=env))
    assert {t["step"]: t["status"] for t in shown["tasks"]} == {"first": "succeeded",
                                                               "wait": "cancelled"}
    resumed = nbflow("resume", run_id, *store, "--cluster", scheduler, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    latest = as_json(nbflow("runs", "--json", *store, cwd=tmp_path, env=env))[0]
    assert latest["status"] == "succeeded" and latest["resumed_from"] == run_id
    final = as_json(nbflow("show", latest["id"], "--json", *store, cwd=tmp_path, env=env))
    assert {t["step"]: t["status"] for t in final["tasks"]} == {"first": "cached",
                                                               "wait": "succeeded"}


def test_tags_and_notes_from_the_command_line(tmp_path: Path, scheduler: str) -> None:
    write_notebook(tmp_path / "flow.ipynb", [("n = 1", ["parameters"]), "%%step s\ny = n + 1"])
    for n in (1, 2):
        assert nbflow("run", "flow.ipynb", "-q", "-p", f"n={n}", "--cluster", scheduler,
                      cwd=tmp_path).returncode == 0
    new, old = (r["id"] for r in as_json(nbflow("runs", "--json", cwd=tmp_path)))
    tagged = nbflow("tag", old, "baseline", "paper-v1", cwd=tmp_path)
    assert tagged.returncode == 0 and tagged.stdout == f"run {old}: baseline paper-v1\n"
    assert nbflow("tag", new, "paper-v1", cwd=tmp_path).returncode == 0
    ids = [r["id"] for r in as_json(nbflow("runs", "--tag", "paper-v1", "--json", cwd=tmp_path))]
    assert ids == [new, old]
    only = as_json(nbflow("runs", "--tag", "baseline", "--json", cwd=tmp_path))
    assert [r["id"] for r in only] == [old] and only[0]["tags"] == ["baseline", "paper-v1"]
    assert "baseline paper-v1" in nbflow("runs", cwd=tmp_path).stdout
    assert nbflow("tag", old, "--untag", "baseline", cwd=tmp_path).stdout == (
        f"run {old}: paper-v1\n")
    assert as_json(nbflow("runs", "--tag", "baseline", "--json", cwd=tmp_path)) == []

    assert nbflow("note", old, "the run before the fix", cwd=tmp_path).returncode == 0
    assert nbflow("note", old, cwd=tmp_path).stdout == "the run before the fix\n"
    assert "note       the run before the fix" in nbflow("show", old, cwd=tmp_path).stdout
    assert as_json(nbflow("show", old, "--json", cwd=tmp_path))["note"] == "the run before the fix"
    assert nbflow("note", old, "", cwd=tmp_path).stdout == ""  # cleared
    assert as_json(nbflow("show", old, "--json", cwd=tmp_path))["note"] is None

    for args, message in ((["tag", old, "two words"], "cannot contain whitespace"),
                          (["tag", old, "x" * 101], "at most 100"),
                          (["tag", old], "give tags to add"),
                          (["tag", "20990101-000000-abcdef", "x"], "no run"),
                          (["note", "20990101-000000-abcdef", "x"], "no run")):
        bad = nbflow(*args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert as_json(nbflow("show", old, "--json", cwd=tmp_path))["tags"] == ["paper-v1"]
