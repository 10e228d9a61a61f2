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
    slice_profile: the slice profile of the forward model: "box" (default), "gaussian" (FWHM = thickness)
        or comma-separated samples over [-thickness, +thickness].
    slice_thickness: slice thickness in mm per scan (one value: every scan), overriding the scans' own
        records (DICOM/BIDS); default: recorded, else the slice spacing.
    smoothness: the reconstruction's regularisation weight lambda (default: chosen for the input).
    consistency: learned methods end with a data-consistency solve through the forward model.
    """

    register: bool = False
    match_intensity: bool = False
    ensemble: bool = False
    adapt: bool = False
    adapt_seconds: Optional[float] = None
    precision: Optional[str] = None
    slice_profile: Optional[str] = None
    slice_thickness: Optional[tuple[float, ...]] = None
    smoothness: Optional[float] = None
    consistency: bool = True

    def __post_init__(self) -> None:
        for name in ("register", "match_intensity", "ensemble", "adapt", "consistency"):
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
        if self.slice_profile is not None:
            object.__setattr__(self, "slice_profile", self.profile.kind if self.profile.kind != "custom"
                               else ",".join(f"{v:g}" for v in self.profile.samples or ()))
        if self.slice_thickness is not None:
            values = _numbers(self.slice_thickness, "--slice-thickness")
            if not values or len(values) > 3 or not all(np.isfinite(v) and 0 < v <= 100 for v in values):
                raise InputError("--slice-thickness takes 1 to 3 thicknesses in mm, each above 0 and at most 100")
            object.__setattr__(self, "slice_thickness", tuple(values))
        if self.smoothness is not None:
            value = float(self.smoothness)
            if not (np.isfinite(value) and 0 <= value <= 10):
                raise InputError(f"--smoothness must be between 0 and 10, got {value:g}")
            object.__setattr__(self, "smoothness", value)

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

    @property
    def profile(self):
        """The slice profile as a :class:`~isovox.forward.SliceProfile` (box when not given)."""
        from .forward import SliceProfile

        return SliceProfile.parse(self.slice_profile or "box")

    def thickness_for(self, n_scans: int) -> Optional[list[Optional[float]]]:
        """Per-scan thickness overrides (one given value applies to every scan)."""
        if self.slice_thickness is None:
            return None
        values = list(self.slice_thickness)
        if len(values) == 1:
            return values * n_scans
        if len(values) != n_scans:
            raise InputError(f"--slice-thickness gives {len(values)} thicknesses for {n_scans} scans")
        return values

    def without_adaptation(self) -> "RunOptions":
        """The same options minus ``adapt`` (previews show the shipped network, in seconds)."""
        return replace(self, adapt=False, adapt_seconds=None)

    def to_dict(self) -> dict[str, Any]:
        """The options that were set, for the provenance record."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v is not None}


def _numbers(value: Any, flag: str) -> list[float]:
    """``1.5``, ``(1.5, 2)`` or ``"1.5,2"`` as floats."""
    try:
        if isinstance(value, str):
            return [float(v) for v in value.split(",") if v.strip()]
        if isinstance(value, (int, float)):
            return [float(value)]
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"{flag} {value!r}: give numbers in mm, comma-separated") from None
