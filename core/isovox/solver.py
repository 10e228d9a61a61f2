"""The reconstruction objective and its L-BFGS solver.

    x = argmin  sum_i c_i || sqrt(W_i) (A_i x - y_i) ||^2 / 2  +  lambda R(x)  [ + mu || x - f ||^2 / 2 ]

``A_i`` is scan i's forward operator (:mod:`isovox.forward`), ``W_i`` its per-voxel weights (coverage x
slice weights), ``c_i`` its voxel volume in grid voxels, ``R`` an edge-preserving prior
(:mod:`isovox.priors`) and the last term ties the result to a network's output ``f`` (data
consistency). Data and prior are sums over voxels, so lambda does not depend on the field of view;
intensities are in units of scan 1's robust maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .errors import IsovoxError
from .forward import ScanGeometry, scan_operator
from .grid import Grid
from .progress import Task, ensure_task
from .reductions import dot, total
from .volume import Volume

COVERED = 0.5  # scan voxels with less of their kernel inside the grid are left out
HISTORY = 4  # L-BFGS memory (each pair costs two copies of the unknowns)
FIRST_STEP = 0.02  # the first step's largest change, in units of scan 1's robust maximum


class ConvergenceError(IsovoxError):
    """The reconstruction diverged (NaN or infinite values); nothing is written."""


@dataclass
class ScanTerm:
    """One scan in the objective: operator, data, weights and intensity map to scan 1."""

    operator: Any
    data: Any  # torch tensor, the scan's voxels that see the grid, intensities in scan 1's units
    mask: Any  # torch tensor of per-voxel weights (coverage x slice weight)
    slice_axis: int
    volume_ratio: float  # scan voxel volume / grid voxel volume
    origin: tuple[int, int, int] = (0, 0, 0)  # index of the first kept voxel in the whole scan
    slices: int = 0  # the whole scan's slice count
    gain: float = 1.0
    offset: float = 0.0
    slice_weights: Optional[np.ndarray] = None  # per slice of the whole scan


def _torch():
    import torch

    return torch


def scan_terms(scans: Sequence[Volume], grid: Grid, geometries: Sequence[ScanGeometry], scale: float,
               device: str = "cpu") -> list[ScanTerm]:
    """The objective's scan terms on ``grid`` (intensities divided by ``scale``): each scan cut to the
    voxels that see the grid (a crop of a large scan costs only what it covers)."""
    torch = _torch()
    terms = []
    for scan, geometry in zip(scans, geometries):
        operator = scan_operator(grid, geometry, device)
        seen = np.argwhere(operator.coverage > 0)
        lo = seen.min(0) if len(seen) else np.zeros(3, int)
        hi = seen.max(0) + 1 if len(seen) else np.ones(3, int)
        if tuple(lo) != (0, 0, 0) or tuple(hi) != geometry.shape:
            operator = scan_operator(grid, geometry.cropped(lo, hi), device)
        values = geometry.measured(np.asarray(scan.data))[tuple(slice(a, b) for a, b in zip(lo, hi))]
        data = torch.as_tensor(np.array(values, np.float32) / scale, device=torch.device(device))
        mask = torch.as_tensor((operator.coverage >= COVERED).astype(np.float32), device=torch.device(device))
        axis = geometry.slice_axis if geometry.slice_axis is not None else int(np.argmax(geometry.spacing))
        ratio = float(np.prod(geometry.spacing) / np.prod(grid.spacing))
        terms.append(ScanTerm(operator, data, mask, axis, ratio, tuple(int(v) for v in lo), geometry.shape[axis]))
    return terms


def set_slice_weights(term: ScanTerm, weights: np.ndarray, coverage_mask) -> None:
    """The term's weights become coverage x per-slice ``weights`` (one per slice of the whole scan)."""
    torch = _torch()
    term.slice_weights = np.asarray(weights, dtype=np.float64)
    start = term.origin[term.slice_axis]
    kept = term.slice_weights[start:start + term.data.shape[term.slice_axis]]
    shape = [1, 1, 1]
    shape[term.slice_axis] = -1
    term.mask = coverage_mask * torch.as_tensor(kept, dtype=torch.float32, device=coverage_mask.device).reshape(shape)


def data_term(x, terms: Sequence[ScanTerm], grad=None) -> Any:
    """sum_i c_i || sqrt(W_i)(A_i x - y_i) ||^2 / 2 (summed in float64); its gradient is added to ``grad``."""
    torch = _torch()
    value = torch.zeros((), dtype=torch.float64, device=x.device)
    for term in terms:
        residual = term.operator.forward(x) - term.data
        weighted = residual * term.mask
        value = value + 0.5 * term.volume_ratio * total(residual * weighted)
        if grad is not None:
            grad.add_(term.operator.adjoint(weighted), alpha=term.volume_ratio)
    return value


def objective(params: Sequence, terms: Sequence[ScanTerm], prior, smoothness: float, spacing: np.ndarray,
              tie: Any = 0.0, anchor=None, out: Optional[Sequence] = None) -> tuple[Any, list]:
    """(value, gradients) of the whole objective; ``params`` are the prior's variables (x first) and the
    gradients are written into ``out`` when given."""
    torch = _torch()
    x = params[0]
    grads = list(out) if out is not None else [p.new_empty(p.shape) for p in params]
    if smoothness > 0:
        value = prior.value_and_grads(params, smoothness, spacing, grads)
    else:
        value = 0.0
        for g in grads:
            g.zero_()
    value = value + data_term(x, terms, grads[0])
    if anchor is not None:  # tie: mu, or mu per voxel (0 where there is no network output)
        weighted = (x - anchor) * tie
        value = value + 0.5 * total(weighted * (x - anchor))
        grads[0] += weighted
    return value, grads


class LBFGS:
    """Limited-memory BFGS history: a ring of preallocated step and gradient-change vectors."""

    def __init__(self, size: int, history: int, device) -> None:
        torch = _torch()
        self.s = torch.empty((history, size), dtype=torch.float32, device=device)
        self.y = torch.empty((history, size), dtype=torch.float32, device=device)
        self.rho = [0.0] * history
        self.count = 0
        self.history = history

    def direction(self, grad, out):
        """-H grad into ``out`` by the two-loop recursion (first step: the gradient scaled so no unknown moves
        by more than ``FIRST_STEP`` of scan 1's robust maximum)."""
        q = out.copy_(grad).neg_()
        if self.count == 0:
            return q.mul_(FIRST_STEP / max(float(grad.abs().max()), 1e-12))
        order = [(self.count - 1 - k) % self.history for k in range(min(self.count, self.history))]
        alpha = {}
        for i in order:
            alpha[i] = self.rho[i] * dot(self.s[i], q)
            q.add_(self.y[i], alpha=-alpha[i])
        newest = order[0]
        q.mul_(dot(self.s[newest], self.y[newest]) / max(dot(self.y[newest], self.y[newest]), 1e-30))
        for i in reversed(order):
            beta = self.rho[i] * dot(self.y[i], q)
            q.add_(self.s[i], alpha=alpha[i] - beta)
        return q

    def remember(self, new_x, old_x, new_grad, old_grad) -> None:
        torch = _torch()
        slot = self.count % self.history
        s = torch.sub(new_x, old_x, out=self.s[slot])
        y = torch.sub(new_grad, old_grad, out=self.y[slot])
        curvature = dot(s, y)
        if curvature <= 1e-10 * dot(y, y):
            return  # not a descent pair: the slot is overwritten next time
        self.rho[slot] = 1.0 / curvature
        self.count += 1


class FlatProblem:
    """The objective over one flat buffer holding x and the prior's auxiliary fields, read and written
    through views (so L-BFGS steps allocate nothing)."""

    def __init__(self, x0, terms: Sequence[ScanTerm], prior, smoothness: float, spacing: np.ndarray,
                 tie: Any, anchor) -> None:
        torch = _torch()
        parts = prior.variables(x0)
        self.shapes = [tuple(p.shape) for p in parts]
        self.start = torch.cat([p.reshape(-1).float() for p in parts]).contiguous()
        self.args = (terms, prior, smoothness, spacing, tie, anchor)

    def views(self, vector) -> list:
        out, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            out.append(vector[start:start + size].view(shape))
            start += size
        return out

    def evaluate(self, vector, gradient) -> float:
        """The objective at ``vector``; its gradient is written into ``gradient``."""
        terms, prior, smoothness, spacing, tie, anchor = self.args
        value = float(objective(self.views(vector), terms, prior, smoothness, spacing, tie, anchor,
                                self.views(gradient))[0])
        if not math.isfinite(value):
            raise ConvergenceError("the reconstruction diverged (non-finite values); no output was written. "
                                   "Try a larger --smoothness or check the scans for corrupt voxels")
        return value


def solve(x0, terms: Sequence[ScanTerm], prior, smoothness: float, spacing: np.ndarray, iterations: int,
          task: Optional[Task] = None, tie: Any = 0.0, anchor=None, label: str = "reconstructing"):
    """L-BFGS (Armijo backtracking) from ``x0`` for ``iterations`` steps, fewer once the objective stops
    moving; returns x. A step usually costs one evaluation. Raises ConvergenceError on non-finite values
    or divergence."""
    torch = _torch()
    task = ensure_task(task)
    problem = FlatProblem(x0, terms, prior, smoothness, spacing, tie, anchor)
    x = problem.start
    trial, grad, trial_grad, direction = (torch.empty_like(x) for _ in range(4))
    value = first = problem.evaluate(x, grad)
    memory = LBFGS(x.numel(), HISTORY, x.device)
    for iteration in range(iterations):
        task.update(iteration / iterations, f"{label}: objective {value:.4g}")
        new_value = _line_search(problem, memory, x, value, grad, direction, trial, trial_grad)
        if new_value is None:
            break  # no decrease along the direction: converged as far as float32 allows
        memory.remember(trial, x, trial_grad, grad)
        x, trial, grad, trial_grad = trial, x, trial_grad, grad
        change, value = value - new_value, new_value
        if change <= 1e-8 * abs(first):
            break
    if not math.isfinite(value) or value > 10 * abs(first) + 1e-12:
        raise ConvergenceError("the reconstruction diverged; no output was written. Try a larger --smoothness")
    task.update(1.0, label)
    return problem.views(x)[0].clone()


def _line_search(problem: FlatProblem, memory: LBFGS, x, value: float, grad, direction, trial, trial_grad):
    """Backtrack along the L-BFGS direction until the Armijo condition holds; the accepted point is left
    in ``trial`` / ``trial_grad`` and its value returned (None: no decrease found)."""
    torch = _torch()
    memory.direction(grad, direction)
    slope = dot(direction, grad)
    if slope >= 0:  # numerical trouble: restart from the gradient
        memory.count = 0
        memory.direction(grad, direction)
        slope = dot(direction, grad)
    step = 1.0
    for _ in range(20):
        torch.add(x, direction, alpha=step, out=trial)
        new_value = problem.evaluate(trial, trial_grad)
        if new_value <= value + 1e-4 * step * slope:
            return new_value
        step *= 0.3
    return None


def back_projection(terms: Sequence[ScanTerm], shape: Sequence[int]):
    """Each grid voxel's weighted mean of the (masked) scan voxels that see it: A^T(m y) / A^T m."""
    torch = _torch()
    device = terms[0].data.device if terms else None
    total = torch.zeros(tuple(shape), dtype=torch.float32, device=device)
    weight = torch.zeros(tuple(shape), dtype=torch.float32, device=device)
    for term in terms:
        total += term.operator.adjoint(term.data * term.mask) * term.volume_ratio
        weight += term.operator.adjoint(term.mask) * term.volume_ratio
    return torch.where(weight > 1e-6, total / weight.clamp(min=1e-6), torch.zeros_like(total))
