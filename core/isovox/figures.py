"""PNG figures: orthogonal views of inputs, results and residuals.

Every panel is sampled on the same patient-space planes (radiological
convention: patient right on the image left, anterior/superior up), so volumes
stored in any axis order or orientation line up, and a thick scan is drawn
with nearest-neighbour sampling to show its slabs as acquired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .volume import Volume

# (screen-right direction, screen-down direction, edge letters left/right/top/bottom) in RAS
PLANES = {
    "axial": (np.array([-1.0, 0, 0]), np.array([0, -1.0, 0]), ("R", "L", "A", "P")),
    "coronal": (np.array([-1.0, 0, 0]), np.array([0, 0, -1.0]), ("R", "L", "S", "I")),
    "sagittal": (np.array([0, -1.0, 0]), np.array([0, 0, -1.0]), ("A", "P", "S", "I")),
}


@dataclass
class Panel:
    title: str
    volume: Volume
    kind: str = "gray"  # "gray" or "residual"
    order: int = 1  # 0: nearest (acquired slabs), 1: linear


def plane_image(volume: Volume, centre: np.ndarray, plane: str, extent: tuple[float, float], pixel: float,
                order: int = 1) -> np.ndarray:
    """Sample ``volume`` on a patient-space plane through ``centre`` (NaN outside its field of view)."""
    right, down, _ = PLANES[plane]
    width, height = extent
    cols = int(round(width / pixel))
    rows = int(round(height / pixel))
    cu = (np.arange(cols) - cols / 2 + 0.5) * pixel
    rv = (np.arange(rows) - rows / 2 + 0.5) * pixel
    points = centre + rv[:, None, None] * down + cu[None, :, None] * right
    idx = volume.world_to_index(points.reshape(-1, 3)).T
    values = ndimage.map_coordinates(np.asarray(volume.data, np.float64), idx, order=order, mode="nearest",
                                     prefilter=False)
    outside = np.zeros(idx.shape[1], dtype=bool)
    for axis in range(3):
        outside |= (idx[axis] < -0.5) | (idx[axis] > volume.shape[axis] - 0.5)
    values[outside] = np.nan
    return values.reshape(rows, cols)


def _extent(volume: Volume, plane: str) -> tuple[float, float]:
    right, down, _ = PLANES[plane]
    corners = volume.corners()
    return float(np.ptp(corners @ right)), float(np.ptp(corners @ down))


def orthogonal_figure(panels: Sequence[Panel], path: str | Path, centre: Optional[np.ndarray] = None,
                      title: str = "", window: Optional[tuple[float, float]] = None) -> Path:
    """Rows: axial, coronal, sagittal; columns: the panels. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    anchor = next((p.volume for p in panels if p.kind == "gray"), panels[0].volume)
    if centre is None:
        centre = anchor.corners().mean(axis=0)
    pixel = float(anchor.spacing.min())
    if window is None:
        data = np.asarray(anchor.data)
        window = (float(np.percentile(data, 0.5)), float(np.percentile(data, 99.5)))
    residual_limit = 0.0
    for p in panels:
        if p.kind == "residual":
            residual_limit = max(residual_limit, float(np.percentile(np.abs(p.volume.data), 99.5)))
    residual_limit = residual_limit or 1.0
    gray = plt.get_cmap("gray").with_extremes(bad="black")
    diverging = plt.get_cmap("RdBu_r").with_extremes(bad="black")
    fig, axes = plt.subplots(3, len(panels), figsize=(2.7 * len(panels), 8.4), squeeze=False,
                             facecolor="black")
    for row, plane in enumerate(PLANES):
        extent = _extent(anchor, plane)
        letters = PLANES[plane][2]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            image = plane_image(panel.volume, np.asarray(centre), plane, extent, pixel, panel.order)
            if panel.kind == "residual":
                ax.imshow(image, cmap=diverging, vmin=-residual_limit, vmax=residual_limit, interpolation="nearest")
            else:
                ax.imshow(image, cmap=gray, vmin=window[0], vmax=window[1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_facecolor("black")
            style = dict(color="yellow", fontsize=7, ha="center", va="center")
            ax.text(0.03, 0.5, letters[0], transform=ax.transAxes, **style)
            ax.text(0.97, 0.5, letters[1], transform=ax.transAxes, **style)
            ax.text(0.5, 0.97, letters[2], transform=ax.transAxes, **style)
            ax.text(0.5, 0.03, letters[3], transform=ax.transAxes, **style)
            if row == 0:
                ax.set_title(panel.title, color="white", fontsize=9)
            if col == 0:
                ax.set_ylabel(plane, color="white", fontsize=9)
    if any(p.kind == "residual" for p in panels):
        cax = fig.add_axes([0.92, 0.35, 0.012, 0.3])
        sm = plt.cm.ScalarMappable(cmap="RdBu_r", norm=plt.Normalize(-residual_limit, residual_limit))
        bar = fig.colorbar(sm, cax=cax)
        bar.ax.tick_params(colors="white", labelsize=7)
        bar.set_label("residual", color="white", fontsize=8)
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    fig.subplots_adjust(left=0.03, right=0.9, top=0.9, bottom=0.02, wspace=0.04, hspace=0.06)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, facecolor="black")
    plt.close(fig)
    tmp.replace(path)
    return path
