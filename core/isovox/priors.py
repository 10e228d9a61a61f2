"""Edge-preserving priors for the reconstruction: total variation and total generalised variation.

Both are smoothed (Charbonnier, ``sqrt(|.|^2 + eps^2)``) so L-BFGS can minimise them, and both return
their exact gradient computed by hand (in place, a few volumes of memory) rather than by autograd.

* ``tv``: sum |grad x| -- flat regions and sharp edges; stair-cases smooth ramps.
* ``tgv`` (second order, Bredies et al. 2010): min over a vector field w of
  a1 sum |grad x - w| + a0 sum |E(w)|, E the symmetrised gradient -- piecewise smooth, so ramps and
  shading are not turned into steps. Measured here it beats TV by about 1 dB with and without noise.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .reductions import total

EPSILON = 0.01  # Charbonnier smoothing, in units of scan 1's robust maximum
TGV_RATIO = 0.75  # a0 / a1


def _torch():
    import torch

    return torch


def _steps(spacing: Sequence[float]) -> np.ndarray:
    """Differences are taken per finest voxel: a coarser axis's difference counts less."""
    spacing = np.asarray(spacing, dtype=np.float64)
    return float(spacing.min()) / spacing


def forward_difference(x, axis: int, step: float):
    """(x[i+1] - x[i]) * step, zero at the last index."""
    d = x.new_zeros(x.shape)
    n = x.shape[axis]
    if n > 1:
        d.narrow(axis, 0, n - 1).copy_(x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1)).mul_(step)
    return d


def add_forward_transpose(p, axis: int, step: float, out) -> None:
    """out += D^T p for :func:`forward_difference`."""
    n = p.shape[axis]
    if n > 1:
        out.narrow(axis, 0, n - 1).sub_(p.narrow(axis, 0, n - 1), alpha=step)
        out.narrow(axis, 1, n - 1).add_(p.narrow(axis, 0, n - 1), alpha=step)


def backward_difference(x, axis: int, step: float):
    """(x[i] - x[i-1]) * step, zero at the first index."""
    d = x.new_zeros(x.shape)
    n = x.shape[axis]
    if n > 1:
        d.narrow(axis, 1, n - 1).copy_(x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1)).mul_(step)
    return d


def add_backward_transpose(p, axis: int, step: float, out) -> None:
    """out += B^T p for :func:`backward_difference`."""
    n = p.shape[axis]
    if n > 1:
        out.narrow(axis, 1, n - 1).add_(p.narrow(axis, 1, n - 1), alpha=step)
        out.narrow(axis, 0, n - 1).sub_(p.narrow(axis, 1, n - 1), alpha=step)


class TV:
    """Smoothed isotropic total variation of x."""

    name = "tv"

    def __init__(self, epsilon: float = EPSILON) -> None:
        self.epsilon = epsilon

    def variables(self, x) -> list:
        return [x]

    def value_and_grads(self, params: Sequence, weight: float, spacing: Sequence[float], out: Sequence) -> Any:
        """The weighted value; the weighted gradients are written into ``out`` (one per variable)."""
        torch = _torch()
        x, grad = params[0], out[0]
        steps = _steps(spacing)
        diffs = [forward_difference(x, a, float(steps[a])) for a in range(3)]
        magnitude = diffs[0] * diffs[0]
        magnitude.addcmul_(diffs[1], diffs[1]).addcmul_(diffs[2], diffs[2]).add_(self.epsilon**2).sqrt_()
        value = total(magnitude) - self.epsilon * magnitude.numel()
        grad.zero_()
        for axis, d in enumerate(diffs):
            add_forward_transpose(d.div_(magnitude), axis, float(steps[axis]), grad)
        grad.mul_(weight)
        return weight * value


class TGV:
    """Smoothed second-order total generalised variation; ``a1`` is the weight, ``a0 = ratio * a1``."""

    name = "tgv"

    def __init__(self, ratio: float = TGV_RATIO, epsilon: float = EPSILON) -> None:
        self.ratio = ratio
        self.epsilon = epsilon

    def variables(self, x) -> list:
        """x and the field w, started at grad x (so the first-order term starts at zero)."""
        torch = _torch()
        w = torch.stack([forward_difference(x, a, 1.0) for a in range(3)])
        return [x, w]

    def value_and_grads(self, params: Sequence, weight: float, spacing: Sequence[float], out: Sequence) -> Any:
        """The weighted value; the weighted gradients are written into ``out`` (for x and for w)."""
        torch = _torch()
        x, w = params
        steps = _steps(spacing)
        eps = self.epsilon
        gx, gw = out[0].zero_(), out[1].zero_()
        # first order: a1 |grad x - w|
        g = [forward_difference(x, a, float(steps[a])).sub_(w[a]) for a in range(3)]
        m = g[0] * g[0]
        m.addcmul_(g[1], g[1]).addcmul_(g[2], g[2]).add_(eps * eps).sqrt_()
        first = total(m) - eps * m.numel()
        for a in range(3):
            p = g[a].div_(m)
            add_forward_transpose(p, a, float(steps[a]), gx)
            gw[a].sub_(p)
        del g, m
        # second order: a0 |E(w)|, E symmetric: off-diagonal entries count twice in the Frobenius norm
        parts = {}
        for i in range(3):
            parts[(i, i)] = backward_difference(w[i], i, float(steps[i]))
            for j in range(i + 1, 3):
                parts[(i, j)] = backward_difference(w[i], j, float(steps[j])).add_(
                    backward_difference(w[j], i, float(steps[i]))).mul_(0.5)
        m = torch.zeros_like(x)
        for (i, j), e in parts.items():
            m.addcmul_(e, e, value=1.0 if i == j else 2.0)
        m.add_(eps * eps).sqrt_()
        second = total(m) - eps * m.numel()
        ratio = self.ratio
        for (i, j), e in parts.items():
            p = e.div_(m).mul_(ratio)
            add_backward_transpose(p, j, float(steps[j]), gw[i])
            if i != j:
                add_backward_transpose(p, i, float(steps[i]), gw[j])
        gx.mul_(weight)
        gw.mul_(weight)
        return weight * (first + ratio * second)


PRIORS = {"tv": TV, "tgv": TGV}


def prior_named(name: str):
    from .errors import InputError

    if name not in PRIORS:
        raise InputError(f"prior {name!r} must be one of {', '.join(PRIORS)}")
    return PRIORS[name]()
