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
from .methods import default_method, get_method
from .options import RunOptions
from .progress import Task, ensure_task
from .registry import MethodRequest, MethodSpec
from .resources import check_memory, resolve_device
from .tiling import TILE_BUDGET_BYTES
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
    options: RunOptions = field(default_factory=RunOptions)
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
    options: Optional[RunOptions] = None,
    **option_values: Any,
) -> Plan:
    """Check everything that can be checked before running; raise InputError/ResourceError.

    Run options come as a :class:`RunOptions` and/or by name (``register=True``...)."""
    options = RunOptions.of(options, **option_values)
    scans = list(scans)
    check_inputs(scans, reference)
    device = resolve_device(device)
    steps = parse_spacing(spacing)
    spec = choose_method(method, scans, steps, grid, device, reference is not None, options.adapt)
    check_method(spec, len(scans), options, reference)
    check_slice_positions(spec, scans)
    warnings: list[str] = scan_warnings(scans)
    if reference is not None and spec.reference == "none":
        if method:
            raise InputError(f"method {spec.name} takes no --reference")
        warnings.append(f"the reference is not used: the default method {spec.name} takes none")
        reference = None
    check_spacing(steps, scans)
    if grid is None:
        grid = target_grid(scans, steps)
    if min(grid.shape) < 2:
        raise InputError(f"the target grid {grid.shape} is too small; choose a finer --spacing")
    check_overlap(scans, grid)
    if reference is not None:
        check_reference_overlap(scans[0], reference, grid)
    warnings += check_contrasts(scans)
    scale = float(max(s.spacing.max() for s in scans)) / float(grid.spacing.min())
    lo, hi = spec.scales
    if not spec.supports_scale(scale):
        raise InputError(f"method {spec.name} supports scales {lo:g} to {hi:g}, this run needs x{scale:.2f}")
    advice = spec.advise(scale, len(scans))
    if advice:
        warnings.append(f"{spec.name}: {advice}")
    if uses_physics(spec, options.consistency):
        warnings += undetermined_axes(scans, grid)
    needed = memory_needed(spec, scans, grid, device, physics=uses_physics(spec, options.consistency))
    check_memory(needed, f"an output of {'x'.join(str(n) for n in grid.shape)} voxels", max_memory_bytes)
    return Plan(scans, spec, grid, device, reference, options, warnings, needed)


def check_inputs(scans: Sequence[Volume], reference: Optional[Volume]) -> None:
    if not scans:
        raise InputError("give at least one scan")
    if len(scans) > 3:
        raise InputError(f"isovox fuses 1 to 3 scans, got {len(scans)}")
    for idx, scan in enumerate(scans):
        validate_volume(scan, _label(scan, idx))
    if reference is not None:
        validate_volume(reference, "reference " + str(reference.meta.get("source", "")))


def check_reference_overlap(scan: Volume, reference: Volume, grid: Grid) -> None:
    """A guided method needs its reference where the scans are."""
    try:
        check_overlap([scan, reference], grid)
    except InputError:
        raise InputError("the --reference does not overlap the scans; give a registered image of the same "
                         "subject and session") from None


def scan_warnings(scans: Sequence[Volume]) -> list[str]:
    """What reading each scan found worth saying (tags that disagree with positions, missing slices...)."""
    return [f"scan {idx + 1}: {w}" for idx, scan in enumerate(scans) for w in scan.meta.get("warnings", [])]


def check_slice_positions(spec: MethodSpec, scans: Sequence[Volume]) -> None:
    """Only srr models slices at their own positions; other methods would shift the slices after a gap."""
    if spec.name == "srr":
        return
    for idx, scan in enumerate(scans):
        missing = scan.meta.get("missing_slices")
        if missing:
            spacing = float(scan.meta.get("spacing_between_slices") or scan.spacing.max())
            where = ", ".join(f"{m * spacing:.4g}" for m in missing)
            raise InputError(f"scan {idx + 1} has {len(missing)} missing slice(s) (at {where} mm from its first "
                             f"slice); {spec.name} needs every slice: use --method srr, which uses the slices "
                             "where they were acquired")
        if scan.meta.get("slice_positions"):
            raise InputError(f"scan {idx + 1} has unevenly spaced slices; {spec.name} needs even ones: use "
                             "--method srr, which uses the slices where they were acquired")


def choose_method(method: Optional[str], scans: Sequence[Volume], steps: Optional[np.ndarray], grid: Optional[Grid],
                  device: str, with_reference: bool, adapt: bool = False) -> MethodSpec:
    """The named method, or the default for this run; the default must support the run's scale
    (a learned model validated to x8 cannot take x11); with --adapt, the best method that adapts."""
    if method:
        return get_method(method)
    target = float(grid.spacing.min()) if grid is not None else (
        float(steps.min()) if steps is not None else float(min(s.spacing.min() for s in scans)))
    coarsest = float(max(s.spacing.max() for s in scans))
    return default_method(len(scans), device, with_reference, coarsest / max(target, 1e-9), adapt)


def check_method(spec: MethodSpec, n_scans: int, options: RunOptions, reference: Optional[Volume]) -> None:
    """The method takes this many scans, is installed, and accepts the options and the reference."""
    if not spec.min_scans <= n_scans <= spec.max_scans:
        raise InputError(f"method {spec.name} takes {spec.inputs}, got {n_scans} scans")
    if options.ensemble and not spec.needs_weights:
        raise InputError(f"--ensemble applies to learned methods; {spec.name} is an interpolation")
    if not spec.available():
        raise InputError(f"method {spec.name} is not available: its weights are missing")
    check_adaptation(spec, options, reference)
    if reference is None and spec.reference == "required":
        raise InputError(f"method {spec.name} needs a --reference HR image")


def check_spacing(steps: Optional[np.ndarray], scans: Sequence[Volume]) -> None:
    """An output spacing between the finest input voxel / MAX_REFINEMENT and the coarsest input voxel."""
    if steps is None:
        return
    finest = float(min(s.spacing.min() for s in scans))
    coarsest = float(max(s.spacing.max() for s in scans))
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


def check_contrasts(scans: Sequence[Volume]) -> list[str]:
    """Refuse to fuse scans of different contrasts (see :mod:`isovox.contrast`); return the doubts."""
    if len(scans) < 2:
        return []
    from .contrast import contrast_report

    report = contrast_report(scans)
    if report["problems"]:
        raise InputError(f"{report['problems'][0]}; isovox fuses scans of one contrast: run them separately, or "
                         "give the other contrast as --reference to a guided method (recnn)")
    return report["doubts"]


def grid_report(scans: Sequence[Volume], grid: Grid) -> str:
    """What a given output grid (``--like``) means for the run: its voxels and the through-plane scale."""
    spacing = "x".join(f"{s:.3g}" for s in grid.spacing)
    coarsest = max(float(s.spacing.max()) for s in scans)
    finest = min(float(s.spacing.min()) for s in scans)
    scale = coarsest / float(grid.spacing.min())
    detail = "finer than any acquired voxel" if grid.spacing.min() < finest * 0.99 else "within the acquired detail"
    return (f"the output grid is {'x'.join(map(str, grid.shape))} voxels of {spacing} mm: x{scale:.2f} finer than "
            f"the thickest slices, {detail}")


def undetermined_axes(scans: Sequence[Volume], grid: Grid) -> list[str]:
    """Warnings for grid axes finer than every acquired in-plane voxel along them: the reconstruction's
    system is degenerate there (the prior, not the data, decides the detail)."""
    from .grid import thick_axis

    names = ("first", "second", "third")
    out = []
    directions = grid.affine[:3, :3] / grid.spacing
    for a in range(3):
        acquired = []
        for scan in scans:
            thick = thick_axis(scan)
            for t in range(3):
                if t != thick and abs(float(directions[:, a] @ scan.directions[:, t])) > 0.9:
                    acquired.append(float(scan.spacing[t]))
        if acquired and min(acquired) > 1.05 * float(grid.spacing[a]):
            out.append(f"the target's {names[a]} axis ({grid.spacing[a]:.3g} mm) is finer than any acquired in-plane "
                       f"voxel along it ({min(acquired):.3g} mm): the scans do not determine that detail, the prior "
                       "fills it in")
    return out


def uses_physics(spec: MethodSpec, consistency: bool = True) -> bool:
    """Whether the run solves through the forward model: srr, or a learned method with data consistency."""
    return spec.name == "srr" or (spec.consistency and consistency)


def memory_needed(spec: MethodSpec, scans: Sequence[Volume], grid: Grid, device: str, physics: bool = False) -> int:
    """Estimated peak memory of the run in bytes (the output grid, copies of the inputs, network tiles, and
    with ``physics`` the reconstruction's unknowns and forward operators)."""
    needed = grid.n_voxels * spec.bytes_per_voxel + sum(s.data.nbytes for s in scans) * 3
    if physics:
        from .forward import ScanGeometry, operator_bytes
        from .recon import SOLVE_BYTES_PER_VOXEL

        needed += grid.n_voxels * SOLVE_BYTES_PER_VOXEL if spec.name != "srr" else 0
        needed += sum(operator_bytes(grid, ScanGeometry.of(scan)) for scan in scans)
    if spec.needs_weights and device == "cpu":  # network activations of one tile live in host memory
        # a tile never exceeds the budget, nor (much) the volume itself: ~2 KB of activations per voxel at most
        needed += int(min(TILE_BUDGET_BYTES, grid.n_voxels * 2048.0))
    return int(needed)


def check_adaptation(spec: MethodSpec, options: RunOptions, reference: Optional[Volume]) -> None:
    """--adapt fine-tunes a network on the scans: learned methods only, no reference."""
    if not options.adapt:
        return
    if not spec.needs_weights:
        raise InputError(f"--adapt fine-tunes a network; {spec.name} is an interpolation")
    if reference is not None:
        raise InputError("--adapt cannot use a --reference: pairs made from the scans have no reference")


def execute(run: Plan, task: Optional[Task] = None) -> RunResult:
    """Run a planned super-resolution and return the volume with its provenance."""
    task = ensure_task(task)
    start = time.perf_counter()
    consistent = run.method.consistency and run.options.consistency
    method_task, consistency_task = task.stages([1.0, 1.0 if consistent else 0.0])
    request = MethodRequest(list(run.scans), run.grid, run.reference, run.device, method_task, run.options)
    output = run.method.run(request)
    if consistent:
        output = _consistent(output, run, consistency_task)
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
        "options": run.options.to_dict(),
        "registrations": output.meta.get("registrations", []),
        "fallback": output.meta.get("fallback"),
        "adaptation": output.meta.get("adaptation"),
        "intensity_maps": output.meta.get("intensity_maps", []),
        "reconstruction": output.meta.get("reconstruction"),
        "consistency": output.meta.get("consistency"),
        "seconds": round(seconds, 3),
        "warnings": run.warnings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    description = f"isovox {run.method.name} {run.grid.spacing.min():g}mm"
    volume = Volume(output.data, output.affine, {"source": f"isovox {run.method.name}", "description": description})
    return RunResult(volume, run, seconds, provenance)


def _consistent(output: Volume, run: Plan, task: Task) -> Volume:
    """A learned method's output made to honour the acquired slices (see :func:`isovox.recon.enforce_consistency`),
    with the scans where the method's own registration put them."""
    from .recon import enforce_consistency

    scans = list(run.scans)
    for idx, transform in enumerate(output.meta.get("registrations") or [], start=1):
        scans[idx] = Volume(scans[idx].data, np.linalg.inv(np.asarray(transform)) @ scans[idx].affine, scans[idx].meta)
    return enforce_consistency(output, scans, run.grid, run.options, run.device, task)


def super_resolve(scans: Sequence[Volume], method: Optional[str] = None, task: Optional[Task] = None, **kwargs: Any) -> RunResult:
    """Plan and execute in one call (see :func:`plan` for the arguments)."""
    return execute(plan(scans, method, **kwargs), task)


def _label(volume: Volume, idx: int) -> str:
    return str(volume.meta.get("source") or f"scan {idx + 1}")

