"""End-to-end overhead of a run around its method: reading the scans, hashing them, writing the result.

A 10 M-voxel result (216^3) from three x4 scans of Colin27 padded to that box, written as .nii.gz,
.nii, .nrrd and .mha; reading and hashing the three .nii.gz scans; a DICOM series read (the scans
written as DICOM first); the result written as a derived DICOM series. Prints medians of repeats.

Usage: .venv/bin/python benchmarks/io.py [--repeats 5] [--folder /tmp/isovox-io]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from isovox import datasets, io
from isovox.dicom_out import write_series
from isovox.simulate import Acquisition, simulate_scans
from isovox.volume import Volume


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="isovox-io-"))
    folder.mkdir(parents=True, exist_ok=True)
    src = io.read_volume(datasets.fetch("colin27"))
    data = np.zeros((216, 216, 216), np.float32)
    data[17:198, 0:216, 17:198] = src.data[:, :216, :]
    result = Volume(data, src.affine, {"description": "isovox benchmark"})
    scans = simulate_scans(result, [Acquisition(axis=a, scale=4.0) for a in (2, 1, 0)])
    paths = [io.write_volume(s, folder / f"scan{i}.nii.gz") for i, s in enumerate(scans)]
    dicom_folder = folder / "dicom"
    shutil.rmtree(dicom_folder, ignore_errors=True)
    write_series(scans[0], dicom_folder, "benchmark")
    print(f"\n### I/O overhead around a run: {result.data.size / 1e6:.1f} M-voxel result, three x4 scans "
          f"(median of {args.repeats})\n")
    print("| step | median s |\n|---|---|")
    rows = [("read 3 scans (.nii.gz)", lambda: [io.read_volume(p) for p in paths]),
            ("hash 3 scans (SHA-256)", lambda: [io.file_sha256(p) for p in paths]),
            (f"read a DICOM series ({scans[0].shape[2]} files)", lambda: io.read_volume(dicom_folder))]
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        target = folder / f"result{suffix}"
        rows.append((f"write the result ({suffix})", lambda t=target: io.write_volume(result, t, sidecar={"x": 1})))
    derived = folder / "derived"

    def write_dicom() -> None:
        shutil.rmtree(derived, ignore_errors=True)
        write_series(result, derived, "benchmark", [str(sorted(dicom_folder.iterdir())[0])])

    rows.append((f"write the result as DICOM ({result.shape[2]} files)", write_dicom))
    totals = {}
    for label, work in rows:
        seconds = median_seconds(work, args.repeats)
        totals[label] = seconds
        print(f"| {label} | {seconds:.2f} |", flush=True)
    end_to_end = totals["read 3 scans (.nii.gz)"] + totals["hash 3 scans (SHA-256)"] + totals[
        "write the result (.nii.gz)"]
    print(f"| **read + hash + write .nii.gz** | **{end_to_end:.2f}** |")
    sizes = {s: (folder / f"result{s}").stat().st_size / 2**20 for s in (".nii.gz", ".nii", ".nrrd", ".mha")}
    print("\nfile sizes: " + ", ".join(f"{s} {mb:.0f} MiB" for s, mb in sizes.items()))


if __name__ == "__main__":
    main()
