"""Network architectures, each declared once where it is defined.

A network file ``nets/<name>.py`` decorates its class with :func:`network`, giving
the architecture's name (the file's name) and its measured peak activation memory per
tile voxel. :func:`build` imports that file by name, so adding an architecture needs
no edit here, and model folders store only the name and its arguments.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    cls: type
    bytes_per_tile_voxel: float  # peak activation memory per tile voxel (fp32 inference), for tiling


_NETWORKS: dict[str, NetworkSpec] = {}


def network(name: str, bytes_per_tile_voxel: float) -> Callable[[T], T]:
    """Class decorator: declare an architecture under ``name`` (the name of its file in ``nets/``)."""

    def declare(cls: T) -> T:
        if name in _NETWORKS and _NETWORKS[name].cls is not cls:
            raise ValueError(f"architecture {name!r} is declared twice")
        _NETWORKS[name] = NetworkSpec(name, cls, float(bytes_per_tile_voxel))  # type: ignore[arg-type]
        return cls

    return declare


def spec(architecture: str) -> NetworkSpec:
    """The declaration of ``architecture``, importing ``nets/<architecture>.py`` on first use."""
    if architecture not in _NETWORKS:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", architecture or ""):
            raise ValueError(f"unknown architecture {architecture!r}")
        try:
            importlib.import_module(f"{__name__}.{architecture}")
        except ModuleNotFoundError:
            raise ValueError(f"unknown architecture {architecture!r}") from None
        if architecture not in _NETWORKS:
            raise ValueError(f"nets/{architecture}.py declares no network named {architecture!r}")
    return _NETWORKS[architecture]


def build(architecture: str, **kwargs: Any):
    """Instantiate an architecture by name; model folders store the name and its arguments."""
    return spec(architecture).cls(**kwargs)
