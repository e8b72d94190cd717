"""Verification metrics: ROC/DET points, EER, minDCF, actual DCF of calibrated LLRs,
speaker-bootstrap intervals (EER, minDCF, actual DCF) and the speaker pairs behind the
false accepts at a threshold; :func:`report` gathers the figures every report gives.

Pure vectorised numpy: every curve comes from one descending sort of the scores and
cumulative sums, never a loop over thresholds.

Conventions used throughout:

- A trial is *accepted* when ``score >= threshold``. Target trials (label 1) pair two
  recordings of the same speaker; non-target trials (label 0) pair different speakers.
- ``FAR(t)`` (false-acceptance rate, = FPR) is the fraction of non-target scores
  ``>= t``; ``FRR(t)`` (false-rejection rate, miss rate, = FNR = 1 - TPR) is the fraction of
  target scores ``< t``.
- The operating points are the thresholds ``+inf`` (reject everything: FAR 0, FRR 1)
  followed by every distinct score in descending order (the last accepts everything:
  FAR 1, FRR 0). Where a finite threshold is needed for the reject-everything point it
  is the next float above the highest score.
- All rates are fractions in [0, 1], not percentages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "act_dcf",
    "auc",
    "bayes_threshold",
    "bootstrap_dcf",
    "bootstrap_eer",
    "confusable_pairs",
    "det_curve",
    "eer",
    "get_eer",
    "min_dcf",
    "paired_bootstrap",
    "report",
    "roc",
    "summarize",
    "threshold_at_far",
]

ArrayLike = np.ndarray | Sequence[float]


# ----------------------------------------------------------------------------- checks


def _as_scores(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_labels(labels: ArrayLike, n: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) like the scores, got {lab.shape}")
    if not np.all((lab == 0) | (lab == 1)):
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    return lab.astype(bool)


def _split(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(scores, "scores")
    lab = _as_labels(labels, s.size)
    if lab.all() or not lab.any():
        raise ValueError("need at least one target (1) and one non-target (0) trial")
    return s[lab], s[~lab]


# ----------------------------------------------------------------------------- core


def _sort_desc(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable descending order of ``scores`` and the last index of each run of equal values."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)
    return order, ends


def _operating_points(
    target: np.ndarray, nontarget: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, far, frr) over all operating points; thresholds[0] is +inf."""
    scores = np.concatenate([target, nontarget])
    is_target = np.zeros(scores.size, dtype=np.int64)
    is_target[: target.size] = 1
    order, ends = _sort_desc(scores)
    tp = np.cumsum(is_target[order])[ends]  # targets accepted at each distinct threshold
    fp = ends + 1 - tp
    far = np.concatenate([[0.0], fp / nontarget.size])
    frr = np.concatenate([[1.0], 1.0 - tp / target.size])
    thresholds = np.concatenate([[np.inf], scores[order][ends]])
    return thresholds, far, frr


def _eer_crossing(far: np.ndarray, frr: np.ndarray) -> tuple[float, int, float]:
    """Interpolated EER: (eer, index of the point before the crossing, fraction past it).

    The crossing is the first operating point ``i`` with ``FRR - FAR <= 0``; the EER lies on
    the straight line from point ``i - 1`` to point ``i`` where ``FRR - FAR = 0``.
    """
    d = frr - far
    prev = int(np.argmax(d <= 0)) - 1  # >= 0: d = 1 at the reject-everything point
    alpha = d[prev] / (d[prev] - d[prev + 1])
    return float(far[prev] + alpha * (far[prev + 1] - far[prev])), prev, float(alpha)


def _finite_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """Replace the leading +inf by the next float above the highest score."""
    out = thresholds.copy()
    out[0] = np.nextafter(thresholds[1], np.inf)
    return out


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
    target, nontarget = _split(scores, labels)
    thresholds, far, frr = _operating_points(target, nontarget)
    return far, 1.0 - frr, thresholds


def det_curve(target: ArrayLike, nontarget: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET points: ``(far, frr, thresholds)``, each (k,), thresholds descending from +inf.

    FAR rises from 0 to 1 and FRR falls from 1 to 0 along the arrays.
    """
    t = _as_scores(target, "target scores")
    n = _as_scores(nontarget, "non-target scores")
    thresholds, far, frr = _operating_points(t, n)
    return far, frr, thresholds


def auc(fpr: ArrayLike, tpr: ArrayLike) -> float:
    """Area under a ROC curve by the trapezoidal rule (points ordered by rising FPR)."""
    x = _as_scores(fpr, "fpr")
    y = _as_scores(tpr, "tpr")
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
    t = _as_scores(target_scores, "target scores")
    n = _as_scores(nontarget_scores, "non-target scores")
    thresholds, far, frr = _operating_points(t, n)
    value, prev, alpha = _eer_crossing(far, frr)
    thr = _finite_thresholds(thresholds)
    threshold = thr[prev] + alpha * (thr[prev + 1] - thr[prev])
    return float(value), float(threshold)


def get_eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """EER and threshold from a scored trial list (labels 1 = target); see :func:`eer`."""
    target, nontarget = _split(scores, labels)
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
    t = _as_scores(target, "target scores")
    n = _as_scores(nontarget, "non-target scores")
    thresholds, far, frr = _operating_points(t, n)
    dcf = c_miss * p_target * frr + c_fa * (1.0 - p_target) * far
    dcf /= min(c_miss * p_target, c_fa * (1.0 - p_target))
    best = int(np.argmin(dcf))
    return float(dcf[best]), float(_finite_thresholds(thresholds)[best])


def threshold_at_far(nontarget: ArrayLike, far: float) -> float:
    """Smallest threshold whose empirical FAR on ``nontarget`` does not exceed ``far``.

    With ``k = floor(far * n)`` false accepts allowed, this is the next float above the
    ``(k+1)``-th highest non-target score (ties are all rejected), or the lowest
    non-target score when ``far >= 1``.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must lie in [0, 1], got {far}")
    n = np.sort(_as_scores(nontarget, "non-target scores"))[::-1]
    k = int(np.floor(far * n.size + 1e-9))
    if k >= n.size:
        return float(n[-1])
    return float(np.nextafter(n[k], np.inf))


def summarize(
    target: ArrayLike, nontarget: ArrayLike, p_target: float = 0.01
) -> dict[str, float | int]:
    """EER, minDCF, their thresholds and the trial counts, as plain Python numbers."""
    t = _as_scores(target, "target scores")
    n = _as_scores(nontarget, "non-target scores")
    e, e_thr = eer(t, n)
    d, d_thr = min_dcf(t, n, p_target=p_target)
    return {
        "eer": e,
        "eer_threshold": e_thr,
        "min_dcf": d,
        "min_dcf_threshold": d_thr,
        "p_target": float(p_target),
        "n_target": int(t.size),
        "n_nontarget": int(n.size),
    }


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
    s = _as_scores(scores, "scores")
    y = _as_labels(labels, s.size)
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


# ----------------------------------------------------------------------------- bootstrap


def _speaker_resamples(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Sequence[object] | np.ndarray,
    spk_b: Sequence[object] | np.ndarray,
    n_boot: int,
    seed: int,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of a speaker bootstrap -> (scores (n,), speaker index of each side
    a (n,), b (n,), counts (B, S): how often each speaker is drawn per resample)."""
    s = _as_scores(scores, "scores")
    lab = _as_labels(labels, s.size)
    a_ids = np.asarray(spk_a)
    b_ids = np.asarray(spk_b)
    if a_ids.shape != s.shape or b_ids.shape != s.shape:
        raise ValueError(f"spk_a {a_ids.shape} and spk_b {b_ids.shape} must match scores {s.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    speakers, idx = np.unique(np.concatenate([a_ids, b_ids]), return_inverse=True)
    a, b = idx[: s.size], idx[s.size :]
    same = a == b
    if np.any(same != lab):
        raise ValueError("labels disagree with speaker ids: target trials must have spk_a == spk_b")
    if same.all() or not same.any():
        raise ValueError("need at least one target (1) and one non-target (0) trial")
    rng = np.random.default_rng(seed)
    n_spk = speakers.size
    counts = rng.multinomial(n_spk, np.full(n_spk, 1.0 / n_spk), size=n_boot)
    return s, a, b, counts


def bootstrap_eer(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Sequence[object] | np.ndarray,
    spk_b: Sequence[object] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of the EER by resampling test speakers.

    Trials between recordings of the same speakers are correlated, so resampling trials
    understates the uncertainty; the speakers are the sampling unit. Each resample draws
    ``S`` speakers with replacement from the ``S`` test speakers; speaker ``x`` drawn
    ``c[x]`` times enters as ``c[x]`` copies. A target trial of speaker ``a`` then counts
    ``c[a]`` times (once per copy) and a non-target trial between ``a`` and ``b`` counts
    ``c[a] * c[b]`` times (once per pair of copies); pairs of two copies of one speaker are
    not formed, since they would be non-target trials made of same-speaker recordings.
    The EER of each resample is computed from these weights as in :func:`eer`; resamples
    without any target or non-target trial are skipped.

    Args:
        scores: (n,) trial scores.
        labels: (n,) 1 for target trials, 0 for non-target; must agree with
            ``spk_a == spk_b``.
        spk_a, spk_b: (n,) speaker ids of the two sides of each trial.
        n_boot: number of resamples.
        seed: seed of the resampling generator.
        confidence: coverage of the two-sided percentile interval.

    Returns:
        ``(low, high)`` EER bounds as fractions.
    """
    s, a, b, counts = _speaker_resamples(scores, labels, spk_a, spk_b, n_boot, seed, confidence)
    return _interval(_resampled_eers(s, a, b, counts), confidence)


def _resampled_eers(
    scores: np.ndarray, a: np.ndarray, b: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """EER of each speaker resample, weighting trials as described in :func:`bootstrap_eer`.

    Args:
        scores: (n,) trial scores.
        a, b: (n,) speaker indices of the two sides; ``a == b`` marks target trials.
        counts: (B, S) how often each of the S speakers is drawn in each resample.

    Returns:
        (B,) EERs; NaN for resamples without target or without non-target trials.

    Works on ``D = TPR + FAR`` after each trial in descending score order, which one
    cumulative sum gives: ``FRR - FAR = 1 - D``, so the EER crossing is the first tie group
    where ``D >= 1``. TPR is read at the two bracketing points from a cumulative sum over
    the (few) target trials only.
    """
    order, ends = _sort_desc(scores)
    a, b = a[order], b[order]
    same = a == b
    n_spk = counts.shape[1]
    tar_spk = a[same]
    tar_per_spk = np.bincount(tar_spk, minlength=n_spk).astype(np.float64)
    pairs = np.zeros((n_spk, n_spk))
    np.add.at(pairs, (a[~same], b[~same]), 1.0)
    tar_upto = np.concatenate([[0], np.cumsum(same)])  # target trials among the first p

    out = np.full(counts.shape[0], np.nan)
    chunk = max(1, 2_000_000 // scores.size)  # bounds memory to a few (chunk, n) arrays
    for start in range(0, counts.shape[0], chunk):
        c = counts[start : start + chunk].astype(np.float64)
        n_tar = c @ tar_per_spk
        n_non = np.einsum("bi,ij,bj->b", c, pairs, c)
        ok = np.flatnonzero((n_tar > 0) & (n_non > 0))
        if ok.size == 0:
            continue
        c, n_tar, n_non = c[ok], n_tar[ok, None], n_non[ok, None]
        weight = np.where(same, 1.0 / n_tar, np.take(c, b, axis=1) / n_non)
        d_cum = np.cumsum(np.take(c, a, axis=1) * weight, axis=1)  # TPR + FAR per position
        first = np.argmax(d_cum >= 1.0, axis=1)
        group = np.searchsorted(ends, first)  # tie group holding that position
        pos_c = ends[group]
        pos_p = np.where(group > 0, ends[group - 1], -1)  # -1: the reject-everything point
        rows = np.arange(ok.size)
        dc_c = d_cum[rows, pos_c]
        dc_p = np.where(pos_p >= 0, d_cum[rows, np.maximum(pos_p, 0)], 0.0)
        tpr = np.cumsum(np.take(c, tar_spk, axis=1), axis=1) / n_tar
        tpr = np.concatenate([np.zeros((ok.size, 1)), tpr], axis=1)
        tpr_c = tpr[rows, tar_upto[pos_c + 1]]
        tpr_p = tpr[rows, tar_upto[pos_p + 1]]
        far_c, far_p = dc_c - tpr_c, dc_p - tpr_p
        gap_c, gap_p = 1.0 - dc_c, 1.0 - dc_p  # FRR - FAR
        alpha = gap_p / (gap_p - gap_c)
        out[start + ok] = far_p + alpha * (far_c - far_p)
    return out


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
    t = _as_scores(target_llr, "target LLRs")
    n = _as_scores(nontarget_llr, "non-target LLRs")
    p_miss = float(np.mean(t < threshold))
    p_fa = float(np.mean(n >= threshold))
    return (p_target * p_miss + (1.0 - p_target) * p_fa) / min(p_target, 1.0 - p_target)


def _resampled_dcfs(
    scores: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    counts: np.ndarray,
    p_target: float,
    accept: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """minDCF (and, given ``accept`` (n,) decisions, actual DCF) of each speaker resample,
    with the trial weights of :func:`bootstrap_eer` -> two (B,) arrays, NaN for resamples
    without target or without non-target trials (and for actual DCF without ``accept``)."""
    order = np.argsort(-scores, kind="stable")
    s_sorted, a, b = scores[order], a[order], b[order]
    same = a == b
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    accepted = None if accept is None else accept[order]
    norm = min(p_target, 1.0 - p_target)
    mins = np.full(counts.shape[0], np.nan)
    acts = np.full(counts.shape[0], np.nan)
    for i, c in enumerate(counts.astype(float)):
        w = np.where(same, c[a], c[a] * c[b])
        w_tar, w_non = np.where(same, w, 0.0), np.where(same, 0.0, w)
        total_tar, total_non = w_tar.sum(), w_non.sum()
        if total_tar == 0 or total_non == 0:
            continue
        far = np.cumsum(w_non)[last_of_tie] / total_non  # accept the first p trials
        frr = 1.0 - np.cumsum(w_tar)[last_of_tie] / total_tar
        mins[i] = np.r_[p_target, p_target * frr + (1 - p_target) * far].min() / norm
        if accepted is not None:
            p_miss = w_tar[~accepted].sum() / total_tar
            p_fa = w_non[accepted].sum() / total_non
            acts[i] = (p_target * p_miss + (1 - p_target) * p_fa) / norm
    return mins, acts


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval of resampled values (B,), NaN ones left out;
    ValueError when every resample was NaN (none had target and non-target trials)."""
    if np.isnan(values).all():
        raise ValueError("no resample contained both target and non-target trials")
    tail = 50.0 * (1.0 - confidence)
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Sequence[object] | np.ndarray,
    spk_b: Sequence[object] | np.ndarray,
    p_target: float = 0.01,
    llr: ArrayLike | None = None,
    n_boot: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of minDCF (and, with calibrated ``llr``, actual DCF) by
    resampling test speakers, with the trial weights of :func:`bootstrap_eer`.

    Returns ``{"min_dcf": (low, high)}`` plus ``"act_dcf"`` when ``llr`` (n,) is given.
    """
    s, a, b, counts = _speaker_resamples(scores, labels, spk_a, spk_b, n_boot, seed, confidence)
    accept = None
    if llr is not None:
        l_all = _as_scores(llr, "llr")
        if l_all.shape != s.shape:
            raise ValueError(f"llr {l_all.shape} must match scores {s.shape}")
        accept = l_all >= bayes_threshold(p_target)
    mins, acts = _resampled_dcfs(s, a, b, counts, p_target, accept)
    out = {"min_dcf": _interval(mins, confidence)}
    if accept is not None:
        out["act_dcf"] = _interval(acts, confidence)
    return out


def paired_bootstrap(
    scores_x: ArrayLike,
    scores_y: ArrayLike,
    labels: ArrayLike,
    spk_a: Sequence[object] | np.ndarray,
    spk_b: Sequence[object] | np.ndarray,
    p_target: float = 0.01,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """How much system y beats system x on the same trials, with a paired interval.

    Both systems' scores of each resample of the test speakers (as in
    :func:`bootstrap_eer`) are weighed with the same draw, so what the two share (which
    speakers happen to be hard) cancels, and the interval of the difference is much
    narrower than the two separate intervals suggest. y is clearly better than x when the
    whole interval lies below zero.

    Returns ``{"eer": (diff, low, high), "min_dcf": (diff, low, high)}``: ``diff`` is
    y's value minus x's on all trials, ``low``/``high`` the percentile interval of the
    resampled differences (fractions for EER).
    """
    x = _as_scores(scores_x, "scores_x")
    y, a, b, counts = _speaker_resamples(scores_y, labels, spk_a, spk_b, n_boot, seed, confidence)
    if x.shape != y.shape:
        raise ValueError(f"scores_x {x.shape} and scores_y {y.shape} must score the same trials")
    lab = a == b
    out = {}
    eer_diff = _resampled_eers(y, a, b, counts) - _resampled_eers(x, a, b, counts)
    out["eer"] = (
        eer(y[lab], y[~lab])[0] - eer(x[lab], x[~lab])[0],
        *_interval(eer_diff, confidence),
    )
    dcf_diff = (
        _resampled_dcfs(y, a, b, counts, p_target)[0]
        - _resampled_dcfs(x, a, b, counts, p_target)[0]
    )
    whole = min_dcf(y[lab], y[~lab], p_target)[0] - min_dcf(x[lab], x[~lab], p_target)[0]
    out["min_dcf"] = (whole, *_interval(dcf_diff, confidence))
    return out


# ----------------------------------------------------------------------------- report


def report(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Sequence[object] | np.ndarray,
    spk_b: Sequence[object] | np.ndarray,
    p_target: float = 0.01,
    llr: ArrayLike | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    n_boot_dcf: int = 200,
) -> dict[str, Any]:
    """The verification figures of scored trials: the block every report gives.

    Args:
        scores: (n,) trial scores.
        labels: (n,) 1 for target trials, 0 for non-target (``spk_a == spk_b``).
        spk_a, spk_b: (n,) speaker ids of the two sides of each trial.
        p_target: target prior of minDCF and actual DCF.
        llr: (n,) calibrated LLRs of the trials, or None (uncalibrated).
        n_boot: speaker resamples of the EER interval (:func:`bootstrap_eer`).
        seed: seed of both bootstraps.
        n_boot_dcf: speaker resamples of the minDCF and actual DCF intervals
            (:func:`bootstrap_dcf`); 0 leaves those intervals out.

    Returns:
        :func:`summarize`'s keys (``eer``, ``eer_threshold``, ``min_dcf``,
        ``min_dcf_threshold``, ``p_target``, ``n_target``, ``n_nontarget``), then
        ``eer_ci95``, ``min_dcf_ci95`` (with ``n_boot_dcf``) and, with ``llr``,
        ``act_dcf`` (:func:`act_dcf`) and ``act_dcf_ci95`` (with ``n_boot_dcf``);
        intervals are 95% ``[low, high]`` lists, rates fractions.
    """
    s = _as_scores(scores, "scores")
    lab = _as_labels(labels, s.size)
    out: dict[str, Any] = dict(summarize(s[lab], s[~lab], p_target))
    out["eer_ci95"] = list(bootstrap_eer(s, lab, spk_a, spk_b, n_boot=n_boot, seed=seed))
    ci = None
    if n_boot_dcf > 0:
        ci = bootstrap_dcf(s, lab, spk_a, spk_b, p_target, llr=llr, n_boot=n_boot_dcf, seed=seed)
        out["min_dcf_ci95"] = list(ci["min_dcf"])
    if llr is not None:
        calibrated = _as_scores(llr, "llr")
        if calibrated.shape != s.shape:
            raise ValueError(f"llr {calibrated.shape} must match scores {s.shape}")
        out["act_dcf"] = act_dcf(calibrated[lab], calibrated[~lab], p_target)
        if ci is not None:
            out["act_dcf_ci95"] = list(ci["act_dcf"])
    return out


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
    s = _as_scores(scores, "scores")
    lab = _as_labels(labels, s.size)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != s.shape or np.any(w < 0):
        raise ValueError("weights must be non-negative, one per score")
    w_tar, w_non = np.where(lab, w, 0.0), np.where(lab, 0.0, w)
    if w_tar.sum() <= 0 or w_non.sum() <= 0:
        raise ValueError("need target and non-target trials of positive weight")
    w_tar, w_non = w_tar / w_tar.sum(), w_non / w_non.sum()
    order, ends = _sort_desc(s)
    far = np.concatenate([[0.0], np.cumsum(w_non[order])[ends]])
    frr = np.concatenate([[1.0], 1.0 - np.cumsum(w_tar[order])[ends]])
    eer_value, _, _ = _eer_crossing(far, frr)
    norm = min(p_target, 1.0 - p_target)
    out = {
        "eer": eer_value,
        "min_dcf": float(np.min(p_target * frr + (1 - p_target) * far) / norm),
    }
    if llr is not None:
        accept = np.asarray(llr, dtype=np.float64) >= bayes_threshold(p_target)
        p_miss = float(w_tar[~accept].sum())
        p_fa = float(w_non[accept].sum())
        out["act_dcf"] = (p_target * p_miss + (1 - p_target) * p_fa) / norm
    return out
