"""Rigid registration of one scan onto another (SimpleITK, Mattes mutual information).

Orthogonal scans from one session drift by patient motion between acquisitions;
fusing them unaligned blurs edges. The result is a RAS 4x4 matrix ``T`` mapping a
point of the fixed scan's space to the matching point of the moving scan, so the
moving scan's corrected affine is ``inv(T) @ affine``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import InputError
from .io import LPS_TO_RAS, volume_to_sitk
from .progress import Task, ensure_task
from .volume import Volume


def _as_ras_matrix(transform) -> np.ndarray:
    """4x4 RAS matrix of a SimpleITK rigid transform (which works in LPS)."""
    rotation = np.array(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    centre = np.array(transform.GetCenter(), dtype=np.float64)
    translation = np.array(transform.GetTranslation(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = rotation
    lps[:3, 3] = translation + centre - rotation @ centre
    return LPS_TO_RAS @ lps @ LPS_TO_RAS


def register_rigid(fixed: Volume, moving: Volume, task: Optional[Task] = None, seed: int = 7) -> np.ndarray:
    """RAS matrix mapping points of ``fixed`` space to the same anatomy in ``moving``."""
    import SimpleITK as sitk

    task = ensure_task(task)
    fixed_img = sitk.Cast(volume_to_sitk(fixed), sitk.sitkFloat32)
    moving_img = sitk.Cast(volume_to_sitk(moving), sitk.sitkFloat32)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.25, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=150, gradientMagnitudeTolerance=1e-6
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    initial = sitk.CenteredTransformInitializer(
        fixed_img, moving_img, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    # Scans of one session share a scanner frame: start from identity, about the fixed centre.
    start = sitk.Euler3DTransform()
    start.SetCenter(initial.GetCenter())
    reg.SetInitialTransform(start, inPlace=False)
    iterations = {"n": 0}

    def on_iteration() -> None:
        iterations["n"] += 1
        task.update(min(0.99, iterations["n"] / 300.0), "registering")

    reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        result = reg.Execute(fixed_img, moving_img)
    except RuntimeError as exc:
        raise InputError(f"rigid registration failed: {str(exc).strip().splitlines()[-1][:160]}") from None
    task.update(1.0, "registered")
    if hasattr(result, "GetNumberOfTransforms"):  # a CompositeTransform wrapping our Euler3D
        result = result.GetNthTransform(result.GetNumberOfTransforms() - 1)
    return _as_ras_matrix(sitk.Euler3DTransform(result))
