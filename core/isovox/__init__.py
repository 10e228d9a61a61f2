"""isovox: isotropic high-resolution volumes from thick-slice clinical MRI.

The engine imports no user interface. Typical use::

    from isovox import io, api
    scans = [io.read_volume(p) for p in paths]
    result = api.super_resolve(scans, method="cubeavg")
    io.write_volume(result.volume, "out.nii.gz", protect=paths)
"""

__version__ = "0.1.0"
