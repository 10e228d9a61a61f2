"""Every super-resolution method, imported explicitly so each registers itself."""

from . import baselines, learned  # noqa: F401
