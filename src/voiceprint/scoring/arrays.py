"""Array helpers of the scorer: numpy-or-torch input to float64 numpy, unit rows.

Inputs may be numpy arrays or torch tensors (any device); outputs are float64 numpy
arrays. Embeddings are rows: (N, D).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-12


def to_numpy(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """float64 numpy copy of an array or tensor; checks the number of dimensions."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def finite_1d(x: Any, name: str) -> np.ndarray:
    """A non-empty, finite (n,) float64 array (scores, LLRs); ValueError otherwise."""
    arr = to_numpy(x, name, ndim=1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be non-empty and finite")
    return arr


def length_norm(emb: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm: (N, D) -> (N, D); a zero row stays zero. 1-D works too."""
    x = to_numpy(emb, "emb")
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, EPS)


def mean_subtract(emb: Any, mean: Any) -> np.ndarray:
    """``emb - mean``: (N, D) minus a (D,) mean, e.g. of the training embeddings."""
    x = to_numpy(emb, "emb")
    m = to_numpy(mean, "mean", ndim=1)
    if x.shape[-1] != m.shape[0]:
        raise ValueError(f"mean has dimension {m.shape[0]}, embeddings {x.shape[-1]}")
    return x - m
