"""Scoring back-end: cosine scores, trial scoring, AS-norm and score calibration.

Inputs may be numpy arrays or torch tensors (any device); outputs are float64 numpy
arrays. Embeddings are rows: (N, D).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from voiceprint import metrics

__all__ = [
    "ScoreCalibration",
    "asnorm",
    "cosine_scores",
    "length_norm",
    "mean_subtract",
    "score_trials",
    "verification",
]

_EPS = 1e-12


def _to_numpy(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """float64 numpy copy of an array or tensor; checks the number of dimensions."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def length_norm(emb: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm: (N, D) -> (N, D); a zero row stays zero. 1-D works too."""
    x = _to_numpy(emb, "emb")
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, _EPS)


def mean_subtract(emb: Any, mean: Any) -> np.ndarray:
    """``emb - mean``: (N, D) minus a (D,) mean, e.g. of the training embeddings."""
    x = _to_numpy(emb, "emb")
    m = _to_numpy(mean, "mean", ndim=1)
    if x.shape[-1] != m.shape[0]:
        raise ValueError(f"mean has dimension {m.shape[0]}, embeddings {x.shape[-1]}")
    return x - m


def cosine_scores(a: Any, b: Any) -> np.ndarray:
    """All-pairs cosine similarity: a (N, D), b (M, D) -> (N, M) in [-1, 1]."""
    x = _to_numpy(a, "a", ndim=2)
    y = _to_numpy(b, "b", ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    return length_norm(x) @ length_norm(y).T


def verification(emb1: Any, emb2: Any) -> np.ndarray:
    """Cosine similarity of paired rows: emb1 (N, D), emb2 (N, D) -> (N,)."""
    x = _to_numpy(emb1, "emb1", ndim=2)
    y = _to_numpy(emb2, "emb2", ndim=2)
    if x.shape != y.shape:
        raise ValueError(f"emb1 {x.shape} and emb2 {y.shape} must have the same shape")
    return np.einsum("nd,nd->n", length_norm(x), length_norm(y))


def score_trials(embeddings: Mapping[str, Any], trials: Sequence[tuple[str, str]]) -> np.ndarray:
    """Cosine score of each ``(enroll_id, test_id)`` trial -> (len(trials),).

    Both ids are looked up in ``embeddings`` (id -> (D,) vector); an enrollment id may name
    a speaker model the caller built, e.g. the mean of its enrollment embeddings.
    """
    if len(trials) == 0:
        return np.zeros(0)
    missing = sorted({k for pair in trials for k in pair if k not in embeddings})
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise KeyError(f"{len(missing)} trial ids have no embedding: {shown}")
    enroll = np.stack([_to_numpy(embeddings[e], e, ndim=1) for e, _ in trials])
    test = np.stack([_to_numpy(embeddings[t], t, ndim=1) for _, t in trials])
    return verification(enroll, test)


def _top_stats(emb: np.ndarray, cohort_n: np.ndarray, top_n: int) -> tuple[np.ndarray, ...]:
    """Mean and std (ddof 0) of each row's ``top_n`` highest cosine scores to the cohort."""
    scores = length_norm(emb) @ cohort_n.T
    k = cohort_n.shape[0]
    top = np.partition(scores, k - top_n, axis=1)[:, k - top_n :]
    return top.mean(axis=1), np.maximum(top.std(axis=1), _EPS)


def asnorm(
    scores: Any,
    enroll_emb: Any,
    test_emb: Any,
    cohort: Any,
    top_n: int,
    chunk: int = 4096,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm1).

    For each trial, the enrollment side is scored (cosine) against the cohort and the mean
    ``mu_e`` and standard deviation ``sd_e`` of its ``top_n`` highest cohort scores are
    taken; likewise ``mu_t``, ``sd_t`` for the test side. Then
    ``s_norm = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``.

    Args:
        scores: (N,) raw trial scores.
        enroll_emb, test_emb: (N, D) the two sides' embeddings, one row per trial.
        cohort: (K, D) embeddings of speakers outside the test set (e.g. training speaker
            means).
        top_n: cohort scores kept per side, 1 <= top_n <= K.
        chunk: trials processed at once (bounds memory to chunk x K scores).

    Returns:
        (N,) normalised scores.
    """
    s = _to_numpy(scores, "scores", ndim=1)
    e = _to_numpy(enroll_emb, "enroll_emb", ndim=2)
    t = _to_numpy(test_emb, "test_emb", ndim=2)
    c = _to_numpy(cohort, "cohort", ndim=2)
    if e.shape != t.shape or e.shape[0] != s.shape[0]:
        raise ValueError(
            f"scores {s.shape}, enroll_emb {e.shape} and test_emb {t.shape} must agree in N"
        )
    if c.shape[1] != e.shape[1]:
        raise ValueError(f"cohort dimension {c.shape[1]} != embedding dimension {e.shape[1]}")
    if not 1 <= top_n <= c.shape[0]:
        raise ValueError(f"top_n must lie in [1, {c.shape[0]}] (cohort size), got {top_n}")
    cohort_n = length_norm(c)
    out = np.empty_like(s)
    for start in range(0, s.shape[0], chunk):
        sl = slice(start, start + chunk)
        mu_e, sd_e = _top_stats(e[sl], cohort_n, top_n)
        mu_t, sd_t = _top_stats(t[sl], cohort_n, top_n)
        out[sl] = 0.5 * ((s[sl] - mu_e) / sd_e + (s[sl] - mu_t) / sd_t)
    return out


def _scores_1d(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x, name, ndim=1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be non-empty and finite")
    return arr


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-_softplus(-x))


class ScoreCalibration:
    """Linear calibration of scores to log-likelihood ratios: ``llr = scale * s + offset``.

    Fitted by prior-weighted logistic regression (Brümmer's linear calibration): minimise

        p/N_t * sum_t log(1 + exp(-(llr_t + logit p)))
        + (1-p)/N_n * sum_n log(1 + exp(llr_n + logit p))

    over ``scale`` and ``offset``, i.e. the cross-entropy of the posterior at the effective
    prior ``p`` with each class weighted to total mass ``p`` and ``1 - p``; the ``logit p``
    shift makes ``scale * s + offset`` a prior-free LLR (natural log). A small L2 penalty
    ``l2 * scale**2`` on the slope of standardised scores keeps the solution finite when the
    training scores are perfectly separated. Solved by Newton's method (the objective is
    convex in two parameters).
    """

    def __init__(
        self,
        scale: float | None = None,
        offset: float | None = None,
        p_target: float = 0.5,
        l2: float = 1e-6,
    ) -> None:
        self.scale = scale
        self.offset = offset
        self.p_target = p_target
        self.l2 = l2

    @property
    def fitted(self) -> bool:
        return self.scale is not None and self.offset is not None

    def fit(self, target: Any, nontarget: Any, p_target: float = 0.5) -> ScoreCalibration:
        """Fit on (n_t,) target and (n_n,) non-target scores; returns ``self``."""
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
        tar = _scores_1d(target, "target scores")
        non = _scores_1d(nontarget, "non-target scores")
        x_all = np.concatenate([tar, non])
        mean, std = float(x_all.mean()), float(x_all.std())
        std = std if std > 0 else 1.0
        x = (x_all - mean) / std
        y = np.concatenate([np.ones(tar.size), -np.ones(non.size)])
        w = np.concatenate(
            [np.full(tar.size, p_target / tar.size), np.full(non.size, (1 - p_target) / non.size)]
        )
        prior_logit = math.log(p_target / (1 - p_target))
        design = np.stack([x, np.ones_like(x)], axis=1)  # (n, 2)
        reg = np.array([self.l2, 0.0])

        def objective(theta: np.ndarray) -> float:
            z = design @ theta + prior_logit
            return float(np.sum(w * _softplus(-y * z)) + np.sum(reg * theta**2))

        theta = np.zeros(2)
        value = objective(theta)
        for _ in range(100):
            z = design @ theta + prior_logit
            sig = _sigmoid(-y * z)  # d/dz softplus(-y z) = -y * sig
            grad = design.T @ (-y * w * sig) + 2 * reg * theta
            hess_w = w * sig * (1 - sig)
            hess = design.T @ (design * hess_w[:, None]) + np.diag(2 * reg) + 1e-12 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            lr = 1.0
            new_value = objective(theta - step)
            while new_value > value and lr > 1e-8:  # backtracking line search
                lr *= 0.5
                new_value = objective(theta - lr * step)
            if new_value > value:
                break  # no descent left: optimal up to rounding
            theta = theta - lr * step
            converged = value - new_value < 1e-15 or np.max(np.abs(lr * step)) < 1e-10
            value = new_value
            if converged:
                break
        a, b = theta
        self.scale = float(a / std)
        self.offset = float(b - a * mean / std)
        self.p_target = float(p_target)
        return self

    def _check(self) -> tuple[float, float]:
        if not self.fitted:
            raise RuntimeError("ScoreCalibration is not fitted: call fit() or from_dict()")
        return float(self.scale), float(self.offset)  # type: ignore[arg-type]

    def llr(self, scores: Any) -> np.ndarray:
        """Calibrated natural-log likelihood ratios of raw scores, same shape."""
        a, b = self._check()
        return a * _to_numpy(scores, "scores") + b

    def threshold_for_far(self, far: float, nontarget: Any) -> float:
        """LLR threshold whose empirical FAR on raw ``nontarget`` scores is at most ``far``.

        Accept a trial when ``llr(score) >= threshold``; computed by
        :func:`metrics.threshold_at_far` on the calibrated non-target scores.
        """
        a, _ = self._check()
        if a <= 0:
            raise ValueError(f"calibration slope is {a} <= 0: scores do not rank trials")
        return metrics.threshold_at_far(self.llr(_scores_1d(nontarget, "nontarget")), far)

    def to_dict(self) -> dict[str, float]:
        """JSON-ready parameters."""
        a, b = self._check()
        return {"scale": a, "offset": b, "p_target": float(self.p_target), "l2": float(self.l2)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreCalibration:
        """Inverse of :meth:`to_dict`; ``scale`` and ``offset`` are required."""
        missing = [k for k in ("scale", "offset") if k not in data]
        if missing:
            raise ValueError(f"calibration dict lacks {', '.join(missing)}")
        return cls(
            scale=float(data["scale"]),
            offset=float(data["offset"]),
            p_target=float(data.get("p_target", 0.5)),
            l2=float(data.get("l2", 1e-6)),
        )
