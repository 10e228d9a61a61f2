"""Reconstruction (``srr``) and data consistency: quality, lambda, lesions, time and memory.

Whole volumes (Colin27, MNI152; no isovox model was trained on them for srr, which learns nothing;
the learned methods saw all but their held-out slab, so their figures here flatter them) are
re-acquired with the forward model, reconstructed, and scored by head-masked PSNR / SSIM.
Prints Markdown tables:

* quality: baseline (B-spline for one scan, CubeAvg otherwise), srr with the lambda it chose, and
  each learned method with and without data consistency (``--learned``), per setting: x2 / x4 / x6
  with 3 orthogonal scans, 2 scans, 1 scan, Rician noise, scans 2-3 tilted +-15 degrees, 4 mm slabs
  5 mm apart, Gaussian slice profile;
* lesion contrast kept (24 spheres, r = 2-4 voxels, +-35 %);
* time and peak memory of a 256^3 output from three x4 scans (each run in its own process).

Usage: .venv/bin/python benchmarks/reconstruction.py [--volumes colin27 mni152] [--settings x4 noise ...]
       [--learned isosrn recnn arssr mrl ctguided] [--skip-lesions] [--skip-speed] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

from isovox import api, datasets, io
from isovox.metrics import aligned_to, contrast_kept, evaluate
from isovox.grid import Grid
from isovox.simulate import Acquisition, random_lesions, simulate_scans
from isovox.volume import Volume

SETTINGS = {
    "x2": ("x2 3 scans", [Acquisition(axis=a, scale=2.0, seed=20 + a) for a in (2, 1, 0)]),
    "x4": ("x4 3 scans", [Acquisition(axis=a, scale=4.0, seed=40 + a) for a in (2, 1, 0)]),
    "x6": ("x6 3 scans", [Acquisition(axis=a, scale=6.0, seed=60 + a) for a in (2, 1, 0)]),
    "two": ("x4 2 scans", [Acquisition(axis=a, scale=4.0, seed=40 + a) for a in (2, 1)]),
    "one": ("x4 1 scan", [Acquisition(axis=2, scale=4.0, seed=40)]),
    "noise": ("x4 3 scans, Rician noise 0.03", [Acquisition(axis=a, scale=4.0, noise=0.03, seed=40 + a)
                                                 for a in (2, 1, 0)]),
    "tilted": ("x4 3 scans, scans 2-3 tilted +-15 deg", [
        Acquisition(axis=2, scale=4.0), Acquisition(axis=1, scale=4.0, tilt=(15.0, 0.0, 0.0)),
        Acquisition(axis=0, scale=4.0, tilt=(0.0, -15.0, 0.0))]),
    "gap": ("3 scans, 4 mm slabs 5 mm apart", [Acquisition(axis=a, scale=4.0, gap=1.0) for a in (2, 1, 0)]),
    "gaussian": ("x4 3 scans, Gaussian profile", [Acquisition(axis=a, scale=4.0, profile="gaussian")
                                                  for a in (2, 1, 0)]),
}


def volume(name: str) -> Volume:
    return io.read_volume(datasets.fetch(name))


def run(scans, method: str, **options) -> tuple[Volume, dict, float]:
    start = time.perf_counter()
    result = api.super_resolve(scans, method, spacing=1.0, **options)
    return result.volume, result.provenance, time.perf_counter() - start


def cell(scores: dict, base: dict) -> str:
    return f"{scores['psnr_masked']:.2f} / {scores['ssim']:.4f} ({scores['psnr_masked'] - base['psnr_masked']:+.2f})"


def quality(names: list[str], keys: list[str], learned: list[str]) -> None:
    print("\n### Quality: masked PSNR dB / SSIM (gain over the baseline in dB)\n")
    columns = ["srr"] + [f"{m} {label}" for m in learned for label in ("raw", "+DC")]
    print("| volume | setting | baseline | " + " | ".join(columns) + " | srr lambda | srr s |")
    print("|---|---|---|" + "---|" * len(columns) + "---|---|")
    for name in names:
        hr = volume(name)
        for key in keys:
            label, protocol = SETTINGS[key]
            scans = simulate_scans(hr, protocol)
            base_method = "bspline" if len(scans) == 1 else "cubeavg"
            base = evaluate(run(scans, base_method)[0], hr)
            out, provenance, seconds = run(scans, "srr")
            cells = [cell(evaluate(out, hr), base)]
            for method in learned:
                for consistency in (False, True):
                    result = run(scans, method, consistency=consistency)[0]
                    cells.append(cell(evaluate(result, hr), base))
            lam = provenance["reconstruction"]["smoothness"]
            print(f"| {name} | {label} | {base_method} {base['psnr_masked']:.2f} / {base['ssim']:.4f} | "
                  + " | ".join(cells) + f" | {lam:.2e} | {seconds:.0f} |", flush=True)


def lesions(learned: list[str]) -> None:
    """Contrast kept: (lesion mean - shell mean) in the result over the same in the truth."""
    print("\n### Lesion contrast kept (Colin27, x4, 3 scans, 24 spheres r = 2-4 voxels, +-35 %)\n")
    hr = volume("colin27")
    truth, centres, radii = random_lesions(hr, margin=8)
    scans = simulate_scans(truth, SETTINGS["x4"][1])

    print("| method | median contrast kept |\n|---|---|")
    labels = [("cubeavg", "cubeavg", {}), ("srr", "srr", {})]
    labels += [(f"{m} raw", m, {"consistency": False}) for m in learned]
    labels += [(f"{m} +DC", m, {}) for m in learned]
    for label, method, options in labels:
        out = run(scans, method, **options)[0]
        values, _ = aligned_to(out, Grid.of(truth))
        print(f"| {label} | {contrast_kept(values, truth.data, centres, radii):.3f} |", flush=True)


SPEED_CODE = """
import json, resource, sys, time, numpy as np, torch
from isovox import api, datasets, io
from isovox.simulate import Acquisition, simulate_scans
from isovox.volume import Volume
torch.set_num_threads(int(sys.argv[2]))
src = io.read_volume(datasets.fetch("colin27"))
data = np.zeros((256, 256, 256), np.float32)
data[37:218, 19:236, 37:218] = src.data  # the real head in a 256 mm box
scans = simulate_scans(Volume(data, src.affine), [Acquisition(axis=a, scale=4.0) for a in (2, 1, 0)])
start = time.perf_counter()
result = api.super_resolve(scans, sys.argv[1], spacing=1.0)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "shape": list(result.volume.shape), "smoothness": (result.provenance["reconstruction"] or {})
                  .get("smoothness")}))
"""


def speed(methods: list[str], repeats: int, threads: int) -> None:
    print(f"\n### Time and peak memory: 256^3 output from three x4 scans ({threads} threads, each run its own "
          "process; peak = the process's maximum resident memory, scans included)\n")
    print("| method | median s | runs | peak GiB |\n|---|---|---|---|")
    for method in methods:
        rows = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", SPEED_CODE, method, str(threads)], capture_output=True,
                                 text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"| {method} | {statistics.median(r['seconds'] for r in rows):.1f} | {repeats} | "
              f"{max(r['peak_gib'] for r in rows):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=["colin27", "mni152"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--learned", nargs="*", default=[])
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-lesions", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-methods", nargs="+", default=["cubeavg", "srr"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.skip_quality:
        quality(args.volumes, args.settings, args.learned)
    if not args.skip_lesions:
        lesions(args.learned)
    if not args.skip_speed:
        speed(args.speed_methods, args.repeats, args.threads)


if __name__ == "__main__":
    main()
