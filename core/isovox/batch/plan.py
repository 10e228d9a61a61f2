"""What a batch will do for each group, decided from headers before any voxel is read.

For each group: the method (the engine's own choice for these scans, as ``isovox run`` would make it),
the output grid, the memory the engine estimates for the run (which the Dask scheduler uses to place
runs on workers), a time estimate, and the key that says whether an earlier batch already made this
result (the inputs' SHA-256 and every option that changes the output).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import __version__
from ..errors import IsovoxError
from ..volume import Volume
from .bids import Group

# Seconds per million output voxels on 2 CPU threads (benchmarks/RESULTS.md, 256^3 from three x4 scans);
# learned methods add the data-consistency solve. Only the dry run's estimate uses them.
SECONDS_PER_MVOXEL = {"bspline": 0.02, "cubeavg": 0.14, "srr": 2.6, "isosrn": 2.5, "recnn": 1.6,
                      "recnn-guided": 1.7, "arssr": 6.9, "mrl": 2.5, "ctguided": 2.5}
CONSISTENCY_SECONDS_PER_MVOXEL = 2.0  # measured 1.2 at 16 solver steps; 48 steps add ~0.8, as they do to srr
UNKNOWN_SECONDS_PER_MVOXEL = 3.0


@dataclass
class GroupPlan:
    group: Group
    output: Path
    bids_dir: Path
    method: str = ""
    grid_shape: tuple[int, ...] = ()
    memory_bytes: int = 0
    seconds: float = 0.0
    key: str = ""
    reference: Optional[Path] = None  # the group's isotropic image, when the method takes a reference
    problem: str = ""  # why this group cannot run (it is reported as failed, the others go on)
    done: bool = False  # an earlier batch wrote this result with the same key

    @property
    def inputs(self) -> list[Path]:
        return [s.path for s in self.group.scans]


@dataclass
class BatchOptions:
    """The options every group runs with (those of ``isovox run`` that make sense for a cohort)."""

    method: Optional[str] = None
    spacing: Optional[float] = None
    device: str = "cpu"

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "spacing": self.spacing, "device": self.device}


def placeholder(shape: tuple[int, ...], affine: np.ndarray) -> Volume:
    """A volume with the header's geometry and no memory behind it (every voxel reads 0)."""
    return Volume(np.broadcast_to(np.float32(0.0), shape), affine)


def group_key(group: Group, options: BatchOptions, reference: Optional[Path]) -> str:
    """Changes when an input, the reference the run uses (none for a method that takes none), an option or
    the isovox version changes."""
    from ..io import file_sha256

    parts = {"inputs": [file_sha256(s.path) for s in group.scans],
             "reference": file_sha256(reference) if reference else None,
             "options": options.record(), "isovox": __version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def finished_key(output: Path) -> Optional[str]:
    """The key recorded beside an earlier result, if that result is complete."""
    from ..io import sidecar_path

    side = sidecar_path(output)
    if not (output.exists() and side.exists()):
        return None
    try:
        return json.loads(side.read_text()).get("isovox", {}).get("batch", {}).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def plan_group(group: Group, bids_dir: Path, out_dir: Path, options: BatchOptions) -> GroupPlan:
    from ..api import choose_method, memory_needed, uses_physics
    from ..grid import target_grid
    from ..methods import get_method

    plan = GroupPlan(group, group.output_path(out_dir), bids_dir)
    unreadable = [s.problem for s in group.scans if s.problem]
    if unreadable:
        plan.problem = unreadable[0]
        return plan
    try:
        scans = [placeholder(s.shape, s.affine) for s in group.scans]
        grid = target_grid(scans, options.spacing)
        guided = bool(options.method and get_method(options.method).reference != "none" and group.reference)
        spec = choose_method(options.method, scans, None, grid, options.device, guided)
        plan.method, plan.grid_shape = spec.name, tuple(grid.shape)
        plan.reference = group.reference.path if guided else None
        plan.memory_bytes = memory_needed(spec, scans, grid, options.device, physics=uses_physics(spec))
        rate = SECONDS_PER_MVOXEL.get(spec.name, UNKNOWN_SECONDS_PER_MVOXEL)
        rate += CONSISTENCY_SECONDS_PER_MVOXEL if spec.consistency else 0.0
        plan.seconds = grid.n_voxels / 1e6 * rate
    except IsovoxError as exc:
        plan.problem = str(exc)
        return plan
    plan.key = group_key(group, options, plan.reference)
    plan.done = finished_key(plan.output) == plan.key
    return plan
