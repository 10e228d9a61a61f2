"""The one registry of super-resolution methods.

Methods register themselves with :func:`register`; their modules are imported
explicitly by :mod:`isovox.methods` (never discovered by scanning folders). The
CLI, napari and Slicer list methods only through :func:`all_methods`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import InputError
from .grid import Grid
from .progress import Task
from .volume import Volume


@dataclass
class MethodRequest:
    """Everything a method's runner needs: fused-ready scans and the target grid."""

    scans: list[Volume]
    grid: Grid
    reference: Optional[Volume]
    device: str
    task: Task
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """What the UIs need to know about a method, and how to run it."""

    name: str
    description: str
    run: Callable[[MethodRequest], Volume]
    min_scans: int = 1
    max_scans: int = 3
    reference: str = "none"  # "none" | "optional" | "required"
    scales: tuple[float, float] = (1.0, 8.0)  # supported thick-axis spacing / target spacing
    needs_weights: bool = False
    rank_cpu: int = 0  # higher = preferred as the default on CPU
    rank_gpu: int = 0  # higher = preferred as the default on GPU
    bytes_per_voxel: int = 24  # peak working memory per output voxel, for the memory check
    available: Callable[[], bool] = lambda: True
    model_card: Callable[[], Optional[dict]] = lambda: None
    # a warning for runs the method hands to its baseline (scale k or None if not known yet, number of
    # scans), "" otherwise
    advise: Callable[[Optional[float], int], str] = lambda scale, n_scans: ""

    @property
    def inputs(self) -> str:
        if self.min_scans == self.max_scans:
            text = f"{self.min_scans} scan" + ("s" if self.min_scans > 1 else "")
        else:
            text = f"{self.min_scans}-{self.max_scans} scans"
        if self.reference != "none":
            text += f", {self.reference} HR reference"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "inputs": self.inputs,
            "min_scans": self.min_scans,
            "max_scans": self.max_scans,
            "reference": self.reference,
            "scales": list(self.scales),
            "needs_weights": self.needs_weights,
            "available": bool(self.available()),
            "model_card": self.model_card(),
        }


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    from . import methods  # noqa: F401  (explicit imports register every method)


def all_methods() -> list[MethodSpec]:
    _load()
    return list(_REGISTRY.values())


def get_method(name: str) -> MethodSpec:
    _load()
    if name not in _REGISTRY:
        raise InputError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def default_method(n_scans: int, device: str, with_reference: bool = False,
                   scale: Optional[float] = None) -> MethodSpec:
    """The best available method for this many scans on this device (and, if given, this scale)."""
    candidates = [
        m for m in all_methods()
        if m.min_scans <= n_scans <= m.max_scans and m.available() and m.reference != "required"
        and (scale is None or m.scales[0] - 1e-6 <= scale <= m.scales[1] + 1e-6)
        and not m.advise(scale, n_scans)  # it would hand the run to its baseline: let the baseline be the default
    ]
    if not candidates:
        raise InputError(f"no method takes {n_scans} scans")
    gpu = device.startswith("cuda") or device == "mps"

    def preference(m: MethodSpec) -> tuple[int, bool]:
        return (m.rank_gpu if gpu else m.rank_cpu, with_reference and m.reference != "none")

    return max(candidates, key=preference)
