"""The training loop: L1, Adam, cosine schedule, checkpoints, CSV logs, validation against CubeAvg."""

from __future__ import annotations

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
from tqdm import tqdm

from isovox import models
from isovox.features import bspline_subslices
from isovox.learning import autocast, psnr_gain, train_step
from isovox.models import ModelCard
from isovox.nets import build
from isovox.simulate import Acquisition, ProtocolRanges

from .checkpoint import load_checkpoint, save_checkpoint
from .data import Sampler, hr_batch, hr_pair, implicit_batch, implicit_pair, load_volumes, lr_batch, lr_pair

CHANNELS_LAST = torch.channels_last_3d
RELATIVE_FLOOR = 0.005  # L1 floor of the relative loss, so near-empty crops do not dominate


def ranges_from(config: dict[str, Any]) -> ProtocolRanges:
    p = config.get("protocol", {})
    return ProtocolRanges(
        scale=tuple(p.get("scale", (2.0, 7.0))), n_axes=tuple(p.get("n_axes", (1, 2, 3))),
        gap_fraction=tuple(p.get("gap_fraction", (-0.2, 0.3))), profiles=tuple(p.get("profiles", ("box", "gaussian"))),
        noise=tuple(p.get("noise", (0.0, 0.05))),
    )


class Trainer:
    def __init__(self, config: dict[str, Any], out: Path) -> None:
        self.config = config
        self.out = out
        self.kind = config["kind"]
        torch.manual_seed(config.get("seed", 0))
        torch.set_num_threads(int(config.get("threads") or os.cpu_count() or 1))
        self.rng = np.random.default_rng(config.get("seed", 0))
        self.volumes = load_volumes(config["volumes"], config.get("validation_fraction", 0.3))
        self.train_sampler = Sampler(self.volumes, False, 8, self.rng, float(config.get("contrast_randomisation", 0.0)))
        self.ranges = ranges_from(config)
        self.clean_fraction = float(config.get("clean_fraction", 0.0))
        self.model = build(config["architecture"], **config["arguments"]).to(memory_format=CHANNELS_LAST)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["lr"], betas=(0.9, 0.999), eps=1e-8)
        self.step = 0
        self.seconds = 0.0
        self.validation_sets = self._validation_sets()

    # ------------------------------------------------------------------ data
    def _validation_sets(self) -> dict[str, list]:
        """Fixed held-out samples per setting, drawn once from the validation slabs."""
        rng = np.random.default_rng(12345)
        sampler = Sampler(self.volumes, True, 0, rng)
        count = int(self.config.get("validation_samples", 4))
        sets: dict[str, list] = {}
        if self.kind == "hr":
            patch = int(self.config.get("validation_patch", 48))
            for k in (2, 3, 4, 5, 6, 7):
                protocol = [Acquisition(axis=a, scale=float(k), seed=int(rng.integers(2**31))) for a in (2, 1, 0)]
                sets[f"x{k} 3 scans"] = [hr_pair(sampler.crop((patch,) * 3), protocol, bool(self.config.get("guided")), rng)
                                         for _ in range(count)]
            protocol = [Acquisition(axis=2, scale=4.0, seed=7)]
            sets["x4 1 scan"] = [hr_pair(sampler.crop((patch,) * 3), protocol, bool(self.config.get("guided")), rng)
                                 for _ in range(count)]
            noisy = [Acquisition(axis=a, scale=4.0, noise=0.03, seed=int(rng.integers(2**31))) for a in (2, 1, 0)]
            sets["x4 3 scans noise 0.03"] = [hr_pair(sampler.crop((patch,) * 3), noisy, bool(self.config.get("guided")), rng)
                                             for _ in range(count)]
        elif self.kind == "implicit":
            patch = int(self.config.get("validation_patch", 40))
            border = int(self.config.get("validation_border", 8))
            for label, k, axes, noise, coarsening in [
                ("x2 3 scans", 2, (2, 1, 0), 0.0, 1.0), ("x4 3 scans", 4, (2, 1, 0), 0.0, 1.0),
                ("x6 3 scans", 6, (2, 1, 0), 0.0, 1.0), ("x4 1 scan", 4, (2,), 0.0, 1.0),
                ("x4 3 scans noise 0.03", 4, (2, 1, 0), 0.03, 1.0),
                ("x4 3 scans from 1.5 mm", 4 / 1.5, (2, 1, 0), 0.0, 1.5),
            ]:
                protocol = [Acquisition(axis=a, scale=float(k), noise=noise, seed=int(rng.integers(2**31)))
                            for a in axes]
                sets[label] = [implicit_pair(sampler.crop((patch,) * 3), protocol, rng, 1.0, coarsening, None, border)
                               for _ in range(count)]
        else:
            slices = int(self.config.get("validation_slices", 10))
            side = int(self.config.get("validation_patch", 40))
            for r in self.config.get("factors", [2, 3, 4, 5, 6, 7]):
                items = []
                for _ in range(count):
                    length = slices * r + 1
                    crop = np.ascontiguousarray(sampler.crop((length, side, side)))
                    items.append((r, lr_pair(crop, Acquisition(axis=0, scale=float(r)), r)))
                sets[f"x{r}"] = items
        return sets

    def batch(self):
        if self.kind == "hr":
            x, y, m = hr_batch(self.train_sampler, self.config["batch"], self.config["patch"], self.ranges,
                               bool(self.config.get("guided")), clean_fraction=self.clean_fraction)
            return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m), None
        if self.kind == "implicit":
            items = implicit_batch(self.train_sampler, self.config["batch"], self.config["patch"], self.ranges,
                                   tuple(self.config.get("coarsening", (1.2, 2.0))), int(self.config.get("points", 4096)),
                                   self.clean_fraction)
            return items, None, None, None
        factors = self.config.get("factors", [2, 3, 4, 5, 6, 7])
        r = int(self.rng.choice(factors))
        slices = max(6, min(12, 72 // r))
        x, y = lr_batch(self.train_sampler, self.config["batch"], slices, self.config["patch"], self.ranges, r,
                        self.clean_fraction)
        return torch.from_numpy(x), torch.from_numpy(y), None, r

    # ------------------------------------------------------------------ steps
    def lr_at(self, step: int) -> float:
        total = self.config["steps"]
        warm = self.config.get("warmup", 50)
        base = self.config["lr"]
        if step < warm:
            return base * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    def loss(self, x, y, m, r):
        if self.kind == "implicit":
            inputs = torch.from_numpy(np.stack([item.inputs for item in x])).contiguous(memory_format=CHANNELS_LAST)
            features = self.model.encode(inputs)
            losses = [F.l1_loss(self.model.query(inputs[i:i + 1], features[i:i + 1], torch.from_numpy(item.points),
                                                 torch.from_numpy(item.cell)), torch.from_numpy(item.target))
                      for i, item in enumerate(x)]
            if not self.config.get("relative_loss"):
                return sum(losses) / len(losses)
            base = torch.tensor([float(np.abs(item.baseline - item.target).mean()) + RELATIVE_FLOOR for item in x])
            return (torch.stack(losses) / base).mean() * base.mean()
        x = x.contiguous(memory_format=CHANNELS_LAST)
        bf16 = bool(self.config.get("bf16", True))
        with autocast(bf16):
            if self.kind == "hr":
                pred = self.model(x).float()
                border = int(self.config.get("loss_border", 4))
                inner = (slice(None), slice(None)) + (slice(border, -border),) * 3
                if not self.config.get("relative_loss"):
                    return F.l1_loss(pred[inner][m[inner]], y[inner][m[inner]])
                # Each item's L1 over its CubeAvg's L1: an x2 item, whose CubeAvg is already close, counts
                # as much as an x7 one instead of being drowned out by it.
                p, t, b, keep = pred[inner], y[inner], x[inner][:, :1], m[inner].float()
                count = keep.sum(dim=(1, 2, 3, 4)).clamp(min=1)
                err = ((p - t).abs() * keep).sum(dim=(1, 2, 3, 4)) / count
                base = ((b - t).abs() * keep).sum(dim=(1, 2, 3, 4)) / count + RELATIVE_FLOOR
                return (err / base).mean() * base.mean()
            branches = [b.float() for b in self.model.branches(x, r)]
            combined = self.model.combine(branches)
            deep = sum(F.l1_loss(b, y) for b in branches) / len(branches)
            return deep + F.l1_loss(combined, y)

    def query(self, item) -> torch.Tensor:
        """ArSSR values at an implicit sample's query points."""
        x = torch.from_numpy(item.inputs[None]).contiguous(memory_format=CHANNELS_LAST)
        return self.model(x, torch.from_numpy(item.points), torch.from_numpy(item.cell))

    def predict(self, x: np.ndarray, r: int | None = None) -> np.ndarray:
        self.model.eval()
        with torch.inference_mode():
            t = torch.from_numpy(x[None]).contiguous(memory_format=CHANNELS_LAST)
            out = self.model(t) if r is None else self.model(t, r)
        self.model.train()
        return out[0].float().numpy()

    def validate(self) -> dict[str, float]:
        """Mean masked-PSNR gain (dB) of the network over its baseline, per validation setting.

        Crop borders are left out: there the baseline's own edge effects (interpolation and
        fusion near the end of a crop) are something a whole volume does not have.
        """
        gains = {}
        b = int(self.config.get("validation_border", 8))
        for name, items in self.validation_sets.items():
            values = []
            for item in items:
                if self.kind == "implicit":
                    self.model.eval()
                    with torch.inference_mode():
                        pred = self.query(item).numpy()
                    self.model.train()
                    head = item.target > 0.08
                    values.append(psnr_gain(pred, item.baseline, item.target, head))
                elif self.kind == "hr":
                    x, y, m = item
                    head = m & (y > 0.08)
                    head[:, :b], head[:, -b:], head[:, :, :b], head[:, :, -b:] = False, False, False, False
                    head[..., :b], head[..., -b:] = False, False
                    values.append(psnr_gain(self.predict(x), x[:1], y, head))
                else:
                    r, (x, y) = item
                    base = bspline_subslices(x[0], r).transpose(1, 0, 2, 3).reshape(1, -1, *x.shape[2:])
                    head = y > 0.08
                    ends = r * min(2, (x.shape[1] - 1) // 2)  # up to two LR slices at each end
                    if ends:
                        head[:, :ends], head[:, -ends:] = False, False
                    values.append(psnr_gain(self.predict(x, r), base, y, head))
            gains[name] = float(np.mean(values))
        return gains

    # ------------------------------------------------------------------ run
    def run(self, minutes: float | None = None, quiet: bool = False) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        state = load_checkpoint(self.out, self.model, self.optimizer)
        if state:
            self.step, self.seconds = state["step"], state["seconds"]
            self.rng.bit_generator.state = state["numpy_rng"]
        steps = self.config["steps"]
        every_val = self.config.get("val_every", 200)
        every_ckpt = self.config.get("checkpoint_every", 100)
        log_path, val_path = self.out / "training.csv", self.out / "validation.csv"
        new_log = not log_path.exists()
        started = time.perf_counter()
        bar = tqdm(total=steps, initial=self.step, desc=self.config["name"], disable=quiet, dynamic_ncols=True)
        last_val: dict[str, float] = {}
        with open(log_path, "a", newline="") as log_fh, open(val_path, "a", newline="") as val_fh:
            log = csv.writer(log_fh)
            if new_log:
                log.writerow(["step", "loss", "lr", "seconds"])
            val_log = csv.writer(val_fh)
            self.model.train()
            while self.step < steps:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(self.step)
                x, y, m, r = self.batch()
                loss = train_step(self.loss(x, y, m, r), [self.optimizer])
                self.step += 1
                elapsed = self.seconds + time.perf_counter() - started
                log.writerow([self.step, f"{loss:.6f}", f"{self.lr_at(self.step - 1):.3e}", f"{elapsed:.1f}"])
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", **{k.split()[0]: f"{v:+.2f}" for k, v in list(last_val.items())[:3]})
                out_of_time = minutes is not None and (time.perf_counter() - started) > 60 * minutes
                if self.step % every_val == 0 or self.step == steps:
                    last_val = self.validate()
                    val_log.writerow([self.step] + [f"{k}={v:.3f}" for k, v in last_val.items()])
                    val_fh.flush()
                if self.step % every_ckpt == 0 or self.step == steps or out_of_time:
                    self._checkpoint(elapsed)
                    log_fh.flush()
                if out_of_time:
                    break
        bar.close()
        self.seconds += time.perf_counter() - started
        return {"step": self.step, "finished": self.step >= steps, "validation": last_val or self.validate()}

    def _checkpoint(self, elapsed: float) -> None:
        save_checkpoint(self.out, self.model, self.optimizer,
                        {"step": self.step, "seconds": elapsed, "numpy_rng": self.rng.bit_generator.state,
                         "config": self.config})

    def export(self, root: Path, validation: dict[str, float]) -> Path:
        config = self.config
        card = ModelCard(
            name=config["name"], architecture=config["architecture"], arguments=config["arguments"],
            kind=config["kind"], guided=bool(config.get("guided")),
            parameters=int(sum(p.numel() for p in self.model.parameters())),
            inputs={
                "hr": "see isovox.features: HR-space (fused/robust max, distance to acquired slices, k/8"
                      + (", reference" if config.get("guided") else "") + ")",
                "implicit": "see isovox.features: the HR-space inputs on an isotropic grid at the scans' finest "
                            "spacing; queries: trilinear feature, offset from the nearest input voxel, output voxel size",
                "lr": "see isovox.features: one scan on its own grid, thick axis first, k/8 channel",
            }[config["kind"]],
            training={
                "volumes": config["volumes"],
                "validation_slab": f"first {config.get('validation_fraction', 0.3):.0%} of the left-right axis of each volume",
                "steps": self.step, "batch": config["batch"], "patch": config["patch"],
                "protocol": config.get("protocol", {}), "clean_fraction": config.get("clean_fraction", 0.0),
                "contrast_randomisation": config.get("contrast_randomisation", 0.0),
                "lr": config["lr"], "schedule": "cosine with warmup",
                "loss": ("L1 over CubeAvg's L1 per item" if config.get("relative_loss") else "L1")
                        + (" + deep supervision" if config["kind"] == "lr" else ""),
                "seed": config.get("seed", 0), "bf16_autocast": bool(config.get("bf16", True)),
                "wall_time_s": round(self.seconds, 1),
                "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
            },
            validation_gain_db={k: round(v, 3) for k, v in validation.items()},
            validation_baseline="cubic B-spline of the scan along its slice axis" if config["kind"] == "lr"
            else "CubeAvg of the same scans",
            **({"min_factor": min_useful_factor(validation)} if config["kind"] == "lr" else useful_range(validation)),
        )
        return models.save_model(self.model, card, root, model_card_markdown(card))


def min_useful_factor(validation: dict[str, float]) -> int:
    """Smallest factor r from which the held-out gain over the B-spline is positive for every r' >= r.

    Below it, inference passes scans to the B-spline unchanged, so the method never does worse
    than its baseline on the settings it was validated on.
    """
    gains = sorted((int(name.lstrip("x")), gain) for name, gain in validation.items())
    useful = 99
    for factor, gain in reversed(gains):
        if gain <= 0:
            break
        useful = factor
    return useful


def useful_range(validation: dict[str, float]) -> dict[str, Any]:
    """Where an HR-space model beat CubeAvg on held-out data: the smallest scale k from which every
    validated 3-scan k gained, and whether the single-scan setting gained. Runs outside it get the
    CubeAvg (B-spline for one scan) instead, so the method never does worse than its baseline there."""
    series = {int(name.split()[0].lstrip("x")): gain for name, gain in validation.items() if name.endswith(" 3 scans")}
    single = [gain for name, gain in validation.items() if name.endswith(" 1 scan")]
    return {"min_scale": min_useful_factor({f"x{k}": g for k, g in series.items()}) if series else 0,
            "single_scan": bool(single) and min(single) > 0}


def model_card_markdown(card: ModelCard) -> str:
    t = card.training
    lines = [
        f"# {card.name}",
        "",
        f"- Architecture: `{card.architecture}` {json.dumps(card.arguments)}, {card.parameters:,} parameters",
        f"- Inputs: {card.inputs}",
        f"- Training data: {', '.join(t['volumes'])} (real T1 volumes from Debian mricron-data and PyPI nilearn); "
        f"held out: {t['validation_slab']}",
        f"- Training: {t['steps']} steps, batch {t['batch']}, patch {t['patch']}, {t['loss']}, Adam lr {t['lr']} "
        f"({t['schedule']}), seed {t['seed']}, protocol {json.dumps(t['protocol'])}, "
        f"noise-free fraction {t.get('clean_fraction', 0.0)}, random-contrast fraction "
        f"{t.get('contrast_randomisation', 0.0)}",
        f"- Wall time: {t['wall_time_s'] / 60:.1f} min on {t['hardware']}",
        "",
        f"## Validation: masked-PSNR gain over {card.validation_baseline} on the held-out slabs",
        "",
        "| setting | gain (dB) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:+.2f} |" for k, v in card.validation_gain_db.items()]
    if card.kind != "lr":
        lines += ["", f"Runs thinner than x{card.min_scale:g} get CubeAvg"
                  + ("" if card.single_scan else ", and single-scan runs the B-spline")
                  + ": the model did not beat them there on held-out data."]
    if card.min_factor is not None:
        lines += ["", f"Scans needing less than x{card.min_factor} pass to the B-spline unchanged (their held-out "
                  "gain was not positive)."]
    return "\n".join(lines) + "\n"
