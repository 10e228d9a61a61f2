"""Which contrast each scan is, so scans of different weighting are not fused silently.

A scan's contrast is read from what it declares (the series description's words, then the echo,
repetition and inversion times); two scans are compared by the correlation of their intensities,
low-passed alike on a common grid, over the head they share. Scans that declare different
contrasts, or whose intensities disagree (T1 against T2 anti-correlate), are refused by methods
that fuse scans; such a scan can serve as ``--reference`` of a guided method instead.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Optional, Sequence

import numpy as np

from .volume import Volume

WORDS = (  # first match wins: FLAIR before T2, which FLAIR descriptions often contain
    ("FLAIR", r"flair|tirm|dark[ -]?fluid"),
    ("DWI", r"dwi|diffusion|\badc\b|trace"),
    ("SWI", r"\bswi\b|susceptib|\bt2\*|\bt2star"),
    ("PD", r"\bpd\b|\bpdw|proton|pd[ _-]?(fse|tse|w)"),
    ("T1", r"\bt1|mprage|spgr|bravo|\bflash\b|mp-?rage"),
    ("T2", r"\bt2"),
)
DIFFERENT = 0.3  # intensity correlation below which two scans are taken as different contrasts
DOUBTFUL = 0.7  # below this, a warning


def declared_contrast(volume: Volume) -> Optional[str]:
    """The contrast a scan declares: words of its series description, else its sequence timings."""
    text = " ".join(str(volume.meta.get(k) or "") for k in ("series_description", "description")).lower()
    for name, pattern in WORDS:
        if re.search(pattern, text):
            return name
    te, tr, ti = (volume.meta.get(k) for k in ("echo_time", "repetition_time", "inversion_time"))
    if ti and tr and ti > 1500 and tr > 4000:
        return "FLAIR"
    if tr and te:
        if tr < 1000 and te < 30:
            return "T1"
        if tr > 2000 and te > 70:
            return "T2"
        if tr > 2000 and te < 40:
            return "PD"
    return None


def agreement(a: Volume, b: Volume, blur_mm: float = 4.0) -> Optional[float]:
    """Correlation of two scans' intensities, low-passed alike on a common grid, over the head both see
    (None: too little shared head to say)."""
    from scipy import ndimage

    from .fusion import resample
    from .grid import coarse_grid, target_grid
    from .intensity import robust_max

    grid = coarse_grid(target_grid([a, b], 2.0, fov="intersection"), 48**3)
    sigma = [blur_mm / s for s in grid.spacing]
    parts = [resample(v, grid) for v in (a, b)]
    values = [ndimage.gaussian_filter(np.where(p.full_mask(), p.values, 0.0), sigma) for p in parts]
    weight = [ndimage.gaussian_filter(p.full_mask().astype(np.float32), sigma) for p in parts]
    keep = (weight[0] > 0.95) & (weight[1] > 0.95)
    x, y = values[0][keep] / np.maximum(weight[0][keep], 1e-6), values[1][keep] / np.maximum(weight[1][keep], 1e-6)
    head = (x > 0.1 * robust_max(x)) & (y > 0.1 * robust_max(y)) if x.size else np.zeros(0, bool)
    if head.sum() < 200:
        return None
    return float(np.corrcoef(x[head], y[head])[0, 1])


def contrast_report(scans: Sequence[Volume]) -> dict[str, Any]:
    """Each scan's declared contrast, each pair's intensity agreement, and the problems they show."""
    declared = [declared_contrast(s) for s in scans]
    pairs, problems, doubts = [], [], []
    for (i, a), (j, b) in itertools.combinations(enumerate(scans), 2):
        correlation = agreement(a, b)
        pairs.append({"scans": [i + 1, j + 1], "intensity_correlation": None if correlation is None
                      else round(correlation, 3)})
        if declared[i] and declared[j] and declared[i] != declared[j]:
            problems.append(f"scans {i + 1} and {j + 1} are different contrasts ({declared[i]} and {declared[j]}, "
                            "from their series descriptions or sequence timings)")
        elif correlation is not None and correlation < DIFFERENT:
            problems.append(f"scans {i + 1} and {j + 1} look like different contrasts (their intensities correlate "
                            f"{correlation:.2f} over the shared head)")
        elif correlation is not None and correlation < DOUBTFUL:
            doubts.append(f"scans {i + 1} and {j + 1} agree only weakly in intensity (correlation {correlation:.2f}); "
                          "are they the same contrast?")
    return {"declared": declared, "pairs": pairs, "problems": problems, "doubts": doubts}
