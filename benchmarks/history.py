"""Benchmark 6: the first page of the run history (what the sidebar asks for) with 10,000 runs.

The store gets 10,000 runs of 5 tasks each, inserted in bulk. nbflow's side is
``nbflow.client.history_page``, exactly what ``GET /nbflow/api/runs`` returns; the contender is the
same page straight from sqlite3: the 50 newest runs and their task counts, two hand-written queries.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from nbflow.client import history_page
from nbflow.store import open_store
from nbflow.store import schema as t

RUNS = 10_000
TASKS_PER_RUN = 5
PAGE = 50


def fill(folder: Path) -> Path:
    """A store with RUNS runs; returns its SQLite file."""
    store = open_store(str(folder / ".nbflow"))
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    runs, tasks = [], []
    for i in range(RUNS):
        when = start + dt.timedelta(minutes=i)
        run_id = f"{when:%Y%m%d-%H%M%S}-{i:06x}"
        runs.append({"id": run_id, "flow": f"flow{i % 10}", "status": "succeeded",
                     "kind": "headless", "params": {}, "environment": {}, "started_at": when,
                     "finished_at": when + dt.timedelta(seconds=30)})
        tasks += [{"run_id": run_id, "step": f"s{k}", "status": "cached" if k % 2 else "succeeded",
                   "attempts": 1, "created_at": when} for k in range(TASKS_PER_RUN)]
    with store.meta.engine.begin() as conn:
        conn.execute(sa.insert(t.runs), runs)
        conn.execute(sa.insert(t.tasks), tasks)
    store.close()
    return folder / ".nbflow" / "nbflow.db"


def contenders(folder: Path, timed: Callable[[Callable[[], object]], float]
               ) -> dict[str, Callable[[], dict[str, float]]]:
    db = fill(folder)
    store = open_store(str(folder / ".nbflow"))
    raw = sqlite3.connect(db)

    def nbflow_page() -> dict[str, float]:
        pages: list[dict[str, object]] = []
        seconds = timed(lambda: pages.append(history_page(store, limit=PAGE)))
        runs = pages[0]["runs"]
        if not isinstance(runs, list) or len(runs) != PAGE or runs[0]["counts"] != {
                "succeeded": 3, "cached": 2}:
            raise RuntimeError(f"history page came back wrong: {str(runs)[:300]}")
        return {"nbflow history page": seconds}

    def sqlite_page() -> dict[str, float]:
        def query() -> object:
            rows = raw.execute("SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?",
                               (PAGE,)).fetchall()
            ids = [r[0] for r in rows]
            marks = ",".join("?" * len(ids))
            counts = raw.execute(f"SELECT run_id, status, count(*) FROM tasks WHERE run_id IN "
                                 f"({marks}) GROUP BY run_id, status", ids).fetchall()
            return rows, counts

        out: list[object] = []
        seconds = timed(lambda: out.append(query()))
        return {"sqlite3 history page": seconds}

    return {"nbflow": nbflow_page, "sqlite3": sqlite_page}
