"""Sums and inner products that give the same bits on any number of threads, and fast.

torch splits one long reduction among its threads, so a float sum over millions of voxels changes in
its last bits with the thread count, and an iterative solver turns that into visibly different
results: ``isovox run`` on a 2-core laptop and a batch worker with one thread would disagree. Here a
vector is cut into fixed blocks; each block is reduced in float32 by one thread (torch splits a
reduction with many outputs among outputs, never within one), and the block sums are added in
float64, so the result depends on the data only. Reducing whole tensors in float64 instead is ten
times slower on CPU (benchmarks: 29 ms against 3 ms for 7 M voxels).
"""

from __future__ import annotations

from typing import Any

BLOCK = 1 << 12  # elements per block
CHUNK = BLOCK << 8  # a dot product multiplies this many elements at a time into a small scratch buffer


def _split(flat: Any) -> int:
    return flat.numel() - flat.numel() % BLOCK


def total(tensor: Any) -> Any:
    """Sum of all elements as a float64 0-d tensor, independent of the thread count."""
    flat = tensor.reshape(-1)
    whole = _split(flat)
    return flat[:whole].view(-1, BLOCK).sum(1).double().sum() + flat[whole:].double().sum()


def dot(a: Any, b: Any) -> float:
    """Inner product of two same-shaped tensors, independent of the thread count.

    The products go through a scratch buffer of :data:`CHUNK` elements: a whole-length temporary
    would be fresh memory on every call (page faults cost more than the arithmetic)."""
    import torch

    a, b = a.reshape(-1), b.reshape(-1)
    n = a.numel()
    scratch = torch.empty(min(n, CHUNK), dtype=a.dtype, device=a.device)
    parts = [total(torch.mul(a[i:i + CHUNK], b[i:i + CHUNK], out=scratch[:min(CHUNK, n - i)]))
             for i in range(0, n, CHUNK)]
    return float(torch.stack(parts).sum()) if parts else 0.0
