"""Search rows: the scorer's score as one inner product, for an inner-product index (faiss).

AS-norm's ``0.5 ((raw - mu_e) / sd_e + (raw - mu_p) / sd_p)`` is affine in ``raw`` with
per-side terms, so with enrollment rows ``[u_e / (2 sd_e), u_e, -mu_e / (2 sd_e)]`` and
probe rows ``[u_p, u_p / (2 sd_p), 1]`` the score is their inner product plus
``-mu_p / (2 sd_p)``. Without AS-norm (``stats`` None) the rows are the unit rows.

``units`` are the scorer's unit rows (N, D) (:meth:`voiceprint.scoring.Scorer.units` or
speaker models); ``stats`` their AS-norm statistics (N, 2) [mean, std]
(:meth:`voiceprint.scoring.Scorer.norm_stats`). The :class:`~voiceprint.scoring.Scorer`
methods ``search_rows``, ``search_probe``, ``search_units`` and ``search_width`` apply
these with its back-end.
"""

from __future__ import annotations

import numpy as np

__all__ = ["enroll_rows", "enroll_units", "probe_rows", "width"]


def width(dim: int, asnorm: bool) -> int:
    """Width of the search rows of ``dim``-dim units: ``dim``, or ``2 dim + 1``."""
    return 2 * dim + 1 if asnorm else dim


def enroll_rows(units: np.ndarray, stats: np.ndarray | None) -> np.ndarray:
    """Enrollment unit rows (N, D) -> float32 rows whose inner product with
    :func:`probe_rows`'s rows, plus its offset, is the score."""
    if stats is None:
        return units.astype(np.float32)
    half = 0.5 / stats[:, 1:2]
    return np.hstack([units * half, units, -stats[:, 0:1] * half]).astype(np.float32)


def probe_rows(units: np.ndarray, stats: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Probe unit rows (M, D) -> (float32 search rows, (M,) offsets to add)."""
    if stats is None:
        return units.astype(np.float32), np.zeros(len(units))
    half = 0.5 / stats[:, 1:2]
    rows = np.hstack([units, units * half, np.ones((len(units), 1))]).astype(np.float32)
    return rows, -(stats[:, 0:1] * half)[:, 0]


def enroll_units(rows: np.ndarray, asnorm: bool) -> np.ndarray:
    """The unit rows (N, D) inside enrollment search rows (inverse of :func:`enroll_rows`)."""
    if not asnorm:
        return rows
    dim = (rows.shape[1] - 1) // 2
    return rows[:, dim : 2 * dim]
