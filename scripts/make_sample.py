"""Rebuild the bundled sample from Debian's mricron-data (run by hand, output is committed).

Sample = a 100^3 crop of the real Colin27 1 mm T1 (ch2.nii.gz) plus three orthogonal
x4 thick-slice scans simulated from it, each stored as a scanner stores it (slice axis
last, first axis reversed) with a BIDS-style sidecar giving slice thickness and spacing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from isovox.io import write_volume
from isovox.simulate import Acquisition, simulate_scan
from isovox.volume import Volume

SOURCE = Path("/usr/share/mricron/templates/ch2.nii.gz")
OUT = Path(__file__).resolve().parents[1] / "core" / "isovox" / "data" / "sample"
CROP = (slice(40, 140), slice(63, 163), slice(35, 135))
NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


def main() -> int:
    if not SOURCE.exists():
        print(f"{SOURCE} missing: sudo apt-get install mricron-data", file=sys.stderr)
        return 1
    img = nib.load(str(SOURCE))
    data = np.asarray(img.dataobj)[CROP]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([s.start for s in CROP]) + img.affine[:3, 3]
    OUT.mkdir(parents=True, exist_ok=True)
    hr_img = nib.Nifti1Image(data.astype(np.uint8), affine)
    hr_img.header.set_sform(affine, 1)
    hr_img.header.set_qform(affine, 1)
    nib.save(hr_img, str(OUT / "colin27_hr.nii.gz"))
    hr = Volume(data.astype(np.float32), affine, {"source": "colin27_hr.nii.gz"})
    records = []
    for axis, seed in ((2, 11), (1, 12), (0, 13)):
        acq = Acquisition(axis=axis, scale=4.0, profile="gaussian", noise=0.01, seed=seed)
        scan = simulate_scan(hr, acq)
        order = tuple([a for a in range(3) if a != axis] + [axis])
        stored = scan.transposed(order).flipped((0,))
        name = f"colin27_{NAMES[axis]}_4mm.nii.gz"
        side = {"SliceThickness": scan.meta["slice_thickness"],
                "SpacingBetweenSlices": scan.meta["spacing_between_slices"],
                "isovox_acquisition": acq.to_dict(), "isovox_source": "colin27_hr.nii.gz"}
        write_volume(stored, OUT / name, sidecar=side)
        records.append({"file": name, **acq.to_dict()})
    (OUT / "acquisition.json").write_text(json.dumps({"hr": "colin27_hr.nii.gz", "crop": [[s.start, s.stop] for s in CROP], "scans": records}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
