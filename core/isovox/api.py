"""The engine API every front end calls: plan a run, then execute it.

``plan`` validates scans, method, spacing and memory before any heavy work,
so the CLI and UIs can show a clear refusal (or pre-flight warnings) at once;
``execute`` runs the method and attaches provenance to the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from . import __version__
from .errors import InputError
from .fusion import check_overlap
from .grid import Grid, parse_spacing, target_grid
from .io import validate_volume
from .progress import Task, ensure_task
from .registry import MethodRequest, MethodSpec, default_method, get_method
from .resources import check_memory, resolve_device
from .volume import Volume

MAX_REFINEMENT = 8.0  # target spacing may be at most this many times finer than the finest input


@dataclass
class Plan:
    """A validated run: which method, on which grid, on which device."""

    scans: list[Volume]
    method: MethodSpec
    grid: Grid
    device: str
    reference: Optional[Volume] = None
    options: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    memory_bytes: int = 0

    @property
    def scale(self) -> float:
        """Through-plane scale: coarsest input spacing over the target spacing."""
        return float(max(s.spacing.max() for s in self.scans) / self.grid.spacing.min())


@dataclass
class RunResult:
    volume: Volume
    plan: Plan
    seconds: float
    provenance: dict[str, Any]


def plan(
    scans: Sequence[Volume],
    method: Optional[str] = None,
    spacing: float | Sequence[float] | str | None = None,
    reference: Optional[Volume] = None,
    device: str = "auto",
    grid: Optional[Grid] = None,
    max_memory_bytes: Optional[int] = None,
    **options: Any,
) -> Plan:
    """Check everything that can be checked before running; raise InputError/ResourceError."""
    scans = list(scans)
    if not scans:
        raise InputError("give at least one scan")
    if len(scans) > 3:
        raise InputError(f"isovox fuses 1 to 3 scans, got {len(scans)}")
    for idx, scan in enumerate(scans):
        validate_volume(scan, _label(scan, idx))
    if reference is not None:
        validate_volume(reference, "reference " + str(reference.meta.get("source", "")))
    device = resolve_device(device)
    if method:
        spec = get_method(method)
    else:  # the default must support this run's scale (a learned model validated to x8 cannot take x11)
        steps = parse_spacing(spacing)
        target = float(grid.spacing.min()) if grid is not None else (
            float(steps.min()) if steps is not None else float(min(s.spacing.min() for s in scans)))
        coarsest = float(max(s.spacing.max() for s in scans))
        spec = default_method(len(scans), device, reference is not None, coarsest / max(target, 1e-9))
    if not spec.min_scans <= len(scans) <= spec.max_scans:
        raise InputError(f"method {spec.name} takes {spec.inputs}, got {len(scans)} scans")
    if options.get("ensemble") and not spec.needs_weights:
        raise InputError(f"--ensemble applies to learned methods; {spec.name} is an interpolation")
    if not spec.available():
        raise InputError(f"method {spec.name} is not available: its weights are missing")
    check_adaptation(spec, options, reference)
    warnings: list[str] = []
    if reference is not None and spec.reference == "none":
        if method:
            raise InputError(f"method {spec.name} takes no --reference")
        warnings.append(f"the reference is not used: the default method {spec.name} takes none")
        reference = None
    if reference is None and spec.reference == "required":
        raise InputError(f"method {spec.name} needs a --reference HR image")
    steps = parse_spacing(spacing)
    finest = float(min(s.spacing.min() for s in scans))
    coarsest = float(max(s.spacing.max() for s in scans))
    if steps is not None:
        if steps.min() < finest / MAX_REFINEMENT:
            raise InputError(
                f"spacing {steps.min():g} mm is more than {MAX_REFINEMENT:g}x finer than the finest "
                f"acquired voxel ({finest:g} mm); isovox will not invent that much detail"
            )
        if steps.max() > coarsest:
            raise InputError(
                f"spacing {steps.max():g} mm is coarser than every input voxel ({coarsest:g} mm); "
                "isovox makes higher-resolution volumes"
            )
    if grid is None:
        grid = target_grid(scans, steps)
    if min(grid.shape) < 2:
        raise InputError(f"the target grid {grid.shape} is too small; choose a finer --spacing")
    check_overlap(scans, grid)
    scale = coarsest / float(grid.spacing.min())
    lo, hi = spec.scales
    if not lo - 1e-6 <= scale <= hi + 1e-6:
        raise InputError(f"method {spec.name} supports scales {lo:g} to {hi:g}, this run needs x{scale:.2f}")
    advice = spec.advise(scale, len(scans))
    if advice:
        warnings.append(f"{spec.name}: {advice}")
    input_bytes = sum(s.data.nbytes for s in scans) * 3
    needed = grid.n_voxels * spec.bytes_per_voxel + input_bytes
    if spec.needs_weights and device == "cpu":  # network activations of one tile live in host memory
        from .tiling import TILE_BUDGET_BYTES

        # a tile never exceeds the budget, nor (much) the volume itself: ~2 KB of activations per voxel at most
        needed += int(min(TILE_BUDGET_BYTES, grid.n_voxels * 2048.0))
    shape_text = "x".join(str(n) for n in grid.shape)
    check_memory(needed, f"an output of {shape_text} voxels", max_memory_bytes)
    return Plan(scans, spec, grid, device, reference, dict(options), warnings, needed)


def check_adaptation(spec: MethodSpec, options: dict[str, Any], reference: Optional[Volume]) -> None:
    """--adapt fine-tunes a network on the scans: learned methods only, no reference, a sane time."""
    seconds = options.get("adapt_seconds")
    if seconds is not None and not options.get("adapt"):
        raise InputError("--adapt-seconds needs --adapt")
    if not options.get("adapt"):
        return
    if not spec.needs_weights:
        raise InputError(f"--adapt fine-tunes a network; {spec.name} is an interpolation")
    if reference is not None:
        raise InputError("--adapt cannot use a --reference: pairs made from the scans have no reference")
    if seconds is not None and not (np.isfinite(seconds) and 1 <= seconds <= 3600):
        raise InputError(f"--adapt-seconds must be between 1 and 3600, got {seconds:g}")


def execute(run: Plan, task: Optional[Task] = None) -> RunResult:
    """Run a planned super-resolution and return the volume with its provenance."""
    task = ensure_task(task)
    start = time.perf_counter()
    request = MethodRequest(list(run.scans), run.grid, run.reference, run.device, task, dict(run.options))
    output = run.method.run(request)
    seconds = time.perf_counter() - start
    task.update(1.0, "done")
    provenance = {
        "isovox_version": __version__,
        "method": run.method.name,
        "method_description": run.method.description,
        "model": run.method.model_card(),
        "inputs": [
            {"source": s.meta.get("source"), "shape": list(s.shape), "spacing": s.spacing.round(6).tolist()}
            for s in run.scans
        ],
        "reference": run.reference.meta.get("source") if run.reference is not None else None,
        "spacing": run.grid.spacing.round(6).tolist(),
        "shape": list(run.grid.shape),
        "scale": round(run.scale, 4),
        "device": run.device,
        "options": {k: v for k, v in run.options.items() if isinstance(v, (bool, int, float, str))},
        "registrations": output.meta.get("registrations", []),
        "adaptation": output.meta.get("adaptation"),
        "intensity_maps": output.meta.get("intensity_maps", []),
        "seconds": round(seconds, 3),
        "warnings": run.warnings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    description = f"isovox {run.method.name} {run.grid.spacing.min():g}mm"
    volume = Volume(output.data, output.affine, {"source": f"isovox {run.method.name}", "description": description})
    return RunResult(volume, run, seconds, provenance)


def super_resolve(scans: Sequence[Volume], method: Optional[str] = None, task: Optional[Task] = None, **kwargs: Any) -> RunResult:
    """Plan and execute in one call (see :func:`plan` for the arguments)."""
    return execute(plan(scans, method, **kwargs), task)


def _label(volume: Volume, idx: int) -> str:
    return str(volume.meta.get("source") or f"scan {idx + 1}")

