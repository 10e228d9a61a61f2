"""What every front end needs, in one place and with no UI toolkit: the command line, the
napari plugin and the Slicer module all call these, so they agree on methods, scales,
previews, colour windows, provenance, progress lines, exit codes and error messages.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import api, qa
from .errors import CancelledError, InputError, IsovoxError, ResourceError
from .grid import Grid
from .methods import all_methods, get_method, methods_for
from .options import RunOptions
from .registry import MethodSpec
from .volume import Volume

__all__ = [
    "DEVICES", "ExitCode", "PROGRESS_PREFIX", "all_methods", "dicom_sources", "display_name", "diverging_limit", "display_limits",
    "error_for_exit", "exit_code", "get_method", "method_help", "method_named", "methods_for", "parse_progress",
    "preflight_text", "preview_plan", "progress_line", "read_all", "record_inputs", "reconstruction_summary",
    "reference_for_method", "run_arguments",
    "scale_for_spacing", "slab_axis", "spacing_for_scale", "user_message",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
PROGRESS_PREFIX = "isovox-progress"


class ExitCode(enum.IntEnum):
    """Exit status of ``isovox``: what a background front end reads back."""

    OK = 0
    RESOURCES = 1  # not enough memory, disk or another resource
    BAD_INPUT = 2
    INTERNAL = 3
    CANCELLED = 130


def exit_code(error: BaseException) -> ExitCode:
    if isinstance(error, (CancelledError, KeyboardInterrupt)):
        return ExitCode.CANCELLED
    if isinstance(error, InputError):
        return ExitCode.BAD_INPUT
    if isinstance(error, (IsovoxError, MemoryError, OSError)):
        return ExitCode.RESOURCES
    return ExitCode.INTERNAL


def user_message(error: BaseException) -> str:
    """One line for a person (never a traceback)."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, MemoryError):
        return str(error) or "ran out of memory; choose a coarser --spacing"
    if isinstance(error, IsovoxError):
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    return f"internal error: {type(error).__name__}: {error}"


def error_for_exit(code: int, message: str) -> IsovoxError:
    """The engine error a background run's exit status stands for (with the engine's own message)."""
    kind = {ExitCode.BAD_INPUT: InputError, ExitCode.RESOURCES: ResourceError,
            ExitCode.CANCELLED: CancelledError}.get(code, IsovoxError)  # type: ignore[call-overload]
    return kind(message)


def progress_line(fraction: float, label: str, message: str = "") -> str:
    """``isovox-progress 0.4200 label: message``: progress for a front end reading a background run."""
    return f"{PROGRESS_PREFIX} {fraction:.4f} {label}: {message}".rstrip(": ")


def parse_progress(line: str) -> Optional[tuple[float, str]]:
    """``isovox-progress 0.4200 cubeavg: fusing`` -> (0.42, "cubeavg: fusing"); other lines -> None."""
    if not line.startswith(PROGRESS_PREFIX + " "):
        return None
    parts = line[len(PROGRESS_PREFIX) + 1:].split(" ", 1)
    try:
        fraction = float(parts[0])
    except ValueError:
        return None
    return min(max(fraction, 0.0), 1.0), (parts[1] if len(parts) > 1 else "")


def run_arguments(options: RunOptions) -> list[str]:
    """The ``isovox run`` flags that give these options (for front ends that run the engine as a process)."""
    args = [flag for flag, on in (("--register", options.register), ("--match-intensity", options.match_intensity),
                                  ("--ensemble", options.ensemble), ("--adapt", options.adapt)) if on]
    if options.adapt_seconds is not None:
        args += ["--adapt-seconds", f"{options.adapt_seconds:g}"]
    if options.slice_profile is not None:
        args += ["--slice-profile", options.slice_profile]
    if options.slice_thickness is not None:
        args += ["--slice-thickness", ",".join(f"{v:g}" for v in options.slice_thickness)]
    if options.smoothness is not None:
        args += ["--smoothness", f"{options.smoothness:g}"]
    if not options.consistency:
        args.append("--no-consistency")
    return args


def reconstruction_summary(provenance: dict[str, Any]) -> str:
    """One line on what the physics did in a run: the smoothness used, down-weighted slices, intensity
    maps and the consistency residual (empty for runs without a reconstruction)."""
    report = provenance.get("reconstruction") or provenance.get("consistency")
    if not report:
        return ""
    chosen = "chosen" if "smoothness_choice" in report else "given"
    parts = [f"smoothness {report['smoothness']:.3g} ({chosen})"]
    for idx, scan in enumerate(report.get("scans", []), start=1):
        low = scan.get("downweighted_slices") or []
        if low:
            shown = ", ".join(str(s) for s in low[:8]) + (" ..." if len(low) > 8 else "")
            parts.append(f"scan {idx}: slice(s) {shown} down-weighted")
    for idx, (gain, offset) in enumerate(report.get("intensity_maps", []), start=1):
        if (gain, offset) != (1.0, 0.0):
            parts.append(f"scan {idx} intensities x{gain:.3f} {offset:+.3g}")
    if "rms_residual_before" in report:
        after = [s["rms_residual"] for s in report.get("scans", [])]
        parts.append("consistency residual " + ", ".join(f"{a:.3g}->{b:.3g}" for a, b in
                                                          zip(report["rms_residual_before"], after)))
    return "; ".join(parts)


def method_help(spec: MethodSpec) -> str:
    """One line describing a method for a menu or tooltip."""
    state = "" if spec.available() else " (weights missing)"
    return f"{spec.inputs}: {spec.description}{state}"


def spacing_for_scale(scans: Sequence[Volume], scale: float) -> float:
    """Target spacing that makes the thickest input slices ``scale`` times finer (a run's scale)."""
    if not scale or not np.isfinite(scale) or scale <= 0:
        raise InputError("the scale must be a positive number")
    if not scans:
        raise InputError("select at least one scan")
    return max(float(s.spacing.max()) for s in scans) / float(scale)


def scale_for_spacing(scans: Sequence[Volume], spacing: float) -> float:
    """The through-plane scale of a run with this target spacing."""
    if not spacing or spacing <= 0:
        raise InputError("the spacing must be a positive number")
    return max(float(s.spacing.max()) for s in scans) / float(spacing)


def slab_axis(grid: Grid, normal_ras: Optional[Sequence[float]]) -> Optional[int]:
    """The grid axis most parallel to a view's slice normal (None: the grid's last axis)."""
    if normal_ras is None:
        return None
    directions = grid.affine[:3, :3] / grid.spacing
    return int(np.argmax(np.abs(directions.T @ np.asarray(normal_ras, float))))


def preview_plan(scans: Sequence[Volume], centre_ras: Sequence[float], half_width_mm: float = 4.0,
                 normal_ras: Optional[Sequence[float]] = None, method: Optional[str] = None,
                 spacing: Any = None, reference: Optional[Volume] = None, device: str = "auto",
                 options: Optional[RunOptions] = None) -> api.Plan:
    """A run of only a slab of the full result around ``centre_ras`` (seconds instead of minutes).

    The slab is cut across the full grid's axis nearest the view's ``normal_ras``; previews skip
    --adapt, which would take minutes: they show the shipped network."""
    options = (options or RunOptions()).without_adaptation()
    full = api.plan(scans, method, spacing=spacing, reference=reference, device=device, options=options)
    slab = qa.preview_grid(full.grid, np.asarray(centre_ras, float), half_width_mm, slab_axis(full.grid, normal_ras))
    return api.plan(scans, method, spacing=spacing, reference=reference, device=device, grid=slab, options=options)


def display_limits(values: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """A grey window from robust percentiles of the finite values (never empty)."""
    finite = np.asarray(values)[np.isfinite(values)]
    lo, hi = (np.percentile(finite, percentiles) if finite.size else (0.0, 1.0))
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def diverging_limit(values: np.ndarray, percentile: float = 99.0) -> float:
    """Half-width of a window centred at 0 for a signed map: the 99th percentile of |value|."""
    finite = np.abs(np.asarray(values)[np.isfinite(values)])
    if not finite.size:
        return 1.0
    limit = float(np.percentile(finite, percentile))
    return limit if limit > 0 else float(finite.max() or 1.0)


def record_inputs(provenance: dict[str, Any], paths: Sequence[Optional[str | Path]],
                  metas: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
    """The provenance with each input's file path and SHA-256 (inputs with no file keep neither); a DICOM
    series (``metas``: each input volume's ``meta``) is hashed over its own files and named by its series
    number, UID and one of its files."""
    from .io import file_sha256

    record = dict(provenance)
    record["inputs"] = [dict(entry) for entry in provenance.get("inputs", [])]
    for idx, (entry, path) in enumerate(zip(record["inputs"], paths)):
        if path and Path(path).exists():
            meta = metas[idx] if metas is not None else {}
            entry["path"] = str(Path(path).resolve())
            entry["sha256"] = file_sha256(path, meta.get("source_files"))
            for key in ("series_number", "series_uid", "series_description"):
                if meta.get(key) not in (None, ""):
                    entry[key] = meta[key]
            first = (meta.get("dicom") or {}).get("first_file")
            if first:
                entry["dicom_file"] = str(Path(first).resolve())
    return record


def read_all(path: str | Path) -> list[tuple[Volume, str]]:
    """Every scan at ``path`` with a display name: a file gives one; a folder gives each DICOM series it
    holds (a PACS export holds several). Series that cannot be read are skipped with a warning, unless
    none can be read. Each volume records the path it came from (``meta["path"]``)."""
    import warnings

    from . import dicom
    from .io import read_volume

    path = Path(path)
    resolved = str(path.resolve())
    found = dicom.find_series(path) if path.is_dir() else []
    if len(found) <= 1:
        return [(read_volume(path).with_meta(path=resolved), display_name(path))]
    out, problems = [], []
    for series in found:
        label = f"{path.name} #{series.number if series.number is not None else '?'}"
        label += f" {series.description}" if series.description else ""
        try:
            out.append((read_volume(path, series=series.uid).with_meta(path=resolved), label))
        except InputError as exc:
            problems.append(f"{label}: {exc}")
    if not out:
        raise InputError(problems[0])
    for problem in problems:
        warnings.warn(f"skipped {problem}", stacklevel=2)
    return out


def display_name(path: str | Path) -> str:
    """A layer or node name for a file (its name without the image suffix) or a folder (its name)."""
    from .io import suffix_of

    path = Path(path)
    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix and not path.is_dir() else path.name


def dicom_sources(provenance: Optional[dict[str, Any]]) -> list[str]:
    """One file of each DICOM input named in a result's provenance: what a derived DICOM series
    takes its patient, study and frame of reference from (empty for results of non-DICOM inputs)."""
    inputs = (provenance or {}).get("inputs", [])
    return [str(entry["dicom_file"]) for entry in inputs if isinstance(entry, dict) and entry.get("dicom_file")]


def preflight_text(scans: Sequence[Volume]) -> tuple[str, list[str]]:
    """The engine's pre-flight report as text, and its warnings (for a panel)."""
    from .info import format_report, preflight

    if not scans:
        return "choose 1-3 scans", []
    report = preflight(scans)
    return format_report(report), list(report["warnings"])


def method_named(name: Optional[str]) -> Optional[MethodSpec]:
    """The registry entry called ``name`` (None for no name or an unknown one)."""
    return next((m for m in all_methods() if m.name == name), None) if name else None


def reference_for_method(method: Optional[str], reference: Any) -> Any:
    """The reference to hand the engine: none for a chosen method that takes none.

    A front end's reference selector serves two purposes: guiding methods that use an HR image,
    and being shown and compared against. Only the first goes to the engine."""
    if reference is None or not method:
        return reference  # the engine's default method ignores an unusable reference, with a warning
    return None if get_method(method).reference == "none" else reference
