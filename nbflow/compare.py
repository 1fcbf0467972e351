"""``nbflow diff``: what changed between two runs, step by step.

``diff_runs(store, a, b)`` builds the JSON model (``nbflow diff --json``, the REST API, the
sidebar): the runs' parameters, their packages whose versions differ, and for each step its code
(a unified diff), the by-value inputs it read, the packages it imported, the data files it read,
and the outputs that differ, each with a summary of how (``nbflow.summarize``). Outputs are
loaded for that only up to ``nbflow.diff.max-load`` bytes each. ``render_text`` and
``render_html`` (``%nbflow diff``; every value escaped) draw it. Reading only.
"""

from __future__ import annotations

import difflib
import html
from typing import TYPE_CHECKING, Any

import dask.utils

from nbflow import config

if TYPE_CHECKING:
    from nbflow.store import Store

Row = dict[str, Any]


class CompareError(KeyError):
    """A run to compare does not exist."""


def _versions(a: dict[str, str], b: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": n, "a": a.get(n), "b": b.get(n)}
            for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]


def _pair(a: Any, b: Any) -> dict[str, Any] | None:
    return None if a == b else {"a": a, "b": b}


def _summary(run: Row, tags: list[str]) -> dict[str, Any]:
    return {"id": run["id"], "flow": run["flow"], "status": run["status"], "kind": run["kind"],
            "started_at": run["started_at"].isoformat() if run["started_at"] else None,
            "finished_at": run["finished_at"].isoformat() if run["finished_at"] else None,
            "params": run["params"] or {}, "resumed_from": run["resumed_from"],
            "notebook_path": run["notebook_path"], "tags": tags, "note": run.get("note")}


class _Side:
    """One run's steps and, per step, its newest task for each foreach index."""

    def __init__(self, store: Store, run_id: str) -> None:
        row = store.meta.run(run_id)
        if row is None:
            raise CompareError(f"no run {run_id!r} in {store.url}; `nbflow runs` lists them")
        self.row = row
        self.steps = {s["name"]: s for s in store.meta.steps(run_id)}
        self.tasks: dict[str, dict[int | None, Row]] = {}
        for t in store.meta.tasks(run_id):  # by id: a later execution replaces an earlier one
            self.tasks.setdefault(t["step"], {})[t["idx"]] = t
        self.codes = store.meta.codes(t.get("code_hash") for ts in self.tasks.values()
                                      for t in ts.values())

    def code(self, step: str) -> str | None:
        tasks = list(self.tasks.get(step, {}).values())
        if tasks and tasks[-1].get("code_hash") in self.codes:
            return self.codes[tasks[-1]["code_hash"]]
        return self.steps[step]["code"] if step in self.steps else None

    def first(self, step: str) -> Row | None:
        tasks = self.tasks.get(step) or {}
        return next(iter(tasks.values()), None)


def diff_runs(store: Store, a_id: str, b_id: str, *,
              max_load: int | None = None) -> dict[str, Any]:
    """How run ``b_id`` differs from run ``a_id`` (see the module docstring)."""
    limit = max_load if max_load is not None else dask.utils.parse_bytes(
        str(config.get("diff.max-load", "256MiB")))
    a, b = _Side(store, a_id), _Side(store, b_id)
    tags = store.meta.tags([a_id, b_id])
    pa, pb = a.row["params"] or {}, b.row["params"] or {}
    params = [{"name": n, "a": pa.get(n), "b": pb.get(n),
               "status": "added" if n not in pa else "removed" if n not in pb else "changed"}
              for n in sorted(set(pa) | set(pb)) if pa.get(n) != pb.get(n) or (n in pa) != (n in pb)]
    ea, eb = a.row["environment"] or {}, b.row["environment"] or {}
    names = list(b.steps) + [n for n in a.steps if n not in b.steps]
    names += [n for n in [*b.tasks, *a.tasks] if n not in names]
    steps = [_step(store, a, b, name, limit) for name in dict.fromkeys(names)]
    return {
        "a": _summary(a.row, tags[a_id]),
        "b": _summary(b.row, tags[b_id]),
        "params": params,
        "environment": {"python": _pair(ea.get("python"), eb.get("python")),
                        "nbflow": _pair(ea.get("nbflow"), eb.get("nbflow")),
                        "packages": _versions(ea.get("packages") or {}, eb.get("packages") or {})},
        "steps": steps,
        "counts": {"steps_changed": sum(s["status"] != "same" for s in steps),
                   "outputs_changed": sum(len(s["outputs"]) for s in steps)},
    }


def _step(store: Store, a: _Side, b: _Side, name: str, limit: int) -> dict[str, Any]:
    code_a, code_b = a.code(name), b.code(name)
    diff = "" if code_a == code_b else "".join(difflib.unified_diff(
        (code_a or "").splitlines(keepends=True), (code_b or "").splitlines(keepends=True),
        fromfile=f"{a.row['id']}/{name}", tofile=f"{b.row['id']}/{name}"))
    if diff and not diff.endswith("\n"):
        diff += "\n"
    ta, tb = a.first(name), b.first(name)
    inputs = _inputs(ta, tb)
    env_a = (ta or {}).get("environment") or {}
    env_b = (tb or {}).get("environment") or {}
    packages = _versions(env_a.get("packages") or {}, env_b.get("packages") or {})
    if env_a.get("sources") != env_b.get("sources") and ta and tb:
        packages += [{"name": f"{m} (local module)", "a": (env_a.get("sources") or {}).get(m),
                      "b": (env_b.get("sources") or {}).get(m)}
                     for m in sorted(set(env_a.get("sources") or {}) | set(env_b.get("sources")
                                                                           or {}))
                     if (env_a.get("sources") or {}).get(m) != (env_b.get("sources") or {}).get(m)]
    files = _files(a.tasks.get(name, {}), b.tasks.get(name, {}))
    outputs = _outputs(store, a.tasks.get(name, {}), b.tasks.get(name, {}), limit)
    opts_a = (a.steps.get(name) or {}).get("options")
    opts_b = (b.steps.get(name) or {}).get("options")
    in_a, in_b = name in a.steps or name in a.tasks, name in b.steps or name in b.tasks
    changed = bool(diff or inputs or packages or files or outputs or opts_a != opts_b)
    status = ("added" if not in_a else "removed" if not in_b
              else "changed" if changed else "same")
    return {
        "name": name, "status": status,
        "code": {"a": code_a, "b": code_b, "diff": diff},
        "options": _pair(opts_a, opts_b),
        "inputs": inputs, "packages": packages, "files": files, "outputs": outputs,
        "tasks": {"a": len(a.tasks.get(name, {})), "b": len(b.tasks.get(name, {}))},
    }


def _inputs(ta: Row | None, tb: Row | None) -> list[dict[str, Any]]:
    """The by-value and module inputs whose value differs (artifact inputs differ only through
    an upstream step's outputs, listed there)."""
    ia, ib = (ta or {}).get("inputs") or {}, (tb or {}).get("inputs") or {}

    def side(spec: dict[str, Any] | None) -> dict[str, Any] | None:
        if spec is None:
            return None
        if spec.get("kind") == "module":
            return {"hash": spec.get("module"), "repr": spec.get("module"), "type": "module"}
        return {"hash": spec.get("hash"), "repr": spec.get("repr"), "type": spec.get("type")}

    out = []
    for n in sorted(set(ia) | set(ib)):
        kinds = {s.get("kind") for s in (ia.get(n), ib.get(n)) if s}
        if not kinds <= {"value", "module"}:
            continue
        sa, sb = side(ia.get(n)), side(ib.get(n))
        if (sa or {}).get("hash") != (sb or {}).get("hash"):
            out.append({"name": n, "kind": sorted(kinds)[-1], "a": sa, "b": sb})
    return out


def _files(ta: dict[int | None, Row], tb: dict[int | None, Row]) -> list[dict[str, Any]]:
    def read(tasks: dict[int | None, Row]) -> dict[str, dict[str, Any]]:
        return {f["path"]: {"size": f["size"], "hash": f["hash"]}
                for t in tasks.values() for f in t.get("files") or []}

    fa, fb = read(ta), read(tb)
    return [{"path": p, "a": fa.get(p), "b": fb.get(p)}
            for p in sorted(set(fa) | set(fb))
            if (fa.get(p) or {}).get("hash") != (fb.get(p) or {}).get("hash")]


def _outputs(store: Store, ta: dict[int | None, Row], tb: dict[int | None, Row],
             limit: int) -> list[dict[str, Any]]:
    out = []
    for idx in sorted(set(ta) | set(tb), key=lambda i: -1 if i is None else i):
        oa = ta[idx]["outputs"] if idx in ta else {}
        ob = tb[idx]["outputs"] if idx in tb else {}
        for n in sorted(set(oa) | set(ob)):
            ra, rb = oa.get(n), ob.get(n)
            if ra is not None and rb is not None and ra.hash == rb.hash:
                continue
            entry: dict[str, Any] = {
                "name": n, "index": idx, "a": ra.to_json() if ra else None,
                "b": rb.to_json() if rb else None, "same": False, "summary": None, "note": None}
            if ra is None or rb is None:
                entry["note"] = "only in run " + ("B" if ra is None else "A")
            elif max(ra.size, rb.size) > limit:
                entry["note"] = (f"too large to load ({dask.utils.format_bytes(max(ra.size, rb.size))}"
                                 f" > nbflow.diff.max-load {dask.utils.format_bytes(limit)})")
            else:
                entry.update(_summarize(store, ra.hash, rb.hash))
            out.append(entry)
    return out


def _summarize(store: Store, ha: str, hb: str) -> dict[str, Any]:
    from nbflow.summarize import compare

    try:
        va, vb = store.artifacts.get(ha), store.artifacts.get(hb)
    except Exception as exc:  # gone, corrupted, or a class this process cannot import
        return {"note": f"could not load: {type(exc).__name__}: {exc}"}
    summary = compare(va, vb)
    # Different bytes, equal values (a dict's order, a pickled class's identity): say so.
    return {"summary": summary, "same": bool(summary.get("same"))}


# -- drawing -------------------------------------------------------------------------------------
def _label(o: dict[str, Any]) -> str:
    return str(o["name"]) + ("" if o["index"] is None else f"[{o['index']}]")


def render_text(d: dict[str, Any]) -> str:
    """The diff as the terminal shows it."""
    a, b = d["a"], d["b"]
    lines = [f"A: run {a['id']} ({a['status']})", f"B: run {b['id']} ({b['status']})"]
    for p in d["params"]:
        lines.append(f"parameter {p['name']}: {p['a']!r} -> {p['b']!r}"
                     if p["status"] == "changed" else f"parameter {p['name']} {p['status']}")
    env = d["environment"]
    for key in ("python", "nbflow"):
        if env[key]:
            lines.append(f"{key}: {env[key]['a']} -> {env[key]['b']}")
    for p in env["packages"]:
        lines.append(f"package {p['name']}: {p['a'] or '-'} -> {p['b'] or '-'}")
    same = [s["name"] for s in d["steps"] if s["status"] == "same"]
    for s in d["steps"]:
        if s["status"] == "same":
            continue
        lines.append("")
        lines.append(f"step {s['name']}: {s['status']}")
        if s["code"]["diff"]:
            lines.append("  code:")
            lines.extend("    " + line for line in s["code"]["diff"].rstrip("\n").splitlines())
        if s.get("options"):
            lines.append(f"  options: {s['options']['a']} -> {s['options']['b']}")
        for i in s["inputs"]:
            lines.append(f"  input {i['name']}: {(i['a'] or {}).get('repr') or '-'} -> "
                         f"{(i['b'] or {}).get('repr') or '-'}")
        for p in s["packages"]:
            lines.append(f"  package {p['name']}: {p['a'] or '-'} -> {p['b'] or '-'}")
        for f in s["files"]:
            lines.append(f"  file {f['path']}: {_file(f['a'])} -> {_file(f['b'])}")
        for o in s["outputs"]:
            what = (o["summary"] or {}).get("text") or o["note"] or "differs"
            flag = " (equal values, different bytes)" if o["same"] else ""
            lines.append(f"  output {_label(o)}: {what}{flag}")
            lines.extend(f"      {x}" for x in (o["summary"] or {}).get("details") or [])
    if same:
        lines.append("")
        lines.append(f"unchanged: {', '.join(same)}")
    return "\n".join(lines)


def _file(f: dict[str, Any] | None) -> str:
    return "-" if f is None else f"{dask.utils.format_bytes(f['size'])} {str(f['hash'])[:12]}"


def render_html(d: dict[str, Any]) -> str:
    """The diff as HTML for a notebook (``%nbflow diff``); every value is escaped."""
    e = html.escape
    a, b = d["a"], d["b"]
    out = ['<div class="nbflow-diff">',
           f"<p><b>A</b> run <code>{e(a['id'])}</code> ({e(a['status'])}) &rarr; "
           f"<b>B</b> run <code>{e(b['id'])}</code> ({e(b['status'])})</p>"]
    rows = [(f"parameter {p['name']}", repr(p["a"]), repr(p["b"])) for p in d["params"]]
    env = d["environment"]
    rows += [(k, env[k]["a"], env[k]["b"]) for k in ("python", "nbflow") if env[k]]
    rows += [(f"package {p['name']}", p["a"] or "-", p["b"] or "-") for p in env["packages"]]
    if rows:
        out.append(_table(["", "A", "B"], rows))
    for s in d["steps"]:
        if s["status"] == "same":
            continue
        out.append(f"<h4>step <code>{e(s['name'])}</code>: {e(s['status'])}</h4>")
        if s["code"]["diff"]:
            out.append('<pre style="line-height:1.25">')
            for line in s["code"]["diff"].splitlines():
                color = {"+": "#1a7f37", "-": "#cf222e", "@": "#8250df"}.get(line[:1])
                style = f' style="color:{color}"' if color and not line.startswith(("+++",
                                                                                     "---")) else ""
                out.append(f"<span{style}>{e(line)}</span>")
            out.append("</pre>")
        rows = [(f"input {i['name']}", (i["a"] or {}).get("repr") or "-",
                 (i["b"] or {}).get("repr") or "-") for i in s["inputs"]]
        rows += [(f"package {p['name']}", p["a"] or "-", p["b"] or "-") for p in s["packages"]]
        rows += [(f"file {f['path']}", _file(f["a"]), _file(f["b"])) for f in s["files"]]
        if rows:
            out.append(_table(["", "A", "B"], rows))
        for o in s["outputs"]:
            what = (o["summary"] or {}).get("text") or o["note"] or "differs"
            details = "".join(f"<li>{e(x)}</li>" for x in (o["summary"] or {}).get("details")
                              or [])
            out.append(f"<p>output <code>{e(_label(o))}</code>: {e(what)}</p>"
                       + (f"<ul>{details}</ul>" if details else ""))
    same = [s["name"] for s in d["steps"] if s["status"] == "same"]
    if same:
        out.append(f"<p>unchanged: {e(', '.join(same))}</p>")
    out.append("</div>")
    return "\n".join(out)


def _table(head: list[str], rows: list[tuple[Any, Any, Any]]) -> str:
    e = html.escape
    cells = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"
