"""Network architectures, built from a name and keyword arguments (see :func:`build`)."""

from __future__ import annotations

from typing import Any


def build(architecture: str, **kwargs: Any):
    """Instantiate an architecture by name; model folders store the name and its arguments."""
    if architecture == "isosrn":
        from .isosrn import IsoSRN

        return IsoSRN(**kwargs)
    if architecture == "recnn":
        from .recnn import ReCNN

        return ReCNN(**kwargs)
    if architecture == "mrl":
        from .mrl import MRL

        return MRL(**kwargs)
    if architecture == "arssr":
        from .arssr import ArSSR

        return ArSSR(**kwargs)
    if architecture == "ctguided":
        from .ctguided import SRNet

        return SRNet(**kwargs)
    raise ValueError(f"unknown architecture {architecture!r}")
