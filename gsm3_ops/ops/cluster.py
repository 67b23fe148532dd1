"""Where the inference tile tasks run: in this process, or on a dask cluster from config.

``tile_runner(cfg)`` is a context manager giving a runner ``runner(fn, tasks)`` that yields
``fn(task)`` for every task. ``kind`` picks the place:

- ``none``: one after the other in this process (the default);
- ``local``: a dask ``LocalCluster`` started for the run (``n_workers``, ``threads_per_worker``,
  ``processes``);
- ``address``: an existing dask scheduler at ``address`` (``options`` go to ``Client``);
- ``jobqueue``: a dask-jobqueue cluster (``jobqueue_system``: slurm, pbs, ...) scaled to
  ``n_workers`` jobs;
- ``kubernetes``: a dask-kubernetes ``KubeCluster`` scaled to ``n_workers`` pods;
- ``dask-cuda``: a ``LocalCUDACluster``, one worker per GPU.

``options`` go to the cluster class. The optional packages are imported only when their kind
is configured, with a clear error when they are missing. Whichever runs them, the tasks are
the same functions on the same inputs, so the results are the same.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gsm3_ops.config import ClusterConfig
from gsm3_ops.errors import Gsm3Error
from gsm3_ops.inference.daily import in_process

log = logging.getLogger(__name__)

Runner = Callable[[Callable[[Any], Any], Sequence[Any]], Iterator[Any]]

_JOBQUEUE = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
    "moab": "MoabCluster",
    "oar": "OARCluster",
}
_PACKAGES = {  # kind -> (module, pip name)
    "local": ("distributed", "distributed"),
    "address": ("distributed", "distributed"),
    "jobqueue": ("dask_jobqueue", "dask-jobqueue"),
    "kubernetes": ("dask_kubernetes.operator", "dask-kubernetes"),
    "dask-cuda": ("dask_cuda", "dask-cuda"),
}


class ClusterError(Gsm3Error, RuntimeError):
    """A cluster that cannot be started or reached, or a package that is not installed."""


def _import(kind: str) -> Any:
    module, pip_name = _PACKAGES[kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ClusterError(
            f"inference.cluster.kind {kind!r} needs the {pip_name} package, which is not "
            f"installed: pip install {pip_name}"
        ) from None


def _dask_runner(client: Any) -> Runner:
    from distributed import as_completed

    def run(fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        if not tasks:
            return
        # pure=False: tasks hold numpy arrays, and each must run once even if two hash alike.
        futures = client.map(fn, list(tasks), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()  # re-raises a task's exception here
                future.release()  # results are small, but free them as they are used
        finally:
            client.cancel(futures)

    return run


def _make_cluster(cfg: ClusterConfig) -> Any:
    """A new cluster object for kinds that start one."""
    opts = dict(cfg.options)
    if cfg.kind == "local":
        distributed = _import("local")
        opts.setdefault("n_workers", cfg.n_workers)
        opts.setdefault("threads_per_worker", cfg.threads_per_worker)
        opts.setdefault("processes", cfg.processes)
        opts.setdefault("dashboard_address", None)
        return distributed.LocalCluster(**opts)
    if cfg.kind == "jobqueue":
        module = _import("jobqueue")
        cluster = getattr(module, _JOBQUEUE[cfg.jobqueue_system])(**opts)
        cluster.scale(jobs=cfg.n_workers)
        return cluster
    if cfg.kind == "kubernetes":
        module = _import("kubernetes")
        opts.setdefault("n_workers", cfg.n_workers)
        return module.KubeCluster(**opts)
    if cfg.kind == "dask-cuda":
        module = _import("dask-cuda")
        opts.setdefault("threads_per_worker", cfg.threads_per_worker)
        return module.LocalCUDACluster(**opts)
    raise ClusterError(f"unknown cluster kind {cfg.kind!r}")


# Inside ``shared_clusters()``: the exit stack that closes them and the runners by config.
_SHARED: contextvars.ContextVar[tuple[contextlib.ExitStack, dict[str, Runner]] | None]
_SHARED = contextvars.ContextVar("gsm3_shared_clusters", default=None)


@contextlib.contextmanager
def shared_clusters() -> Iterator[None]:
    """Inside, the first :func:`tile_runner` of a configuration starts its cluster and every
    later one reuses it (a backfill starts one cluster, not one a day); closed on exit."""
    with contextlib.ExitStack() as stack:
        token = _SHARED.set((stack, {}))
        try:
            yield
        finally:
            _SHARED.reset(token)


@contextlib.contextmanager
def tile_runner(cfg: ClusterConfig) -> Iterator[Runner]:
    """A runner for the configured place; a cluster started here is closed on exit, unless
    inside :func:`shared_clusters`, which keeps it for the next caller."""
    shared = _SHARED.get()
    if shared is None or cfg.kind == "none":
        with _runner(cfg) as runner:
            yield runner
        return
    stack, runners = shared
    key = cfg.model_dump_json()
    if key not in runners:
        runners[key] = stack.enter_context(_runner(cfg))
    yield runners[key]


@contextlib.contextmanager
def _runner(cfg: ClusterConfig) -> Iterator[Runner]:
    if cfg.kind == "none":
        yield in_process
        return
    distributed = _import("address" if cfg.kind == "address" else "local")
    if cfg.kind == "address":
        try:
            client = distributed.Client(cfg.address, **{"timeout": "30s", **cfg.options})
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the dask scheduler at {cfg.address}: {exc}") from None
        with client:
            yield _dask_runner(client)
        return
    try:
        cluster = _make_cluster(cfg)
    except ClusterError:
        raise
    except Exception as exc:  # a cluster class's own failure (bad option, no queue ...)
        raise ClusterError(f"cannot start the {cfg.kind} dask cluster: {exc}") from exc
    log.info("running tile tasks on %s", cluster)
    with cluster, distributed.Client(cluster) as client:
        yield _dask_runner(client)
