"""The ``run``, ``methods``, ``simulate``, ``evaluate`` and ``info`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import InputError
from ..frontend import DEVICES, progress_line, record_inputs
from ..progress import Task


# --------------------------------------------------------------------------- shared helpers


def progress_task(quiet: bool, label: str, style: str = "bar") -> tuple[Task, Callable[[], None]]:
    """A Task reporting on stderr; returns (task, close).

    ``bar``: a tqdm bar on a terminal; ``lines``: ``isovox-progress 0.4200 label: message``
    lines for a front end that runs the CLI as a background process; ``none`` or quiet: silent.
    """
    if quiet or style == "none":
        return Task(), lambda: None
    if style == "lines":
        last = [-1.0]

        def report(fraction: float, message: str) -> None:
            if fraction - last[0] >= 0.005 or fraction >= 1.0:
                last[0] = fraction
                print(progress_line(fraction, label, message), file=sys.stderr, flush=True)

        return Task(report), lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, desc=label, unit="%", file=sys.stderr, leave=False, disable=None,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def callback(fraction: float, message: str) -> None:
        bar.n = round(100 * fraction, 1)
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return Task(callback), bar.close


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")


def read_inputs(paths: list[str], frame: Optional[int], series: Optional[list[str]] = None) -> tuple[list, list]:
    """(volumes, the path each came from). ``series`` picks DICOM series: with one folder, every --series
    is a scan of it; with several folders, one --series per folder, in order."""
    from ..io import read_volume

    if not series:
        return [read_volume(p, frame) for p in paths], list(paths)
    if len(paths) == 1:
        return [read_volume(paths[0], frame, s) for s in series], [paths[0]] * len(series)
    if len(series) != len(paths):
        raise InputError(f"--series was given {len(series)} times for {len(paths)} inputs: give one folder and "
                         "up to 3 --series, or one --series per folder")
    return [read_volume(p, frame, s) for p, s in zip(paths, series)], list(paths)


def read_reference(path: str, frame: Optional[int]) -> Any:
    """The --reference volume; its own 4-D choice is --reference-frame (--frame picks the scans' volume)."""
    from ..io import read_volume

    try:
        return read_volume(path, frame)
    except InputError as exc:
        raise InputError(f"--reference {str(exc).replace('--frame', '--reference-frame')}") from None


def say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


# --------------------------------------------------------------------------- run


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="super-resolve 1-3 thick-slice scans into one isotropic volume",
                       description="Super-resolve 1-3 thick-slice scans of any orientation onto one isotropic grid.")
    p.add_argument("scans", nargs="+", metavar="SCAN", help="NIfTI, NRRD, MHA/MHD file or DICOM folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (.nii.gz, .nii, .nrrd, .mha), or a new folder with --format dicom")
    p.add_argument("--format", choices=["auto", "dicom"], default="auto",
                   help="auto: by the output's suffix; dicom: a derived DICOM series in the folder OUT")
    p.add_argument("--method", help="method name (see 'isovox methods'); default: best available")
    p.add_argument("--spacing", metavar="MM", help="output voxel size in mm (default: finest input spacing)")
    p.add_argument("--like", metavar="FILE", help="put the output on the grid of this image (shape, spacing, "
                                                  "orientation, origin), as registration tools do")
    p.add_argument("--reference", metavar="REF", help="registered HR image of another contrast (guided methods)")
    p.add_argument("--device", default="auto", choices=list(DEVICES))
    p.add_argument("--frame", type=int, help="volume index to use from 4-D inputs")
    p.add_argument("--reference-frame", type=int, metavar="K", help="volume index to use from a 4-D --reference")
    p.add_argument("--series", action="append", metavar="N",
                   help="DICOM series number or UID of a folder holding several (repeat for 2-3 scans of one "
                        "folder; see 'isovox info FOLDER')")
    p.add_argument("--register", action="store_true", help="rigidly register scans 2-3 to scan 1 first")
    p.add_argument("--match-intensity", action="store_true", help="match scans 2-3 intensities to scan 1")
    p.add_argument("--ensemble", action="store_true",
                   help="learned methods: average over the 8 flips (isoSRN+; 8x slower)")
    p.add_argument("--adapt", action="store_true",
                   help="learned methods: first fine-tune the network on these scans (no HR data needed)")
    p.add_argument("--adapt-seconds", type=float, metavar="S",
                   help="time for --adapt (default 300); the shipped weights are never changed")
    p.add_argument("--slice-profile", metavar="PROFILE",
                   help="slice profile of the forward model: box (default), gaussian (FWHM = thickness) or "
                        "comma-separated samples over [-thickness, +thickness]")
    p.add_argument("--slice-thickness", metavar="MM",
                   help="slice thickness in mm, one for all scans or one per scan (default: from DICOM/BIDS, "
                        "else the slice spacing)")
    p.add_argument("--smoothness", type=float, metavar="LAMBDA",
                   help="reconstruction regularisation weight (default: chosen for the input from left-out slices)")
    p.add_argument("--no-consistency", dest="consistency", action="store_false",
                   help="learned methods: show the raw network output, without the final data-consistency solve")
    p.add_argument("--max-memory", type=float, metavar="GB", help="refuse runs estimated to need more memory")
    p.add_argument("--progress", choices=["bar", "lines", "none"], default="bar",
                   help="bar (terminal), lines (machine-readable, for front ends) or none")
    add_quiet(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from .. import api
    from ..grid import Grid
    from ..io import check_output_folder, check_output_path, read_volume, write_sidecar, write_volume

    protect = list(args.scans) + [p for p in (args.reference, args.like) if p]
    if args.like and args.spacing:
        raise InputError("give --like or --spacing, not both: --like sets the whole output grid")
    dicom_out = args.format == "dicom"
    out = check_output_folder(args.output, protect) if dicom_out else check_output_path(args.output, protect)
    scans, sources = read_inputs(args.scans, args.frame, args.series)
    reference = read_reference(args.reference, args.reference_frame) if args.reference else None
    grid = Grid.of(read_volume(args.like)) if args.like else None
    limit = None
    if args.max_memory is not None:
        if not np.isfinite(args.max_memory) or args.max_memory <= 0:
            raise InputError("--max-memory must be a positive number of GB")
        limit = int(args.max_memory * 1024**3)
    run_plan = api.plan(scans, args.method, spacing=args.spacing, reference=reference, device=args.device,
                        grid=grid, max_memory_bytes=limit, register=args.register, match_intensity=args.match_intensity,
                        ensemble=args.ensemble, adapt=args.adapt, adapt_seconds=args.adapt_seconds,
                        slice_profile=args.slice_profile, slice_thickness=args.slice_thickness,
                        smoothness=args.smoothness, consistency=args.consistency)
    if grid is not None:
        say(args, f"isovox: {api.grid_report(scans, grid)}")
    for warning in run_plan.warnings:
        print(f"isovox: warning: {warning}", file=sys.stderr)
    task, close = progress_task(args.quiet, run_plan.method.name, args.progress)
    try:
        result = api.execute(run_plan, task)
    finally:
        close()
    provenance = record_inputs(result.provenance, sources, [scan.meta for scan in scans])
    if dicom_out:
        from .. import __version__
        from ..dicom_out import source_files, write_series

        out, notes = write_series(result.volume, out, result.plan.method.name, source_files(scans),
                                  str(scans[0].meta.get("series_description") or ""), __version__)
        for note in notes:
            print(f"isovox: warning: {note}", file=sys.stderr)
        write_sidecar(out, dict(provenance, dicom_notes=notes))
    else:
        write_volume(result.volume, out, protect=protect, sidecar=provenance)
    shape = "x".join(map(str, result.volume.shape))
    say(args, f"wrote {out} ({shape} voxels at {result.plan.grid.spacing.min():g} mm, "
              f"method {result.plan.method.name}, {result.seconds:.1f} s)")
    return 0


# --------------------------------------------------------------------------- methods


def add_methods(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the super-resolution methods")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=cmd_methods)


def cmd_methods(args: argparse.Namespace) -> int:
    from ..methods import all_methods, default_method
    from ..resources import resolve_device

    device = resolve_device("auto")
    defaults = {n: default_method(n, device).name for n in (1, 2, 3)}
    adapting = {}
    for n in (1, 2, 3):
        try:
            adapting[n] = default_method(n, device, adapt=True).name
        except InputError:  # no installed network adapts
            continue
    rows = []
    for spec in all_methods():
        entry = spec.to_dict()
        entry["default_for_scans"] = [n for n, name in defaults.items() if name == spec.name]
        entry["default_with_adapt_for_scans"] = [n for n, name in adapting.items() if name == spec.name]
        rows.append(entry)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        why = f": {r['why_default']}" if r["why_default"] else ""
        flag = f"  [default for {','.join(map(str, r['default_for_scans']))} scan(s) on {device}{why}]" \
            if r["default_for_scans"] else ""
        state = "" if r["available"] else "  (weights missing)"
        if r["default_with_adapt_for_scans"]:
            flag += f"  [--adapt default for {','.join(map(str, r['default_with_adapt_for_scans']))} scan(s){why}]"
        print(f"{r['name']:<{width}}  {r['inputs']:<12}  {r['description']}{state}{flag}")
    return 0


# --------------------------------------------------------------------------- simulate


def add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="make thick-slice scans from an isotropic volume")
    p.add_argument("hr", metavar="HR", help="isotropic high-resolution volume")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the scans")
    p.add_argument("--axes", default="0,1,2", help="array axes to slice along, e.g. 0,1,2 or 2")
    p.add_argument("--scale", type=float, default=4.0, help="slice thickness / input voxel size (default 4)")
    p.add_argument("--profile", choices=["box", "gaussian"], default="box", help="slice profile (default box)")
    p.add_argument("--gap", type=float, default=0.0, metavar="MM", help="gap between slices (negative: overlap)")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="Rician sigma, fraction of robust max")
    p.add_argument("--blur", type=float, default=0.0, metavar="MM", help="in-plane Gaussian blur sigma")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slice-axis-last", action="store_true",
                   help="store each scan as scanners do: slices along the last array axis")
    p.add_argument("--format", default="nii.gz", choices=["nii.gz", "nii", "nrrd", "mha"])
    add_quiet(p)
    p.set_defaults(func=cmd_simulate)


def _parse_axes(text: str) -> list[int]:
    try:
        axes = [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise InputError(f"--axes {text!r}: give array axes such as 0,1,2") from None
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise InputError(f"--axes {text!r}: give distinct axes among 0, 1, 2")
    return axes


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..io import read_volume, write_volume
    from ..simulate import orthogonal_protocol, simulate_scan

    axes = _parse_axes(args.axes)
    hr = read_volume(args.hr)
    protocol = orthogonal_protocol(args.scale, axes, args.profile, args.gap, args.noise, args.blur, args.seed)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    scans = [simulate_scan(hr, acq) for acq in protocol]  # all computed before anything is written
    records = []
    for acq, scan in zip(protocol, scans):
        if args.slice_axis_last:
            order = [a for a in range(3) if a != acq.axis] + [acq.axis]
            scan = scan.transposed(tuple(order)).flipped((0,))
        path = out_dir / f"scan_axis{acq.axis}.{args.format}"
        side = {
            "SliceThickness": scan.meta["slice_thickness"],
            "SpacingBetweenSlices": scan.meta["spacing_between_slices"],
            "isovox_acquisition": acq.to_dict(),
            "isovox_source": str(Path(args.hr).resolve()),
        }
        write_volume(scan, path, protect=[args.hr], sidecar=side)
        records.append({"file": path.name, **acq.to_dict()})
        say(args, f"wrote {path} ({'x'.join(map(str, scan.shape))}, axis {acq.axis}, x{acq.scale:g})")
    record = out_dir / "acquisition.json"
    staged = out_dir / ".acquisition.json.tmp"
    staged.write_text(json.dumps({"hr": str(Path(args.hr).resolve()), "scans": records}, indent=2))
    staged.replace(record)
    return 0


# --------------------------------------------------------------------------- evaluate


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="PSNR, SSIM and sharpness of a result against an HR reference")
    p.add_argument("result", metavar="OUT")
    p.add_argument("--reference", required=True, metavar="HR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..io import read_volume
    from ..metrics import evaluate

    scores = evaluate(read_volume(args.result), read_volume(args.reference))
    if args.json:
        print(json.dumps(scores, indent=2, default=float))
        return 0
    print(f"PSNR          {scores['psnr']:.2f} dB  (all voxels in the result's field of view)")
    print(f"PSNR (head)   {scores['psnr_masked']:.2f} dB")
    print(f"SSIM (head)   {scores['ssim']:.4f}")
    print(f"sharpness     {scores['sharpness']:.3f}  (1.0 = as sharp as the reference)")
    if scores["resampled"]:
        print("note: grids differ; the result was resampled onto the reference grid (cubic B-spline)")
    return 0


# --------------------------------------------------------------------------- info


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="geometry and pre-flight report of one or more scans; the series of a DICOM "
                                    "folder")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--frame", type=int, help="volume index to use from 4-D inputs")
    p.add_argument("--series", action="append", metavar="N", help="DICOM series number or UID (repeatable)")
    p.add_argument("--like", metavar="FILE", help="also say what putting the result on this image's grid means")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from ..dicom import find_series, quiet_itk
    from ..info import format_report, format_series, preflight
    from ..io import read_volume

    listings = {}
    for path in args.files:
        if Path(path).is_dir() and not args.series:
            quiet_itk()
            listings[path] = [s.summary() for s in find_series(path)]
            if not listings[path]:
                raise InputError(f"{path}: a folder with no DICOM series in it")
    several = [p for p, found in listings.items() if len(found) > 1]
    report: dict[str, Any] = {}
    if not several:  # every input is one scan: the pre-flight report
        scans = read_inputs(args.files, args.frame, args.series)[0]
        report = preflight(scans)
        if args.like:
            from .. import api
            from ..grid import Grid

            grid = Grid.of(read_volume(args.like))
            report["output_grid"] = {"shape": list(grid.shape), "spacing_mm": [float(v) for v in grid.spacing],
                                     "affine": np.asarray(grid.affine).tolist(), "says": api.grid_report(scans, grid)}
    if listings:
        report["series"] = listings
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return 0
    for path, found in listings.items():
        print(format_series(path, found))
    if not several:
        print(format_report(report))
        if "output_grid" in report:
            print(f"--like: {report['output_grid']['says']}")
    else:
        print("pick series with --series N (isovox info FOLDER --series N, isovox run FOLDER --series N ...)")
    return 0
