"""Scale this cell on dask-jobqueue clusters (SLURM, PBS, LSF, HTCondor, ...): one batch job per request.

A ``JobQueueCluster`` is a ``distributed.SpecCluster``: ``cluster.new_spec`` is ``{"cls": JobClass,
"options": {...}}`` and ``cluster.worker_spec`` maps worker names to such specs. ``JobQueueScaler.add``
puts one more entry, named ``nbflow-scaled-<n>``, into ``worker_spec``: a copy of ``new_spec`` whose
options ask the batch system for the requested size (``cores``, ``memory``, ``processes=1``, the
class's own size directives) and whose worker declares it as the Dask resources ``memory``, ``cpus``
and ``gpus`` (``--resources``). ``retire`` removes it with ``cluster.scale_down`` (the scheduler
retires the worker, moving its data, then the job is cancelled).

Per job class (``cluster.new_spec["cls"]``):

- ``SLURMJob``: ``job_cpu``/``job_mem`` (``--cpus-per-task``/``--mem``); gpus as
  ``--gres=gpu:N``; size directives in ``job_extra_directives`` are replaced;
- ``PBSJob`` (and ``MoabJob``): ``resource_spec`` ``select=1:ncpus=N:mem=M[:ngpus=G]`` (PBS Pro /
  OpenPBS); a custom ``select=`` spec has those keys rewritten, another form is refused;
- ``LSFJob``: ``ncpus``/``mem``; no gpus (sites differ: ``-gpu "num=N"`` needs LSF 10.1 and a
  GPU-enabled queue);
- ``HTCondorJob``: ``request_cpus``/``request_memory`` follow cores/memory; gpus as
  ``request_gpus``;
- dask-jobqueue's ``LocalJob`` (a worker process on this machine, for testing): cores/memory;
- others (``SGEJob``, ``OARJob``, custom classes): refused, since their size lives in site-specific
  ``resource_spec`` text nbflow cannot rewrite.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import dask.config
import dask.utils

from nbflow.scaling import Scaler, cores, describe, memory_text, worker_resources_arg

NAME_PREFIX = "nbflow-scaled-"

# dask worker flags nbflow sets on a sized worker; the same flags in the cluster's own
# worker_extra_args would override them (the last occurrence wins).
_SIZE_FLAGS = ("--resources", "--nthreads", "--memory-limit", "--nworkers", "--nprocs")


def merge_worker_args(args: Sequence[str], resources: dict[str, float],
                      nthreads: int | None = None, memory_limit: int | None = None) -> list[str]:
    """``args`` (``dask worker`` arguments) without its own size flags, then ``--nthreads``,
    ``--memory-limit`` (when given) and ``--resources``: ``resources`` merged over any resources
    ``args`` declared (``ssd=1`` stays)."""
    out: list[str] = []
    kept: dict[str, float] = {}
    it = iter(args)
    for arg in it:
        flag, eq, value = str(arg).partition("=")
        if flag in _SIZE_FLAGS:
            if not eq:
                value = str(next(it, ""))
            if flag == "--resources":
                for item in re.split(r"[,\s]+", value.strip().strip("\"'")):
                    k, _, v = item.partition("=")
                    if k and v:
                        kept[k] = float(v)
            continue
        out.append(str(arg))
    if nthreads is not None:
        out += ["--nthreads", str(nthreads)]
    if memory_limit is not None:
        out += ["--memory-limit", str(int(memory_limit))]
    out += ["--resources", worker_resources_arg({**kept, **resources})]
    return out


def declared(wanted: dict[str, float], memory: float | None, ncores: int) -> dict[str, float]:
    """What a worker sized for ``wanted`` declares: the requested memory (else the job's),
    whole cpus, whole gpus."""
    out: dict[str, float] = {"cpus": float(ncores)}
    mem = wanted.get("memory", memory)
    if mem:
        out["memory"] = float(math.ceil(mem))
    if wanted.get("gpus"):
        out["gpus"] = float(math.ceil(wanted["gpus"]))
    return out


def nonsense(wanted: dict[str, float]) -> str | None:
    """Why ``wanted`` is not a size at all (negative, NaN, infinite, unknown names), or None."""
    for k, v in wanted.items():
        if k not in ("memory", "cpus", "gpus"):
            return f"nbflow sizes workers by memory, cpus and gpus only, not {k!r}"
        if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            return f"{k}={v!r} is not a size"
    if wanted.get("memory", 1) == 0 or wanted.get("cpus", 1) == 0:
        return f"a worker with {describe(wanted)} cannot run anything"
    return None


class JobQueueScaler(Scaler):
    """One batch job per request, added to a dask-jobqueue cluster's ``worker_spec``."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.kind = type(cluster).__name__
        self._names = itertools.count(1)

    # -- what the job class can do -------------------------------------------------------------
    def _job_cls(self) -> Any:
        spec = getattr(self.cluster, "new_spec", None)
        return spec.get("cls") if isinstance(spec, dict) else None

    def _base_options(self) -> dict[str, Any]:
        spec = getattr(self.cluster, "new_spec", None) or {}
        return dict(spec.get("options") or {})

    def _family(self) -> str | None:
        """``slurm``, ``pbs``, ``lsf``, ``htcondor``, ``local`` or None for a job class nbflow
        cannot size."""
        cls = self._job_cls()
        if not isinstance(cls, type):
            return None
        from dask_jobqueue.htcondor import HTCondorJob
        from dask_jobqueue.local import LocalJob
        from dask_jobqueue.lsf import LSFJob
        from dask_jobqueue.pbs import PBSJob
        from dask_jobqueue.slurm import SLURMJob

        for family, base in (("slurm", SLURMJob), ("pbs", PBSJob), ("lsf", LSFJob),
                             ("htcondor", HTCondorJob), ("local", LocalJob)):
            if issubclass(cls, base):
                return family
        return None

    def _config(self, options: dict[str, Any], key: str, default: Any = None) -> Any:
        """A job option as the job class reads it: given, else dask-jobqueue's config."""
        name = key.replace("_", "-")
        option = options.get(key)
        if option is not None:
            return option
        config_name = options.get("config_name") or getattr(self._job_cls(), "config_name", "")
        return dask.config.get(f"jobqueue.{config_name}.{name}", default)

    def refuse(self, wanted: dict[str, float]) -> str | None:
        why = nonsense(wanted)
        if why:
            return why
        cls = self._job_cls()
        family = self._family()
        if family is None:
            name = getattr(cls, "__name__", repr(cls))
            return (f"nbflow cannot size the jobs of {self.kind} ({name}): their size is set by "
                    "site-specific text (resource_spec) it cannot rewrite. Start a second cluster "
                    f"whose jobs have {describe(wanted)}, with its workers declaring "
                    f"`--resources \"{worker_resources_arg(wanted)}\"` in worker_extra_args, and "
                    "point nbflow.cluster at it.")
        options = self._base_options()
        skip = [str(s) for s in (self._config(options, "job_directives_skip") or ())]
        gpus = wanted.get("gpus", 0)
        if family == "slurm":
            for directive in ("--cpus-per-task", "--mem"):
                if any(s and s in f"#SBATCH {directive}=" for s in skip):
                    return (f"{self.kind} skips the {directive} directive (job_directives_skip="
                            f"{skip}), so nbflow cannot ask SLURM for a job of "
                            f"{describe(wanted)}. Remove it from job_directives_skip.")
        if family == "pbs":
            spec = self._config(options, "resource_spec")
            if spec is not None and not str(spec).startswith("select="):
                return (f"{self.kind} has resource_spec={spec!r}, which nbflow cannot resize "
                        "(it rewrites PBS Pro select statements: select=1:ncpus=N:mem=M). Use a "
                        "select= resource_spec, or none.")
            if any(s and s in "#PBS -l select=" for s in skip):
                return (f"{self.kind} skips the `-l select=` directive (job_directives_skip="
                        f"{skip}), so nbflow cannot size the job.")
        if gpus and family not in ("slurm", "pbs", "htcondor"):
            return (f"nbflow does not know how {self.kind} asks for GPUs, so it cannot start a "
                    f"job with gpus={gpus:g}. Start a GPU cluster yourself (e.g. job_extra_"
                    "directives with your site's GPU request and worker_extra_args "
                    f"['--resources', 'gpus={math.ceil(gpus)}']) and point nbflow.cluster at it.")
        return None

    # -- the sized job ---------------------------------------------------------------------------
    def job_options(self, wanted: dict[str, float]) -> dict[str, Any]:
        """The options of one job sized for ``wanted`` (a copy of ``new_spec["options"]``)."""
        why = self.refuse(wanted)
        if why:
            raise ValueError(why)
        family = self._family()
        options = copy.deepcopy(self._base_options())
        base_memory = self._config(options, "memory")
        base_processes = self._config(options, "processes") or 1
        memory = wanted.get("memory")
        if memory is None and base_memory is not None:
            memory = dask.utils.parse_bytes(base_memory) / max(1, int(base_processes))
        ncores = cores(wanted)
        gpus = math.ceil(wanted.get("gpus", 0))
        text = memory_text(memory) if memory else base_memory
        nbytes = dask.utils.parse_bytes(text) if text else None
        options.update(cores=ncores, memory=text, processes=1)
        options.pop("extra", None)  # deprecated alias of worker_extra_args
        args = list(self._config(options, "worker_extra_args") or ())
        options["worker_extra_args"] = merge_worker_args(args, declared(wanted, memory, ncores))
        extra = self._config(options, "job_extra_directives") or []
        options.pop("job_extra", None)  # deprecated alias of job_extra_directives
        if family == "slurm":
            from dask_jobqueue.slurm import slurm_format_bytes_ceil

            options["job_cpu"] = ncores
            slurm_bytes: Callable[[int], str] = slurm_format_bytes_ceil  # untyped
            options["job_mem"] = slurm_bytes(nbytes) if nbytes else None
            size: tuple[str, ...] = ("--mem", "--mem-per-cpu", "--mem-per-gpu", "-c", "--cpus-per-task")
            if gpus:
                size += ("--gres=gpu", "--gpus", "-G")
            extra = [d for d in extra if not str(d).strip().startswith(size)]
            if gpus:
                extra.append(f"--gres=gpu:{gpus}")
            options["job_extra_directives"] = extra
        elif family == "pbs":
            options["resource_spec"] = _pbs_select(self._config(options, "resource_spec"),
                                                   ncores, nbytes, gpus)
        elif family == "lsf":
            options["ncpus"] = ncores
            options["mem"] = nbytes
        elif family == "htcondor":
            directives = dict(extra) if isinstance(extra, dict) else {}
            for key in list(directives):
                if key.lower() in ("request_cpus", "request_memory", "requestcpus",
                                   "requestmemory") or (gpus and key.lower() in (
                                       "request_gpus", "requestgpus")):
                    del directives[key]
            if gpus:
                directives["request_gpus"] = gpus
            options["job_extra_directives"] = directives
        return options

    def add(self, wanted: dict[str, float]) -> str:
        options = self.job_options(wanted)
        cluster = self.cluster
        name = f"{NAME_PREFIX}{next(self._names)}"
        while name in cluster.worker_spec:
            name = f"{NAME_PREFIX}{next(self._names)}"
        spec = {"cls": self._job_cls(), "options": options}

        async def _add() -> None:
            # On the cluster's event loop: worker_spec is only changed there.
            cluster.worker_spec[name] = spec
            await cluster._correct_state()  # submits the job; no public API adds one entry

        cluster.sync(_add)
        return name

    def retire(self, handle: Any) -> None:
        # SpecCluster.scale_down: drops the entry, the scheduler retires the worker (moving its
        # data), the job is cancelled.
        if handle in self.cluster.worker_spec:
            self.cluster.sync(self.cluster.scale_down, [handle])


def _pbs_select(spec: str | None, ncores: int, nbytes: int | None, gpus: int) -> str:
    """A PBS Pro ``select=`` resource spec for one chunk of this size; keys of ``spec`` other
    than ``ncpus``/``mem``/``ngpus`` (``model=...``) are kept."""
    from dask_jobqueue.pbs import pbs_format_bytes_ceil

    keys: dict[str, str] = {}
    rest = ""
    if spec:
        first, _, rest = str(spec).partition("+")  # only the first chunk is resized
        for part in first.split(":")[1:]:
            k, _, v = part.partition("=")
            keys[k] = v
    keys["ncpus"] = str(ncores)
    if nbytes:
        pbs_bytes: Callable[[int], str] = pbs_format_bytes_ceil  # untyped
        keys["mem"] = pbs_bytes(nbytes)
    if gpus:
        keys["ngpus"] = str(gpus)
    text = "select=1:" + ":".join(f"{k}={v}" for k, v in keys.items())
    return f"{text}+{rest}" if rest else text


def scaler(cluster: Any) -> Scaler | None:
    """A ``JobQueueScaler`` for a dask-jobqueue cluster that has a job spec to copy."""
    if not isinstance(getattr(cluster, "new_spec", None), dict) or not hasattr(cluster,
                                                                                "worker_spec"):
        return None
    return JobQueueScaler(cluster)


__all__ = ["NAME_PREFIX", "JobQueueScaler", "declared", "merge_worker_args", "nonsense", "scaler"]
