"""`nbflow gc`: which runs go, what stays reachable, and collection racing real writers.

The rules and reachability run on real flows (the session's LocalCluster) on SQLite and
PostgreSQL; the object protocol (`ArtifactStore.collect` against writers and cache hits) is driven
step by step on a real file system; and the last test runs `nbflow gc --delete` in a loop while
other `nbflow run` processes write the same store, reusing and rewriting the very objects being
collected, then checks that every kept run still loads every artifact and log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dask.config
import pytest
import sqlalchemy as sa
from conftest import write_notebook

from nbflow.client import Run, list_runs
from nbflow.execute import Executor
from nbflow.model import TaskStatus
from nbflow.retention import Policy, RetentionError, collect, parse_duration
from nbflow.runner import run_notebook
from nbflow.store import ArtifactError, ArtifactStore, Store, open_store
from nbflow.store import artifacts as artifacts_module

CELLS = [
    ("seed = 0", ["parameters"]),
    "%%step shared\nblob = bytes(200_000)\nprint('shared step')",  # the same in every run
    "%%step fresh --foreach i in range(3)\npart = [seed, i] * 1000\nprint(f'fresh {seed} {i}')",
    "%%step again --force\nsame = bytes(100_000)",  # always runs, always the same object
]


def loads_everything(store: Store, run_ids: list[str]) -> int:
    """Every output, display and log of every finished task of these runs reads back intact
    (loading verifies each object's hash); the number of objects loaded."""
    loaded = 0
    for run_id in run_ids:
        for task in Run(run_id, store).tasks:
            if not task.status.ok:
                continue
            for artifact in task.outputs.values():
                artifact.load()
                loaded += 1
            assert task._row["stdout_path"] is None or isinstance(task.stdout, str)
            if task._row["stdout_path"]:
                store.artifacts.read_text(task._row["stdout_path"])  # present, not just empty
    return loaded


def object_keys(store: Store) -> set[str]:
    return {key for key, _, _ in store.artifacts.iter_objects()}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    db = None if request.param == "sqlite" else request.getfixturevalue("postgres_db_url")
    st = open_store(str(tmp_path / "store"), db)
    with dask.config.set({"nbflow.gc.grace": "0s"}):
        yield st
    st.close()


def five_runs(tmp_path: Path, store: Store, executor: Executor) -> list[str]:
    path = write_notebook(tmp_path / "flow.ipynb", CELLS)
    return [run_notebook(path, store=store, executor=executor, params={"seed": s})
            for s in range(1, 6)]


def test_rules_choose_runs_and_gc_keeps_what_kept_runs_reach(tmp_path: Path, db_store: Store,
                                                             executor: Executor) -> None:
    store = db_store
    r1, r2, r3, r4, r5 = five_runs(tmp_path, store, executor)
    Run(r2, store).add_tags("baseline")
    # run 1 executed `shared`; the others are cache hits of it: their outputs and logs are run 1's
    origin = Run(r1, store)["shared"].task
    assert Run(r4, store)["shared"].task.cached_from == origin.id
    fresh = {a.hash for r in (r1, r3) for t in Run(r, store)["fresh"].tasks
             for a in t.outputs.values()}  # the only objects of runs 1 and 3 no other run has
    before = object_keys(store)

    dry = collect(store, Policy(keep_last=2, keep_tagged=True))
    assert dry.dry_run and dry.runs == [r1, r3]
    assert dry.kept == {"running": 0, "newest": 2, "tagged": 1, "newer": 0, "other flows": 0}
    assert dry.objects == len(fresh) == 6 and dry.object_bytes > 0 and dry.tasks == 2 * 5
    assert object_keys(store) == before and len(list_runs(store=store)) == 5  # nothing deleted

    report = collect(store, Policy(keep_last=2, keep_tagged=True), dry_run=False)
    assert report.to_json() == {**dry.to_json(), "dry_run": False}
    assert report.leftovers == 0
    assert [r.id for r in list_runs(store=store)] == [r5, r4, r2]
    for gone in (r1, r3):
        assert store.meta.run(gone) is None
        with pytest.raises(KeyError):
            Run(gone, store)
    assert object_keys(store) == before - fresh
    assert loads_everything(store, [r5, r4, r2]) == 3 * 5
    # The kept runs' cached `shared` shows run 1's log, which stayed; run 3's own logs went.
    assert Run(r4, store)["shared"].task.stdout == "shared step\n"
    assert not list(store.artifacts.iter_files(f"logs/{r3}"))
    assert list(store.artifacts.iter_files(f"logs/{r1}"))  # only what kept runs show
    lineage = Run(r4, store)["shared"].task.outputs["blob"].lineage()
    assert lineage.tasks[0]["cached_from"] == {"run": None, "task": origin.id}
    # Nothing more to free; the tagged run goes once untagged.
    assert collect(store, Policy(keep_last=2, keep_tagged=True), dry_run=False).runs == []
    Run(r2, store).remove_tags("baseline")
    assert collect(store, Policy(keep_last=2), dry_run=False).runs == [r2]
    assert loads_everything(store, [r5, r4]) == 2 * 5


def test_older_than_keeps_recent_runs_and_rules_are_required(tmp_path: Path, store: Store,
                                                             executor: Executor) -> None:
    path = write_notebook(tmp_path / "flow.ipynb", CELLS)
    old, new = (run_notebook(path, store=store, executor=executor, params={"seed": s})
                for s in (1, 2))
    store.meta.update_run(old, started_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    assert collect(store, Policy(older_than=parse_duration("30d"))).runs == [old]
    assert collect(store, Policy(older_than=parse_duration("60d"))).runs == []
    assert collect(store, Policy(keep_last=0, flow="other")).runs == []
    assert collect(store, Policy(keep_last=0, flow="flow")).runs == [old, new]
    # Everything goes, step bodies included; a run made next in this process records them again.
    with dask.config.set({"nbflow.gc.grace": "0s"}):
        assert collect(store, Policy(keep_last=0), dry_run=False).runs == [old, new]
    with store.meta.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM codes")).scalar() == 0
    again = run_notebook(path, store=store, executor=executor, params={"seed": 2})
    tasks = store.meta.tasks(again)
    assert set(store.meta.codes(t["code_hash"] for t in tasks)) == {t["code_hash"] for t in tasks}
    with pytest.raises(RetentionError, match="--keep-last N"):
        collect(store, Policy(keep_tagged=True))
    assert parse_duration("1d12h") == dt.timedelta(hours=36)
    for bad in ("", "3", "3x", "d", "1d junk"):
        with pytest.raises(RetentionError, match="not a duration"):
            parse_duration(bad)


def test_a_running_run_and_recent_objects_are_never_collected(tmp_path: Path, store: Store,
                                                              executor: Executor) -> None:
    path = write_notebook(tmp_path / "flow.ipynb", CELLS)
    first, second = (run_notebook(path, store=store, executor=executor, params={"seed": s})
                     for s in (1, 2))
    # With the default grace (1h) the first run's objects, unreferenced once it goes, stay.
    report = collect(store, Policy(keep_last=1), dry_run=False)
    assert report.runs == [first] and report.objects == 0 and report.objects_in_use == 3
    # A run in progress (heartbeating) is kept, and nothing written since it began is
    # collected, even with no grace at all: an object its task wrote but its driver has not
    # recorded yet.
    store.meta.update_run(second, status="running", finished_at=None,
                          started_at=dt.datetime.now(dt.UTC), heartbeat_at=dt.datetime.now(dt.UTC))
    orphan = store.artifacts.put(["written by a task, not recorded yet"])
    # A writer killed half-way left a temporary file; one of the running run is being written.
    tmp = Path(store.artifacts.root) / "tmp"
    (tmp / "abandoned").write_bytes(b"x" * 1000)
    os.utime(tmp / "abandoned", (time.time() - 60, time.time() - 60))
    (tmp / "being-written").write_bytes(b"y")
    with dask.config.set({"nbflow.gc.grace": "0s"}):
        report = collect(store, Policy(keep_last=0), dry_run=False)
        assert report.runs == [] and report.kept["running"] == 1
        assert store.artifacts.exists(orphan.hash)
        assert (report.leftovers, report.leftover_bytes) == (1, 1000)
        assert sorted(p.name for p in tmp.iterdir()) == ["being-written"]
        # Its driver died before recording it: once no run is in progress, it is collected.
        store.meta.update_run(second, status="succeeded")
        aged(store.artifacts, orphan.hash, 60)
        report = collect(store, Policy(keep_last=1), dry_run=False)
        assert report.objects >= 1 and not store.artifacts.exists(orphan.hash)
        assert report.leftovers == 1 and not list(tmp.iterdir())
    assert loads_everything(store, [second]) == 5


def test_cache_hits_claim_logs_and_gc_takes_logs_no_recorded_run_has(
        tmp_path: Path, store: Store, executor: Executor) -> None:
    path = write_notebook(tmp_path / "flow.ipynb", CELLS)
    first = run_notebook(path, store=store, executor=executor)
    shared = next(t for t in store.meta.tasks(first) if t["step"] == "shared")
    log = Path(store.artifacts.root) / shared["stdout_path"]
    then = time.time() - 3600
    os.utime(log, (then, then))
    second = run_notebook(path, store=store, executor=executor)
    hit = next(t for t in store.meta.tasks(second) if t["step"] == "shared")
    assert hit["status"] == TaskStatus.CACHED.value and hit["stdout_path"] == shared["stdout_path"]
    assert log.stat().st_mtime > then + 1800  # claimed: a concurrent gc now keeps it
    # Logs of a run no longer recorded (left by an earlier gc): old ones go, recent ones stay.
    orphans = Path(store.artifacts.root) / "logs" / "20200101-000000-abcdef"
    orphans.mkdir(parents=True)
    (orphans / "1.1.stdout").write_text("old\n")
    os.utime(orphans / "1.1.stdout", (then, then))
    (orphans / "2.1.stdout").write_text("recent\n")
    report = collect(store, Policy(keep_last=2), dry_run=False)
    assert report.runs == [] and report.logs == 1
    assert sorted(p.name for p in orphans.iterdir()) == ["2.1.stdout"]
    # The first run goes: the log its cached task still shows stays, with the second run.
    with dask.config.set({"nbflow.gc.grace": "0s"}):
        report = collect(store, Policy(keep_last=1), dry_run=False)
    assert report.runs == [first] and log.exists()
    assert loads_everything(store, [second]) == 5


def test_collect_file_keeps_a_claimed_log_and_takes_an_old_one_with_its_folder(
        tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    store.write_text("logs/r1/1.1.stdout", "one\n")
    log = tmp_path / "logs" / "r1" / "1.1.stdout"
    then = time.time() - 3600
    os.utime(log, (then, then))
    assert store.claim_file("logs/r1/1.1.stdout")  # a cache hit shows it
    assert not store.collect_file("logs/r1/1.1.stdout", then + 1) and log.exists()
    os.utime(log, (then, then))
    assert store.collect_file("logs/r1/1.1.stdout", then + 1)
    assert not (tmp_path / "logs" / "r1").exists()  # its folder, left empty, went too
    assert not store.claim_file("logs/r1/1.1.stdout")  # a cache hit now runs the step instead
    assert not store.collect_file("logs/r1/1.1.stdout", then + 1)


# -- the object protocol, step by step -------------------------------------------------------------


def aged(store: ArtifactStore, key: str, seconds: float = 3600) -> float:
    """Make object ``key`` look written ``seconds`` ago; a cutoff just after that."""
    then = time.time() - seconds
    os.utime(store.path(key), (then, then))
    return then + 1


def test_collect_deletes_an_old_object_and_a_claim_after_it_sees_it_gone(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.put(list(range(100)))
    cutoff = aged(store, ref.hash)
    assert store.collect(ref.hash, cutoff)
    assert not store.claim(ref.hash, ref.size)  # a cache hit now runs the step instead
    with pytest.raises(ArtifactError, match="missing"):
        store.get(ref.hash)
    assert not store.collect(ref.hash, cutoff)  # already gone: nothing to do


def test_a_claim_or_a_write_before_collect_keeps_the_object(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.put(list(range(100)))
    cutoff = aged(store, ref.hash)
    assert store.claim(ref.hash, ref.size)  # a cache hit reuses it
    assert not store.collect(ref.hash, cutoff) and store.get(ref.hash) == list(range(100))
    cutoff = aged(store, ref.hash)
    assert store.put(list(range(100))) == ref  # a run writes the same value again
    assert not store.collect(ref.hash, cutoff) and store.get(ref.hash) == list(range(100))


def test_a_claim_racing_the_move_aside_is_seen_and_the_object_put_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.put({"model": 1})
    cutoff = aged(store, ref.hash)
    real_rename = os.rename

    def claimed_just_before(src: str, dst: str) -> None:
        os.utime(src)  # the cache hit's claim lands between collect's checks and its move
        real_rename(src, dst)

    monkeypatch.setattr(artifacts_module.os, "rename", claimed_just_before)
    assert not store.collect(ref.hash, cutoff)
    monkeypatch.setattr(artifacts_module.os, "rename", real_rename)
    assert store.get(ref.hash) == {"model": 1}
    assert not [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("gc-")]


def test_a_write_racing_the_move_aside_leaves_the_new_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.put({"model": 2})
    cutoff = aged(store, ref.hash)
    real_rename = os.rename

    def written_just_after(src: str, dst: str) -> None:
        real_rename(src, dst)
        monkeypatch.setattr(artifacts_module.os, "rename", real_rename)
        assert not store.claim(ref.hash, ref.size)  # a cache hit finds it gone ...
        assert store.put({"model": 2}) == ref  # ... so its step runs and writes it again

    monkeypatch.setattr(artifacts_module.os, "rename", written_just_after)
    assert store.collect(ref.hash, cutoff)  # the old copy went ...
    assert store.get(ref.hash) == {"model": 2}  # ... the new one is there


# -- the CLI ---------------------------------------------------------------------------------------


def nbflow(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DASK_NBFLOW__GC__GRACE": "0s", "DASK_NBFLOW__CLUSTER__N_WORKERS": "1"}
    proc = subprocess.run([sys.executable, "-m", "nbflow.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_gc_is_a_dry_run_unless_delete_and_refuses_unclear_rules(
        tmp_path: Path, executor: Executor) -> None:
    project = tmp_path / "project"
    store = open_store(str(project / ".nbflow"))
    try:
        runs = five_runs(project, store, executor)
    finally:
        store.close()
    for args, message in ((["gc"], "say which runs may go"),
                          (["gc", "--older-than", "soon"], "not a duration"),
                          (["gc", "--keep-last", "-1"], "must be 0 or more")):
        bad = nbflow(project, *args, check=False)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    dry = json.loads(nbflow(project, "gc", "--keep-last", "3", "--json").stdout)
    assert dry["dry_run"] and dry["runs"] == runs[:2] and dry["freed_bytes"] > 0
    text = nbflow(project, "gc", "--keep-last", "3").stdout
    assert "would delete 2 run(s)" in text and "add --delete" in text
    assert len(json.loads(nbflow(project, "runs", "--json").stdout)) == 5
    done = nbflow(project, "gc", "--keep-last", "3", "--delete").stdout
    assert "deleted 2 run(s)" in done
    assert [r["id"] for r in json.loads(nbflow(project, "runs", "--json").stdout)] == runs[:1:-1]


# -- gc racing real writers ------------------------------------------------------------------------


def test_gc_in_a_loop_while_runs_write_the_same_objects_loses_nothing(
        tmp_path: Path, executor: Executor) -> None:
    """Runs of flow `old` keep being made and collected (`gc --flow old --keep-last 0`) while
    two `nbflow run` processes run flow `new`, whose steps are cache hits of `old` runs' tasks
    (the same cells) or rewrite the same objects; every `new` run must stay whole. The races
    this exercises are narrow (milliseconds between a claim or write and its record), so this
    is a soak test with real processes; each protection on its own is pinned by the step-by-step
    tests above, which fail when it is taken out."""
    project = tmp_path / "project"
    write_notebook(project / "old.ipynb", CELLS)
    write_notebook(project / "new.ipynb", CELLS)
    store = open_store(str(project / ".nbflow"))
    for seed in range(3):  # something to collect from the start
        run_notebook(project / "old.ipynb", store=store, executor=executor,
                     params={"seed": seed})
    stop = threading.Event()
    deleted: list[str] = []
    errors: list[str] = []

    def make_old_runs() -> None:
        seed = 100
        while not stop.is_set():
            seed += 1
            proc = nbflow(project, "run", "old.ipynb", "-q", "-p", f"seed={seed % 3}",
                          check=False)
            if proc.returncode != 0:
                errors.append(proc.stderr)

    def collect_in_a_loop() -> None:
        while not stop.is_set():
            proc = nbflow(project, "gc", "--flow", "old", "--keep-last", "0", "--delete",
                          "--json", check=False)
            if proc.returncode != 0:
                errors.append(proc.stderr)
            else:
                deleted.extend(json.loads(proc.stdout)["runs"])

    def make_new_runs(seeds: list[int], out: list[subprocess.CompletedProcess[str]]) -> None:
        for seed in seeds:
            out.append(nbflow(project, "run", "new.ipynb", "-q", "-p", f"seed={seed % 3}",
                              check=False))

    background = [threading.Thread(target=make_old_runs), threading.Thread(target=collect_in_a_loop)]
    results: list[list[subprocess.CompletedProcess[str]]] = [[], []]
    writers = [threading.Thread(target=make_new_runs, args=(seeds, out))
               for seeds, out in zip(([0, 1], [1, 2]), results, strict=True)]
    for th in background + writers:
        th.start()
    for th in writers:
        th.join(timeout=600)
    stop.set()
    for th in background:
        th.join(timeout=300)
    for proc in (p for out in results for p in out):
        assert proc.returncode == 0, proc.stderr
    assert not errors, errors
    assert len(set(deleted)) >= 3  # gc really ran while the new runs wrote

    con = sqlite3.connect(project / ".nbflow" / "nbflow.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    new = [r.id for r in list_runs("new", store=store)]
    assert len(new) == 4
    assert all(Run(r, store).status.value == "succeeded" for r in new)
    assert loads_everything(store, new) == 4 * 5
    for r in new:  # every task of every new run, cached from a collected run or not, is whole
        assert all(t.status in (TaskStatus.SUCCEEDED, TaskStatus.CACHED)
                   for t in Run(r, store).tasks)
    # And once the old flow is collected for good, still nothing of `new` is lost.
    with dask.config.set({"nbflow.gc.grace": "0s"}):
        collect(store, Policy(keep_last=0, flow="old"), dry_run=False)
    assert loads_everything(store, new) == 4 * 5
    with contextlib.suppress(Exception):
        store.close()
