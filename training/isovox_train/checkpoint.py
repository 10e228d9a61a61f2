"""Checkpoints without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

Optimizers = "torch.optim.Optimizer | dict[str, torch.optim.Optimizer]"  # one, or several by name


def _named(optimizer) -> dict[str, torch.optim.Optimizer]:
    """One optimizer is stored under the name "" (the original layout); several under their names."""
    return optimizer if isinstance(optimizer, dict) else {"": optimizer}


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: Optimizers, state: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    groups = {}
    for name, opt in _named(optimizer).items():
        saved = opt.state_dict()
        prefix = f"opt.{name}:" if name else "opt."
        for index, values in saved["state"].items():
            for key, value in values.items():
                tensors[f"{prefix}{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        groups[name] = saved["param_groups"]
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = folder / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    meta = {"param_groups": groups[""] if set(groups) == {""} else groups, **state}
    (folder / "checkpoint.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "checkpoint.safetensors")
    os.replace(folder / "checkpoint.json.tmp", folder / "checkpoint.json")


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: Optimizers) -> dict[str, Any] | None:
    if not (folder / "checkpoint.safetensors").exists():
        return None
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    meta = json.loads((folder / "checkpoint.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    groups = meta.pop("param_groups")
    for name, opt in _named(optimizer).items():
        prefix = f"opt.{name}:" if name else "opt."
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix) and (name or ":" not in key):
                index, field = key[len(prefix):].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        opt.load_state_dict({"state": state, "param_groups": groups[name] if name else groups})
    torch.set_rng_state(tensors["rng.torch"])
    return meta
