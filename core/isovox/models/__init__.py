"""Shipped models: self-describing folders, each weight file checked against its recorded SHA-256.

Each model lives in ``models/<name>/`` as ``weights.safetensors`` plus ``model.json``
(the typed :class:`~isovox.models.card.ModelCard`: architecture, its arguments, how
inputs are built, training data, steps, wall time, hardware, validation metrics and
the weight file's SHA-256) and ``MODEL_CARD.md``. A weight file whose hash differs
from its card is refused. Weights load through safetensors only, never pickle.
``ISOVOX_MODELS`` points to another folder with the same layout (e.g. freshly
trained models).
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Optional

from ..errors import InputError
from .card import ModelCard

WEIGHTS = "weights.safetensors"
CARD = "model.json"
MARKDOWN = "MODEL_CARD.md"

__all__ = ["ModelCard", "has_model", "load_model", "model_card", "models_root", "save_model", "sha256"]


def models_root() -> Path:
    override = os.environ.get("ISOVOX_MODELS")
    return Path(override) if override else Path(str(resources.files("isovox") / "models"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def has_model(name: str) -> bool:
    folder = models_root() / name
    return (folder / WEIGHTS).exists() and (folder / CARD).exists()


def model_card(name: str) -> Optional[ModelCard]:
    path = models_root() / name / CARD
    return ModelCard.read(path) if path.exists() else None


def load_model(name: str):
    """(torch module in eval mode, card) for a shipped model; refuses a weight file whose hash differs."""
    from safetensors.torch import load_file

    from ..nets import build

    root = models_root()
    folder = root / name
    if not has_model(name):
        raise InputError(f"model {name!r} is not installed in {root}")
    card = ModelCard.read(folder / CARD)
    expected = card.weights_sha256 or ""
    actual = sha256(folder / WEIGHTS)
    if actual != expected:
        raise InputError(
            f"model {name!r}: weights SHA-256 {actual[:12]}... does not match the recorded "
            f"{expected[:12] or 'none'}...; refusing to load them"
        )
    module = build(card.architecture, **card.arguments)
    module.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return module.eval(), card


def save_model(module, card: ModelCard, root: Path, markdown: str = "") -> Path:
    """Write weights and the card (with the weights' SHA-256) for ``card.name`` under ``root`` (training)."""
    from dataclasses import replace

    from safetensors.torch import save_file

    folder = Path(root) / card.name
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    card = replace(card, weights_sha256=sha256(folder / WEIGHTS))
    (folder / CARD).write_text(card.to_json())
    if markdown:
        (folder / MARKDOWN).write_text(markdown)
    return folder
