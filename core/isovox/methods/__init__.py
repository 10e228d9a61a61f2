"""Every super-resolution method, and how one is looked up or chosen by default.

A method is one file in this package that registers itself (see :mod:`isovox.registry`);
the files are imported on the first lookup, in name order, so adding a method needs no
edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Optional

from ..errors import InputError
from ..registry import MethodSpec, registered

_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def all_methods() -> list[MethodSpec]:
    """Every registered method (the CLI and both front ends list methods only from here)."""
    _load()
    return list(registered().values())


def get_method(name: str) -> MethodSpec:
    _load()
    methods = registered()
    if name not in methods:
        raise InputError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name]


def default_method(n_scans: int, device: str, with_reference: bool = False,
                   scale: Optional[float] = None, adapt: bool = False) -> MethodSpec:
    """The best available method for this many scans on this device (and, if given, this scale).

    A method that would hand this run to its baseline is skipped: the baseline itself is the default.
    With ``adapt``: the network that gained most from fine-tuning on the scans (``rank_adapt``); it adapts
    even where its shipped weights alone would hand the run to the baseline."""
    candidates = [
        m for m in all_methods()
        if m.min_scans <= n_scans <= m.max_scans and m.available() and m.reference != "required"
        and m.supports_scale(scale) and (adapt and m.rank_adapt > 0 or not adapt and not m.advise(scale, n_scans))
    ]
    if not candidates:
        raise InputError(f"no method {'that adapts ' if adapt else ''}takes {n_scans} scans"
                         + (" at this scale" if adapt else ""))
    gpu = device.startswith("cuda") or device == "mps"

    def preference(m: MethodSpec) -> tuple[int, bool]:
        rank = m.rank_adapt if adapt else (m.rank_gpu if gpu else m.rank_cpu)
        return (rank, with_reference and m.reference != "none")

    return max(candidates, key=preference)


def methods_for(n_scans: int, with_reference: bool = False, device: str = "cpu") -> list[MethodSpec]:
    """The methods that accept this many scans (and the reference choice), the default first."""
    usable = [m for m in all_methods() if m.takes(n_scans, with_reference)]
    try:
        best: Optional[str] = default_method(max(n_scans, 1), device, with_reference).name
    except InputError:
        best = None
    return sorted(usable, key=lambda m: m.name != best)
