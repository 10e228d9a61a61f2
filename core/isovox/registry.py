"""The method registry's types: what a method is and how it registers itself.

This module is a leaf (it imports no method). Each file in :mod:`isovox.methods`
calls :func:`register` once per method it defines; lookup, listing and the default
choice live in :mod:`isovox.methods`, which imports those files. The CLI, napari
and Slicer list methods only through :func:`isovox.methods.all_methods`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .grid import Grid
from .options import RunOptions
from .progress import Task
from .volume import Volume


@dataclass
class MethodRequest:
    """Everything a method's runner needs: the scans, the target grid and the run's options."""

    scans: list[Volume]
    grid: Grid
    reference: Optional[Volume]
    device: str
    task: Task
    options: RunOptions = field(default_factory=RunOptions)


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
    rank_adapt: int = 0  # higher = preferred for --adapt without --method (0: cannot adapt)
    why_default: str = ""  # the measurement behind its rank, shown where it is a default (isovox methods)
    bytes_per_voxel: int = 24  # peak working memory per output voxel, for the memory check
    consistency: bool = False  # its output ends with a data-consistency solve (unless --no-consistency)
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

    def takes(self, n_scans: int, with_reference: bool = False) -> bool:
        """Whether the method accepts this many scans (and a missing reference when it needs one)."""
        return self.min_scans <= n_scans <= self.max_scans and not (self.reference == "required"
                                                                    and not with_reference)

    def supports_scale(self, scale: Optional[float]) -> bool:
        return scale is None or self.scales[0] - 1e-6 <= scale <= self.scales[1] + 1e-6

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
            "adapts": self.rank_adapt > 0,
            "why_default": self.why_default,
            "available": bool(self.available()),
            "model_card": self.model_card(),
        }


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; a second method of the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def registered() -> dict[str, MethodSpec]:
    """The methods registered so far, by name, in registration order."""
    return dict(_REGISTRY)
