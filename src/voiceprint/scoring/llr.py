"""Scores -> log-likelihood ratios: the calibration, and the quality measure of a trial.

:class:`ScoreCalibration` maps a score (and the trial's quality, :func:`trial_quality`,
from the net speech of its two sides) to a natural-log likelihood ratio; it is fitted by
prior-weighted logistic regression (:func:`weighted_logistic`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from voiceprint import metrics
from voiceprint.scoring.arrays import finite_1d, to_numpy

__all__ = [
    "MIN_QUALITY_SECONDS",
    "REFERENCE_SECONDS",
    "ScoreCalibration",
    "trial_quality",
    "weighted_logistic",
]


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-_softplus(-x))


# Quality measure of a trial: q = log(min(enroll, test net speech, REFERENCE) / REFERENCE),
# 0 for trials whose both sides hold REFERENCE_SECONDS of speech or more, negative for
# shorter ones (about -2.3 at 1 s). Durations are clipped below at MIN_QUALITY_SECONDS.
REFERENCE_SECONDS = 10.0
MIN_QUALITY_SECONDS = 0.1


def trial_quality(enroll_seconds: Any, test_seconds: Any) -> np.ndarray:
    """Quality measure of trials from the net speech (s) of both sides -> q, same shape.

    ``q = log(clip(min(enroll, test), 0.1, 10) / 10)``: 0 when both sides hold 10 s of
    speech or more, log of the shorter side's share of 10 s otherwise. Broadcasts.
    """
    shorter = np.minimum(np.asarray(enroll_seconds, float), np.asarray(test_seconds, float))
    shorter = np.clip(shorter, MIN_QUALITY_SECONDS, REFERENCE_SECONDS)
    return np.log(shorter / REFERENCE_SECONDS)


class ScoreCalibration:
    """Calibration of scores to log-likelihood ratios, optionally quality-aware.

    Plain: ``llr = scale * s + offset``. Quality-aware (``quality`` = (c, d), the
    quality-measure calibration of NIST systems): ``llr = scale * s + offset + c q + d q s``
    with ``q`` the trial's quality (:func:`trial_quality`, 0 for long trials, negative for
    short ones), so that a short trial's score counts for less (``d`` lowers the slope)
    and its LLR sits where such trials' scores really lie (``c`` shifts it).

    Fitted by prior-weighted logistic regression (Brümmer's linear calibration): minimise

        p/N_t * sum_t log(1 + exp(-(llr_t + logit p)))
        + (1-p)/N_n * sum_n log(1 + exp(llr_n + logit p))

    over the parameters, i.e. the cross-entropy of the posterior at the effective prior
    ``p`` with each class weighted to total mass ``p`` and ``1 - p``; the ``logit p``
    shift makes the result a prior-free LLR (natural log). A small L2 penalty ``l2`` on
    the slopes of standardised scores keeps the solution finite when the training scores
    are perfectly separated. Solved by Newton's method (the objective is convex).
    """

    def __init__(
        self,
        scale: float | None = None,
        offset: float | None = None,
        p_target: float = 0.5,
        l2: float = 1e-6,
        quality: tuple[float, float] | None = None,
        quality_floor: float | None = None,
    ) -> None:
        self.scale = scale
        self.offset = offset
        self.p_target = p_target
        self.l2 = l2
        self.quality = quality
        # the lowest quality of the fitting trials: shorter trials are scored as if they
        # had this much speech (the linear terms are not extrapolated beyond the data)
        self.quality_floor = quality_floor

    @property
    def fitted(self) -> bool:
        return self.scale is not None and self.offset is not None

    def fit(
        self,
        target: Any,
        nontarget: Any,
        p_target: float = 0.5,
        *,
        target_quality: Any = None,
        nontarget_quality: Any = None,
        target_weight: Any = None,
        nontarget_weight: Any = None,
    ) -> ScoreCalibration:
        """Fit on (n_t,) target and (n_n,) non-target scores; returns ``self``.

        With ``target_quality`` and ``nontarget_quality`` ((n_t,), (n_n,) values of
        :func:`trial_quality`) the quality terms are fitted too. ``target_weight`` and
        ``nontarget_weight`` ((n_t,), (n_n,), non-negative) weigh the trials within their
        class (each class keeps its total mass ``p`` / ``1 - p``); default equal.
        """
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
        tar = finite_1d(target, "target scores")
        non = finite_1d(nontarget, "non-target scores")
        with_quality = target_quality is not None or nontarget_quality is not None
        x_all = np.concatenate([tar, non])
        mean, std = float(x_all.mean()), float(x_all.std())
        std = std if std > 0 else 1.0
        x = (x_all - mean) / std
        columns = [x, np.ones_like(x)]
        if with_quality:
            q_tar = to_numpy(target_quality, "target quality", ndim=1)
            q_non = to_numpy(nontarget_quality, "non-target quality", ndim=1)
            if q_tar.shape != tar.shape or q_non.shape != non.shape:
                raise ValueError("quality must give one value per score")
            q = np.concatenate([q_tar, q_non])
            columns += [q, q * x]
        design = np.stack(columns, axis=1)  # (n, k)
        y = np.concatenate([np.ones(tar.size), -np.ones(non.size)])
        w = np.concatenate(
            [
                p_target * _class_weights(target_weight, tar.size, "target weight"),
                (1 - p_target) * _class_weights(nontarget_weight, non.size, "non-target weight"),
            ]
        )
        reg = np.array([self.l2, 0.0, self.l2, self.l2][: design.shape[1]])
        theta = weighted_logistic(design, y, w, math.log(p_target / (1 - p_target)), reg)
        a, b = theta[:2]
        self.scale = float(a / std)
        self.offset = float(b - a * mean / std)
        if with_quality:
            c, d = theta[2:]
            self.quality = (float(c - d * mean / std), float(d / std))
            self.quality_floor = float(q.min())
        else:
            self.quality = None
            self.quality_floor = None
        self.p_target = float(p_target)
        return self

    def _check(self) -> tuple[float, float]:
        if not self.fitted:
            raise RuntimeError("ScoreCalibration is not fitted: call fit() or from_dict()")
        return float(self.scale), float(self.offset)  # type: ignore[arg-type]

    def llr(self, scores: Any, quality: Any = None) -> np.ndarray:
        """Calibrated natural-log likelihood ratios of raw scores, same shape.

        ``quality``: the trials' :func:`trial_quality` (broadcast against ``scores``);
        None counts every trial as long (q = 0). Ignored by a plain calibration. Below
        the fitting trials' lowest quality (``quality_floor``), q is held at it.
        """
        a, b = self._check()
        s = to_numpy(scores, "scores")
        out = a * s + b
        if self.quality is not None and quality is not None:
            c, d = self.quality
            q = np.asarray(quality, dtype=np.float64)
            if self.quality_floor is not None:
                q = np.maximum(q, self.quality_floor)
            out = out + c * q + d * q * s
        return out

    def threshold_for_far(self, far: float, nontarget: Any) -> float:
        """LLR threshold whose empirical FAR on raw ``nontarget`` scores is at most ``far``.

        Accept a trial when ``llr(score) >= threshold``; computed by
        :func:`metrics.threshold_at_far` on the calibrated non-target scores.
        """
        a, _ = self._check()
        if a <= 0:
            raise ValueError(f"calibration slope is {a} <= 0: scores do not rank trials")
        return metrics.threshold_at_far(self.llr(finite_1d(nontarget, "nontarget")), far)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        a, b = self._check()
        out: dict[str, Any] = {
            "scale": a,
            "offset": b,
            "p_target": float(self.p_target),
            "l2": float(self.l2),
        }
        if self.quality is not None:
            out["quality"] = {
                "measure": "log_min_speech",
                "reference_seconds": REFERENCE_SECONDS,
                "offset": self.quality[0],
                "slope": self.quality[1],
            }
            if self.quality_floor is not None:
                out["quality"]["floor"] = self.quality_floor
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreCalibration:
        """Inverse of :meth:`to_dict`; ``scale`` and ``offset`` are required."""
        missing = [k for k in ("scale", "offset") if k not in data]
        if missing:
            raise ValueError(f"calibration dict lacks {', '.join(missing)}")
        quality = data.get("quality")
        if quality is not None:
            if (
                quality.get("measure") != "log_min_speech"
                or float(quality.get("reference_seconds", -1)) != REFERENCE_SECONDS
            ):
                raise ValueError(f"unknown calibration quality measure {quality!r}")
            floor = quality.get("floor")
            quality = (float(quality["offset"]), float(quality["slope"]))
        else:
            floor = None
        return cls(
            scale=float(data["scale"]),
            offset=float(data["offset"]),
            p_target=float(data.get("p_target", 0.5)),
            l2=float(data.get("l2", 1e-6)),
            quality=quality,
            quality_floor=None if floor is None else float(floor),
        )


def _class_weights(weight: Any, n: int, name: str) -> np.ndarray:
    """(n,) weights summing to 1: ``weight`` normalised, or equal ones when None."""
    if weight is None:
        return np.full(n, 1.0 / n)
    w = to_numpy(weight, name, ndim=1).astype(np.float64)
    if w.shape != (n,) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"{name} must give one finite non-negative value per score")
    return w / w.sum()


def weighted_logistic(
    design: np.ndarray, y: np.ndarray, w: np.ndarray, prior_logit: float, reg: np.ndarray
) -> np.ndarray:
    """Newton's method for min sum w softplus(-y (design @ theta + prior_logit)) + reg theta^2.

    design (n, k), y (n,) in {-1, +1}, w (n,) weights, reg (k,) L2 weights -> theta (k,).
    """
    k = design.shape[1]

    def objective(theta: np.ndarray) -> float:
        z = design @ theta + prior_logit
        return float(np.sum(w * _softplus(-y * z)) + np.sum(reg * theta**2))

    theta = np.zeros(k)
    value = objective(theta)
    for _ in range(100):
        z = design @ theta + prior_logit
        sig = _sigmoid(-y * z)  # d/dz softplus(-y z) = -y * sig
        grad = design.T @ (-y * w * sig) + 2 * reg * theta
        hess_w = w * sig * (1 - sig)
        hess = design.T @ (design * hess_w[:, None]) + np.diag(2 * reg) + 1e-12 * np.eye(k)
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
    return theta
