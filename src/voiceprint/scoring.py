"""THE scorer: embeddings (+ the model's back-end) -> scores -> LLRs -> decisions.

Every path that turns embeddings into a verdict calls this module: evaluation, the
embedder, the speaker store, the CLI and the service. It holds the only cosine, the only
AS-norm, the score -> LLR calibration and the decisions (thresholds) on the LLR.

A model carries its :class:`Backend` (training-embedding mean, LDA projection, AS-norm
cohort, calibration, default decision, provenance); :class:`Scorer` applies it:

    scorer = Scorer(backend)
    units = scorer.units(embeddings)                 # (N, D) centred, projected, unit rows
    model = scorer.speaker_model(enrollment)         # (D,) from (K, D) enrollment clips
    s = scorer.score(model[None], units)             # (1, N) scores (AS-norm when set)
    llr = scorer.llr(s)                              # calibrated log-likelihood ratios
    accept = llr >= scorer.decision.threshold

Inputs may be numpy arrays or torch tensors (any device); outputs are float64 numpy
arrays. Embeddings are rows: (N, D).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from voiceprint import metrics
from voiceprint.metrics import bayes_threshold

__all__ = [
    "Backend",
    "Decision",
    "ScoreCalibration",
    "Scorer",
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
    scorer = Scorer()
    needed = {k for pair in trials for k in pair if k in embeddings}
    return scorer.score_trials({k: scorer.units(embeddings[k]) for k in needed}, trials)


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
    ) -> None:
        self.scale = scale
        self.offset = offset
        self.p_target = p_target
        self.l2 = l2
        self.quality = quality

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
    ) -> ScoreCalibration:
        """Fit on (n_t,) target and (n_n,) non-target scores; returns ``self``.

        With ``target_quality`` and ``nontarget_quality`` ((n_t,), (n_n,) values of
        :func:`trial_quality`) the quality terms are fitted too.
        """
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
        tar = _scores_1d(target, "target scores")
        non = _scores_1d(nontarget, "non-target scores")
        with_quality = target_quality is not None or nontarget_quality is not None
        x_all = np.concatenate([tar, non])
        mean, std = float(x_all.mean()), float(x_all.std())
        std = std if std > 0 else 1.0
        x = (x_all - mean) / std
        columns = [x, np.ones_like(x)]
        if with_quality:
            q_tar = _to_numpy(target_quality, "target quality", ndim=1)
            q_non = _to_numpy(nontarget_quality, "non-target quality", ndim=1)
            if q_tar.shape != tar.shape or q_non.shape != non.shape:
                raise ValueError("quality must give one value per score")
            q = np.concatenate([q_tar, q_non])
            columns += [q, q * x]
        design = np.stack(columns, axis=1)  # (n, k)
        y = np.concatenate([np.ones(tar.size), -np.ones(non.size)])
        w = np.concatenate(
            [np.full(tar.size, p_target / tar.size), np.full(non.size, (1 - p_target) / non.size)]
        )
        reg = np.array([self.l2, 0.0, self.l2, self.l2][: design.shape[1]])
        theta = _weighted_logistic(design, y, w, math.log(p_target / (1 - p_target)), reg)
        a, b = theta[:2]
        self.scale = float(a / std)
        self.offset = float(b - a * mean / std)
        if with_quality:
            c, d = theta[2:]
            self.quality = (float(c - d * mean / std), float(d / std))
        else:
            self.quality = None
        self.p_target = float(p_target)
        return self

    def _check(self) -> tuple[float, float]:
        if not self.fitted:
            raise RuntimeError("ScoreCalibration is not fitted: call fit() or from_dict()")
        return float(self.scale), float(self.offset)  # type: ignore[arg-type]

    def llr(self, scores: Any, quality: Any = None) -> np.ndarray:
        """Calibrated natural-log likelihood ratios of raw scores, same shape.

        ``quality``: the trials' :func:`trial_quality` (broadcast against ``scores``);
        None counts every trial as long (q = 0). Ignored by a plain calibration.
        """
        a, b = self._check()
        s = _to_numpy(scores, "scores")
        out = a * s + b
        if self.quality is not None and quality is not None:
            c, d = self.quality
            q = np.asarray(quality, dtype=np.float64)
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
        return metrics.threshold_at_far(self.llr(_scores_1d(nontarget, "nontarget")), far)

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
            quality = (float(quality["offset"]), float(quality["slope"]))
        return cls(
            scale=float(data["scale"]),
            offset=float(data["offset"]),
            p_target=float(data.get("p_target", 0.5)),
            l2=float(data.get("l2", 1e-6)),
            quality=quality,
        )


def _weighted_logistic(
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


# ------------------------------------------------------------------------ decisions

# False-accept rates at which a calibration records thresholds (Decision.far_points).
FAR_GRID = (
    1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5
)  # fmt: skip


# A verdict's words (Decision.judge): the three answers a decision gives.
ACCEPT, REJECT, NOT_ENOUGH_SPEECH = "accept", "reject", "not enough speech"


@dataclass
class Decision:
    """Accept a trial when its LLR (:meth:`Scorer.llr`) reaches ``threshold``.

    The one place thresholds live. ``rule`` says where the threshold came from:
    "bayes" (``-logit(p_target)`` on calibrated LLRs), "far" (false-accept rate ``far``
    measured on the calibration's non-target trials), "eer" (the equal-error point) or
    "manual". For a model without calibration the LLR is the score itself.
    ``far_points`` are (far, threshold) pairs ascending in far, measured on the
    calibration trials, from which :meth:`at_far` picks a threshold for any rate in
    their range. Stored as ``far_thresholds``: the rate as text ("0.01") -> threshold.
    ``min_speech_seconds``: below this net speech on either side (enrollment or test)
    the decision cannot keep its false-accept promise, and :meth:`judge` answers
    "not enough speech" instead of a verdict (0: no floor).
    """

    threshold: float
    rule: str = "eer"
    far: float | None = None
    far_points: list[tuple[float, float]] | None = None
    p_target: float | None = None
    min_speech_seconds: float = 0.0

    def accepts(self, llr: float) -> bool:
        return bool(llr >= self.threshold)

    def enough_speech(self, *seconds: float | None) -> bool:
        """Whether every given side's net speech (s; None = unknown, counted as enough)
        reaches ``min_speech_seconds``."""
        return all(s is None or s >= self.min_speech_seconds for s in seconds)

    def judge(self, llr: float, *speech_seconds: float | None) -> str:
        """The verdict on one trial: "accept", "reject", or "not enough speech" when a
        side's net speech (enrollment, test; seconds) lies below ``min_speech_seconds``."""
        if not self.enough_speech(*speech_seconds):
            return NOT_ENOUGH_SPEECH
        return ACCEPT if self.accepts(llr) else REJECT

    def accepts_all(self, llr: Any, *speech_seconds: Any) -> np.ndarray:
        """Vectorised :meth:`judge` == "accept": (n,) LLRs and (n,) seconds per side ->
        (n,) bool; trials with too little speech are not accepted."""
        ok = np.asarray(llr, dtype=np.float64) >= self.threshold
        for seconds in speech_seconds:
            if seconds is not None:
                ok &= np.asarray(seconds, dtype=np.float64) >= self.min_speech_seconds
        return ok

    def rates(self, llr: Any, labels: Any, *speech_seconds: Any) -> dict[str, float]:
        """What this decision does on trials with known labels: false-accept and
        false-reject rates (fractions), trials answered "not enough speech" counted as
        rejected, and ``refused``, their share. llr, labels, seconds: (n,) each."""
        lab = np.asarray(labels, dtype=bool)
        if lab.all() or not lab.any():
            raise ValueError("rates need target and non-target trials")
        accepted = self.accepts_all(llr, *speech_seconds)
        answered = self.accepts_all(np.full(lab.size, np.inf), *speech_seconds)
        return {
            "threshold": float(self.threshold),
            "far": float(accepted[~lab].mean()),
            "frr": float(1.0 - accepted[lab].mean()),
            "refused": float(1.0 - answered.mean()),
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "rule": self.rule, "far": self.far}
        if self.p_target is not None:
            out["p_target"] = self.p_target
        if self.far_points:
            out["far_thresholds"] = {f"{f:g}": float(t) for f, t in self.far_points}
        if self.min_speech_seconds:
            out["min_speech_seconds"] = float(self.min_speech_seconds)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Decision:
        table = values.get("far_thresholds") or {}
        points = sorted((float(f), float(t)) for f, t in table.items())
        threshold = float(values["threshold"])
        if not math.isfinite(threshold):
            raise ValueError(f"decision threshold must be finite, got {threshold}")
        p_target = values.get("p_target")
        return cls(
            threshold,
            str(values.get("rule", "eer")),
            None if values.get("far") is None else float(values["far"]),
            points or None,
            None if p_target is None else float(p_target),
            float(values.get("min_speech_seconds", 0.0)),
        )

    @classmethod
    def from_scores(
        cls,
        threshold: float,
        nontarget: Any,
        grid: Sequence[float] = FAR_GRID,
        rule: str = "eer",
        p_target: float | None = None,
        groups: Any = None,
        min_speech_seconds: float = 0.0,
    ) -> Decision:
        """``threshold`` plus far_points measured on (n,) non-target LLRs.

        Only rates that allow at least one false accept among the ``n`` non-target trials
        (``far * n >= 1``) are kept: smaller ones cannot be measured on this many trials.
        With ``groups`` ((n,) labels, e.g. each trial's corpus) the threshold at each rate
        is the strictest of the groups' (each measured where it holds ``far * n_g >= 1``
        trials), so that the rate holds in every group, not only on their mixture.
        """
        nontarget = _scores_1d(nontarget, "nontarget")
        labels = np.zeros(nontarget.size, dtype=np.int64) if groups is None else np.asarray(groups)
        if labels.shape != nontarget.shape:
            raise ValueError("groups must give one label per non-target score")
        parts = [nontarget[labels == g] for g in np.unique(labels)]
        points = []
        for far in grid:
            measurable = [p for p in parts if far * p.size >= 1.0]
            if far * nontarget.size >= 1.0 and measurable:
                points.append(
                    (float(far), max(metrics.threshold_at_far(p, far) for p in measurable))
                )
        return cls(float(threshold), rule, None, points or None, p_target, min_speech_seconds)

    def at_far(self, far: float) -> Decision:
        """The decision at false-accept rate ``far``, interpolated in log(far).

        Raises ValueError when no far_points were recorded or ``far`` is outside them.
        """
        if not self.far_points:
            raise ValueError(
                "this model carries no false-accept calibration (calibrate it with "
                "'voiceprint calibrate'); use --threshold or its stored decision"
            )
        fars = np.array([f for f, _ in self.far_points])
        thresholds = np.array([t for _, t in self.far_points])
        if not fars[0] <= far <= fars[-1]:
            raise ValueError(
                f"false-accept rate {far:g} is outside the calibrated range "
                f"{fars[0]:g}..{fars[-1]:g} measured on the calibration trials"
            )
        threshold = float(np.interp(np.log(far), np.log(fars), thresholds))
        return replace(self, threshold=threshold, rule="far", far=float(far))

    def at_prior(self, p_target: float) -> Decision:
        """The Bayes decision at prior ``p_target`` (meaningful on calibrated LLRs)."""
        return replace(
            self, threshold=bayes_threshold(p_target), rule="bayes", far=None, p_target=p_target
        )

    def for_gallery(self, n_enrolled: int) -> Decision:
        """Open-set identification among ``n_enrolled`` speakers: the best match is named
        only when its LLR reaches the returned threshold, else the voice is "unknown".

        * "bayes": ``threshold + log(n)``. The target prior is spread evenly over the
          ``n`` enrolled speakers, so each one's prior odds shrink ``n``-fold.
        * "far": the per-comparison rate ``1 - (1 - far)**(1/n)``, so that a voice that is
          not enrolled passes any of the ``n`` with probability ``far`` (the
          false-positive identification rate); ValueError when that rate lies below the
          calibrated range.
        * "eer" and "manual" thresholds (uncalibrated scores) are used as they are.
        """
        if n_enrolled < 1:
            raise ValueError(f"a gallery needs at least one enrolled speaker, got {n_enrolled}")
        if self.rule == "bayes":
            return replace(self, threshold=self.threshold + math.log(n_enrolled))
        if self.rule == "far" and self.far is not None:
            per_comparison = -math.expm1(math.log1p(-self.far) / n_enrolled)
            try:
                chosen = self.at_far(per_comparison)
            except ValueError as err:
                raise ValueError(
                    f"identification among {n_enrolled} speakers at a false-positive rate "
                    f"of {self.far:g} needs a false-accept rate of {per_comparison:.2g} per "
                    f"comparison: {err}"
                ) from err
            return replace(self, threshold=chosen.threshold)
        return self


# ------------------------------------------------------------------------ back-end


def encode_array(x: np.ndarray) -> dict[str, Any]:
    """A float32 array as JSON-ready text: {"shape": [...], "float32": base64}."""
    arr = np.ascontiguousarray(x, dtype="<f4")
    return {"shape": list(arr.shape), "float32": base64.b64encode(arr.tobytes()).decode()}


def decode_array(value: Mapping[str, Any], name: str) -> np.ndarray:
    """Inverse of :func:`encode_array`; ValueError on a wrong size or non-finite values."""
    try:
        shape = tuple(int(n) for n in value["shape"])
        raw = base64.b64decode(value["float32"], validate=True)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"back-end {name} is not an encoded array: {err}") from err
    if len(raw) != 4 * math.prod(shape):
        raise ValueError(f"back-end {name}: {len(raw)} bytes do not hold shape {shape}")
    arr = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"back-end {name} holds non-finite values")
    return arr


@dataclass
class Backend:
    """What a model carries for scoring, saved inside its checkpoint and ONNX file.

    ``mean`` (D,): training-embedding mean, subtracted before cosine. ``projection``
    (D, D): an LDA of the training speakers applied after the mean (``x @ projection``;
    columns past the kept dimensions are zero, so units keep D dims). ``cohort`` (K, D):
    unit-norm speaker means (after mean and projection) for AS-norm over the
    ``asnorm_top`` best of them. ``calibration``: score -> LLR. ``decision``: the default
    decision on the LLR, with thresholds at false-accept rates. ``provenance``: where
    calibration and back-end came from (corpus, speakers, trials, their metrics).
    """

    mean: np.ndarray | None = None
    cohort: np.ndarray | None = None
    asnorm_top: int = 0
    projection: np.ndarray | None = None
    calibration: ScoreCalibration | None = None
    decision: Decision | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cohort is not None:
            if self.cohort.ndim != 2:
                raise ValueError(f"cohort must be (K, D), got {self.cohort.shape}")
            if not 0 <= self.asnorm_top <= self.cohort.shape[0]:
                raise ValueError(
                    f"asnorm_top {self.asnorm_top} must lie in [0, {self.cohort.shape[0]}]"
                )
            if self.mean is not None and self.mean.shape[0] != self.cohort.shape[1]:
                raise ValueError("back-end mean and cohort dimensions differ")
        if self.projection is not None:
            p = self.projection
            if p.ndim != 2 or p.shape[0] != p.shape[1]:
                raise ValueError(f"projection must be (D, D), got {p.shape}")
            if self.mean is not None and self.mean.shape[0] != p.shape[0]:
                raise ValueError("back-end mean and projection dimensions differ")
            if self.cohort is not None and self.cohort.shape[1] != p.shape[1]:
                raise ValueError("back-end projection and cohort dimensions differ")

    @property
    def asnorm(self) -> bool:
        return self.cohort is not None and self.asnorm_top > 0

    @property
    def dim(self) -> int | None:
        """The embedding dimension the back-end was fitted for (None: any)."""
        for part in (self.mean, self.projection, self.cohort):
            if part is not None:
                return int(part.shape[-1])
        return None

    def identity(self) -> bytes:
        """Bytes that change whenever the scores of stored embeddings would (mean,
        projection, cohort)."""
        parts = [b"mean", b"" if self.mean is None else self.mean.astype("<f4").tobytes()]
        if self.projection is not None:
            parts += [b"projection", self.projection.astype("<f4").tobytes()]
        if self.asnorm:
            parts += [b"cohort", self.cohort.astype("<f4").tobytes(), b"%d" % self.asnorm_top]
        return b"|".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": None if self.mean is None else encode_array(self.mean),
            "cohort": None if self.cohort is None else encode_array(self.cohort),
            "asnorm_top": int(self.asnorm_top),
            "projection": None if self.projection is None else encode_array(self.projection),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "decision": None if self.decision is None else self.decision.to_dict(),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Backend:
        """Inverse of :meth:`to_dict` (None -> the plain-cosine back-end); validates it."""
        if not values:
            return cls()
        if not isinstance(values, Mapping):
            raise ValueError(f"back-end must be a mapping, got {type(values).__name__}")
        mean = values.get("mean")
        cohort = values.get("cohort")
        calibration = values.get("calibration")
        decision = values.get("decision")
        projection = values.get("projection")
        return cls(
            mean=None if mean is None else decode_array(mean, "mean"),
            cohort=None if cohort is None else decode_array(cohort, "cohort"),
            asnorm_top=int(values.get("asnorm_top", 0)),
            projection=None if projection is None else decode_array(projection, "projection"),
            calibration=None if calibration is None else ScoreCalibration.from_dict(calibration),
            decision=None if decision is None else Decision.from_dict(decision),
            provenance=dict(values.get("provenance") or {}),
        )


@dataclass(frozen=True)
class Match:
    """One scored comparison: a speaker (or file) name, its score and its LLR."""

    name: str
    score: float
    llr: float


class Scorer:
    """Applies a model's :class:`Backend`: the only code that turns embeddings into scores.

    Scores are cosine similarities of mean-subtracted (and, with a projection, LDA-projected)
    embeddings, AS-norm-normalised when
    the back-end has a cohort; :meth:`llr` calibrates them. Without a back-end this is
    plain cosine and ``llr(s) == s``.
    """

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend = backend or Backend()

    @property
    def decision(self) -> Decision | None:
        return self.backend.decision

    @property
    def calibrated(self) -> bool:
        return self.backend.calibration is not None

    def units(self, emb: Any) -> np.ndarray:
        """Embeddings (N, D) or (D,) -> mean-subtracted, projected, unit-norm rows of the
        same shape."""
        x = _to_numpy(emb, "embeddings")
        if self.backend.mean is not None:
            x = mean_subtract(x, self.backend.mean)
        if self.backend.projection is not None:
            p = self.backend.projection
            if x.shape[-1] != p.shape[0]:
                raise ValueError(f"embeddings have {x.shape[-1]} dims, the projection {p.shape[0]}")
            x = x @ p.astype(np.float64)
        return length_norm(x)

    def speaker_model(self, emb: Any) -> np.ndarray:
        """Enrollment embeddings (K, D) -> the speaker's unit model (D,): mean of units."""
        units = self.units(np.atleast_2d(_to_numpy(emb, "enrollment")))
        return length_norm(units.mean(0))

    def norm_stats(self, units: Any) -> np.ndarray | None:
        """AS-norm statistics of unit rows (N, D) -> (N, 2) [mean, std] of the top cohort
        cosines; None without a cohort."""
        if not self.backend.asnorm:
            return None
        x = _to_numpy(units, "units", ndim=2)
        cohort = self.backend.cohort.astype(np.float64)  # type: ignore[union-attr]
        if x.shape[1] != cohort.shape[1]:
            raise ValueError(f"embeddings have {x.shape[1]} dims, the cohort {cohort.shape[1]}")
        out = np.empty((x.shape[0], 2))
        for start in range(0, x.shape[0], 4096):
            mu, sd = _top_stats(x[start : start + 4096], cohort, self.backend.asnorm_top)
            out[start : start + 4096, 0], out[start : start + 4096, 1] = mu, sd
        return out

    def _normalise(
        self, raw: np.ndarray, enroll_stats: np.ndarray | None, probe_stats: np.ndarray | None
    ) -> np.ndarray:
        if enroll_stats is None or probe_stats is None:
            return raw
        return 0.5 * (
            (raw - enroll_stats[..., 0]) / enroll_stats[..., 1]
            + (raw - probe_stats[..., 0]) / probe_stats[..., 1]
        )

    def score(
        self,
        enroll_units: Any,
        probe_units: Any,
        enroll_stats: np.ndarray | None = None,
        probe_stats: np.ndarray | None = None,
    ) -> np.ndarray:
        """All pairs of unit rows: enroll (N, D) x probe (M, D) -> scores (N, M).

        Rows must come from :meth:`units` or :meth:`speaker_model`; AS-norm statistics
        are computed when not given (pass cached ones to save the cohort products).
        """
        e = _to_numpy(enroll_units, "enroll_units", ndim=2)
        p = _to_numpy(probe_units, "probe_units", ndim=2)
        if e.shape[1] != p.shape[1]:
            raise ValueError(f"embedding dimensions differ: {e.shape[1]} vs {p.shape[1]}")
        raw = e @ p.T
        if not self.backend.asnorm:
            return raw
        es = self.norm_stats(e) if enroll_stats is None else enroll_stats
        ps = self.norm_stats(p) if probe_stats is None else probe_stats
        return self._normalise(raw, es[:, None, :], ps[None, :, :])  # type: ignore[index]

    def score_trials(
        self,
        units_by_id: Mapping[str, Any],
        trials: Sequence[tuple[str, str]],
        chunk: int = 250_000,
    ) -> np.ndarray:
        """Score of each ``(enroll_id, test_id)`` trial -> (len(trials),).

        ``units_by_id`` maps an id to its unit row (D,) (:meth:`units`, or a speaker model
        from :meth:`speaker_model`). Each id's AS-norm statistics are computed once, and
        trials are scored in chunks, so memory stays bounded for millions of trials.
        """
        if len(trials) == 0:
            return np.zeros(0)
        missing = sorted({k for pair in trials for k in pair if k not in units_by_id})
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise KeyError(f"{len(missing)} trial ids have no embedding: {shown}")
        ids = sorted({k for pair in trials for k in pair})
        row = {k: i for i, k in enumerate(ids)}
        matrix = np.stack([_to_numpy(units_by_id[k], k, ndim=1) for k in ids])
        stats = self.norm_stats(matrix)
        a = np.fromiter((row[e] for e, _ in trials), dtype=np.int64, count=len(trials))
        b = np.fromiter((row[t] for _, t in trials), dtype=np.int64, count=len(trials))
        out = np.empty(len(trials))
        for start in range(0, len(trials), chunk):
            ia, ib = a[start : start + chunk], b[start : start + chunk]
            raw = np.einsum("nd,nd->n", matrix[ia], matrix[ib])
            out[start : start + chunk] = (
                raw if stats is None else self._normalise(raw, stats[ia], stats[ib])
            )
        return out

    def llr(self, scores: Any, enroll_seconds: Any = None, test_seconds: Any = None) -> np.ndarray:
        """Calibrated natural-log likelihood ratios of scores (same shape); the scores
        themselves when the back-end has no calibration.

        ``enroll_seconds``, ``test_seconds``: net speech of each trial's two sides
        (broadcast against ``scores``; None = long), used by a quality-aware calibration.
        """
        if self.backend.calibration is None:
            return _to_numpy(scores, "scores")
        quality = None
        if enroll_seconds is not None or test_seconds is not None:
            quality = trial_quality(
                REFERENCE_SECONDS if enroll_seconds is None else enroll_seconds,
                REFERENCE_SECONDS if test_seconds is None else test_seconds,
            )
        return self.backend.calibration.llr(scores, quality)

    # Search rows: score() as one inner product, for an inner-product index (faiss).
    # AS-norm's 0.5 ((raw - mu_e) / sd_e + (raw - mu_p) / sd_p) is affine in raw with
    # per-side terms, so with enroll rows [u_e / (2 sd_e), u_e, -mu_e / (2 sd_e)] and probe
    # rows [u_p, u_p / (2 sd_p), 1] the score is their inner product plus -mu_p / (2 sd_p).

    def search_width(self, dim: int) -> int:
        """Width of the search rows of ``dim``-dim units: ``dim``, or ``2 dim + 1``."""
        return 2 * dim + 1 if self.backend.asnorm else dim

    def search_rows(self, units: Any, stats: np.ndarray | None = None) -> np.ndarray:
        """Enrollment unit rows (N, D) -> float32 rows whose inner product with
        :meth:`search_probe`'s rows, plus its offset, is :meth:`score`."""
        u = _to_numpy(units, "units", ndim=2)
        if not self.backend.asnorm:
            return u.astype(np.float32)
        stats = self.norm_stats(u) if stats is None else stats
        half = 0.5 / stats[:, 1:2]
        return np.hstack([u * half, u, -stats[:, 0:1] * half]).astype(np.float32)

    def search_probe(
        self, units: Any, stats: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probe unit rows (M, D) -> (float32 search rows, (M,) offsets to add)."""
        u = _to_numpy(units, "units", ndim=2)
        if not self.backend.asnorm:
            return u.astype(np.float32), np.zeros(len(u))
        stats = self.norm_stats(u) if stats is None else stats
        half = 0.5 / stats[:, 1:2]
        rows = np.hstack([u, u * half, np.ones((len(u), 1))]).astype(np.float32)
        return rows, -(stats[:, 0:1] * half)[:, 0]

    def search_units(self, rows: Any) -> np.ndarray:
        """The unit rows (N, D) inside enrollment search rows (inverse of search_rows)."""
        r = _to_numpy(rows, "rows", ndim=2)
        if not self.backend.asnorm:
            return r
        dim = (r.shape[1] - 1) // 2
        return r[:, dim : 2 * dim]

    def compare(self, first: Any, second: Any) -> float:
        """Score of two recordings' embeddings (D,) each, the first as a one-clip model."""
        model = self.speaker_model(np.atleast_2d(first))
        return float(self.score(model[None], self.units(np.atleast_2d(second)))[0, 0])

    def match(
        self,
        name: str,
        score: float,
        enroll_seconds: float | None = None,
        test_seconds: float | None = None,
    ) -> Match:
        llr = self.llr(np.array([score]), enroll_seconds, test_seconds)
        return Match(name, float(score), float(llr[0]))
