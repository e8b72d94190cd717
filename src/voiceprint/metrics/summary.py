"""The verification block every report gives: :func:`summarize` (EER, minDCF, their
thresholds, trial counts) and :func:`report` (that plus speaker-bootstrap intervals and
the actual DCF of calibrated LLRs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from voiceprint.metrics.bootstrap import bootstrap_dcf, bootstrap_eer
from voiceprint.metrics.figures import act_dcf, eer, min_dcf
from voiceprint.metrics.operating_points import ArrayLike, as_labels, as_scores


def summarize(
    target: ArrayLike, nontarget: ArrayLike, p_target: float = 0.01
) -> dict[str, float | int]:
    """EER, minDCF, their thresholds and the trial counts, as plain Python numbers."""
    t = as_scores(target, "target scores")
    n = as_scores(nontarget, "non-target scores")
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
        n_boot: speaker resamples of the EER interval (:func:`bootstrap_eer`); 0 leaves
            it out.
        seed: seed of both bootstraps.
        n_boot_dcf: speaker resamples of the minDCF and actual DCF intervals
            (:func:`bootstrap_dcf`); 0 leaves those intervals out.

    Returns:
        :func:`summarize`'s keys (``eer``, ``eer_threshold``, ``min_dcf``,
        ``min_dcf_threshold``, ``p_target``, ``n_target``, ``n_nontarget``), then
        ``eer_ci95`` (with ``n_boot``), ``min_dcf_ci95`` (with ``n_boot_dcf``) and, with ``llr``,
        ``act_dcf`` (:func:`act_dcf`) and ``act_dcf_ci95`` (with ``n_boot_dcf``);
        intervals are 95% ``[low, high]`` lists, rates fractions.
    """
    s = as_scores(scores, "scores")
    lab = as_labels(labels, s.size)
    out: dict[str, Any] = dict(summarize(s[lab], s[~lab], p_target))
    if n_boot > 0:
        out["eer_ci95"] = list(bootstrap_eer(s, lab, spk_a, spk_b, n_boot=n_boot, seed=seed))
    ci = None
    if n_boot_dcf > 0:
        ci = bootstrap_dcf(s, lab, spk_a, spk_b, p_target, llr=llr, n_boot=n_boot_dcf, seed=seed)
        out["min_dcf_ci95"] = list(ci["min_dcf"])
    if llr is not None:
        calibrated = as_scores(llr, "llr")
        if calibrated.shape != s.shape:
            raise ValueError(f"llr {calibrated.shape} must match scores {s.shape}")
        out["act_dcf"] = act_dcf(calibrated[lab], calibrated[~lab], p_target)
        if ci is not None:
            out["act_dcf_ci95"] = list(ci["act_dcf"])
    return out
