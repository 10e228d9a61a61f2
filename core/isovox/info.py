"""Geometry and pre-flight report for one or more scans (``isovox info``, UI panels).

It answers what a user should check before fusing: spacing and orientation,
which axis is thick and by how much, slice gaps, whether scans are orthogonal,
how much their fields of view overlap, and whether their intensities agree.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .fusion import check_overlap, resample
from .grid import coarse_grid, orientation_code, target_grid, thick_axis
from .intensity import robust_max
from .volume import Volume

AXIS_NAMES = ("R", "A", "S")


def obliquity_degrees(affine: np.ndarray) -> float:
    """Largest angle between an array axis and its nearest RAS axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.abs(directions).max(axis=0).clip(-1, 1)
    return float(np.degrees(np.arccos(cosines)).max())


def describe(volume: Volume) -> dict[str, Any]:
    """Geometry and intensity facts of one volume."""
    data = np.asarray(volume.data)
    axis = thick_axis(volume)
    spacing = volume.spacing
    facts: dict[str, Any] = {
        "source": volume.meta.get("source"),
        "shape": list(volume.shape),
        "spacing_mm": [round(float(s), 4) for s in spacing],
        "orientation": orientation_code(volume.affine),
        "obliquity_deg": round(obliquity_degrees(volume.affine), 2),
        "origin_ras_mm": [round(float(o), 3) for o in volume.origin],
        "thick_axis": axis,
        "anisotropy": round(float(spacing.max() / spacing.min()), 3),
        "intensity": {
            "min": float(data.min()),
            "p1": float(np.percentile(data, 1)),
            "p99": float(np.percentile(data, 99)),
            "max": float(data.max()),
            "robust_max": robust_max(data),
        },
    }
    thickness = volume.meta.get("slice_thickness")
    between = volume.meta.get("spacing_between_slices")
    if axis is not None:
        facts["slice_direction_ras"] = [round(float(v), 4) for v in volume.directions[:, axis]]
        between = between if between is not None else float(spacing[axis])
    if thickness is not None and between is not None:
        facts["slice_thickness_mm"] = float(thickness)
        facts["slice_gap_mm"] = round(float(between) - float(thickness), 4)
    for key in ("series_number", "series_description", "missing_slices", "slice_positions"):
        if volume.meta.get(key) not in (None, "", []):
            facts[key] = volume.meta[key]
    return facts


def _scan_warnings(idx: int, vol: Volume, facts: dict[str, Any]) -> list[str]:
    """Near-isotropic, anisotropic in-plane and gapped scans (and no thickness without a thick axis)."""
    warnings = []
    spacing = vol.spacing
    if facts["thick_axis"] is None:
        if spacing.max() / spacing.min() < 1.2:
            warnings.append(f"scan {idx} is already near-isotropic ({_sp(spacing)} mm)")
    else:
        inplane = np.delete(spacing, facts["thick_axis"])
        if inplane.max() / inplane.min() > 1.2:
            warnings.append(f"scan {idx} has anisotropic in-plane voxels ({_sp(spacing)} mm)")
    gap = facts.get("slice_gap_mm")
    if gap is not None and gap > 1e-3:
        warnings.append(f"scan {idx} has a {gap:g} mm gap between slices: tissue there was never imaged")
    if gap is None and facts["thick_axis"] is not None:
        facts["slice_thickness_mm"] = None
    return warnings


def _pair(a: int, fa: dict[str, Any], b: int, fb: dict[str, Any], parts, warnings: list[str]) -> dict[str, Any]:
    """Slice angle and intensity ratio of scans ``a`` and ``b`` (0-based), with their warnings."""
    pair: dict[str, Any] = {"scans": [a + 1, b + 1]}
    if fa["thick_axis"] is not None and fb["thick_axis"] is not None:
        da = np.array(fa["slice_direction_ras"])
        db = np.array(fb["slice_direction_ras"])
        angle = float(np.degrees(np.arccos(np.clip(abs(da @ db), 0, 1))))
        pair["slice_angle_deg"] = round(angle, 2)
        if angle < 10:
            warnings.append(f"scans {a + 1} and {b + 1} are sliced along the same direction; fusion adds little")
        elif abs(angle - 90) > 10:
            warnings.append(f"scans {a + 1} and {b + 1} are not orthogonal ({angle:.0f} degrees apart)")
    shared = parts[a].full_mask() & parts[b].full_mask()
    va, vb = parts[a].values[shared], parts[b].values[shared]
    fg = va > 0.1 * robust_max(va) if va.size else np.zeros(0, bool)
    if np.count_nonzero(fg) > 50:
        ratio = float(np.median(vb[fg]) / max(np.median(va[fg]), 1e-12))
        pair["intensity_ratio"] = round(ratio, 4)
        if abs(np.log(max(ratio, 1e-6))) > np.log(1.15):
            warnings.append(f"scan {b + 1} is {ratio:.2f}x as bright as scan {a + 1}; consider --match-intensity")
    return pair


def preflight(volumes: Sequence[Volume]) -> dict[str, Any]:
    """Facts per scan plus the cross-scan checks, with human-readable warnings."""
    from .contrast import contrast_report, declared_contrast

    scans = [describe(v) for v in volumes]
    warnings = [f"scan {idx + 1}: {w}" for idx, v in enumerate(volumes) for w in v.meta.get("warnings", [])]
    for idx, (vol, facts) in enumerate(zip(volumes, scans), start=1):
        warnings += _scan_warnings(idx, vol, facts)
        facts["contrast"] = declared_contrast(vol)
    report: dict[str, Any] = {"scans": scans, "pairs": [], "warnings": warnings}
    if len(volumes) < 2:
        return report
    try:
        grid = coarse_grid(target_grid(volumes), 48**3)
        overlap = check_overlap(volumes, grid)
        report["overlap_with_scan_1"] = [round(f, 4) for f in overlap]
        for idx, frac in enumerate(overlap[1:], start=2):
            if frac < 0.5:
                warnings.append(f"scan {idx} covers only {100 * frac:.0f}% of scan 1's field of view")
    except InputError as exc:
        report["overlap_with_scan_1"] = None
        warnings.append(str(exc))
        return report
    parts = [resample(v, grid) for v in volumes]
    for (a, fa), (b, fb) in itertools.combinations(enumerate(scans), 2):
        report["pairs"].append(_pair(a, fa, b, fb, parts, warnings))
    contrasts = contrast_report(volumes)
    for pair, agreement in zip(report["pairs"], contrasts["pairs"]):
        pair["intensity_correlation"] = agreement["intensity_correlation"]
    warnings.extend(contrasts["problems"] + contrasts["doubts"])
    return report


def _sp(spacing: np.ndarray) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for idx, s in enumerate(report["scans"], start=1):
        lines.append(f"scan {idx}: {s['source']}")
        sp = "x".join(f"{v:g}" for v in s["spacing_mm"])
        lines.append(f"  {'x'.join(map(str, s['shape']))} voxels of {sp} mm, orientation {s['orientation']}, "
                     f"{s['obliquity_deg']:.1f} deg oblique")
        if s["thick_axis"] is None:
            lines.append("  no thick axis (near-isotropic)")
        else:
            thick = s.get("slice_thickness_mm")
            gap = s.get("slice_gap_mm")
            detail = (f", slice thickness {thick:g} mm, gap {gap:g} mm" if thick is not None
                      else ", slice thickness not recorded")
            lines.append(f"  thick axis {s['thick_axis']} ({s['anisotropy']:g}x the in-plane spacing){detail}")
        i = s["intensity"]
        lines.append(f"  intensity min {i['min']:.4g}, p1 {i['p1']:.4g}, p99 {i['p99']:.4g}, max {i['max']:.4g}")
    if report.get("pairs"):
        lines.append("across scans:")
        for pair in report["pairs"]:
            a, b = pair["scans"]
            parts = []
            if "slice_angle_deg" in pair:
                parts.append(f"slice directions {pair['slice_angle_deg']:.1f} deg apart")
            if "intensity_ratio" in pair:
                parts.append(f"intensity ratio {pair['intensity_ratio']:.3f}")
            lines.append(f"  scans {a}-{b}: " + (", ".join(parts) or "no shared foreground"))
        overlap = report.get("overlap_with_scan_1")
        if overlap:
            lines.append("  field of view shared with scan 1: " + ", ".join(f"{100 * f:.0f}%" for f in overlap))
    lines.append("warnings:" if report["warnings"] else "warnings: none")
    lines.extend(f"  - {w}" for w in report["warnings"])
    return "\n".join(lines)


def format_series(folder: str, series: Sequence[dict[str, Any]]) -> str:
    """The series of a DICOM folder, one line each."""
    lines = [f"{folder}: {len(series)} DICOM series"]
    for s in series:
        number = s.get("number") if s.get("number") is not None else "?"
        if "problem" in s:
            lines.append(f"  {number:>4}  {s['description'] or '(no description)'}: {s['slices']} images, "
                         f"not readable as a volume ({s['problem']})")
            continue
        thickness = f"{s['slice_thickness_mm']:g} mm thick" if s.get("slice_thickness_mm") else "thickness not recorded"
        volumes = f", {s['volumes']} volumes" if s.get("volumes", 1) > 1 else ""
        lines.append(f"  {number:>4}  {s['description'] or '(no description)'}: {s['modality']} {s['orientation']}, "
                     f"{s['slices']} images{volumes}, {thickness}, slices {s['slice_spacing_mm']:g} mm apart, "
                     f"pixels {'x'.join(f'{v:g}' for v in s['pixel_mm'])} mm  [{s['uid']}]")
    return "\n".join(lines)
