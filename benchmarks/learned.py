"""Learned methods vs the baselines on held-out data: quality, lesions, speed, memory, tiling vs MONAI.

Held-out data: the validation slabs the training never saw (the first 30 % of the
left-right axis of Colin27 and MNI152). Prints Markdown tables.

Usage: .venv/bin/python benchmarks/learned.py [--methods mrl isosrn isosrn+ recnn recnn@ref] [--skip-monai]
       [--skip-speed] [--single-scan] [--fractional] [--ct-stages] [--arbitrary isosrn arssr] [--adapt isosrn mrl]
A method name with "+" runs the 8-flip ensemble (isoSRN+); "@ref" passes an HR reference of another
contrast (the guided ReCNN).

The MONAI comparison needs MONAI, installed for this benchmark only and without touching the pinned
torch: .venv/bin/pip install --no-deps monai
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from isovox import api, datasets, io
from isovox.metrics import contrast_kept, evaluate
from isovox.methods import all_methods
from isovox.simulate import orthogonal_protocol, random_lesions, simulate_scans
from isovox.volume import Volume

HELD_OUT = 0.3


def held_out(name: str) -> Volume:
    vol = io.read_volume(datasets.fetch(name))
    split = int(round(vol.shape[0] * HELD_OUT))
    return Volume(vol.data[:split], vol.affine, {"source": f"{name} held-out slab"})


def t2_like(hr: Volume) -> Volume:
    """A registered HR reference of another contrast: the same anatomy with the tissue order inverted.

    The guided model was trained on this synthetic mapping (no real second contrast may enter
    training), so this measures what a perfect registration and a T2-like contrast give.
    """
    data = hr.data / np.percentile(hr.data[hr.data > 0], 99.5)
    head = data > 0.08
    return Volume((head * (0.2 + np.clip(1.0 - data, 0, 1))).astype(np.float32), hr.affine)


CONSISTENCY = False  # the networks as they are; benchmarks/reconstruction.py measures them with data consistency


def run_label(label: str, scans, hr: Volume, **kw) -> Volume:
    """``name`` runs a method; ``name+`` adds the 8-flip ensemble; ``name@ref`` passes a reference."""
    method, ensemble, guided = label.rstrip("+").split("@")[0], label.endswith("+"), "@ref" in label
    kw.setdefault("consistency", CONSISTENCY)
    return api.super_resolve(scans, method, spacing=1.0, ensemble=ensemble,
                             reference=t2_like(hr) if guided else None, **kw).volume


def score(method: str, scans, hr: Volume, **kw) -> dict:
    return evaluate(run_label(method, scans, hr, **kw), hr)


def quality(methods: list[str], names: list[str], single_scan: bool = False, fractional: bool = False) -> None:
    print("\n### Quality on held-out slabs: masked PSNR dB / SSIM (gain over the baseline in dB)\n")
    header = "| volume | setting | baseline | " + " | ".join(methods) + " |"
    print(header + "\n|" + "---|" * (3 + len(methods)))
    for name in names:
        hr = held_out(name)
        settings = [(f"x{k} 3 scans", k, (2, 1, 0), 0.0) for k in (2, 3, 4, 5, 6, 7)]
        settings += [("x2.5 3 scans", 2.5, (2, 1, 0), 0.0), ("x4 2 scans", 4, (2, 1), 0.0),
                     ("x4 1 scan", 4, (2,), 0.0), ("x4 3 scans noise 0.03", 4, (2, 1, 0), 0.03)]
        if single_scan:  # the single-scan methods' home ground (ctguided), slices along two different axes
            settings += [(f"x{k} 1 scan", k, (2,), 0.0) for k in (2, 3, 5, 6)]
            settings += [("x4 1 scan coronal", 4, (1,), 0.0), ("x4 1 scan noise 0.03", 4, (2,), 0.03)]
        if fractional:  # slice thickness a non-integer multiple of the output voxel
            settings += [(f"x{k} 3 scans", k, (2, 1, 0), 0.0) for k in (3.5, 4.5, 5.5)]
            settings += [(f"x{k} 1 scan", k, (2,), 0.0) for k in (3.5, 4.5)]
        for label, k, axes, noise in settings:
            scans = simulate_scans(hr, orthogonal_protocol(float(k), axes, "box", noise=noise, seed=int(10 * k)))
            base_name = "bspline" if len(axes) == 1 else "cubeavg"
            base = score(base_name, scans, hr)
            cells = []
            for method in methods:
                s = score(method, scans, hr)
                cells.append(f"{s['psnr_masked']:.2f} / {s['ssim']:.4f} ({s['psnr_masked'] - base['psnr_masked']:+.2f})")
            print(f"| {name} | {label} | {base_name} {base['psnr_masked']:.2f} / {base['ssim']:.4f} | "
                  + " | ".join(cells) + " |", flush=True)


def lesions(methods: list[str]) -> None:
    """Contrast kept: (lesion mean - shell mean) in the result over the same in the truth."""
    print("\n### Lesion contrast kept (x4, 3 scans, 24 spheres r = 2-4 voxels, +-35 %)\n")
    hr = held_out("colin27")
    truth, centres, radii = random_lesions(hr, margin=6)
    scans = simulate_scans(truth, orthogonal_protocol(4.0, (2, 1, 0), "box", seed=5))

    print("| method | median contrast kept |\n|---|---|")
    for method in ["cubeavg"] + methods:
        out = run_label(method, scans, truth)
        from isovox.metrics import aligned_to
        from isovox.grid import Grid

        values, _ = aligned_to(out, Grid.of(truth))
        print(f"| {method} | {contrast_kept(values, truth.data, centres, radii):.3f} |", flush=True)


def arbitrary_scale(methods: list[str], names: list[str]) -> None:
    """Outputs finer than the input grid: scans of 1.5 mm in-plane, 4 mm thick, decoded at 1 mm."""
    from isovox.simulate import Acquisition, simulate_scan

    print("\n### Output finer than the input in-plane: 3 scans 1.5 x 1.5 x 4 mm -> 1 mm (held-out slabs)\n")
    print("| volume | cubeavg | " + " | ".join(methods) + " |\n|" + "---|" * (2 + len(methods)))
    for name in names:
        hr = held_out(name)
        coarse = hr
        for axis in range(3):
            coarse = simulate_scan(coarse, Acquisition(axis=axis, scale=1.5))
        scans = simulate_scans(coarse, orthogonal_protocol(4 / 1.5, (2, 1, 0), "box", seed=15))
        base = score("cubeavg", scans, hr)
        cells = []
        for method in methods:
            s = score(method, scans, hr)
            cells.append(f"{s['psnr_masked']:.2f} / {s['ssim']:.4f} ({s['psnr_masked'] - base['psnr_masked']:+.2f})")
        print(f"| {name} | {base['psnr_masked']:.2f} / {base['ssim']:.4f} | " + " | ".join(cells) + " |", flush=True)


def adaptation(methods: list[str], names: list[str], seconds: float) -> None:
    """--adapt against the same method without it, single scan x4 (the issue's target: >= +0.5 dB)."""
    print(f"\n### Scan-specific adaptation (--adapt, {seconds:g} s), single scan x4, held-out slabs\n")
    print("| volume | method | bspline | method | method --adapt | adapt gain | run s | adaptation |\n"
          "|---|---|---|---|---|---|---|---|")
    for name in names:
        hr = held_out(name)
        scans = simulate_scans(hr, orthogonal_protocol(4.0, (2,), "box", seed=40))
        base = score("bspline", scans, hr)["psnr_masked"]
        for method in methods:
            plain = score(method, scans, hr)["psnr_masked"]
            start = time.perf_counter()
            run = api.super_resolve(scans, method, spacing=1.0, adapt=True, adapt_seconds=seconds,
                                    consistency=CONSISTENCY)
            wall = time.perf_counter() - start
            adapted = evaluate(run.volume, hr)["psnr_masked"]
            print(f"| {name} | {method} | {base:.2f} | {plain:.2f} | {adapted:.2f} | {adapted - plain:+.2f} | "
                  f"{wall:.0f} | {run.provenance['adaptation']} |", flush=True)


def ct_stages(names: list[str]) -> None:
    """The CT-guided stage ablation (the paper's Table 2) recorded by training, and the shipped SRNet
    measured again here on held-out MR."""
    from isovox.models import has_model, model_card

    if not has_model("ctguided"):
        print("\nctguided: no shipped model")
        return
    card = model_card("ctguided")
    print("\n### CT-guided stage ablation: held-out MR, 1 scan x4 along the training axis (from training)\n")
    print("| after stage | " + " | ".join(f"{n} PSNR / SSIM (gain over B-spline)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for stage, row in card.extra["stage_ablation"].items():
        cells = [f"{row[f'{n} psnr']:.2f} / {row[f'{n} ssim']:.4f} ({row[f'{n} gain_db']:+.2f})" if f"{n} psnr" in row
                 else "-" for n in names]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    axis = int(card.training["data"].split("along axis ")[1].split()[0])
    cells = []
    for name in names:
        hr = held_out(name)
        scans = simulate_scans(hr, orthogonal_protocol(4.0, (axis,), "box", seed=40))
        base, ours = score("bspline", scans, hr), score("ctguided", scans, hr)
        cells.append(f"{ours['psnr_masked']:.2f} / {ours['ssim']:.4f} ({ours['psnr_masked'] - base['psnr_masked']:+.2f})")
    print("| shipped, measured now | " + " | ".join(cells) + " |", flush=True)


SPEED_CODE = """
import sys, time, resource, numpy as np
from isovox import api, datasets, io
from isovox.simulate import orthogonal_protocol, simulate_scans
from isovox.volume import Volume
src = io.read_volume(datasets.fetch("colin27"))
data = np.zeros((256, 256, 256), np.float32); data[37:218, 19:236, 37:218] = src.data
scans = simulate_scans(Volume(data, src.affine), orthogonal_protocol(4.0, (2, 1, 0)))
t = time.perf_counter()
r = api.super_resolve(scans, sys.argv[1], spacing=1.0, ensemble=sys.argv[2] == "1", consistency=False)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, r.volume.shape)
"""


def speed(methods: list[str], repeats: int) -> None:
    print("\n### Speed: 256^3 output from 3 orthogonal x4 scans, 2-core CPU (fp32), separate processes\n")
    print("| method | median s | runs | peak RSS GiB |\n|---|---|---|---|")
    for label in ["cubeavg"] + [m for m in methods if "@" not in m]:
        method, ensemble = label.rstrip("+"), "1" if label.endswith("+") else "0"
        times, rss = [], []
        for _ in range(repeats if ensemble == "0" else 1):
            out = subprocess.run([sys.executable, "-c", SPEED_CODE, method, ensemble], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {label} | failed: {out.stderr.strip().splitlines()[-1]} | | |")
                break
            seconds, peak, _ = out.stdout.split(maxsplit=2)
            times.append(float(seconds))
            rss.append(float(peak))
        if times:
            print(f"| {label} | {statistics.median(times):.1f} | {len(times)} | {max(rss):.2f} |", flush=True)


MONAI_CODE = """
import sys, time, resource, numpy as np, torch
from isovox.nets import build
from isovox.tiling import run_tiled
torch.manual_seed(0); torch.set_num_threads(2)
net = build("isosrn", channels=12, blocks=3, in_channels=3, image_residual=True).eval()
x = np.random.default_rng(0).normal(size=(3, 96, 96, 96)).astype(np.float32)
mode = sys.argv[1]
t = time.perf_counter()
with torch.inference_mode():
    if mode == "whole":
        y = net(torch.from_numpy(x[None]))[0].numpy()
    elif mode == "isovox":
        y = run_tiled(net, x, (net.receptive_radius,) * 3, budget_bytes=2.5e8, bytes_per_voxel=700)
    else:
        from monai.inferers import sliding_window_inference
        y = sliding_window_inference(torch.from_numpy(x[None]), roi_size=(48, 48, 48), sw_batch_size=1, predictor=net,
                                     overlap=0.25, mode="gaussian")[0].numpy()
seconds = time.perf_counter() - t
np.save(sys.argv[2], y)
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def tiling_vs_monai(tmp: str = "/tmp") -> None:
    print("\n### Tiling vs MONAI sliding_window_inference (same isoSRN-size net, 96^3, CPU)\n")
    results = {}
    for mode in ("whole", "isovox", "monai"):
        out = subprocess.run([sys.executable, "-c", MONAI_CODE, mode, f"{tmp}/tile_{mode}.npy"], capture_output=True,
                             text=True)
        if out.returncode != 0:
            print(f"{mode}: failed ({out.stderr.strip().splitlines()[-1]})")
            return
        seconds, rss = (float(v) for v in out.stdout.split())
        results[mode] = (seconds, rss, np.load(f"{tmp}/tile_{mode}.npy"))
    whole = results["whole"][2]
    print("| inference | seconds | peak RSS GiB | max abs diff vs whole |\n|---|---|---|---|")
    for mode, (seconds, rss, y) in results.items():
        print(f"| {mode} | {seconds:.1f} | {rss:.2f} | {np.abs(y - whole).max():.2e} |")
    iso, mon = results["isovox"], results["monai"]
    print(f"\nisovox/MONAI: time {iso[0] / mon[0]:.2f}x, peak memory {iso[1] / mon[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+",
                        default=[m.name for m in all_methods() if m.needs_weights and m.available()])
    parser.add_argument("--volumes", nargs="+", default=["colin27", "mni152"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--arbitrary", nargs="*", help="methods for the finer-than-input test (e.g. isosrn arssr)")
    parser.add_argument("--adapt", nargs="*", help="methods for the --adapt test (e.g. mrl isosrn)")
    parser.add_argument("--adapt-seconds", type=float, default=300.0)
    parser.add_argument("--single-scan", action="store_true", help="add single-scan settings x2-x6 to the quality table")
    parser.add_argument("--fractional", action="store_true", help="add fractional scales x3.5-x5.5 to the quality table")
    parser.add_argument("--ct-stages", action="store_true", help="print the CT-guided stage ablation")
    args = parser.parse_args()
    if not args.skip_quality:
        quality(args.methods, args.volumes, args.single_scan, args.fractional)
        lesions(args.methods)
    if not args.skip_speed:
        speed(args.methods, args.repeats)
    if args.arbitrary:
        arbitrary_scale(args.arbitrary, args.volumes)
    if args.adapt:
        adaptation(args.adapt, args.volumes, args.adapt_seconds)
    if args.ct_stages:
        ct_stages(args.volumes)
    if not args.skip_monai:
        tiling_vs_monai()


if __name__ == "__main__":
    main()
