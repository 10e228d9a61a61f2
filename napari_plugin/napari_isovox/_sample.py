"""Sample data: the bundled Colin27 crop (three orthogonal 4 mm scans and the 1 mm reference)."""

from __future__ import annotations

from ._core import LayerData
from ._io import read_layers


def colin27_sample() -> list[LayerData]:
    """Axial, coronal and sagittal 4 mm scans plus the HR reference, with their geometry."""
    from isovox.sample import sample_reference_path, sample_scan_paths

    layers = read_layers([str(p) for p in sample_scan_paths()])
    reference = read_layers(str(sample_reference_path()))[0]
    reference[1]["name"] = "colin27_hr (reference)"
    reference[1]["visible"] = False
    for data, attrs, _ in layers[1:]:
        attrs["visible"] = False
    return layers + [reference]
