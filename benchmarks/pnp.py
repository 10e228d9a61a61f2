"""Plug-and-play experiment: does a learned denoiser beat srr's TGV prior on a head it never saw?

Item 1 of issue #16, measured before building it into the product. For each held-out volume H the
script trains a 3-D denoiser on the other volume (random contrasts on half the crops, Gaussian
noise sigma ~ U(0, 0.12) of the robust maximum, squared error), then reconstructs H from three
x4 scans (noise-free and Rician 0.03): srr, and srr followed by half-quadratic-splitting rounds
(Zhang et al., DPIR 2021)

    z = D(x, sigma_k);   x = argmin  data(x) + mu_k || x - z ||^2 / 2,   mu_k = alpha / sigma_k^2

run through the engine's own solver (``recon.reconstruct(..., refine=...)``), so every output ends
with a data step and honours the scans. The denoiser is bias-free and conditioned on sigma by a
constant channel (Mohan et al. 2020; FFDNet), so D(a x, a s) = a D(x, s). Several schedules are
scored (the first were tried on Colin27 while the experiment was built); the best of them on H is
an optimistic bound for what a tuned schedule would give.

Weights are written as safetensors under ``--runs`` and reused.

Usage: .venv/bin/python benchmarks/pnp.py [--held colin27 mni152] [--steps 600] [--runs runs/pnp]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

VOLUMES = ("colin27", "mni152")
NOISE = (0.0, 0.12)
# (first level above the scans' estimated noise, levels, alpha): weak to strong ties
SCHEDULES = [(0.02, 3, 1e-4), (0.02, 3, 5e-4), (0.02, 3, 2e-3), (0.01, 2, 5e-4), (0.03, 2, 4e-3)]
DATA_STEPS = 6


class Denoiser(nn.Module):
    """Bias-free dilated CNN predicting the noise from (image, noise level); 36 k parameters."""

    def __init__(self, channels: int = 16, dilations=(1, 1, 2, 4, 2, 1, 1)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 2
        for idx, dilation in enumerate(dilations):
            last = idx == len(dilations) - 1
            layers.append(nn.Conv3d(width, 1 if last else channels, 3, padding=dilation, dilation=dilation, bias=False))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            width = channels
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] - self.body(x)


def train(volume: str, steps: int, path: Path) -> Denoiser:
    """The denoiser trained on ``volume`` only (cached as safetensors at ``path``)."""
    from safetensors.torch import load_file, save_file

    from isovox.learning import autocast, train_step
    from isovox_train.data import Sampler, augment, load_volumes

    net = Denoiser()
    if path.exists():
        net.load_state_dict(load_file(str(path)))
        return net.eval()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sampler = Sampler(load_volumes([volume], 0.0), False, 0, rng, 0.5)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        xs, ys = [], []
        for _ in range(8):
            crop, divisor = augment(sampler.crop((32,) * 3), rng, 0.5)
            clean, sigma = crop / divisor, rng.uniform(*NOISE)
            xs.append(np.stack([clean + rng.normal(0, sigma, clean.shape), np.full_like(clean, sigma)]))
            ys.append(clean[None])
        x, y = (torch.from_numpy(np.stack(a).astype(np.float32)) for a in (xs, ys))
        with autocast(True):
            loss = ((net(x).float() - y) ** 2).mean()
        train_step(loss, [optimizer])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(path))
    print(f"denoiser on {volume}: {steps} steps, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return net.eval()


def refiner(net: Denoiser, noise: float, first: float, levels: int, alpha: float):
    """An ``isovox.recon`` refine step: HQS rounds from srr's solution."""
    from isovox.learning import autocast
    from isovox.priors import TV
    from isovox.solver import solve

    sigmas = [(first + noise) * 0.6**k for k in range(levels)]

    def refine(x, terms, spacing, report, task):
        for sigma in sigmas:
            with torch.inference_mode(), autocast(True):
                z = net(torch.stack([x, torch.full_like(x, sigma)])[None])[0, 0].float()
            x = solve(z, terms, TV(), 0.0, spacing, DATA_STEPS, None, tie=alpha / sigma**2, anchor=z)
        return x

    return refine


def score(held: str, net: Denoiser) -> list[dict]:
    import isovox.methods.srr as srr_method
    from isovox import api, datasets, io, recon
    from isovox.calibration import acquisition_noise, noise_level
    from isovox.metrics import evaluate
    from isovox.simulate import Acquisition, simulate_scans

    hr = io.read_volume(datasets.fetch(held))
    rows = []
    for noise in (0.0, 0.03):
        scans = simulate_scans(hr, [Acquisition(axis=a, scale=4.0, noise=noise, seed=40 + a) for a in (2, 1, 0)])
        estimate = acquisition_noise([noise_level(s) for s in scans])
        runs = [("srr", None)] + [(f"pnp first {f:g}+noise, {n} levels, alpha {a:g}", refiner(net, estimate, f, n, a))
                                  for f, n, a in SCHEDULES]
        for label, refine in runs:  # srr's own entry point with the refine step added: all else is shared
            srr_method.reconstruct = (lambda *a, refine=refine, **k: recon.reconstruct(*a, refine=refine, **k)) \
                if refine else recon.reconstruct
            start = time.perf_counter()
            out = api.super_resolve(scans, "srr", spacing=1.0)
            row = {"held": held, "noise": noise, "method": label, "psnr": evaluate(out.volume, hr)["psnr_masked"],
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        srr_method.reconstruct = recon.reconstruct
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", nargs="+", default=list(VOLUMES), choices=VOLUMES)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pnp")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| held out | Rician noise | method | masked PSNR dB | vs srr | s |\n|---|---|---|---|---|---|")
    for held in args.held:
        other = next(v for v in VOLUMES if v != held)
        rows = score(held, train(other, args.steps, args.runs / f"denoiser-{other}.safetensors"))
        for row in rows:
            base = next(r["psnr"] for r in rows if r["noise"] == row["noise"] and r["method"] == "srr")
            print(f"| {held} | {row['noise']:g} | {row['method']} | {row['psnr']:.2f} | {row['psnr'] - base:+.2f} | "
                  f"{row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
