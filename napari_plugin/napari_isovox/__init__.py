"""napari-isovox: isovox super-resolution and visual QA inside napari.

This module imports no Qt: napari reads the manifest (``napari.yaml``) and imports
each contribution lazily; the headless logic lives in :mod:`napari_isovox._core`.
"""

__version__ = "0.1.0"
