"""Three-stage training of ``ctguided`` (Wang et al. 2023) on unpaired LR MR and HR CT only.

Stage 1: SRNet learns on HR CT and its re-sliced copy: ``|| y_H - F(D(y_H)) ||_1``.
Stage 2: SRNet adapts to the LR MR by self-supervision: the pseudo-HR ``F(x_L)`` is re-acquired
    and F learns to map that back, ``|| sg[F(x_L)] - F(D(sg[F(x_L)])) ||_1``; the target is held
    fixed (the paper trains on "paired pseudo LR-HR MR images"), and D is the engine's simulator.
Stage 3: SRNet and CITNet jointly, Eq. 7: adversarial + 10 (self + cross-cycle reconstruction) +
    latent + perceptual, discriminators updated first each step. The SRNet output enters CITNet as
    an input but is never a reconstruction target (as one, weighted 10, it let the SRNet collapse its
    own output: the first run diverged), and the SRNet's gradient is clipped.
Terms of ours keep the SRNet anchored (weights in the config, 0 turns one off): in stages 2-3, SR of
    the LR MR's own in-plane axes re-sliced thick (SMORE's pairs, no HR MRI); in stage 3, the
    stage-2 loss and SR on CITNet's translated CT (``x'_H = G_X(E^C_Y(y_H), a)``: MR contrast with
    CT's sharp structure, re-acquired by D), which is how the CT's resolution reaches the SRNet
    most directly.
The perceptual feature network is the SRNet frozen after stage 1 (trained on CT only): VGG16
weights cannot be downloaded here, and no network trained on HR MRI may enter this training.
After each stage the SRNet is scored on held-out MR (metrics only; it is never trained on).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from isovox import models
from isovox.features import hr_inputs
from isovox.grid import Grid
from isovox.io import read_volume
from isovox.learning import train_step
from isovox.metrics import evaluate
from isovox.models import ModelCard
from isovox.nets import build
from isovox.nets.ctguided import CITNet
from isovox.simulate import orthogonal_protocol, simulate_scans
from isovox.tiling import run_tiled
from isovox.volume import Volume

from .checkpoint import load_checkpoint, save_checkpoint
from .data import volume_path
from .ctguided_data import ct_crop, ct_pair, degrade, load_ct, load_mr, mr_crop, mr_inplane_pair

STAGES = ("1", "2", "3")
LAMBDAS = {"adversarial": 1.0, "reconstruction": 10.0, "latent": 1.0, "perceptual": 1.0,
           "self_consistency": 1.0, "translated": 1.0, "inplane": 1.0}


def interior(t: torch.Tensor, border: int) -> torch.Tensor:
    return t[(Ellipsis,) + (slice(border, -border),) * 3] if border else t


def held_out(name: str, fraction: float) -> Volume:
    """The validation slab (first ``fraction`` of the first axis), as benchmarks/learned.py takes it."""
    vol = read_volume(volume_path(name))
    split = max(8, int(round(vol.shape[0] * fraction)))
    return Volume(vol.data[:split], vol.affine)


def predict(module: nn.Module, scans: list[Volume], grid: Grid) -> Volume:
    """The SRNet on whole scans, as the engine runs it (tiled, inputs from isovox.features)."""
    inputs = hr_inputs(scans, grid)
    out = run_tiled(module.eval(), inputs.array, (module.receptive_radius,) * 3, bytes_per_voxel=1200)
    values = np.where(inputs.fusion.coverage > 0, out[0] * inputs.scale, 0.0).astype(np.float32)
    return Volume(values, grid.affine)


def score(module: nn.Module, hr: Volume, axes: tuple[int, ...], k: float) -> dict[str, float]:
    """Masked PSNR / SSIM of the SRNet and of its baseline (B-spline, CubeAvg for 2-3 scans)."""
    scans = simulate_scans(hr, orthogonal_protocol(k, axes, "box", seed=40))
    grid = Grid.of(hr)
    base = evaluate(hr_inputs(scans, grid).fusion.volume, hr)
    ours = evaluate(predict(module, scans, grid), hr)
    return {"psnr": ours["psnr_masked"], "ssim": ours["ssim"], "baseline_psnr": base["psnr_masked"],
            "baseline_ssim": base["ssim"], "gain_db": ours["psnr_masked"] - base["psnr_masked"]}


class CTGuidedTrainer:
    def __init__(self, config: dict[str, Any], out: Path) -> None:
        self.config, self.out = config, out
        torch.manual_seed(config.get("seed", 0))
        torch.set_num_threads(int(config.get("threads") or os.cpu_count() or 1))
        self.rng = np.random.default_rng(config.get("seed", 0))
        mr = config["mr"]
        self.mr = load_mr(mr["volume"], int(mr["axis"]), int(mr["scale"]), config.get("validation_fraction", 0.3))
        self.ct = load_ct(config["ct"]["volume"])
        self.sr = build("ctguided", **config["arguments"])
        self.phi = copy.deepcopy(self.sr).requires_grad_(False)  # frozen feature network, set after stage 1
        self.cit = CITNet(**config.get("citnet", {}))
        self.nets = nn.ModuleDict({"sr": self.sr, "phi": self.phi, "cit": self.cit})
        lr3 = float(config.get("lr_stage3", 1e-4))
        self.optimizers = {
            "sr": torch.optim.Adam(self.sr.parameters(), lr=config["lr"]),
            "g": torch.optim.Adam(self.cit.generator_parameters(), lr=lr3, betas=(0.5, 0.999)),
            "d": torch.optim.Adam(self.cit.discriminator_parameters(), lr=lr3, betas=(0.5, 0.999)),
        }
        self.lambdas = {**LAMBDAS, **config.get("lambdas", {})}
        self.step, self.seconds = 0, 0.0
        self.ablation: dict[str, dict[str, float]] = {}
        self.progress: dict[str, dict[str, float]] = {}  # stage-3 scores within the stage (diagnostic)

    # ------------------------------------------------------------------ schedule
    def stage_of(self, step: int) -> tuple[str, int, int]:
        """(stage, step within it, its length) for a global step."""
        start = 0
        for stage in STAGES:
            length = int(self.config["stages"].get(stage, 0))
            if step < start + length:
                return stage, step - start, length
            start += length
        return "done", 0, 0

    @property
    def total_steps(self) -> int:
        return sum(int(self.config["stages"].get(s, 0)) for s in STAGES)

    def lr_factor(self, within: int, length: int) -> float:
        warm = min(20, max(1, length // 10))
        if within < warm:
            return (within + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (within - warm) / max(1, length - warm)))

    # ------------------------------------------------------------------ losses
    def _sr_l1(self, inputs: list[np.ndarray], targets: list[np.ndarray]) -> torch.Tensor:
        border = int(self.config.get("loss_border", 4))
        x = torch.from_numpy(np.stack(inputs))
        y = torch.from_numpy(np.stack(targets))
        return F.l1_loss(interior(self.sr(x), border), interior(y, border))

    def stage1_loss(self) -> dict[str, torch.Tensor]:
        lo, hi = self.config["ct"].get("scale", (2.0, 6.0))
        pairs = [ct_pair(self.ct, self.config["patch"], float(self.rng.uniform(lo, hi)), self.rng)
                 for _ in range(self.config["batch"])]
        loss = self._sr_l1([p[0] for p in pairs], [p[1] for p in pairs])
        return {"total": loss, "sr_ct": loss}

    def _self_consistency(self, pseudo: np.ndarray, axes: list[int]) -> torch.Tensor:
        """|| sg[F(x_L)] - F(D(sg[F(x_L)])) ||_1 for a batch of pseudo-HR crops (B, P, P, P)."""
        inputs = [degrade(p, a, self.mr.k) for p, a in zip(pseudo, axes)]
        return self._sr_l1(inputs, [p[None] for p in pseudo])

    def _mr_batch(self, size: int) -> tuple[torch.Tensor, list[int]]:
        crops = [mr_crop(self.mr, self.config["patch"], self.rng) for _ in range(size)]
        return torch.from_numpy(np.stack([c[0] for c in crops])), [c[1] for c in crops]

    def _inplane(self, size: int) -> torch.Tensor:
        """SR of the LR MR's own in-plane axes re-sliced thick (our anchor; see mr_inplane_pair)."""
        pairs = [mr_inplane_pair(self.mr, self.config["patch"], self.rng) for _ in range(size)]
        return self._sr_l1([p[0] for p in pairs], [p[1] for p in pairs])

    def stage2_loss(self) -> dict[str, torch.Tensor]:
        x, axes = self._mr_batch(self.config["batch"])
        with torch.no_grad():
            pseudo = self.sr(x)[:, 0].numpy()
        loss = self._self_consistency(pseudo, axes)
        terms = {"self_consistency": loss, "total": loss}
        if self.lambdas["inplane"]:
            terms["inplane"] = self._inplane(self.config["batch"])
            terms["total"] = loss + self.lambdas["inplane"] * terms["inplane"]
        return terms

    def _phi(self, image01: torch.Tensor) -> torch.Tensor:
        """Frozen features of a single-channel image as if fully sampled (distance 0, k = 1)."""
        cond = torch.cat([image01, torch.zeros_like(image01), torch.full_like(image01, 1 / 8)], 1)
        return self.phi.features(cond)

    def stage3_losses(self) -> dict[str, torch.Tensor]:
        lam, cit = self.lambdas, self.cit
        x, axes = self._mr_batch(1)
        y = torch.from_numpy(ct_crop(self.ct, self.config["patch"], self.rng)[None])
        pseudo = self.sr(x)  # x~_H
        # CITNet works on [-1, 1]. The SRNet output reaches CITNet's losses as an input only, through
        # the content code: as a reconstruction target (weight 10) it let the SRNet shrink those losses
        # by collapsing its own output, which is how the first run diverged.
        a_sr, b = pseudo * 2 - 1, y * 2 - 1
        a = a_sr.detach()
        c_x, s_x = cit.content_x(a_sr), cit.attribute_x(a)
        c_y, s_y = cit.content_y(b), cit.attribute_y(b)
        rand_x, rand_y = torch.randn(1, cit.dim), torch.randn(1, cit.dim)
        x_fake = cit.gen_x(c_y, rand_x)  # x'_H: CT content, MR attribute
        y_fake = cit.gen_y(c_x, rand_y)  # y~'_H: MR content, CT attribute

        def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))

        d_loss = (bce(cit.dis_x(a.detach()), True) + bce(cit.dis_x(x_fake.detach()), False)
                  + bce(cit.dis_y(b), True) + bce(cit.dis_y(y_fake.detach()), False))
        train_step(d_loss, [self.optimizers["d"]])

        self_rec = F.l1_loss(cit.gen_x(c_x, s_x), a) + F.l1_loss(cit.gen_y(c_y, s_y), b)
        c_y_hat, s_x_hat = cit.content_x(x_fake), cit.attribute_x(x_fake)
        c_x_hat, s_y_hat = cit.content_y(y_fake), cit.attribute_y(y_fake)
        cycle = F.l1_loss(cit.gen_x(c_x_hat, s_x), a) + F.l1_loss(cit.gen_y(c_y_hat, s_y), b)
        latent = (F.l1_loss(c_x_hat, c_x) + F.l1_loss(c_y_hat, c_y) + F.l1_loss(s_x_hat, rand_x)
                  + F.l1_loss(s_y_hat, rand_y))
        perceptual = (F.mse_loss(self._phi((y_fake + 1) / 2), self._phi(pseudo))
                      + F.mse_loss(self._phi((x_fake + 1) / 2), self._phi(y)))
        adversarial = bce(cit.dis_x(x_fake), True) + bce(cit.dis_y(y_fake), True)
        total = (lam["adversarial"] * adversarial + lam["reconstruction"] * (self_rec + cycle)
                 + lam["latent"] * latent + lam["perceptual"] * perceptual)
        terms = {"d": d_loss.detach(), "adversarial": adversarial, "self": self_rec, "cycle": cycle,
                 "latent": latent, "perceptual": perceptual}
        if lam["self_consistency"]:
            terms["self_consistency"] = self._self_consistency(pseudo.detach()[:, 0].numpy(), axes)
            total = total + lam["self_consistency"] * terms["self_consistency"]
        if lam["translated"]:
            translated = ((x_fake.detach() + 1) / 2)[:, 0].numpy()
            terms["translated"] = self._self_consistency(translated, [int(self.rng.integers(3))])
            total = total + lam["translated"] * terms["translated"]
        if lam["inplane"]:
            terms["inplane"] = self._inplane(1)
            total = total + lam["inplane"] * terms["inplane"]
        terms["total"] = total
        return terms

    # ------------------------------------------------------------------ evaluation
    def evaluate_stage(self) -> dict[str, float]:
        """Held-out MR, single scan at the training scale along the training axis: the stage table's row."""
        row = {}
        for name in self.config.get("evaluate", ["colin27"]):
            hr = held_out(name, self.config.get("validation_fraction", 0.3))
            s = score(self.sr, hr, (self.mr.axis,), float(self.mr.k))
            row.update({f"{name} {key}": round(value, 4) for key, value in s.items()})
        self.sr.train()
        return row

    def validated_range(self) -> dict[str, Any]:
        """Where the final SRNet beat its baseline on held-out MR (the engine hands other runs to it)."""
        hr = held_out(self.config.get("evaluate", ["colin27"])[0], self.config.get("validation_fraction", 0.3))
        singles = {f"x{k}": float(score(self.sr, hr, (self.mr.axis,), float(k))["gain_db"])
                   for k in self.config.get("range_scales", (2, 3, 4, 5, 6))}
        multi = float(score(self.sr, hr, (2, 1, 0), float(self.mr.k))["gain_db"])
        self.sr.train()
        from .loop import min_useful_factor

        gains = {f"{k} 1 scan": round(v, 3) for k, v in singles.items()}
        gains[f"x{self.mr.k} 3 scans"] = round(multi, 3)
        return {"validation_gain_db": gains, "min_scale": min_useful_factor(singles),
                "single_scan": bool(min_useful_factor(singles) < 99), "multi_scan": bool(multi > 0)}

    # ------------------------------------------------------------------ run
    def run(self, minutes: float | None = None, quiet: bool = False) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        state = load_checkpoint(self.out, self.nets, self.optimizers)
        if state:
            self.step, self.seconds, self.ablation = state["step"], state["seconds"], state["ablation"]
            self.rng.bit_generator.state = state["numpy_rng"]
        log_path = self.out / "training.csv"
        new_log = not log_path.exists()
        started = time.perf_counter()
        every_ckpt = int(self.config.get("checkpoint_every", 50))
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.config["name"], disable=quiet,
                   dynamic_ncols=True)
        with open(log_path, "a", newline="") as fh:
            log = csv.writer(fh)
            if new_log:
                log.writerow(["step", "stage", "loss", "terms", "seconds"])
            while self.step < self.total_steps:
                stage, within, length = self.stage_of(self.step)
                base = {"1": self.config["lr"], "2": float(self.config.get("lr_stage2", self.config["lr"])),
                        "3": float(self.config.get("lr_stage3_sr", 2e-5))}[stage]
                for group in self.optimizers["sr"].param_groups:
                    group["lr"] = base * self.lr_factor(within, length)
                self.sr.train()
                terms = {"1": self.stage1_loss, "2": self.stage2_loss, "3": self.stage3_losses}[stage]()
                joint = stage == "3"  # stage 3 also steps CITNet; adversarial gradients into the SRNet stay bounded
                train_step(terms["total"], [self.optimizers["sr"]] + ([self.optimizers["g"]] if joint else []),
                           zero=[self.optimizers["sr"], self.optimizers["g"]],
                           clip=(self.sr.parameters(), float(self.config.get("clip_stage3", 1.0))) if joint else None)
                self.step += 1
                elapsed = self.seconds + time.perf_counter() - started
                values = {k: float(v.detach()) for k, v in terms.items()}
                log.writerow([self.step, stage, f"{values['total']:.5f}",
                              json.dumps({k: round(v, 5) for k, v in values.items() if k != "total"}), f"{elapsed:.1f}"])
                bar.update(1)
                bar.set_postfix(stage=stage, loss=f"{values['total']:.4f}")
                every = int(self.config.get("score_every_stage3", 0))
                if stage == "3" and every and (within + 1) % every == 0 and within + 1 < length:
                    self.progress[str(self.step)] = self.evaluate_stage()  # to stop a diverging run early
                    (self.out / "progress.json").write_text(json.dumps(self.progress, indent=1))
                if within + 1 == length:  # end of a stage: score it, freeze the feature network after stage 1
                    if stage == "1":
                        self.phi.load_state_dict(self.sr.state_dict())
                    self.ablation[stage] = self.evaluate_stage()
                    (self.out / "stages.json").write_text(json.dumps(self.ablation, indent=1))
                out_of_time = minutes is not None and (time.perf_counter() - started) > 60 * minutes
                if self.step % every_ckpt == 0 or within + 1 == length or out_of_time:
                    self._checkpoint(self.seconds + time.perf_counter() - started)
                    fh.flush()
                if out_of_time:
                    break
        bar.close()
        self.seconds += time.perf_counter() - started
        finished = self.step >= self.total_steps
        return {"step": self.step, "finished": finished, "validation": self.ablation}

    def _checkpoint(self, elapsed: float) -> None:
        save_checkpoint(self.out, self.nets, self.optimizers,
                        {"step": self.step, "seconds": elapsed, "numpy_rng": self.rng.bit_generator.state,
                         "ablation": self.ablation, "config": self.config})

    def export(self, root: Path, validation: dict[str, Any]) -> Path:
        config = self.config
        ranges = self.validated_range()
        card = ModelCard(
            name=config["name"], architecture="ctguided", arguments=config["arguments"], kind="hr",
            guided=False, parameters=int(sum(p.numel() for p in self.sr.parameters())),
            inputs="see isovox.features: HR-space (fused/robust max, distance to acquired slices, k/8)",
            training={
                "data": f"unpaired: {config['mr']['volume']} re-sliced x{config['mr']['scale']} along axis "
                        f"{config['mr']['axis']} (the LR scan only; no HR MRI), and the CT head of Debian "
                        f"invesalius-examples windowed to {list(map(float, [-50, 150]))} HU",
                "validation_slab": f"first {config.get('validation_fraction', 0.3):.0%} of the left-right axis of "
                                   "the MR, never sampled in training; scored after each stage",
                "stages": config["stages"], "batch": config["batch"], "patch": config["patch"],
                "lambdas": self.lambdas, "lr": config["lr"], "lr_stage2": config.get("lr_stage2", config["lr"]),
                "lr_stage3_sr": config.get("lr_stage3_sr", 2e-5),
                "lr_stage3_citnet": config.get("lr_stage3", 1e-4),
                "perceptual_features": "the SRNet frozen after stage 1 (first two convs; trained on CT only), "
                                       "in place of ImageNet VGG16, whose weights cannot be downloaded here",
                "seed": config.get("seed", 0), "wall_time_s": round(self.seconds, 1),
                "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
            },
            validation_baseline="cubic B-spline of the scan (CubeAvg for 3 scans)",
            extra={"citnet_parameters": int(sum(p.numel() for p in self.cit.parameters())),
                   "stage_ablation": validation},
            **ranges,
        )
        return models.save_model(self.sr, card, root, card_markdown(card))


def card_markdown(card: ModelCard) -> str:
    t = card.training
    lines = [
        f"# {card.name}", "",
        f"- Architecture: SRNet `{card.architecture}` (RDN) {json.dumps(card.arguments)}, "
        f"{card.parameters:,} parameters; CITNet {card.extra['citnet_parameters']:,} parameters (training only)",
        f"- Inputs: {card.inputs}",
        f"- Training data: {t['data']}; held out: {t['validation_slab']}",
        f"- Stages (steps): {json.dumps(t['stages'])}, batch {t['batch']} (stage 3: 1), patch {t['patch']}, "
        f"loss weights {json.dumps(t['lambdas'])}",
        f"- Perceptual features: {t['perceptual_features']}",
        "- Beyond the paper (weights above; 0 turns one off): stage 2 and 3 also learn from the LR MR's own "
        "in-plane axes re-sliced thick (`inplane`); stage 3 keeps the stage-2 loss (`self_consistency`) and SR "
        "of CITNet's MR-styled CT (`translated`), uses the SRNet output as a CITNet input but never as a "
        "reconstruction target, and clips the SRNet's gradient (the first run, without these, diverged)",
        f"- Wall time: {t['wall_time_s'] / 60:.1f} min on {t['hardware']}", "",
        "## Stage ablation: held-out MR, one scan, masked PSNR dB / SSIM (baseline: cubic B-spline)", "",
        "| after stage | volume | SRNet | B-spline | gain (dB) |", "|---|---|---|---|---|",
    ]
    for stage, row in card.extra["stage_ablation"].items():
        for name in sorted({key.split()[0] for key in row}):
            lines.append(f"| {stage} | {name} | {row[f'{name} psnr']:.2f} / {row[f'{name} ssim']:.4f} | "
                         f"{row[f'{name} baseline_psnr']:.2f} / {row[f'{name} baseline_ssim']:.4f} | "
                         f"{row[f'{name} gain_db']:+.2f} |")
    lines += ["", "## Validated range (gain over the baseline, held-out MR)", "", "| setting | gain (dB) |", "|---|---|"]
    lines += [f"| {k} | {v:+.2f} |" for k, v in card.validation_gain_db.items()]
    lines += ["", f"Runs thinner than x{card.min_scale:g} get the B-spline (CubeAvg for 2-3 scans)"
              + ("" if card.multi_scan else "; runs with 2-3 scans get CubeAvg")
              + ("" if card.single_scan else "; single-scan runs get the B-spline")
              + ": the model did not beat them there on held-out data."]
    return "\n".join(lines) + "\n"
