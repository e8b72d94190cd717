"""The figures of one scored trial list: ROC/DET points, EER, minDCF, the FAR threshold,
actual DCF of calibrated LLRs, the same pooled over weighted trial sets, and the speaker
pairs behind the false accepts at a threshold.

Conventions: see :mod:`voiceprint.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voiceprint.metrics.operating_points import (
    ArrayLike,
    OperatingPoints,
    as_labels,
    as_scores,
    detection_cost,
    eer_crossing,
    split_by_label,
)

# ----------------------------------------------------------------------------- curves


def roc(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points of a trial list.

    Args:
        scores: (n,) trial scores, higher = more likely the same speaker.
        labels: (n,) 1 for target (same-speaker) trials, 0 for non-target trials.

    Returns:
        ``(fpr, tpr, thresholds)``, each (k,), thresholds descending starting at +inf;
        point ``i`` accepts trials with ``score >= thresholds[i]``. Identical to
        ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.
    """
    points = OperatingPoints(*split_by_label(scores, labels))
    far, frr = points.rates()
    return far, 1.0 - frr, points.thresholds


def det_curve(target: ArrayLike, nontarget: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET points: ``(far, frr, thresholds)``, each (k,), thresholds descending from +inf.

    FAR rises from 0 to 1 and FRR falls from 1 to 0 along the arrays.
    """
    points = OperatingPoints(
        as_scores(target, "target scores"), as_scores(nontarget, "non-target scores")
    )
    far, frr = points.rates()
    return far, frr, points.thresholds


def auc(fpr: ArrayLike, tpr: ArrayLike) -> float:
    """Area under a ROC curve by the trapezoidal rule (points ordered by rising FPR)."""
    x = as_scores(fpr, "fpr")
    y = as_scores(tpr, "tpr")
    if x.shape != y.shape:
        raise ValueError(f"fpr and tpr differ in shape: {x.shape} vs {y.shape}")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


# ----------------------------------------------------------------------------- EER / DCF


def eer(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Walking the operating points from the strictest threshold (+inf: FAR 0, FRR 1) down,
    ``FRR - FAR`` falls from 1 to -1. Let ``i`` be the first point where it is ``<= 0``.
    The EER is found by linear interpolation between points ``i - 1`` and ``i``: with
    ``a = d[i-1] / (d[i-1] - d[i])``, ``EER = FAR[i-1] + a * (FAR[i] - FAR[i-1])``, which
    equals the interpolated FRR there. The threshold is interpolated the same way,
    ``t[i-1] + a * (t[i] - t[i-1])`` (the reject-everything threshold taken as the next
    float above the top score). Perfectly separated scores give EER 0 at the lowest target
    score.

    Args:
        target_scores: (n_t,) scores of same-speaker trials.
        nontarget_scores: (n_n,) scores of different-speaker trials.

    Returns:
        ``(eer, threshold)``, the EER as a fraction in [0, 1].
    """
    points = OperatingPoints(
        as_scores(target_scores, "target scores"),
        as_scores(nontarget_scores, "non-target scores"),
    )
    value, prev, alpha = eer_crossing(*points.rates())
    thr = points.finite_thresholds()
    threshold = thr[prev] + alpha * (thr[prev + 1] - thr[prev])
    return float(value), float(threshold)


def get_eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """EER and threshold from a scored trial list (labels 1 = target); see :func:`eer`."""
    target, nontarget = split_by_label(scores, labels)
    return eer(target, nontarget)


def min_dcf(
    target: ArrayLike,
    nontarget: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Minimum normalised detection cost and the threshold that attains it.

    ``DCF(t) = c_miss * p_target * FRR(t) + c_fa * (1 - p_target) * FAR(t)``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))`` (the cost of the better of accepting
    or rejecting everything), minimised over all operating points. Ties go to the highest
    threshold. A value of 1 means the scores are no better than a fixed decision.

    Returns:
        ``(min_dcf, threshold)``.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    points = OperatingPoints(
        as_scores(target, "target scores"), as_scores(nontarget, "non-target scores")
    )
    far, frr = points.rates()
    dcf = detection_cost(frr, far, p_target, c_miss, c_fa)
    best = int(np.argmin(dcf))
    return float(dcf[best]), float(points.finite_thresholds()[best])


def threshold_at_far(nontarget: ArrayLike, far: float) -> float:
    """Smallest threshold whose empirical FAR on ``nontarget`` does not exceed ``far``.

    With ``k = floor(far * n)`` false accepts allowed, this is the next float above the
    ``(k+1)``-th highest non-target score (ties are all rejected), or the lowest
    non-target score when ``far >= 1``.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must lie in [0, 1], got {far}")
    n = np.sort(as_scores(nontarget, "non-target scores"))[::-1]
    k = int(np.floor(far * n.size + 1e-9))
    if k >= n.size:
        return float(n[-1])
    return float(np.nextafter(n[k], np.inf))


def bayes_threshold(p_target: float) -> float:
    """LLR threshold of the Bayes decision at prior ``p_target`` with unit costs: -logit(p)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    return -float(np.log(p_target / (1.0 - p_target)))


def act_dcf(target_llr: ArrayLike, nontarget_llr: ArrayLike, p_target: float = 0.01) -> float:
    """Actual normalised DCF of calibrated LLRs at the Bayes threshold ``-logit(p_target)``.

    Accept when ``llr >= -log(p_target / (1 - p_target))``; the cost is normalised as in
    :func:`min_dcf`, so ``act_dcf - min_dcf`` is the loss due to calibration.
    """
    threshold = bayes_threshold(p_target)
    t = as_scores(target_llr, "target LLRs")
    n = as_scores(nontarget_llr, "non-target LLRs")
    p_miss = float(np.mean(t < threshold))
    p_fa = float(np.mean(n >= threshold))
    return float(detection_cost(p_miss, p_fa, p_target))


# ----------------------------------------------------------------- pooled across sets


def weighted_summary(
    scores: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike,
    p_target: float = 0.01,
    llr: ArrayLike | None = None,
) -> dict[str, float]:
    """EER, minDCF (and actual DCF of ``llr``) of trials that count by ``weights``.

    Each trial's weight is its share of its class: target weights are normalised to sum
    to 1 (P_miss is the weight of rejected targets), non-target weights likewise (P_fa).
    Equal weights give :func:`eer`, :func:`min_dcf` and :func:`act_dcf`; weights of
    ``1 / (K n_set)`` per class pool K trial sets so that each counts equally.
    """
    s = as_scores(scores, "scores")
    lab = as_labels(labels, s.size)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != s.shape or np.any(w < 0):
        raise ValueError("weights must be non-negative, one per score")
    w_tar, w_non = w[lab], w[~lab]
    if w_tar.sum() <= 0 or w_non.sum() <= 0:
        raise ValueError("need target and non-target trials of positive weight")
    points = OperatingPoints(s[lab], s[~lab])
    far, frr = points.rates(w_tar[points.target_order], w_non[points.nontarget_order])
    out = {
        "eer": float(eer_crossing(far, frr)[0]),
        "min_dcf": float(np.min(detection_cost(frr, far, p_target))),
    }
    if llr is not None:
        accept = np.asarray(llr, dtype=np.float64) >= bayes_threshold(p_target)
        p_miss = w_tar[~accept[lab]].sum() / w_tar.sum()
        p_fa = w_non[accept[~lab]].sum() / w_non.sum()
        out["act_dcf"] = float(detection_cost(p_miss, p_fa, p_target))
    return out


# ----------------------------------------------------------------- false accepts


def confusable_pairs(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Sequence[str] | np.ndarray,
    spk_b: Sequence[str] | np.ndarray,
    threshold: float,
    top: int = 5,
) -> list[dict[str, object]]:
    """The speaker pairs behind the false accepts at ``threshold``, most first.

    Each non-target trial with ``score >= threshold`` is a false accept of the unordered
    pair (spk_a, spk_b). Returns at most ``top`` dicts ``{"speakers": [a, b],
    "false_accepts": k, "trials": n, "share": k / all false accepts}``, where ``n`` is
    the pair's number of non-target trials. At the minDCF threshold this shows whether a
    few confusable (or mislabelled) speaker pairs set the cost.
    """
    s = as_scores(scores, "scores")
    y = as_labels(labels, s.size)
    a, b = np.asarray(spk_a).astype(str), np.asarray(spk_b).astype(str)
    if a.shape != s.shape or b.shape != s.shape:
        raise ValueError(f"need one speaker pair per score: {a.shape}, {b.shape} vs {s.shape}")
    non = ~y
    pair = np.where(
        a < b, np.char.add(np.char.add(a, "\t"), b), np.char.add(np.char.add(b, "\t"), a)
    )
    accepted = non & (s >= threshold)
    total = int(accepted.sum())
    if total == 0:
        return []
    names, counts = np.unique(pair[non], return_counts=True)
    fa_names, fa_counts = np.unique(pair[accepted], return_counts=True)
    n_trials = dict(zip(names.tolist(), counts.tolist(), strict=True))
    order = np.lexsort((fa_names, -fa_counts))[:top]
    return [
        {
            "speakers": fa_names[i].split("\t"),
            "false_accepts": int(fa_counts[i]),
            "trials": int(n_trials[fa_names[i]]),
            "share": float(fa_counts[i] / total),
        }
        for i in order
    ]
