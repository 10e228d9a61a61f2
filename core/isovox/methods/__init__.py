"""Every super-resolution method, imported explicitly so each registers itself."""

from . import arssr, baselines, learned  # noqa: F401
