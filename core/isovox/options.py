"""The options of one run, typed: what the CLI flags and the UIs' check boxes set.

One frozen object travels from :func:`isovox.api.plan` to the method runner, so a
misspelt option fails at once instead of being silently ignored, and the provenance
records exactly what was asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

import numpy as np

from .errors import InputError

PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_ADAPT_SECONDS = 300.0


@dataclass(frozen=True)
class RunOptions:
    """How to run a method (all off by default).

    register: rigidly register scans 2-3 to scan 1 first.
    match_intensity: map scans 2-3 to scan 1's intensities.
    ensemble: learned methods average their prediction over the 8 flips.
    adapt: learned methods fine-tune a copy of the network on the scans first.
    adapt_seconds: time for ``adapt`` (default 300 s).
    precision: network arithmetic ("fp32", "fp16", "bf16"); default per device.
    """

    register: bool = False
    match_intensity: bool = False
    ensemble: bool = False
    adapt: bool = False
    adapt_seconds: Optional[float] = None
    precision: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("register", "match_intensity", "ensemble", "adapt"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.adapt_seconds is not None:
            seconds = float(self.adapt_seconds)
            if not self.adapt:
                raise InputError("--adapt-seconds needs --adapt")
            if not (np.isfinite(seconds) and 1 <= seconds <= 3600):
                raise InputError(f"--adapt-seconds must be between 1 and 3600, got {seconds:g}")
            object.__setattr__(self, "adapt_seconds", seconds)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r} must be one of {', '.join(PRECISIONS)}")

    @classmethod
    def of(cls, options: Optional["RunOptions"] = None, **values: Any) -> "RunOptions":
        """``options`` with ``values`` replaced; unknown names are refused, ``None`` values ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown run option(s): {', '.join(unknown)}")
        given = {k: v for k, v in values.items() if v is not None}
        return replace(options or cls(), **given) if given else (options or cls())

    @property
    def seconds_to_adapt(self) -> float:
        """The adaptation budget in seconds (0 without ``adapt``)."""
        if not self.adapt:
            return 0.0
        return float(self.adapt_seconds or DEFAULT_ADAPT_SECONDS)

    def without_adaptation(self) -> "RunOptions":
        """The same options minus ``adapt`` (previews show the shipped network, in seconds)."""
        return replace(self, adapt=False, adapt_seconds=None)

    def to_dict(self) -> dict[str, Any]:
        """The options that were set, for the provenance record."""
        return {k: v for k, v in asdict(self).items() if v is not None}
