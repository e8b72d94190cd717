"""Speaker-bootstrap intervals of EER, minDCF and actual DCF, and the paired comparison of
two systems on the same trials.

Trials between recordings of the same speakers are correlated, so resampling trials
understates the uncertainty; the speakers are the sampling unit. Each resample draws
``S`` speakers with replacement from the ``S`` test speakers; speaker ``x`` drawn ``c[x]``
times enters as ``c[x]`` copies. A target trial of speaker ``a`` then counts ``c[a]``
times (once per copy) and a non-target trial between ``a`` and ``b`` counts
``c[a] * c[b]`` times (once per pair of copies); pairs of two copies of one speaker are not
formed, since they would be non-target trials made of same-speaker recordings. Every
resample's figures come from these weights on the one sort of the scores
(:class:`~voiceprint.metrics.operating_points.OperatingPoints`); resamples without any
target or non-target trial are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voiceprint.metrics.figures import bayes_threshold, eer, min_dcf
from voiceprint.metrics.operating_points import (
    ArrayLike,
    OperatingPoints,
    as_labels,
    as_scores,
    detection_cost,
    eer_crossing,
)

Speakers = Sequence[object] | np.ndarray


def _speaker_resamples(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Speakers,
    spk_b: Speakers,
    n_boot: int,
    seed: int,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of a speaker bootstrap -> (scores (n,), speaker index of each side
    a (n,), b (n,), counts (B, S): how often each speaker is drawn per resample)."""
    s = as_scores(scores, "scores")
    lab = as_labels(labels, s.size)
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


def resampled_figures(
    scores: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    counts: np.ndarray,
    p_target: float = 0.01,
    accept: np.ndarray | None = None,
    wanted: Sequence[str] = ("eer", "min_dcf"),
) -> dict[str, np.ndarray]:
    """EER, minDCF and (given decisions) actual DCF of each speaker resample.

    Args:
        scores: (n,) trial scores.
        a, b: (n,) speaker indices of the two sides; ``a == b`` marks target trials.
        counts: (B, S) how often each of the S speakers is drawn in each resample.
        p_target: target prior of both DCFs.
        accept: (n,) the decisions whose actual DCF is wanted, or None.
        wanted: which of ``"eer"`` and ``"min_dcf"`` to compute.

    Returns:
        The ``wanted`` figures (plus ``"act_dcf"`` with ``accept``), each (B,); NaN for
        resamples without target or without non-target trials.
    """
    same = a == b
    points = OperatingPoints(scores[same], scores[~same])
    tar_spk = a[same][points.target_order]  # the trials in descending score order
    non_a, non_b = a[~same][points.nontarget_order], b[~same][points.nontarget_order]
    if accept is not None:
        accept_tar = accept[same][points.target_order]
        accept_non = accept[~same][points.nontarget_order]
    names = [*wanted, *([] if accept is None else ["act_dcf"])]
    out = {name: np.full(counts.shape[0], np.nan) for name in names}
    chunk = max(1, 2_000_000 // scores.size)  # bounds memory to a few (chunk, n) arrays
    for start in range(0, counts.shape[0], chunk):
        c = counts[start : start + chunk]
        w_tar = np.take(c, tar_spk, axis=1)
        w_non = np.take(c, non_a, axis=1) * np.take(c, non_b, axis=1)
        ok = np.flatnonzero((w_tar.sum(axis=1) > 0) & (w_non.sum(axis=1) > 0))
        if ok.size == 0:
            continue
        w_tar, w_non = w_tar[ok], w_non[ok]
        far, frr = points.rates(w_tar, w_non)
        if "eer" in out:
            out["eer"][start + ok] = eer_crossing(far, frr)[0]
        if "min_dcf" in out:
            out["min_dcf"][start + ok] = detection_cost(frr, far, p_target).min(axis=1)
        if accept is not None:
            p_miss = w_tar[:, ~accept_tar].sum(axis=1) / w_tar.sum(axis=1)
            p_fa = w_non[:, accept_non].sum(axis=1) / w_non.sum(axis=1)
            out["act_dcf"][start + ok] = detection_cost(p_miss, p_fa, p_target)
    return out


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval of resampled values (B,), NaN ones left out;
    ValueError when every resample was NaN (none had target and non-target trials)."""
    if np.isnan(values).all():
        raise ValueError("no resample contained both target and non-target trials")
    tail = 50.0 * (1.0 - confidence)
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_eer(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Speakers,
    spk_b: Speakers,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of the EER by resampling test speakers (the trial
    weights of each resample: see :mod:`voiceprint.metrics.bootstrap`).

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
    return _interval(resampled_figures(s, a, b, counts, wanted=["eer"])["eer"], confidence)


def bootstrap_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    spk_a: Speakers,
    spk_b: Speakers,
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
        l_all = as_scores(llr, "llr")
        if l_all.shape != s.shape:
            raise ValueError(f"llr {l_all.shape} must match scores {s.shape}")
        accept = l_all >= bayes_threshold(p_target)
    figures = resampled_figures(s, a, b, counts, p_target, accept, wanted=["min_dcf"])
    out = {"min_dcf": _interval(figures["min_dcf"], confidence)}
    if accept is not None:
        out["act_dcf"] = _interval(figures["act_dcf"], confidence)
    return out


def paired_bootstrap(
    scores_x: ArrayLike,
    scores_y: ArrayLike,
    labels: ArrayLike,
    spk_a: Speakers,
    spk_b: Speakers,
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
    x = as_scores(scores_x, "scores_x")
    y, a, b, counts = _speaker_resamples(scores_y, labels, spk_a, spk_b, n_boot, seed, confidence)
    if x.shape != y.shape:
        raise ValueError(f"scores_x {x.shape} and scores_y {y.shape} must score the same trials")
    lab = a == b
    fig_x = resampled_figures(x, a, b, counts, p_target)
    fig_y = resampled_figures(y, a, b, counts, p_target)
    whole = {
        "eer": eer(y[lab], y[~lab])[0] - eer(x[lab], x[~lab])[0],
        "min_dcf": min_dcf(y[lab], y[~lab], p_target)[0] - min_dcf(x[lab], x[~lab], p_target)[0],
    }
    return {
        name: (diff, *_interval(fig_y[name] - fig_x[name], confidence))
        for name, diff in whole.items()
    }
