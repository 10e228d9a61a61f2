"""The one forward model of the acquisition: how a thick-slice scan sees the isotropic volume.

A scan voxel integrates the volume over its slice profile along the slice normal (box
of the slice thickness, Gaussian with FWHM = thickness, or given samples) and over its
own pixel in-plane, at the slice positions the scan records (gaps and overlaps where the
thickness differs from the spacing), in any orientation relative to the target grid.
For each scan, :func:`scan_operator` builds the linear map ``A`` from a grid to that
scan's voxels and its exact adjoint ``A^T``, matrix-free in torch (float32, CPU or
CUDA), in bounded memory. The simulator, the reconstruction (``srr``), the data
consistency of learned methods and the consistency maps of both front ends all use it.

Two implementations, the same model:

* scans whose axes are parallel to the grid's (any order or sign, any offset or spacing)
  take an exact separable operator: per axis, a banded matrix whose weights are the
  kernel's integral over each grid voxel (the volume is piecewise constant on its voxels);
* oblique scans sample the volume trilinearly on a lattice of sub-voxel points in the
  scan's frame (no coarser than the grid), then integrate the lattice with the same
  1-D kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
from scipy import special

from .errors import InputError
from .grid import Grid, axis_correspondence, thick_axis
from .volume import Volume

PROFILES = ("box", "gaussian", "custom")
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
GAUSSIAN_SUPPORT = 1.5  # a Gaussian profile is cut at +-1.5 FWHM (3.5 sigma: 99.95 % of it)
LATTICE_POINTS = 2_000_000  # sample points the oblique operator builds at once (~0.6 GB of temporaries)
SPARSE_BUDGET = 250_000_000  # stored sparse entries (~2 GB) beyond which the oblique operator rebuilds slabs


@dataclass(frozen=True)
class SliceProfile:
    """The slice sensitivity profile along the slice normal, relative to the slice thickness.

    ``kind``: "box" (the thickness, the closest to real 2-D acquisitions), "gaussian"
    (FWHM = thickness) or "custom" (``samples`` evenly spaced over [-thickness, +thickness])."""

    kind: str = "box"
    samples: Optional[tuple[float, ...]] = None

    def __post_init__(self) -> None:
        if self.kind not in PROFILES:
            raise InputError(f"slice profile {self.kind!r} must be one of {', '.join(PROFILES)}")
        if self.kind == "custom":
            values = np.asarray(self.samples or (), dtype=float)
            if values.size < 3 or not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
                raise InputError("a custom slice profile needs at least 3 non-negative samples")
            object.__setattr__(self, "samples", tuple(float(v) for v in values))

    @classmethod
    def parse(cls, text: str) -> "SliceProfile":
        """``box``, ``gaussian``, or comma-separated samples over [-thickness, +thickness]."""
        text = (text or "box").strip().lower()
        if text in ("box", "gaussian"):
            return cls(text)
        try:
            samples = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise InputError(f"--slice-profile {text!r}: give box, gaussian or comma-separated samples") from None
        return cls("custom", samples)

    def support(self, thickness: float) -> float:
        """Half-width (mm) beyond which the profile is zero."""
        if self.kind == "box":
            return thickness / 2.0
        if self.kind == "gaussian":
            return GAUSSIAN_SUPPORT * thickness
        return thickness

    def integral(self, lo: np.ndarray, hi: np.ndarray, thickness: float) -> np.ndarray:
        """Integral of the unit-area profile over [lo, hi] (mm from the slice centre)."""
        if self.kind == "box":
            half = thickness / 2.0
            return np.clip(np.minimum(hi, half) - np.maximum(lo, -half), 0.0, None) / thickness
        if self.kind == "gaussian":
            sigma = thickness * FWHM_TO_SIGMA
            cut = self.support(thickness)
            cdf = lambda v: 0.5 * (1.0 + special.erf(np.clip(v, -cut, cut) / (sigma * np.sqrt(2.0))))  # noqa: E731
            total = cdf(np.array(cut)) - cdf(np.array(-cut))
            return (cdf(hi) - cdf(lo)) / total
        samples = np.asarray(self.samples, dtype=float)
        positions = np.linspace(-thickness, thickness, samples.size)
        sub = (np.arange(32) + 0.5) / 32.0  # midpoint rule inside each interval

        def area(a, b):
            points = np.asarray(a)[..., None] + np.asarray(b - a)[..., None] * sub
            return np.interp(points, positions, samples, left=0.0, right=0.0).mean(axis=-1) * (b - a)

        edges = np.linspace(-thickness, thickness, 65)
        return area(lo, hi) / area(edges[:-1], edges[1:]).sum()

    def to_dict(self) -> dict:
        return {"kind": self.kind, **({"samples": list(self.samples)} if self.samples else {})}


@dataclass(frozen=True)
class Kernel1D:
    """What one scan voxel integrates along one of its axes, in mm from its centre: the slice profile of
    ``width`` (slice axis), or a box of ``width`` (in-plane pixel), optionally blurred by a Gaussian."""

    width: float
    profile: SliceProfile = field(default_factory=SliceProfile)
    blur_sigma: float = 0.0

    def support(self) -> float:
        return self.profile.support(self.width) + 3.5 * self.blur_sigma

    def integral(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if self.blur_sigma <= 0:
            return self.profile.integral(lo, hi, self.width)
        # the profile convolved with a Gaussian: average of shifted profiles (Gauss-Hermite, 9 nodes)
        nodes, weights = np.polynomial.hermite_e.hermegauss(9)
        weights = weights / weights.sum()
        return sum(w * self.profile.integral(lo - s, hi - s, self.width)
                   for s, w in zip(nodes * self.blur_sigma, weights))


@dataclass(frozen=True)
class ScanGeometry:
    """Where one scan's voxels lie and what each one integrates.

    ``slice_axis``: the scan's through-plane array axis (None: every axis integrates its voxel
    size as a box); ``thickness``: slice thickness in mm (None: the slice spacing);
    ``slice_positions``: the measured slices' centres in index units along the slice axis, when the
    slices are not evenly spaced (missing or uneven slices); ``acquired``: which of the volume's slices
    were measured (a volume that fills in missing slices); ``inplane_blur``: Gaussian sigma (mm) of an
    in-plane PSF.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    slice_axis: Optional[int] = None
    thickness: Optional[float] = None
    profile: SliceProfile = field(default_factory=SliceProfile)
    slice_positions: Optional[tuple[float, ...]] = None
    inplane_blur: float = 0.0
    acquired: Optional[tuple[int, ...]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64))
        if self.thickness is not None and not (np.isfinite(self.thickness) and self.thickness > 0):
            raise InputError(f"slice thickness {self.thickness} mm must be positive")
        if self.slice_positions is not None:
            if self.slice_axis is None or len(self.slice_positions) != self.shape[self.slice_axis]:
                raise InputError("slice positions need a slice axis and one position per slice")

    @classmethod
    def of(cls, scan: Volume, profile: Optional[SliceProfile] = None,
           thickness: Optional[float] = None) -> "ScanGeometry":
        """The geometry a scan records: its grid, thick axis and (from its sidecar/DICOM) slice thickness."""
        axis = thick_axis(scan)
        known = thickness if thickness is not None else scan.meta.get("slice_thickness")
        positions = scan.meta.get("slice_positions")
        acquired = scan.meta.get("acquired_slices")
        shape = list(scan.shape)
        if axis is None:
            positions = acquired = None
        elif acquired:
            positions = [float(i) for i in acquired]
            shape[axis] = len(acquired)
        return cls(tuple(shape), scan.affine, axis, float(known) if known and axis is not None else None,
                   profile or SliceProfile(), tuple(positions) if positions else None,
                   float(scan.meta.get("inplane_blur") or 0.0), tuple(int(i) for i in acquired) if acquired else None)

    def measured(self, data: np.ndarray) -> np.ndarray:
        """The measured voxels of a scan's array (without slices it filled in)."""
        return np.take(data, self.acquired, axis=self.slice_axis) if self.acquired else np.asarray(data)

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def kernel(self, axis: int) -> Kernel1D:
        """What a voxel integrates along array ``axis`` (mm)."""
        spacing = float(self.spacing[axis])
        if axis == self.slice_axis:
            return Kernel1D(self.thickness or spacing, self.profile)
        return Kernel1D(spacing, SliceProfile("box"), self.inplane_blur if self.slice_axis is not None else 0.0)

    def centres(self, axis: int) -> np.ndarray:
        """Voxel centres along ``axis`` in index units (slice positions where recorded)."""
        if axis == self.slice_axis and self.slice_positions is not None:
            return np.asarray(self.slice_positions, dtype=np.float64)
        return np.arange(self.shape[axis], dtype=np.float64)

    def with_affine(self, affine: np.ndarray) -> "ScanGeometry":
        return replace(self, affine=np.asarray(affine, dtype=np.float64))

    def cropped(self, lo: Sequence[int], hi: Sequence[int]) -> "ScanGeometry":
        """The voxels [lo, hi) of this scan as a scan of their own (same physical places)."""
        lo = np.asarray(lo, dtype=int)
        shift = np.eye(4)
        shift[:3, 3] = lo
        positions = self.slice_positions
        if positions is not None and self.slice_axis is not None:  # index lo is the lo-th measured slice
            a = self.slice_axis
            shift[a, 3] = positions[lo[a]]
            positions = tuple(float(v) - positions[lo[a]] for v in positions[lo[a]:hi[a]])
        return replace(self, shape=tuple(int(b - a) for a, b in zip(lo, hi)), affine=self.affine @ shift,
                       slice_positions=positions, acquired=None)


# --------------------------------------------------------------------------- operators


class ScanOperator:
    """``A``: values on ``grid`` -> the scan's voxels, and its adjoint. Tensors are float32 of the grid's
    and the scan's shapes. Each voxel's weights are normalised over the part of its kernel inside the grid
    (a constant volume gives that constant); ``coverage`` (numpy, scan shape) is that part's share of the
    kernel, so a voxel with little coverage says little about the grid (0: nothing)."""

    grid: Grid
    geometry: ScanGeometry
    device: str
    coverage: np.ndarray

    def forward(self, x):  # pragma: no cover - interface
        raise NotImplementedError

    def adjoint(self, y):  # pragma: no cover - interface
        raise NotImplementedError


def scan_operator(grid: Grid, geometry: ScanGeometry, device: str = "cpu") -> ScanOperator:
    """The exact separable operator when the scan's axes are parallel to the grid's, else the sampled one."""
    order = axis_correspondence(grid.affine, geometry.affine, tol=1e-5)
    if order is not None:
        return SeparableOperator(grid, geometry, order, device)
    return SampledOperator(grid, geometry, device)


@dataclass
class Banded:
    """A banded matrix (rows x columns): row i has ``weights[i, k]`` at column ``starts[i] + k``."""

    starts: np.ndarray  # int64 (rows,)
    weights: np.ndarray  # float64 (rows, K)
    columns: int

    @property
    def identity(self) -> bool:
        n = len(self.starts)
        return (n == self.columns and self.weights.shape[1] == 1 and np.array_equal(self.starts, np.arange(n))
                and np.allclose(self.weights, 1.0, rtol=0, atol=1e-7))

    def dense(self) -> np.ndarray:
        out = np.zeros((len(self.starts), self.columns))
        for k in range(self.weights.shape[1]):
            rows = np.arange(len(self.starts))
            cols = self.starts + k
            ok = (cols >= 0) & (cols < self.columns)
            out[rows[ok], cols[ok]] += self.weights[ok, k]
        return out


def banded_kernel(centres_mm: np.ndarray, kernel: Kernel1D, edges_mm: np.ndarray, sign: float = 1.0) -> Banded:
    """Rows: ``kernel`` centred at each of ``centres_mm``; columns: the intervals between ``edges_mm``
    (ascending); each weight is the kernel's integral over that interval. ``sign`` -1: the kernel's own
    axis runs against the columns' (an asymmetric profile is mirrored)."""
    reach = kernel.support()
    first = np.searchsorted(edges_mm, centres_mm - reach, side="right") - 1
    last = np.searchsorted(edges_mm, centres_mm + reach, side="left")
    columns = len(edges_mm) - 1
    first = np.clip(first, 0, columns - 1)
    last = np.clip(last, 1, columns)
    width = int(max(1, (last - first).max())) if len(centres_mm) else 1
    cols = first[:, None] + np.arange(width)[None, :]
    valid = cols < columns
    safe = np.minimum(cols, columns - 1)
    lo = edges_mm[safe] - centres_mm[:, None]
    hi = edges_mm[safe + 1] - centres_mm[:, None]
    if sign < 0:
        lo, hi = -hi, -lo
    weights = np.where(valid, kernel.integral(lo, hi), 0.0)
    return Banded(first.astype(np.int64), weights, columns)


class _AxisOps:
    """Applies banded matrices along tensor axes (torch), forward and transposed."""

    def __init__(self, bands: Sequence[Banded], device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.items = []
        for band in bands:
            if band.identity:
                self.items.append(None)
                continue
            starts = torch.as_tensor(band.starts, dtype=torch.long, device=self.device)
            weights = torch.as_tensor(band.weights, dtype=torch.float32, device=self.device)
            index = starts[:, None] + torch.arange(band.weights.shape[1], device=self.device)[None, :]
            keep = index < band.columns
            self.items.append((index.clamp(max=band.columns - 1), weights * keep, band.columns))

    def apply(self, x, axis: int):
        item = self.items[axis]
        if item is None:
            return x
        index, weights, _ = item
        shape = [1] * x.dim()
        shape[axis] = -1
        out = None
        for k in range(index.shape[1]):
            term = x.index_select(axis, index[:, k]) * weights[:, k].reshape(shape)
            out = term if out is None else out.add_(term)
        return out

    def transpose(self, y, axis: int):
        item = self.items[axis]
        if item is None:
            return y
        index, weights, columns = item
        shape = [1] * y.dim()
        shape[axis] = -1
        size = list(y.shape)
        size[axis] = columns
        out = y.new_zeros(size)
        for k in range(index.shape[1]):
            out.index_add_(axis, index[:, k], y * weights[:, k].reshape(shape))
        return out


class SeparableOperator(ScanOperator):
    """Scans parallel to the grid: ``A = B0 (x) B1 (x) B2`` after reordering the grid's axes as the scan's."""

    def __init__(self, grid: Grid, geometry: ScanGeometry, order: np.ndarray, device: str = "cpu") -> None:
        self.grid, self.geometry, self.device = grid, geometry, device
        self.order = tuple(int(a) for a in order)  # scan axis t runs along grid axis order[t]
        mapping = np.linalg.inv(grid.affine) @ geometry.affine  # scan index -> grid index
        bands = []
        for t, g in enumerate(self.order):
            step = float(grid.spacing[g])
            # scan centres along grid axis g, in mm from the grid's first voxel centre
            centres = (mapping[g, t] * geometry.centres(t) + mapping[g, 3]) * step
            edges = (np.arange(grid.shape[g] + 1) - 0.5) * step
            bands.append(banded_kernel(centres, geometry.kernel(t), edges, float(np.sign(mapping[g, t]))))
        rows = [band.weights.sum(axis=1) for band in bands]
        coverage = rows[0][:, None, None] * rows[1][None, :, None] * rows[2][None, None, :]
        self.coverage = np.minimum(coverage, 1.0).astype(np.float32)
        for band, total in zip(bands, rows):
            band.weights = np.where(total[:, None] > 0, band.weights / np.maximum(total, 1e-300)[:, None], 0.0)
        self.bands = bands
        self.ops = _AxisOps(bands, device)

    def forward(self, x):
        y = x.permute(*self.order)
        for t in range(3):
            y = self.ops.apply(y, t)
        return y.contiguous()

    def adjoint(self, y):
        x = y
        for t in range(3):
            x = self.ops.transpose(x, t)
        inverse = tuple(int(a) for a in np.argsort(self.order))
        return x.permute(*inverse).contiguous()


class SampledOperator(ScanOperator):
    """Oblique scans: trilinear samples of the grid on a sub-voxel lattice in the scan's frame, integrated
    with each axis's kernel (samples beyond the grid take its edge value, as the separable operator's
    normalised weights do).

    The map is a sparse matrix built slab by slab; slabs are kept while they fit ``SPARSE_BUDGET``
    entries (then every product is two sparse matrix-vector products), else rebuilt on each use."""

    def __init__(self, grid: Grid, geometry: ScanGeometry, device: str = "cpu") -> None:
        import torch

        self.grid, self.geometry, self.device = grid, geometry, device
        self.torch = torch
        finest = float(grid.spacing.min())
        self.offsets, self.weights = [], []  # per scan axis: sub-sample offsets (index units) and weights
        for t in range(3):
            kernel = geometry.kernel(t)
            reach = kernel.support()
            count = max(1, int(np.ceil(2 * reach / finest - 1e-9)))
            edges = np.linspace(-reach, reach, count + 1)
            self.offsets.append((edges[:-1] + edges[1:]) / 2 / float(geometry.spacing[t]))
            weights = kernel.integral(edges[:-1], edges[1:])
            self.weights.append(weights / weights.sum())
        self.mapping = np.linalg.inv(grid.affine) @ geometry.affine  # scan index -> grid index
        self.lattice_size = int(np.prod([len(o) for o in self.offsets]))
        self.slabs = self._slabs()
        self._cache: dict[tuple[int, int], object] = {}
        keep = self.lattice_size * 8 * int(np.prod(geometry.shape)) <= SPARSE_BUDGET
        coverage = []
        for slab in self.slabs:
            matrix, inside = self._build(*slab)
            coverage.append(inside)
            if keep:
                self._cache[slab] = self._to_device(matrix)
        self.coverage = np.concatenate(coverage, 0).astype(np.float32)

    def _slabs(self) -> list[tuple[int, int]]:
        per_slice = self.lattice_size * self.geometry.shape[1] * self.geometry.shape[2]
        rows = max(1, int(LATTICE_POINTS // max(per_slice, 1)))
        n = self.geometry.shape[0]
        return [(a, min(n, a + rows)) for a in range(0, n, rows)]

    def _build(self, start: int, stop: int):
        """(sparse matrix of scan voxels in slices [start, stop) x grid voxels, their coverage)."""
        from scipy import sparse

        torch = self.torch
        geometry, shape = self.geometry, np.asarray(self.grid.shape)
        centres = [geometry.centres(t) for t in range(3)]
        centres[0] = centres[0][start:stop]
        counts = [len(c) for c in centres]
        m = [len(o) for o in self.offsets]
        n_voxels = int(np.prod(counts))
        # lattice points ordered (voxel a, b, c, sub-sample i, j, k); their weight is w0[i] w1[j] w2[k]
        axes = [torch.as_tensor(c[:, None] + o[None, :]) for c, o in zip(centres, self.offsets)]
        view = [(-1, 1, 1, m[0], 1, 1), (1, -1, 1, 1, m[1], 1), (1, 1, -1, 1, 1, m[2])]
        weight = torch.as_tensor(self.weights[0][:, None, None] * self.weights[1][None, :, None]
                                 * self.weights[2][None, None, :]).reshape(1, 1, 1, *m)
        weight = weight.expand(*counts, *m).reshape(-1)
        inside = torch.ones(n_voxels * int(np.prod(m)), dtype=torch.bool)
        base, frac = [], []
        for g in range(3):  # grid coordinate along grid axis g of every lattice point
            coord = float(self.mapping[g, 3]) + sum(float(self.mapping[g, t]) * axes[t].reshape(view[t])
                                                    for t in range(3))
            coord = coord.expand(*counts, *m).reshape(-1)
            inside &= (coord >= -0.5) & (coord <= float(shape[g]) - 0.5)
            clamped = coord.clamp(0.0, float(shape[g] - 1))  # the grid's edge value beyond it
            low = clamped.floor().clamp(max=max(int(shape[g]) - 2, 0))
            base.append(low.to(torch.int64))
            frac.append((clamped - low).to(torch.float32))
        coverage = (weight * inside).reshape(n_voxels, -1).sum(1).reshape(counts).numpy()
        strides = [int(shape[1] * shape[2]), int(shape[2]), 1]
        flat = base[0] * strides[0] + base[1] * strides[1] + base[2] * strides[2]
        step = [strides[g] if shape[g] > 1 else 0 for g in range(3)]
        weight = weight.to(torch.float32)
        columns = torch.empty((len(flat), 8), dtype=torch.int64)
        values = torch.empty((len(flat), 8), dtype=torch.float32)
        for corner in range(8):
            bits = [(corner >> 2) & 1, (corner >> 1) & 1, corner & 1]
            columns[:, corner] = flat + sum(b * s for b, s in zip(bits, step))
            share = weight
            for g, b in enumerate(bits):
                share = share * (frac[g] if b else 1.0 - frac[g])
            values[:, corner] = share
        # entries of one scan voxel are contiguous (its sub-samples x 8 corners): CSR without sorting;
        # repeated columns within a row are summed by every product
        per_row = int(np.prod(m)) * 8
        indptr = np.arange(n_voxels + 1, dtype=np.int64) * per_row
        index_type = np.int32 if shape.prod() < 2**31 else np.int64
        matrix = sparse.csr_matrix((values.reshape(-1).numpy(), columns.reshape(-1).numpy().astype(index_type),
                                    indptr), shape=(n_voxels, int(np.prod(shape))))
        return matrix, coverage

    def _to_device(self, matrix):
        """scipy CSR on the CPU; on a GPU, torch CSR tensors of the matrix and of its transpose."""
        if self.torch.device(self.device).type == "cpu":
            return matrix
        torch = self.torch

        def csr(m):
            return torch.sparse_csr_tensor(torch.as_tensor(m.indptr), torch.as_tensor(m.indices),
                                           torch.as_tensor(m.data), size=m.shape, device=self.device)

        return csr(matrix), csr(matrix.T.tocsr())

    def _matrix(self, slab: tuple[int, int]):
        cached = self._cache.get(slab)
        return cached if cached is not None else self._to_device(self._build(*slab)[0])

    def forward(self, x):
        torch = self.torch
        flat = x.reshape(-1)
        out = []
        for slab in self.slabs:
            matrix = self._matrix(slab)
            if isinstance(matrix, tuple):
                out.append(torch.mv(matrix[0], flat))
            else:
                out.append(torch.from_numpy(matrix @ flat.detach().cpu().numpy()))
        return torch.cat(out).reshape(self.geometry.shape).to(x.device)

    def adjoint(self, y):
        torch = self.torch
        total = torch.zeros(int(np.prod(self.grid.shape)), dtype=torch.float32, device=y.device)
        per_slice = self.geometry.shape[1] * self.geometry.shape[2]
        flat = y.reshape(-1)
        for slab in self.slabs:
            part = flat[slab[0] * per_slice:slab[1] * per_slice]
            matrix = self._matrix(slab)
            if isinstance(matrix, tuple):
                total += torch.mv(matrix[1], part)
            else:
                total += torch.from_numpy(matrix.T @ part.detach().cpu().numpy()).to(y.device)
        return total.reshape(self.grid.shape)


def operator_bytes(grid: Grid, geometry: ScanGeometry) -> int:
    """Memory an operator keeps: next to nothing for a separable one; the stored sparse map (or one slab
    of it) for an oblique one."""
    if axis_correspondence(grid.affine, geometry.affine, tol=1e-5) is not None:
        return int(sum(geometry.shape) * 64 * 8)
    finest = float(grid.spacing.min())
    lattice = 1
    for t in range(3):
        lattice *= max(1, int(np.ceil(2 * geometry.kernel(t).support() / finest - 1e-9)))
    entries = int(np.prod(geometry.shape)) * lattice * 8
    return int(min(entries, SPARSE_BUDGET) * 8 + LATTICE_POINTS * 8 * 16)


# --------------------------------------------------------------------------- numpy conveniences


def acquire(volume: Volume, geometry: ScanGeometry, device: str = "cpu") -> np.ndarray:
    """The scan ``geometry`` would record from ``volume`` (float32 numpy array of the scan's shape)."""
    import torch

    op = scan_operator(Grid.of(volume), geometry, device)
    with torch.inference_mode():
        x = torch.as_tensor(np.array(volume.data, np.float32), device=torch.device(device))
        return op.forward(x).cpu().numpy()
