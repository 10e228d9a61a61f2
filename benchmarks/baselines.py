"""Baseline quality and speed: B-spline (1 scan) and CubeAvg (2-3 scans) at x2..x7 on real volumes.

Prints a Markdown table of head-masked PSNR / SSIM per volume, scale and number of scans,
then fusion timings (median of repeats) and peak memory for a 256^3 output.

Usage: .venv/bin/python benchmarks/baselines.py [--volumes colin27 mni152] [--scales 2 3 4 5 6 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from isovox import api, datasets, io
from isovox.metrics import evaluate
from isovox.simulate import orthogonal_protocol, simulate_scans
from isovox.volume import Volume

SCAN_SETS = {1: (2,), 2: (2, 1), 3: (2, 1, 0)}  # axial first, then coronal, sagittal


def quality_table(names: list[str], scales: list[float], noise: float) -> None:
    print(f"\n### Quality (head-masked PSNR dB / SSIM), box profile, Rician noise {noise:g}\n")
    print("| volume | k | bspline (1 scan) | cubeavg (2 scans) | cubeavg (3 scans) |")
    print("|---|---|---|---|---|")
    for name in names:
        hr = io.read_volume(datasets.fetch(name))
        for k in scales:
            scans = simulate_scans(hr, orthogonal_protocol(k, (2, 1, 0), "box", noise=noise, seed=int(k * 10)))
            cells = []
            for n_scans in (1, 2, 3):
                method = "bspline" if n_scans == 1 else "cubeavg"
                result = api.super_resolve(scans[:n_scans], method, spacing=1.0)
                s = evaluate(result.volume, hr)
                cells.append(f"{s['psnr_masked']:.2f} / {s['ssim']:.4f}")
            print(f"| {name} | x{k:g} | " + " | ".join(cells) + " |", flush=True)


def timing(repeats: int) -> None:
    print("\n### Speed: 256^3 output on this machine\n")
    hr_src = io.read_volume(datasets.fetch("colin27"))
    data = np.zeros((256, 256, 256), np.float32)
    data[37:218, 19:236, 37:218] = hr_src.data  # real head in a 256 mm box
    hr = Volume(data, hr_src.affine, {"source": "colin27 in 256^3"})
    print("| method | scans | k | median s | runs | peak memory (numpy) |")
    print("|---|---|---|---|---|---|")
    for k in (2.0, 4.0):
        scans = simulate_scans(hr, orthogonal_protocol(k, (2, 1, 0)))
        for method, n in (("bspline", 1), ("cubeavg", 3)):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                api.super_resolve(scans[:n], method, spacing=1.0)
                times.append(time.perf_counter() - t0)
            tracemalloc.start()
            api.super_resolve(scans[:n], method, spacing=1.0)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"| {method} | {n} | x{k:g} | {statistics.median(times):.2f} | {repeats} | {peak / 2**20:.0f} MiB |",
                  flush=True)
    # The oblique path (scan not parallel to the grid): one scan rotated 20 degrees.
    tilt = np.eye(4)
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    tilt[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
    scan = simulate_scans(hr, orthogonal_protocol(4.0, (2,)))[0]
    oblique = Volume(scan.data, tilt @ scan.affine)
    ref = simulate_scans(hr, orthogonal_protocol(4.0, (1,)))[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        api.super_resolve([ref, oblique], "cubeavg", spacing=1.0)
        times.append(time.perf_counter() - t0)
    print(f"| cubeavg (one scan 20 deg oblique) | 2 | x4 | {statistics.median(times):.2f} | {repeats} | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=["colin27", "mni152"])
    parser.add_argument("--scales", nargs="+", type=float, default=[2, 3, 4, 5, 6, 7])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.03])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for noise in args.noise:
        quality_table(args.volumes, args.scales, noise)
    timing(args.repeats)


if __name__ == "__main__":
    main()
