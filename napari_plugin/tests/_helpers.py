"""Synthetic test data for the plugin tests: oblique geometry and DICOM series."""

from __future__ import annotations


from isovox.volume import Volume


def write_dicom_series(folder, volume: Volume) -> None:
    """A minimal MR series, one file per slice along the last axis, as scanners store them."""
    import SimpleITK as sitk

    from isovox.io import volume_to_sitk

    image = sitk.Cast(volume_to_sitk(volume), sitk.sitkInt16)
    folder.mkdir()
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        origin = "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))
        for tag, value in (("0008|0060", "MR"), ("0020|000d", "1.2.3.4"), ("0020|000e", "1.2.3.4.5"),
                           ("0020|0032", origin), ("0020|0037", orientation), ("0020|0013", str(k + 1))):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
