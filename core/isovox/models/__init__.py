"""Shipped models: self-describing folders checked against a recorded SHA-256.

Each model lives in ``models/<name>/`` as ``weights.safetensors`` plus ``model.json``
(architecture, its arguments, how inputs are built, training data, steps, wall time,
hardware and validation metrics) and ``MODEL_CARD.md``. ``catalog.json`` beside this
file records each weight file's SHA-256; a file that does not match is refused. Weights
load through safetensors only, never pickle. ``ISOVOX_MODELS`` points to another
folder with the same layout (e.g. freshly trained models).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError

WEIGHTS = "weights.safetensors"
CARD = "model.json"
CATALOG = "catalog.json"


def models_root() -> Path:
    override = os.environ.get("ISOVOX_MODELS")
    return Path(override) if override else Path(str(resources.files("isovox") / "models"))


def catalog(root: Optional[Path] = None) -> dict[str, Any]:
    path = (root or models_root()) / CATALOG
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def has_model(name: str) -> bool:
    root = models_root()
    return name in catalog(root) and (root / name / WEIGHTS).exists() and (root / name / CARD).exists()


def model_card(name: str) -> Optional[dict[str, Any]]:
    path = models_root() / name / CARD
    if not path.exists():
        return None
    card = json.loads(path.read_text())
    card["weights_sha256"] = catalog().get(name, {}).get("sha256")
    return card


def load_model(name: str):
    """(torch module in eval mode, card) for a shipped model; refuses a weight file whose hash differs."""
    from safetensors.torch import load_file

    from ..nets import build

    root = models_root()
    folder = root / name
    if not has_model(name):
        raise InputError(f"model {name!r} is not installed in {root}")
    expected = catalog(root)[name]["sha256"]
    actual = sha256(folder / WEIGHTS)
    if actual != expected:
        raise InputError(
            f"model {name!r}: weights SHA-256 {actual[:12]}... does not match the recorded {expected[:12]}...; "
            "refusing to load them"
        )
    card = json.loads((folder / CARD).read_text())
    module = build(card["architecture"], **card["arguments"])
    module.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return module.eval(), card


def save_model(module, name: str, card: dict[str, Any], root: Path, markdown: str = "") -> Path:
    """Write weights, card and catalogue entry for ``name`` under ``root`` (used by training)."""
    from safetensors.torch import save_file

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    (folder / CARD).write_text(json.dumps(card, indent=2))
    if markdown:
        (folder / "MODEL_CARD.md").write_text(markdown)
    entries = catalog(root)
    entries[name] = {"file": f"{name}/{WEIGHTS}", "sha256": sha256(folder / WEIGHTS)}
    (root / CATALOG).write_text(json.dumps(entries, indent=2, sort_keys=True))
    return folder
