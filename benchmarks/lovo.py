"""Leave one volume out: train each network without a volume, then score every method on that volume.

What a user sees is a network on a head it never saw, so the shipped figures (networks trained on
both Colin27 and MNI152, scored on held-out slabs) flatter the networks. For each held-out volume H
(Colin27, MNI152) this trains isoSRN, ReCNN, ArSSR and MRL from their shipped configs on the other
volume only, with the random-contrast augmentation (``contrast_randomisation``), and then scores on
the whole of H: CubeAvg / B-spline, ``srr`` (learns nothing), each network raw and with data
consistency, each network with ``--adapt`` on the single scan (a short budget) and ``--adapt`` without
``--method`` (the default budget), and per lesion the contrast kept and the consistency residual
against srr's (a lesion a method invents or erases shows as a larger residual there). The CT-guided SRNet is the shipped
one: trained on Colin27's own thick scan and the CT head, never on MNI152 (in the Colin27 fold it has
seen the test subject's LR scan, as the paper intends).

Training is resumable: finished models are kept under ``--runs`` and reused.

Usage: .venv/bin/python benchmarks/lovo.py [--held colin27 mni152] [--nets isosrn recnn arssr mrl]
       [--steps 400] [--contrast 0.5] [--adapt-seconds 300] [--method-adapt-seconds 60] [--runs runs/lovo]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLUMES = ("colin27", "mni152")


def train_fold(held: str, nets: list[str], steps: int, contrast: float, runs: Path, threads: int) -> Path:
    """Models trained without ``held`` in ``runs/without-<held>/models`` (plus the shipped CT-guided one)."""
    from isovox.models import models_root
    from isovox_train.loop import Trainer

    models = runs / f"without-{held}" / "models"
    models.mkdir(parents=True, exist_ok=True)
    if not (models / "ctguided").exists():
        shutil.copytree(models_root() / "ctguided", models / "ctguided")
    for net in nets:
        if (models / net / "model.json").exists():
            continue
        config = json.loads((ROOT / "training" / "configs" / f"{net}.json").read_text())
        config.update(volumes=[v for v in VOLUMES if v != held], steps=steps, contrast_randomisation=contrast,
                      threads=threads, val_every=max(steps // 2, 1), checkpoint_every=50,
                      warmup=min(config.get("warmup", 50), steps // 8))
        start = time.perf_counter()
        trainer = Trainer(config, runs / f"without-{held}" / net)
        result = trainer.run(None, True)
        trainer.export(models, result["validation"])
        print(f"trained {net} without {held}: {steps} steps, {time.perf_counter() - start:.0f} s", file=sys.stderr,
              flush=True)
    return models


SCORE_CODE = r"""
import json, sys, time
from isovox import api, datasets, io
from isovox.errors import IsovoxError
from isovox.grid import Grid
from isovox.metrics import aligned_to, contrast_kept, evaluate
from isovox.simulate import Acquisition, random_lesions, simulate_scans
from isovox.volume import Volume
from learned import t2_like  # benchmarks/learned.py: the guided models' synthetic second contrast

held, nets, adapt_seconds, method_adapt_seconds = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), float(sys.argv[4])
hr = io.read_volume(datasets.fetch(held))

x4 = [Acquisition(axis=a, scale=4.0, seed=40 + a) for a in (2, 1, 0)]
settings = [("x4 3 scans", hr, x4),
            ("x4 3 scans, Rician noise 0.03", hr, [Acquisition(axis=a, scale=4.0, noise=0.03, seed=40 + a)
                                                    for a in (2, 1, 0)]),
            ("x4 3 scans, T2-like contrast", t2_like(hr), x4),
            ("x4 1 scan", hr, [Acquisition(axis=2, scale=4.0, seed=40)])]
methods = ["srr"] + nets + ["ctguided"]

def emit(**row):
    print(json.dumps(row), flush=True)

def score(truth, scans, method, **options):
    start = time.perf_counter()
    run = api.super_resolve(scans, method, spacing=1.0, **options)
    return evaluate(run.volume, truth)["psnr_masked"], time.perf_counter() - start, run

for label, truth, protocol in settings:
    scans = simulate_scans(truth, protocol)
    base = "bspline" if len(scans) == 1 else "cubeavg"
    emit(setting=label, method=base, variant="", psnr=score(truth, scans, base)[0])
    for method in methods:
        variants = [("", {})] if method == "srr" else [("raw", {"consistency": False}), ("+DC", {})]
        for variant, options in variants:
            psnr, seconds, _ = score(truth, scans, method, **options)
            emit(setting=label, method=method, variant=variant, psnr=psnr, seconds=seconds)
    if len(scans) == 1:
        for method in methods[1:] if method_adapt_seconds > 0 else []:
            variant = f"+adapt {method_adapt_seconds:g} s +DC"
            try:
                psnr, seconds, _ = score(truth, scans, method, adapt=True, adapt_seconds=method_adapt_seconds)
            except IsovoxError as exc:  # a method that cannot adapt to one scan says why
                emit(setting=label, method=method, variant=variant, refused=str(exc))
                continue
            emit(setting=label, method=method, variant=variant, psnr=psnr, seconds=seconds)
        psnr, seconds, run = score(truth, scans, None, adapt=True, adapt_seconds=adapt_seconds)
        emit(setting=label, method=run.provenance["method"], variant="--adapt (no --method)", psnr=psnr,
             seconds=seconds)

def lesion_residuals(out, scans, truth, centres, radii):
    # per lesion: RMS over the sphere (grown by a voxel) of every scan's consistency residual
    import numpy as np
    from isovox.qa import consistency_map
    maps = []
    for scan in scans:
        residual = consistency_map(out, scan)
        values, _ = aligned_to(Volume(np.nan_to_num(residual.data), residual.affine), Grid.of(truth))
        maps.append(values ** 2)
    energy = sum(maps) / len(maps)
    index = np.indices(truth.shape, dtype=np.float32)
    rms = []
    for centre, radius in zip(centres, radii):
        inside = sum((index[a] - centre[a]) ** 2 for a in range(3)) <= (radius + 1) ** 2
        rms.append(float(np.sqrt(energy[inside].mean())))
    return np.array(rms)

truth, centres, radii = random_lesions(hr, margin=8)
scans = simulate_scans(truth, x4)
srr_residuals = None
for method in ["srr", "cubeavg"] + methods[1:]:
    for variant, options in ([("", {})] if method in ("cubeavg", "srr") else
                             [("raw", {"consistency": False}), ("+DC", {})]):
        out = api.super_resolve(scans, method, spacing=1.0, **options).volume
        values, _ = aligned_to(out, Grid.of(truth))
        residuals = lesion_residuals(out, scans, truth, centres, radii)
        if srr_residuals is None:
            srr_residuals = residuals
        ratio = residuals / srr_residuals
        emit(setting="lesions", method=method, variant=variant, kept=contrast_kept(values, truth.data, centres, radii),
             residual_ratio_max=float(ratio.max()), above_srr=int((ratio > 1.0).sum()))
"""


def score_fold(held: str, models: Path, nets: list[str], adapt_seconds: float, method_adapt_seconds: float,
               threads: int) -> list[dict]:
    """Scores on ``held`` in a fresh process that sees only this fold's models."""
    env = dict(os.environ, ISOVOX_MODELS=str(models), OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", SCORE_CODE, held, ",".join(nets), str(adapt_seconds),
                          str(method_adapt_seconds)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"scoring {held} failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def print_tables(held: str, rows: list[dict]) -> None:
    print(f"\n### Held out: {held} (networks trained without it)\n")
    print("| setting | method | variant | masked PSNR dB | gain over baseline | vs srr | s |\n|---|---|---|---|---|---|---|")
    for setting in dict.fromkeys(r["setting"] for r in rows if r["setting"] != "lesions"):
        group = [r for r in rows if r["setting"] == setting]
        base, srr = group[0]["psnr"], next(r["psnr"] for r in group if r["method"] == "srr")
        for r in group:
            if "refused" in r:
                print(f"| {setting} | {r['method']} | {r['variant']} | refused: {r['refused']} | | | |")
                continue
            print(f"| {setting} | {r['method']} | {r['variant']} | {r['psnr']:.2f} | {r['psnr'] - base:+.2f} | "
                  f"{r['psnr'] - srr:+.2f} | {r.get('seconds', 0):.0f} |")
    print("\n| lesions (24 spheres, x4 3 scans) | variant | median contrast kept | lesions whose consistency "
          "residual exceeds srr's | largest ratio to srr's |\n|---|---|---|---|---|")
    for r in rows:
        if r["setting"] == "lesions":
            print(f"| {r['method']} | {r['variant']} | {r['kept']:.3f} | {r.get('above_srr', '')} | "
                  f"{r.get('residual_ratio_max', float('nan')):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", nargs="+", default=list(VOLUMES), choices=VOLUMES)
    parser.add_argument("--nets", nargs="+", default=["isosrn", "recnn", "arssr", "mrl"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--contrast", type=float, default=0.5, help="random-contrast fraction in training")
    parser.add_argument("--adapt-seconds", type=float, default=300.0, help="--adapt without --method")
    parser.add_argument("--method-adapt-seconds", type=float, default=60.0,
                        help="--adapt of each network (0: skip those rows)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "lovo")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for held in args.held:
        models = train_fold(held, args.nets, args.steps, args.contrast, args.runs, args.threads)
        rows = score_fold(held, models, args.nets, args.adapt_seconds, args.method_adapt_seconds, args.threads)
        (args.runs / f"without-{held}" / "scores.json").write_text(json.dumps(rows, indent=1))
        print_tables(held, rows)


if __name__ == "__main__":
    main()
