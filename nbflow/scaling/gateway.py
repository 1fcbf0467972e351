"""Scale this cell on dask-gateway: explain the limit, and size the cluster options instead.

dask-gateway starts every worker of a cluster with one size, set by the cluster's options when the
cluster is created (``worker_memory``, ``worker_cores``, ... as each deployment defines them); its
API scales the number of workers (``scale``, ``adapt``), never one worker of another size. So
``GatewayScaler.refuse`` always refuses, saying which options to set (with the names, units and
limits this gateway declares when they are known) for a cluster whose workers are big enough;
``add`` raises with the same text.

``sized_options(options, wanted)`` is the useful half: the option values (in the deployment's
names and units) for workers declaring at least ``wanted``, and the problems when the gateway's
limits (an option's ``max``) forbid it. When nbflow makes the cluster (``nbflow.cluster.class:
dask_gateway.GatewayCluster``), ``sized_kwargs`` asks the gateway for its option spec and raises
the worker size options to the largest ``%%resources`` the run knows of (every step of a
``nbflow run``; the first step cell of a kernel), so its workers are big enough from the start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nbflow.scaling import Scaler, cores, describe, worker_resources_arg
from nbflow.scaling.jobqueue import nonsense

# Option names used by dask-gateway's documentation and its Helm chart examples; a deployment
# may name its options differently (then nbflow cannot size them).
MEMORY_OPTIONS = ("worker_memory", "worker_memory_gib", "memory")
CORES_OPTIONS = ("worker_cores", "worker_cpus", "cores", "cpus")
GPU_OPTIONS = ("worker_gpus", "gpus", "worker_gpu")

_UNITS = {"TiB": 2**40, "GiB": 2**30, "MiB": 2**20, "TB": 1e12, "GB": 1e9, "MB": 1e6}


def _fields(options: Any) -> dict[str, Any]:
    """The ``dask_gateway.options.Field`` of each option (kind, label, min/max), if known."""
    fields = getattr(options, "_fields", None)
    return dict(fields) if isinstance(fields, Mapping) else {}


def _pick(options: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in options), None)


def _memory_unit(field: Any, name: str) -> tuple[str, float]:
    """The unit of a numeric memory option: from its label (``Worker Memory (GiB)``), else GiB,
    the unit of dask-gateway's documented ``worker_memory`` option."""
    label = f"{getattr(field, 'label', '')} {name}"
    for unit, size in _UNITS.items():
        if unit.lower() in label.lower():
            return unit, size
    return "GiB", 2**30


def sized_options(options: Mapping[str, Any],
                  wanted: dict[str, float]) -> tuple[dict[str, Any], list[str]]:
    """Cluster option values for workers of at least ``wanted``, in ``options``' names and
    units; and what stands in the way (a request over an option's max, no option for it)."""
    fields = _fields(options)
    out: dict[str, Any] = {}
    problems: list[str] = []

    def put(name: str, value: Any) -> None:
        field = fields.get(name)
        if field is not None:
            try:
                value = field.validate(value)
            except (TypeError, ValueError) as exc:
                problems.append(f"{name}={value!r}: {exc}")
                return
        out[name] = value

    current = dict(options)
    if "memory" in wanted:
        name = _pick(options, MEMORY_OPTIONS)
        if name is None:
            problems.append(f"no worker memory option (looked for {', '.join(MEMORY_OPTIONS)})")
        elif isinstance(current[name], str):
            put(name, f"{math.ceil(wanted['memory'] / 2**20)}MiB")
        else:
            _, size = _memory_unit(fields.get(name), name)
            amount = wanted["memory"] / size
            if isinstance(current[name], int) and not isinstance(current[name], bool):
                put(name, math.ceil(amount))
            else:
                put(name, math.ceil(amount * 100) / 100)
    if "cpus" in wanted:
        name = _pick(options, CORES_OPTIONS)
        if name is None:
            problems.append(f"no worker cores option (looked for {', '.join(CORES_OPTIONS)})")
        else:
            n = cores(wanted)
            put(name, float(n) if isinstance(current[name], float) else n)
    if wanted.get("gpus"):
        name = _pick(options, GPU_OPTIONS)
        if name is None:
            problems.append(f"no worker GPU option (looked for {', '.join(GPU_OPTIONS)})")
        else:
            put(name, math.ceil(wanted["gpus"]))
    return out, problems


# GatewayCluster's own keyword arguments (the rest are cluster options).
_CONNECTION = ("address", "proxy_address", "public_address", "auth", "asynchronous", "loop")


def sized_kwargs(kwargs: dict[str, Any], wanted: dict[str, float]) -> dict[str, Any]:
    """``GatewayCluster`` keyword arguments whose worker size options serve ``wanted``: the
    gateway's option spec (``Gateway.cluster_options()``), with the user's values from
    ``kwargs``, raised where ``wanted`` needs more. ``ScalingError`` when the gateway's limits
    (an option's max) or its option names cannot serve it."""
    from dask_gateway import Gateway  # type: ignore[import-untyped]

    from nbflow.scaling import ScalingError

    gateway = Gateway(**{k: kwargs[k] for k in _CONNECTION if k in kwargs})
    try:
        options = gateway.cluster_options()
    finally:
        gateway.close()
    for name, value in kwargs.items():
        if name in options:
            options[name] = value
    sized, problems = sized_options(options, wanted)
    if problems:
        raise ScalingError(
            f"the run asks for workers of {describe(wanted)}, and this dask-gateway cannot make "
            f"them: {'; '.join(problems)}. Ask its administrator for larger worker options, or "
            "lower the %%resources requests.")
    out = dict(kwargs)
    for name, value in sized.items():
        current = options[name]
        if isinstance(current, str) or value > current:
            out[name] = value
    return out


class GatewayScaler(Scaler):
    """Refuses, with the cluster options that would serve the request."""

    kind = "GatewayCluster"
    grows = False

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def options(self) -> Mapping[str, Any] | None:
        """The options this cluster was started with, when this process started it (an
        ``Options`` with the gateway's limits, or a mapping); else the gateway's option spec
        (asks the server; None when it cannot be had)."""
        given = getattr(self.cluster, "_cluster_options", None)
        if isinstance(given, Mapping):
            return given  # its kwargs override it: see current()
        kwargs = dict(getattr(self.cluster, "_cluster_kwargs", None) or {})
        gateway = getattr(self.cluster, "gateway", None)
        if gateway is None or getattr(gateway, "asynchronous", False):
            return kwargs or None
        try:
            spec: Mapping[str, Any] = gateway.cluster_options()
        except Exception:
            return kwargs or None
        return spec

    def current(self) -> dict[str, Any]:
        """The worker size options this cluster was asked for, as far as this process knows."""
        given = getattr(self.cluster, "_cluster_options", None)
        values = {**dict(given or {}), **dict(getattr(self.cluster, "_cluster_kwargs", None) or {})}
        return {k: v for k, v in values.items() if k in MEMORY_OPTIONS + CORES_OPTIONS + GPU_OPTIONS}

    def refuse(self, wanted: dict[str, float]) -> str | None:
        why = nonsense(wanted)
        if why:
            return why
        head = ("dask-gateway gives every worker of a cluster the size set by the cluster's "
                "options when it starts, and has no way to add one worker of another size")
        declare = (f"its workers must declare the Dask resources `{worker_resources_arg(wanted)}`"
                   " or more (e.g. DASK_DISTRIBUTED__WORKER__RESOURCES__MEMORY in the worker "
                   "environment, set by the gateway's options handler)")
        options = self.options()
        if not options:
            return (f"{head}. Start a cluster with workers of {describe(wanted)}: set the "
                    "gateway's worker size options (see Gateway().cluster_options()) in "
                    f"nbflow.cluster.kwargs; {declare}.")
        now = ", ".join(f"{k}={v!r}" for k, v in self.current().items())
        sized, problems = sized_options(options, wanted)
        head += f" (this one: {now})" if now else ""
        if problems:
            return (f"{head}. This gateway cannot start workers of {describe(wanted)}: "
                    f"{'; '.join(problems)}. Ask its administrator for larger worker options, "
                    "or lower the %%resources request.")
        setting = ", ".join(f"{k}: {v!r}" for k, v in sized.items())
        return (f"{head}. Start the flow on a cluster with bigger workers: nbflow.cluster.kwargs "
                f"{{{setting}}} (with class dask_gateway.GatewayCluster); {declare}.")

    def add(self, wanted: dict[str, float]) -> Any:
        raise RuntimeError(self.refuse(wanted) or "dask-gateway cannot add a worker of a size")

    def retire(self, handle: Any) -> None:
        """Nothing to retire: ``add`` never starts a worker."""


def scaler(cluster: Any) -> Scaler | None:
    """A ``GatewayScaler``: it refuses, explaining which cluster options to set."""
    return GatewayScaler(cluster)


__all__ = ["CORES_OPTIONS", "GPU_OPTIONS", "MEMORY_OPTIONS", "GatewayScaler", "scaler",
           "sized_kwargs", "sized_options"]
