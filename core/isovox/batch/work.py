"""One group's run on a worker: the same engine calls as ``isovox run``, the result written atomically.

Whatever goes wrong in a group is caught here and returned as that group's failure, so one
subject's broken file never stops the others. The result and its sidecar appear complete or not at
all (:func:`isovox.io.write_volume` stages them beside the output and moves them in place).
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Optional

from .plan import BatchOptions, GroupPlan

PROGRESS_TOPIC = "isovox-progress"


def current_worker() -> Any:
    """The Dask worker running this task (None outside Dask)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def stage_reporter(worker: Any, label: str) -> Callable[[float, str], None]:
    """Sends the group's stage to the client (Dask worker events); silent outside a worker."""
    if worker is None:
        return lambda fraction, message: None
    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.02 or fraction >= 1.0:
            last[0] = fraction
            worker.log_event(PROGRESS_TOPIC, {"group": label, "fraction": fraction, "message": message})

    return report


def run_group(plan: GroupPlan, options: BatchOptions, threads: Optional[int] = None) -> dict[str, Any]:
    """Run one group; returns its summary row (status ``done`` or ``failed`` with the reason)."""
    from .. import api
    from ..errors import InputError
    from ..frontend import record_inputs, user_message
    from ..io import read_volume, write_volume
    from ..progress import Task

    if threads:
        import torch

        torch.set_num_threads(threads)
    group = plan.group
    worker = current_worker()
    row = {"status": "failed", "reason": "", "seconds": 0.0, "worker": str(worker.address) if worker else "",
           "host": socket.gethostname()}
    start = time.perf_counter()
    try:
        if plan.problem:
            raise InputError(plan.problem)
        paths = [str(p) for p in plan.inputs]
        scans = [read_volume(p) for p in paths]
        reference = read_volume(plan.reference) if plan.reference else None
        run_plan = api.plan(scans, options.method, spacing=options.spacing, reference=reference,
                            device=options.device)
        result = api.execute(run_plan, Task(stage_reporter(worker, group.label)))
        provenance = record_inputs(result.provenance, paths, [scan.meta for scan in scans])
        row["seconds"] = round(time.perf_counter() - start, 2)
        provenance["batch"] = {"key": plan.key, "group": group.label, "worker": row["worker"], "host": row["host"],
                               "notes": group.notes, "seconds": row["seconds"],
                               "reference": str(plan.reference) if plan.reference else None}
        write_volume(result.volume, plan.output, protect=paths, sidecar=derivative_sidecar(plan, provenance))
        row.update(status="done", method=result.plan.method.name, warnings="; ".join(run_plan.warnings))
    except Exception as exc:  # noqa: BLE001 - a group's failure is its row, never the batch's end
        row["reason"] = user_message(exc)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def derivative_sidecar(plan: GroupPlan, provenance: dict[str, Any]) -> dict[str, Any]:
    """A BIDS sidecar: BIDS keys at the top (``Sources`` as BIDS URIs into the raw dataset), the engine's
    provenance under ``isovox`` (its keys would otherwise clash with BIDS entities such as
    ``reconstruction``)."""
    group = plan.group
    sources = [f"bids:raw:{p.relative_to(plan.bids_dir).as_posix()}" for p in plan.inputs]
    return {"Description": f"isotropic {group.suffix} from {len(sources)} thick-slice scan"
                           f"{'s' * (len(sources) != 1)} by isovox ({provenance.get('method')})",
            "Sources": sources, "isovox": provenance}

