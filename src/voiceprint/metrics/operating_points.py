"""The one walk down sorted scores every metric is read from: the checked inputs, the
operating points of a trial list (every trial counting once, or weighted, or under many
weightings at once), the interpolated EER crossing and the normalised detection cost.

Conventions: see :mod:`voiceprint.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float]


def as_scores(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a (n,) float64 array; ValueError naming ``name`` when it is not 1-D,
    empty, or holds NaN or infinite values."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_labels(labels: ArrayLike, n: int) -> np.ndarray:
    """(n,) labels of 0 (non-target) and 1 (target) as a boolean array (True = target)."""
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) like the scores, got {lab.shape}")
    if not np.all((lab == 0) | (lab == 1)):
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    return lab.astype(bool)


def split_by_label(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(target scores, non-target scores) of a labelled trial list; ValueError unless it
    holds at least one trial of each class."""
    s = as_scores(scores, "scores")
    lab = as_labels(labels, s.size)
    if lab.all() or not lab.any():
        raise ValueError("need at least one target (1) and one non-target (0) trial")
    return s[lab], s[~lab]


def _sort_descending(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable descending order of ``scores`` (n,) and the last position of each run of equal
    values in that order (k,): the k distinct thresholds."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)
    return order, ends


class OperatingPoints:
    """The operating points of target and non-target scores, from one descending sort.

    Point 0 rejects everything (threshold +inf); point ``i >= 1`` accepts every trial with
    ``score >= thresholds[i]``, the i-th distinct score from the top.

    Attributes:
        thresholds: (k+1,) +inf, then the distinct scores in descending order.
        target_order, nontarget_order: (n_t,), (n_n,) indices into the target and the
            non-target scores given, in descending score order (stable).
        targets_accepted, nontargets_accepted: (k+1,) trials of each class accepted at
            each point (0 at the first, all at the last).
    """

    def __init__(self, target: np.ndarray, nontarget: np.ndarray) -> None:
        """``target`` (n_t,) and ``nontarget`` (n_n,): checked scores (:func:`as_scores`)."""
        scores = np.concatenate([target, nontarget])
        order, ends = _sort_descending(scores)
        is_target = order < target.size  # in descending order
        self.thresholds = np.concatenate([[np.inf], scores[order][ends]])
        accepted = np.cumsum(is_target)[ends]
        self.targets_accepted = np.concatenate([[0], accepted])
        self.nontargets_accepted = np.concatenate([[0], ends + 1 - accepted])
        self.target_order = order[is_target]
        self.nontarget_order = order[~is_target] - target.size

    def rates(
        self,
        target_weights: np.ndarray | None = None,
        nontarget_weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAR and FRR at every operating point, fractions.

        Args:
            target_weights: (..., n_t) non-negative weight of each target trial in
                descending score order (``w[..., target_order]`` of weights given in the
                order of the target scores); any scale (each row is normalised by its
                total, which must be positive). None: every trial counts once.
            nontarget_weights: (..., n_n) likewise for the non-target trials
                (``nontarget_order``).

        Returns:
            ``(far, frr)``, each (..., k+1): one row per row of weights, so many weightings
            (speaker resamples) walk the one sort together.
        """
        if nontarget_weights is None:
            far = self.nontargets_accepted / self.nontarget_order.size
        else:
            far = _accepted_share(nontarget_weights, self.nontargets_accepted)
        if target_weights is None:
            frr = 1.0 - self.targets_accepted / self.target_order.size
        else:
            frr = 1.0 - _accepted_share(target_weights, self.targets_accepted)
        return far, frr

    def finite_thresholds(self) -> np.ndarray:
        """(k+1,) thresholds, the leading +inf replaced by the next float above the top score."""
        out = self.thresholds.copy()
        out[0] = np.nextafter(self.thresholds[1], np.inf)
        return out


def _accepted_share(weights: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """Share of the total of one class's weights (..., n), in descending score order, that
    each point accepts: the sum of the first ``accepted`` (k+1,) over the sum of all."""
    cum = np.cumsum(weights, axis=-1)  # in the weights' dtype: integer counts stay exact
    share = np.take(cum, np.maximum(accepted - 1, 0), axis=-1) / cum[..., -1:]
    share[..., : np.searchsorted(accepted, 0, side="right")] = 0.0  # points accepting none
    return share


def eer_crossing(far: np.ndarray, frr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolated EER of operating points (..., k+1) that start at FAR 0, FRR 1.

    The crossing is the first point ``i`` with ``FRR - FAR <= 0``; the EER lies on the
    straight line from point ``i - 1`` to point ``i`` where ``FRR - FAR = 0``.

    Returns:
        ``(eer, prev, alpha)``, each (...,): the EER, the index ``i - 1`` of the point before
        the crossing, and the fraction ``alpha`` of the way from it to point ``i``.
    """
    d = frr - far
    prev = np.argmax(d <= 0, axis=-1) - 1  # >= 0: d = 1 at the reject-everything point

    def at(x: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.take_along_axis(x, index[..., None], axis=-1)[..., 0]

    d_prev, d_next = at(d, prev), at(d, prev + 1)
    alpha = d_prev / (d_prev - d_next)
    far_prev, far_next = at(far, prev), at(far, prev + 1)
    return far_prev + alpha * (far_next - far_prev), prev, alpha


def detection_cost(
    p_miss: np.ndarray | float,
    p_fa: np.ndarray | float,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> np.ndarray | float:
    """Normalised detection cost ``(c_miss p_target P_miss + c_fa (1 - p_target) P_fa)``
    divided by ``min(c_miss p_target, c_fa (1 - p_target))`` (the cost of the better fixed
    decision); elementwise over arrays of rates."""
    cost = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return cost / min(c_miss * p_target, c_fa * (1.0 - p_target))
