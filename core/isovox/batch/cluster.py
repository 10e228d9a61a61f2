"""Running the groups on Dask: a local cluster sized to this machine, or an existing scheduler.

Each worker declares its memory as a Dask *resource* (``memory``, bytes) and each run asks for the
engine's estimate of its peak, so the scheduler never places more runs on a worker than fit. Workers
are processes: torch's own threads do the numeric work, and a process per worker keeps one run's
memory and native libraries away from the others (benchmarks/batch.py measured threads vs processes).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import InputError, ResourceError
from ..resources import available_memory_bytes, human_bytes

RESOURCE = "memory"
GIB = 1024**3
WORKER_MEMORY_FLOOR = 3 * GIB  # below this per worker a local cluster gets fewer workers


@dataclass
class Workers:
    """Where the runs go: the client, and what each worker can take."""

    client: Any
    cluster: Any  # the LocalCluster we started, or None for an existing scheduler
    count: int
    threads: int  # torch threads per run
    memory: list[int]  # per worker, bytes (0: undeclared)
    dashboard: str = ""

    @property
    def largest(self) -> int:
        return max(self.memory or [0])

    def describe(self) -> str:
        where = "local cluster" if self.cluster is not None else f"scheduler {self.client.scheduler.address}"
        memory = f", {human_bytes(self.largest)} each" if self.largest else ", memory undeclared"
        threads = f"{self.threads} thread{'s' * (self.threads != 1)} per run"
        return f"{where}: {self.count} worker{'s' * (self.count != 1)}, {threads}{memory}"

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def default_workers(cores: int, memory: int) -> int:
    """One single-threaded worker per core, as many as memory allows: runs scale better side by side
    than across threads (benchmarks/batch.py: 2 workers x 1 thread gave 14 % more groups per minute
    than 1 worker x 2 threads on this 2-core machine)."""
    return max(1, min(cores, memory // WORKER_MEMORY_FLOOR))


def local(workers: Optional[int] = None, processes: bool = True) -> Workers:
    """A LocalCluster over this machine's cores and available memory."""
    from distributed import Client, LocalCluster

    cores = os.cpu_count() or 1
    memory = available_memory_bytes()
    count = workers or default_workers(cores, memory)
    if count < 1 or count > 4 * cores:
        raise InputError(f"--workers must be between 1 and {4 * cores} on this machine, got {count}")
    per_worker = memory // count
    threads = max(1, cores // count)
    # Dask's worker defaults suit numpy tasks, not one torch run per worker: its small malloc trim threshold
    # hands every large temporary back to the OS (a run took 1.5x longer), and one BLAS thread starves it.
    import dask

    dask.config.set({"distributed.nanny.pre-spawn-environ": {
        name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}})
    try:
        import bokeh  # noqa: F401 - the dashboard needs it

        dashboard: Optional[str] = "127.0.0.1:0"
    except ImportError:
        dashboard = None
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=processes, memory_limit=per_worker,
                           resources={RESOURCE: per_worker}, dashboard_address=dashboard,
                           silence_logs=logging.ERROR, host="127.0.0.1")
    client = Client(cluster)
    link = cluster.dashboard_link if dashboard else ""
    return Workers(client, cluster, count, threads, [per_worker] * count, link)


def remote(address: str) -> Workers:
    """An existing cluster (e.g. workers started by dask-jobqueue on SLURM)."""
    from distributed import Client

    try:
        client = Client(address, timeout="15s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ResourceError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    info = client.scheduler_info()["workers"]
    if not info:
        client.close()
        raise ResourceError(f"the Dask scheduler at {address} has no workers")
    memory = [int((w.get("resources") or {}).get(RESOURCE, 0)) for w in info.values()]
    # runs in one worker's thread slots share torch's (process-wide) threads, so each run takes one; start
    # one single-threaded worker per core, as the local cluster does (README: the SLURM recipe)
    threads = 1
    dashboard = client.dashboard_link if "dashboard" in str(client.scheduler_info().get("services", {})) else ""
    return Workers(client, None, len(info), threads, memory if all(memory) else [], dashboard)


def run(workers: Workers, jobs: list[tuple[str, int, tuple]], function: Callable[..., dict],
        on_done: Callable[[str, dict], None], on_stage: Callable[[dict], None]) -> None:
    """Submit ``function(*args)`` per job (label, memory bytes, args); report each row as it finishes.

    A job that no worker can hold fails at once with the reason; a worker lost mid-run fails its job.
    """
    from distributed import as_completed

    from .work import PROGRESS_TOPIC

    workers.client.subscribe_topic(PROGRESS_TOPIC, lambda event: on_stage(event[1]))
    futures = {}
    for label, memory, args in jobs:
        if workers.largest and memory > workers.largest:
            on_done(label, {"status": "failed", "reason": f"needs about {human_bytes(memory)}; the largest "
                                                          f"worker has {human_bytes(workers.largest)}"})
            continue
        resources = {RESOURCE: memory} if workers.largest else None
        future = workers.client.submit(function, *args, threads=workers.threads, resources=resources,
                                       key=f"isovox-{label}-{uuid.uuid4().hex[:12]}", pure=False)
        futures[future] = label
    try:
        for future in as_completed(list(futures)):
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker or a killed task fails its group only
                row = {"status": "failed", "reason": f"the worker failed: {type(exc).__name__}: {exc}"}
            on_done(futures[future], row)
    except KeyboardInterrupt:
        workers.client.cancel(list(futures))
        raise
    finally:
        workers.client.unsubscribe_topic(PROGRESS_TOPIC)


def quiet_dask() -> None:
    """Dask's own logging stays off the terminal; isovox says what matters."""
    for name in ("distributed", "dask", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not sys.warnoptions:
        import warnings

        warnings.filterwarnings("ignore", module="distributed")
