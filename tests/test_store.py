"""Tests for nbflow.store: content-addressed artifacts (local folder and fsspec memory://) and the
SQL metadata (SQLite through open_store), including two processes writing at once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
import sqlite3
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import alembic.command
import numpy as np
import pytest
import sqlalchemy as sa
import xxhash
from alembic.config import Config
from alembic.script import ScriptDirectory
from hypothesis import given, settings
from hypothesis import strategies as st

from nbflow.model import ArtifactRef, RunStatus, TaskStatus
from nbflow.store import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactStore,
    MetadataDB,
    MetadataError,
    SerializationError,
    Store,
    StoreError,
    open_store,
)
from nbflow.store import metadata as metadata_module
from nbflow.store.artifacts import MAGIC

MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Artifact stores: a local folder and fsspec's in-memory filesystem


def _memory_url() -> str:
    return f"memory://nbflow-test-{uuid.uuid4().hex}"


@pytest.fixture(params=["local", "memory"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "store"))
        return
    store = ArtifactStore(_memory_url())
    assert not store.local
    try:
        yield store
    finally:
        if store.fs.exists(store.root):
            store.fs.rm(store.root, recursive=True)


@pytest.fixture
def local_artifacts(tmp_path: Path) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path / "store"))
    assert store.local
    return store


def object_files(store: ArtifactStore) -> list[str]:
    return sorted(store.fs.find(f"{store.root}/objects"))


def tmp_files(store: ArtifactStore) -> list[str]:
    return sorted(store.fs.find(f"{store.root}/tmp"))


def raw_bytes(store: ArtifactStore, key: str) -> bytes:
    data: bytes = store.fs.cat_file(store.path(key))
    return data


def overwrite(store: ArtifactStore, key: str, data: bytes) -> None:
    store.fs.pipe_file(store.path(key), data)


# -- round trips ------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: float


ROUND_TRIP_VALUES = [
    pytest.param(0, "int", id="zero"),
    pytest.param(-(2**100), "int", id="big-int"),
    pytest.param("", "str", id="empty-str"),
    pytest.param("héllo wörld ✓", "str", id="unicode-str"),
    pytest.param(b"\x00\xffbytes", "bytes", id="bytes"),
    pytest.param(None, "NoneType", id="none"),
    pytest.param({"a": [1, 2.5, None], "b": {"nested": ("t", True)}}, "dict", id="dict"),
    pytest.param({}, "dict", id="empty-dict"),
    pytest.param([1, "two", 3.0, [4]], "list", id="list"),
    pytest.param({1, 2, 3}, "set", id="set"),
    pytest.param(float("inf"), "float", id="inf"),
    pytest.param(Point(1, 2.5), f"{__name__}.Point", id="dataclass"),
    pytest.param(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "datetime.datetime", id="datetime"),
]


@pytest.mark.parametrize(("value", "type_name"), ROUND_TRIP_VALUES)
def test_round_trip_plain_values(artifacts: ArtifactStore, value: Any, type_name: str) -> None:
    ref = artifacts.put(value)
    assert isinstance(ref, ArtifactRef)
    assert ref.type == type_name
    assert ref.size == len(raw_bytes(artifacts, ref.hash))
    out = artifacts.get(ref.hash)
    assert out == value
    assert type(out) is type(value)
    assert artifacts.exists(ref.hash)


def test_round_trip_lambda_local_function_and_class(artifacts: ArtifactStore) -> None:
    offset = 10

    def add_offset(v: int) -> int:
        return v + offset

    class Local:
        def __init__(self, v: int) -> None:
            self.v = v

        def doubled(self) -> int:
            return self.v * 2

    square = artifacts.get(artifacts.put(lambda v: v * v).hash)
    assert square(7) == 49
    assert artifacts.get(artifacts.put(add_offset).hash)(5) == 15
    cls = artifacts.get(artifacts.put(Local).hash)
    assert cls(4).doubled() == 8
    instance = artifacts.get(artifacts.put(Local(21)).hash)
    assert instance.doubled() == 42
    assert type(instance).__name__ == "Local"


def _arrays() -> list[Any]:
    base = np.arange(48, dtype=np.float64).reshape(6, 8)
    structured = np.zeros(4, dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "<U5")])
    structured["id"] = [1, 2, 3, 4]
    structured["score"] = [0.5, 1.5, 2.5, 3.5]
    structured["tag"] = ["a", "bb", "ccc", "dddd"]
    return [
        pytest.param(base, id="contiguous"),
        pytest.param(base[::2, 1::3], id="non-contiguous-slice"),
        pytest.param(base.T, id="fortran-order"),
        pytest.param(base[:, 3], id="strided-column"),
        pytest.param(np.array(3.25), id="0-d"),
        pytest.param(np.zeros((0, 3), dtype=np.int16), id="empty"),
        pytest.param(structured, id="structured-dtype"),
        pytest.param(np.array([1, "x", None], dtype=object), id="object-dtype"),
        pytest.param(np.arange(3 * MiB // 8, dtype=np.int64), id="larger-than-1MiB"),
        pytest.param(np.arange(3 * MiB // 8, dtype=np.int64).reshape(-1, 8)[:, ::2],
                     id="large-non-contiguous"),
    ]


@pytest.mark.parametrize("array", _arrays())
def test_round_trip_numpy(artifacts: ArtifactStore, array: np.ndarray) -> None:
    ref = artifacts.put(array)
    assert ref.type == "numpy.ndarray"
    out = artifacts.get(ref.hash)
    assert isinstance(out, np.ndarray)
    assert out.dtype == array.dtype
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    if array.dtype != object:
        assert out.tobytes() == array.tobytes()


def test_round_trip_pandas_mixed_dtypes(artifacts: ArtifactStore) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "i": np.arange(6, dtype=np.int64),
            "f": np.linspace(0.0, 1.0, 6),
            "s": list("abcdef"),
            "b": [True, False, True, True, False, False],
            "t": pd.date_range("2024-01-01", periods=6, tz="UTC"),
            "c": pd.Categorical(list("xyxyzz")),
            "n": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
        },
        index=pd.Index(list("uvwxyz"), name="key"),
    )
    ref = artifacts.put(df)
    assert ref.type == "pandas.DataFrame"
    pd.testing.assert_frame_equal(artifacts.get(ref.hash), df)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=json_values)
def test_round_trip_property(value: Any) -> None:
    store = ArtifactStore(_memory_url())
    try:
        ref = store.put(value)
        assert store.get(ref.hash) == value
        assert store.put(value).hash == ref.hash  # deterministic
        assert len(object_files(store)) == 1
    finally:
        store.fs.rm(store.root, recursive=True)


# -- content addressing -----------------------------------------------------------------------


def test_equal_values_share_one_object(artifacts: ArtifactStore) -> None:
    first = artifacts.put({"k": [1, 2, 3], "s": "text"})
    second = artifacts.put({"k": [1, 2, 3], "s": "text"})  # equal, but a different object
    assert first == second
    assert len(object_files(artifacts)) == 1

    a = artifacts.put(np.arange(1000))
    b = artifacts.put(np.arange(1000))
    assert a.hash == b.hash
    assert len(object_files(artifacts)) == 2
    assert tmp_files(artifacts) == []


def test_different_values_different_hashes(artifacts: ArtifactStore) -> None:
    values = [1, 2, "1", 1.0, [1], (1,), {"a": 1}, {"a": 2}, np.arange(3), np.arange(3.0),
              np.arange(4), None, b"1"]
    hashes = [artifacts.put(v).hash for v in values]
    assert len(set(hashes)) == len(values)
    assert len(object_files(artifacts)) == len(values)


def test_hash_is_xxh3_128_of_file(artifacts: ArtifactStore) -> None:
    for value in ["abc", np.linspace(0, 1, 10_000), {"x": 1}]:
        ref = artifacts.put(value)
        data = raw_bytes(artifacts, ref.hash)
        assert data.startswith(MAGIC)
        assert xxhash.xxh3_128(data).hexdigest() == ref.hash
        assert len(ref.hash) == 32
        assert ref.size == len(data)
        assert artifacts.path(ref.hash).endswith(f"/objects/{ref.hash[:2]}/{ref.hash[2:]}")
        assert artifacts.path(ref.hash) in object_files(artifacts)


def test_no_leftover_tmp_files(artifacts: ArtifactStore) -> None:
    for i in range(5):
        artifacts.put(i)
        artifacts.put(i)  # the duplicate's temporary file is removed too
    artifacts.put(np.ones(MiB))
    assert tmp_files(artifacts) == []
    assert len(object_files(artifacts)) == 6


def test_duplicate_put_does_not_rewrite_but_claims(local_artifacts: ArtifactStore) -> None:
    ref = local_artifacts.put("same")
    path = Path(local_artifacts.path(ref.hash))
    os.utime(path, (1_000_000, 1_000_000))
    inode = path.stat().st_ino
    assert local_artifacts.put("same") == ref
    assert path.stat().st_ino == inode  # the same file, not a copy renamed over it ...
    assert path.stat().st_mtime > 1_000_000  # ... marked as just used, so gc keeps it


# -- loading large local arrays: copy-on-write mmap -------------------------------------------


def test_loaded_large_array_is_writable_copy_on_write(artifacts: ArtifactStore) -> None:
    original = np.arange(2 * MiB // 8, dtype=np.float64)  # 2 MiB: above the mmap threshold
    ref = artifacts.put(original)
    assert ref.size > MiB

    loaded = artifacts.get(ref.hash)
    assert loaded.flags.writeable
    loaded[:100] = -1.0
    loaded[-1] = 123.0

    again = artifacts.get(ref.hash)  # verifies the hash: the file is untouched
    np.testing.assert_array_equal(again, original)
    assert xxhash.xxh3_128(raw_bytes(artifacts, ref.hash)).hexdigest() == ref.hash
    assert not np.shares_memory(loaded, again)


def test_local_large_read_is_memory_mapped(local_artifacts: ArtifactStore) -> None:
    ref = local_artifacts.put(np.ones(2 * MiB // 8))
    data = local_artifacts.read_bytes(ref.hash)
    assert not data.readonly
    assert type(data.obj).__name__ == "mmap"


# -- zero copy --------------------------------------------------------------------------------


def _traced_peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_put_and_get_of_large_array_copy_nothing(local_artifacts: ArtifactStore) -> None:
    array = np.random.default_rng(0).random(64 * MiB // 8)  # 64 MiB
    assert array.nbytes == 64 * MiB
    # numpy reports its allocations to tracemalloc: a copy would show up in full
    assert _traced_peak(lambda: array.copy()) >= array.nbytes

    ref: list[ArtifactRef] = []
    put_peak = _traced_peak(lambda: ref.append(local_artifacts.put(array)))
    assert put_peak < array.nbytes / 10, f"put allocated {put_peak} bytes"

    loaded: list[np.ndarray] = []
    get_peak = _traced_peak(lambda: loaded.append(local_artifacts.get(ref[0].hash)))
    assert get_peak < array.nbytes / 10, f"get allocated {get_peak} bytes"
    np.testing.assert_array_equal(loaded[0], array)


# -- integrity --------------------------------------------------------------------------------


INTEGRITY_VALUES = [
    pytest.param("a small string value", id="small"),
    pytest.param(np.arange(2 * MiB // 8, dtype=np.int64), id="large-mmap"),
]


def _assert_integrity_message(exc: ArtifactError, key: str) -> None:
    message = str(exc)
    assert key in message
    assert "corrupt" in message
    assert "Delete the file" in message
    assert "re-run" in message


@pytest.mark.parametrize("value", INTEGRITY_VALUES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_is_detected(artifacts: ArtifactStore, value: Any, where: str) -> None:
    ref = artifacts.put(value)
    data = bytearray(raw_bytes(artifacts, ref.hash))
    index = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[index] ^= 0x01
    overwrite(artifacts, ref.hash, bytes(data))
    with pytest.raises(ArtifactIntegrityError) as info:
        artifacts.get(ref.hash)
    _assert_integrity_message(info.value, ref.hash)
    with pytest.raises(ArtifactIntegrityError):
        artifacts.read_bytes(ref.hash)


@pytest.mark.parametrize("value", INTEGRITY_VALUES)
@pytest.mark.parametrize("keep", [0, 3, 0.5, -1], ids=["empty", "3-bytes", "half", "minus-1"])
def test_truncated_file_is_detected(artifacts: ArtifactStore, value: Any, keep: float) -> None:
    ref = artifacts.put(value)
    data = raw_bytes(artifacts, ref.hash)
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    overwrite(artifacts, ref.hash, data[:n])
    with pytest.raises(ArtifactIntegrityError) as info:
        artifacts.get(ref.hash)
    _assert_integrity_message(info.value, ref.hash)


def test_appended_bytes_are_detected(artifacts: ArtifactStore) -> None:
    ref = artifacts.put([1, 2, 3])
    overwrite(artifacts, ref.hash, raw_bytes(artifacts, ref.hash) + b"\0")
    with pytest.raises(ArtifactIntegrityError):
        artifacts.get(ref.hash)


def test_swapped_objects_are_detected(artifacts: ArtifactStore) -> None:
    # A valid artifact under the wrong key is still wrong data for that key.
    one, two = artifacts.put("one"), artifacts.put("two")
    overwrite(artifacts, one.hash, raw_bytes(artifacts, two.hash))
    with pytest.raises(ArtifactIntegrityError):
        artifacts.get(one.hash)
    assert artifacts.get(two.hash) == "two"


def test_missing_object(artifacts: ArtifactStore) -> None:
    ref = artifacts.put({"gone": True})
    artifacts.fs.rm_file(artifacts.path(ref.hash))
    assert not artifacts.exists(ref.hash)
    with pytest.raises(ArtifactError) as info:
        artifacts.get(ref.hash)
    assert not isinstance(info.value, ArtifactIntegrityError)
    assert ref.hash in str(info.value)
    assert "missing" in str(info.value)


def test_never_stored_key(artifacts: ArtifactStore) -> None:
    key = "0" * 32
    with pytest.raises(ArtifactError, match=key):
        artifacts.get(key)


# -- values that cannot be saved ---------------------------------------------------------------


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "type_fragment"),
    [
        pytest.param(lambda tmp: threading.Lock(), "lock", id="lock"),
        pytest.param(lambda tmp: open(tmp / "f.txt", "w"), "TextIOWrapper", id="open-text-file"),  # noqa: SIM115
        pytest.param(lambda tmp: open(tmp / "f.bin", "wb"), "BufferedWriter", id="open-binary-file"),  # noqa: SIM115
        pytest.param(lambda tmp: {"nested": [threading.RLock()]}, "dict", id="nested-rlock"),
        pytest.param(lambda tmp: _generator(), "generator", id="generator"),
    ],
)
def test_unpicklable_value(artifacts: ArtifactStore, tmp_path: Path,
                           make: Callable[[Path], Any], type_fragment: str) -> None:
    value = make(tmp_path)
    try:
        with pytest.raises(SerializationError) as info:
            artifacts.put(value)
    finally:
        if hasattr(value, "close"):
            value.close()
    assert isinstance(info.value, ArtifactError)
    assert type_fragment in str(info.value)
    assert "cannot be pickled" in str(info.value)
    assert object_files(artifacts) == []
    assert tmp_files(artifacts) == []


# -- unwritable stores ------------------------------------------------------------------------


@pytest.fixture
def under_a_file(tmp_path: Path) -> Path:
    """A path below a regular file: nothing can be created there, even as root."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    return afile / "store"


def test_put_to_unwritable_local_store(under_a_file: Path) -> None:
    store = ArtifactStore(str(under_a_file))
    with pytest.raises(ArtifactError) as info:
        store.put({"x": 1})
    err = info.value
    assert not isinstance(err, SerializationError | ArtifactIntegrityError)
    message = str(err)
    assert "cannot write to the artifact store" in message
    assert str(under_a_file) in message
    assert "--store" in message
    assert isinstance(err.__cause__, OSError)


def test_open_store_under_a_file(under_a_file: Path) -> None:
    with pytest.raises(StoreError) as info:
        open_store(str(under_a_file))
    message = str(info.value)
    assert str(under_a_file) in message
    assert "--store" in message


def test_open_store_with_db_under_a_file(tmp_path: Path, under_a_file: Path) -> None:
    with pytest.raises(StoreError) as info:
        open_store(str(tmp_path / "ok"), db=f"sqlite:///{under_a_file / 'nbflow.db'}")
    assert str(under_a_file) in str(info.value)


# ---------------------------------------------------------------------------------------------
# Store and metadata (SQLite via open_store)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Store]:
    store = open_store(str(tmp_path / "store"))
    try:
        yield store
    finally:
        store.close()


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", "nbflow.store:migrations")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head
    return head


def new_run(meta: MetadataDB, run_id: str, **values: Any) -> None:
    values.setdefault("flow", "flow")
    values.setdefault("kind", "run")
    values.setdefault("params", {})
    values.setdefault("environment", {})
    meta.create_run(id=run_id, **values)


def test_open_store_layout(opened: Store, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    assert opened.url == str(folder)
    assert opened.db_url == f"sqlite:///{folder / 'nbflow.db'}"
    assert (folder / "nbflow.db").is_file()
    ref = opened.artifacts.put([1, 2])
    assert (folder / "objects" / ref.hash[:2] / ref.hash[2:]).is_file()
    assert "Store(" in repr(opened)


def test_run_step_task_lifecycle(opened: Store) -> None:
    meta = opened.meta
    new_run(meta, "r1", flow="train", params={"alpha": 0.5}, environment={"python": "3.11"})
    run = meta.run("r1")
    assert run is not None
    assert run["status"] == RunStatus.RUNNING
    assert run["params"] == {"alpha": 0.5}
    assert run["started_at"].tzinfo is not None
    assert run["started_at"].utcoffset() == dt.timedelta(0)
    assert run["heartbeat_at"] == run["started_at"]
    assert run["finished_at"] is None
    assert meta.run("nope") is None

    meta.record_steps("r1", [
        {"name": "fit", "cell": 3, "code": "m = x", "options": {"name": "fit"}, "inputs": ["x"],
         "outputs": ["m"], "upstream": ["load"]},
        {"name": "load", "cell": 1, "code": "x = 1", "options": {"name": "load"}, "inputs": [],
         "outputs": ["x"], "upstream": []},
    ])
    meta.record_steps("r1", [])  # nothing to record is fine
    assert [s["name"] for s in meta.steps("r1")] == ["load", "fit"]  # by cell
    assert meta.steps("r1")[1]["upstream"] == ["load"]

    t_load = meta.create_task(run_id="r1", step="load", status=TaskStatus.PENDING.value,
                              cache_key="k-load")
    t_fit = meta.create_task(run_id="r1", step="fit", status=TaskStatus.PENDING.value, idx=0,
                             item="0.1")
    assert isinstance(t_load, int) and t_fit > t_load
    assert meta.task(t_load)["attempts"] == 0

    meta.start_attempt(t_load, 1)
    first_start = meta.task(t_load)["started_at"]
    assert meta.task(t_load)["status"] == TaskStatus.RUNNING
    meta.finish_attempt(t_load, 1, TaskStatus.FAILED, worker="tcp://w1", error="boom")
    meta.start_attempt(t_load, 2)
    assert meta.task(t_load)["started_at"] == first_start  # the first attempt's start is kept
    assert meta.task(t_load)["attempts"] == 2
    meta.finish_attempt(t_load, 2, TaskStatus.SUCCEEDED, worker="tcp://w2")
    out = ArtifactRef("ab" * 16, 10, "int")
    meta.finish_task(t_load, TaskStatus.SUCCEEDED, outputs={"x": out}, worker="tcp://w2")

    attempts = meta.attempts(t_load)
    assert [(a["number"], a["status"], a["worker"], a["error"]) for a in attempts] == [
        (1, "failed", "tcp://w1", "boom"), (2, "succeeded", "tcp://w2", None)]
    assert all(a["finished_at"] >= a["started_at"] for a in attempts)

    tasks = meta.tasks("r1")
    assert [t["id"] for t in tasks] == [t_load, t_fit]
    assert tasks[0]["status"] == "succeeded"
    assert tasks[0]["outputs"] == {"x": out}
    assert tasks[0]["worker"] == "tcp://w2"
    assert tasks[0]["finished_at"] is not None
    assert tasks[1]["outputs"] == {} and tasks[1]["item"] == "0.1"
    assert [t["id"] for t in meta.tasks("r1", step="fit")] == [t_fit]
    assert meta.tasks("r1", step="none") == []
    assert meta.task(10_000) is None

    meta.heartbeat("r1")
    assert meta.run("r1")["heartbeat_at"] >= run["heartbeat_at"]
    meta.finish_run("r1", RunStatus.SUCCEEDED)
    done = meta.run("r1")
    assert done["status"] == "succeeded" and done["finished_at"] is not None
    assert meta.flows() == ["train"]


def test_cache_candidates(opened: Store) -> None:
    meta = opened.meta
    new_run(meta, "r")
    ids = []
    for status in ["succeeded", "failed", "succeeded", "cached", "succeeded"]:
        tid = meta.create_task(run_id="r", step="s", status="pending", cache_key="key")
        meta.finish_task(tid, TaskStatus(status), outputs={"y": ArtifactRef(f"{tid:032x}", 1, "int")})
        ids.append(tid)
    other = meta.create_task(run_id="r", step="s", status="pending", cache_key="other")
    meta.finish_task(other, TaskStatus.SUCCEEDED)

    found = meta.cache_candidates(["key"])["key"]
    assert [r["id"] for r in found] == [ids[4], ids[2], ids[0]]  # newest first, succeeded only
    assert found[0]["outputs"] == {"y": ArtifactRef(f"{ids[4]:032x}", 1, "int")}
    assert [r["id"] for r in meta.cache_candidates(["key"], limit=1)["key"]] == [ids[4]]
    assert meta.cache_candidates(["missing"]) == {}


def test_runs_filters_paging_newest_first(opened: Store) -> None:
    meta = opened.meta
    base = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    for i in range(9):
        new_run(meta, f"run-{i}", flow="a" if i % 3 else "b",
                status="succeeded" if i % 2 else "failed",
                started_at=base + dt.timedelta(minutes=i))
    all_ids = [r["id"] for r in meta.runs()]
    assert all_ids == [f"run-{i}" for i in reversed(range(9))]

    assert [r["id"] for r in meta.runs(flow="b")] == ["run-6", "run-3", "run-0"]
    assert [r["id"] for r in meta.runs(status="succeeded")] == ["run-7", "run-5", "run-3", "run-1"]
    assert [r["id"] for r in meta.runs(flow="a", status="failed")] == ["run-8", "run-4", "run-2"]
    assert meta.runs(flow="zzz") == []

    pages = [[r["id"] for r in meta.runs(limit=4, offset=o)] for o in (0, 4, 8, 12)]
    assert pages == [all_ids[:4], all_ids[4:8], all_ids[8:], []]
    assert [r["id"] for r in meta.runs(flow="a", limit=2, offset=1)] == ["run-7", "run-5"]
    assert sorted(meta.flows()) == ["a", "b"]


def test_runs_same_start_time_break_ties_by_id(opened: Store) -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for run_id in ["b", "c", "a"]:
        new_run(opened.meta, run_id, started_at=when)
    assert [r["id"] for r in opened.meta.runs()] == ["c", "b", "a"]


def test_mark_interrupted(opened: Store) -> None:
    meta = opened.meta
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    new_run(meta, "stale", started_at=old, heartbeat_at=old)
    new_run(meta, "fresh")
    new_run(meta, "revived", started_at=old, heartbeat_at=old)
    meta.heartbeat("revived")
    new_run(meta, "finished", started_at=old, heartbeat_at=old, status="succeeded")

    stale_tasks = {s: meta.create_task(run_id="stale", step=s, status="pending")
                   for s in ("done", "running", "pending")}
    meta.finish_task(stale_tasks["done"], TaskStatus.SUCCEEDED)
    meta.start_attempt(stale_tasks["running"], 1)
    fresh_task = meta.create_task(run_id="fresh", step="s", status="pending")

    assert meta.mark_interrupted(30) == ["stale"]

    stale = meta.run("stale")
    assert stale["status"] == RunStatus.INTERRUPTED
    assert stale["finished_at"] is not None and "heartbeat" in stale["error"]
    statuses = {t["step"]: t["status"] for t in meta.tasks("stale")}
    assert statuses == {"done": "succeeded", "running": "cancelled", "pending": "cancelled"}
    assert meta.task(stale_tasks["pending"])["error"] == "run interrupted"
    for run_id in ("fresh", "revived"):
        assert meta.run(run_id)["status"] == "running"
    assert meta.run("finished")["status"] == "succeeded"
    assert meta.task(fresh_task)["status"] == "pending"

    assert meta.mark_interrupted(30) == []  # already handled
    assert set(meta.mark_interrupted(0.0)) <= {"fresh", "revived"}  # everything running is stale


def test_alembic_version_holds_head(opened: Store, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "store" / "nbflow.db") as con:
        rows = con.execute("SELECT version_num FROM alembic_version").fetchall()
    con.close()
    assert rows == [(head_revision(),)]


def test_reopen_keeps_data_and_skips_migrations(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(str(tmp_path / "store"))
    new_run(store.meta, "kept", flow="f")
    store.meta.create_task(run_id="kept", step="s", status="pending")
    store.close()

    def no_upgrade(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("migrations must not run on an up-to-date database")

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    for _ in range(2):
        again = open_store(str(tmp_path / "store"))
        try:
            assert [r["id"] for r in again.meta.runs()] == ["kept"]
            assert len(again.meta.tasks("kept")) == 1
        finally:
            again.close()


def test_unknown_schema_revision(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.close()
    db_path = tmp_path / "store" / "nbflow.db"
    with sqlite3.connect(db_path) as con:
        con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.close()
    with pytest.raises(MetadataError) as info:
        MetadataDB(f"sqlite:///{db_path}")
    message = str(info.value)
    assert "9999" in message
    assert "Upgrade nbflow" in message
    with pytest.raises(MetadataError, match="Upgrade nbflow"):
        open_store(str(tmp_path / "store"))


def test_unreachable_database(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as info:
        MetadataDB(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    assert "--db" in str(info.value)


def test_bad_database_url_is_a_metadata_error() -> None:
    with pytest.raises(MetadataError, match="--db"):
        MetadataDB("nosuchdialect://host/db")


def test_sqlite_pragmas(opened: Store) -> None:
    with opened.meta.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 60000


# -- two processes at once --------------------------------------------------------------------

RUNS_PER_PROCESS = 50


def _write_runs(db_url: str, tag: str, barrier: Any, report: str) -> None:
    """Child process: wait for the other one, then write runs with tasks and attempts."""
    try:
        meta = MetadataDB(db_url)
        barrier.wait(timeout=120)
        try:
            for i in range(RUNS_PER_PROCESS):
                run_id = f"{tag}-{i:03d}"
                new_run(meta, run_id, flow=tag, params={"i": i})
                meta.record_steps(run_id, [{"name": "s", "cell": 1, "code": "x = 1",
                                            "options": {"name": "s"}, "inputs": [], "outputs": ["x"],
                                            "upstream": []}])
                task = meta.create_task(run_id=run_id, step="s", status="pending",
                                        cache_key=f"{tag}-{i}")
                meta.start_attempt(task, 1)
                meta.finish_attempt(task, 1, TaskStatus.SUCCEEDED, worker=tag)
                meta.finish_task(task, TaskStatus.SUCCEEDED,
                                 outputs={"x": ArtifactRef(f"{i:032x}", i, "int")})
                meta.heartbeat(run_id)
                meta.finish_run(run_id, RunStatus.SUCCEEDED)
        finally:
            meta.close()
    except BaseException as exc:
        Path(report).write_text(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


def _open_fresh(db_url: str, barrier: Any, report: str) -> None:
    """Child process: open (and so migrate) a database at the same moment as the others."""
    try:
        barrier.wait(timeout=120)
        MetadataDB(db_url).close()
    except BaseException as exc:
        Path(report).write_text(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


def _run_children(target: Callable[..., None], db_url: str, n: int, tmp_path: Path,
                  with_tag: bool) -> list[str]:
    """Start ``n`` spawned processes on ``target`` at once; return the errors they reported."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    reports = [tmp_path / f"child-{uuid.uuid4().hex}.err" for _ in range(n)]
    procs = []
    for i, report in enumerate(reports):
        args = (db_url, f"p{i}", barrier, str(report)) if with_tag else (db_url, barrier, str(report))
        procs.append(ctx.Process(target=target, args=args))
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=240)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r.read_text() for r in reports if r.exists()]
    errors += [f"{p.name} exited with {p.exitcode}" for p in procs if p.exitcode != 0]
    return errors


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))  # created and migrated once, up front
    store.close()
    errors = _run_children(_write_runs, store.db_url, 2, tmp_path, with_tag=True)
    assert errors == []

    again = open_store(str(tmp_path / "store"))
    try:
        meta = again.meta
        runs = meta.runs()
        assert len(runs) == 2 * RUNS_PER_PROCESS
        assert {r["id"] for r in runs} == {f"p{p}-{i:03d}" for p in (0, 1)
                                            for i in range(RUNS_PER_PROCESS)}
        assert all(r["status"] == "succeeded" for r in runs)
        assert sorted(meta.flows()) == ["p0", "p1"]
        assert len(meta.runs(flow="p0")) == len(meta.runs(flow="p1")) == RUNS_PER_PROCESS
        for r in runs:
            (task,) = meta.tasks(r["id"])
            assert task["status"] == "succeeded"
            i = r["params"]["i"]
            assert task["outputs"] == {"x": ArtifactRef(f"{i:032x}", i, "int")}
            assert [a["status"] for a in meta.attempts(task["id"])] == ["succeeded"]
            assert len(meta.steps(r["id"])) == 1
    finally:
        again.close()


def test_processes_opening_a_fresh_database_at_once(tmp_path: Path) -> None:
    for trial in range(3):
        db_url = f"sqlite:///{tmp_path / f'fresh-{trial}.db'}"
        errors = _run_children(_open_fresh, db_url, 4, tmp_path, with_tag=False)
        assert errors == []


def test_the_migrations_make_exactly_the_tables_of_schema_py(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from nbflow.store import schema

    db = MetadataDB(f"sqlite:///{tmp_path / 'nbflow.db'}")
    try:
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    finally:
        db.close()


def test_head_is_the_newest_migration_and_a_current_database_opens_without_alembic(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    assert head_revision() == metadata_module.HEAD
    url = f"sqlite:///{tmp_path / 'nbflow.db'}"
    MetadataDB(url).close()  # made and migrated
    check = ("import sys; from nbflow.store.metadata import MetadataDB; "
             f"MetadataDB({url!r}).close(); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
