"""``voiceprint calibrate``: a copy of a model calibrated on the user's own recordings.

    report = recalibrate("model.onnx", user_utts, "mine.onnx")

The copy keeps the model's mean and cohort; the score -> LLR map and the thresholds are
fitted on enroll-style trials of the user's recordings
(:func:`voiceprint.calibration.enroll_style_trials`). Its report measures the actual DCF
on cross-fitted LLRs (:func:`cross_fitted_llr`): on the fitting trials themselves it
would be optimistic. Too few speakers to cross-fit leave that figure out, with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voiceprint import metrics
from voiceprint.calibration import (
    SmallCalibrationSetWarning,
    embed_measured_by_utt,
    enroll_style_trials,
    fit_calibration,
    score_trial_set,
)
from voiceprint.data.corpus import Utterance
from voiceprint.evaluation import operating_points
from voiceprint.scoring import ScoreCalibration, Scorer


def cross_fitted_llr(
    scores: np.ndarray, labels: np.ndarray, enroll_spk: np.ndarray, p_target: float, seed: int
) -> np.ndarray | None:
    """LLRs (n,) of every trial from a calibration fitted on the other half of the speakers.

    The speakers are split in two seeded halves; a trial belongs to the half of its
    enrollment speaker. Actual DCF on these LLRs measures calibration on speakers it was
    not fitted on (on the fitting trials themselves it would be optimistic). None when a
    half has no target or no non-target trial to fit on (too few speakers).
    """
    speakers = np.unique(enroll_spk)
    rng = np.random.default_rng(seed)
    half = set(rng.permutation(speakers)[: len(speakers) // 2].tolist())
    fold = np.array([s in half for s in enroll_spk])
    out = np.empty_like(scores)
    for part in (fold, ~fold):
        fit_on = ~part
        if not (labels[fit_on].any() and (~labels[fit_on]).any()):
            return None
        calibration = ScoreCalibration().fit(
            scores[fit_on & labels], scores[fit_on & ~labels], p_target
        )
        out[part] = calibration.llr(scores[part])
    return out


def recalibrate(
    model: str | Path,
    utts: Sequence[Utterance],
    out: str | Path,
    *,
    enroll_utts: int = 1,
    p_target: float = 0.01,
    far: float | None = None,
    report_dir: str | Path | None = None,
    progress: bool = True,
    source: str = "",
) -> dict[str, Any]:
    """``voiceprint calibrate``: a copy of ``model`` calibrated on the user's ``utts``.

    Fits the score -> LLR map and thresholds on enroll-style trials of ``utts`` (see
    :func:`enroll_style_trials`), keeping the model's mean and cohort, writes the copy to
    ``out`` and a report (``results.json``, ``calibration.png``) to ``report_dir``.
    Returns the report: EER, minDCF and actual DCF with 95% speaker-bootstrap intervals;
    the actual DCF is that of 2-fold cross-fitted LLRs (``act_dcf``, ``act_dcf_ci95``:
    None, with a :class:`SmallCalibrationSetWarning`, when the speakers are too few to
    cross-fit) and of the final map on its own trials (``act_dcf_self``). Warns when the
    data is small for ``far``.
    """
    from voiceprint import plots
    from voiceprint.artifact import write_backend
    from voiceprint.embedder import load_embedder

    model, out = Path(model), Path(out)
    if model.resolve() == out.resolve():
        raise ValueError(f"calibrate writes a copy: --out must differ from {model}")
    embedder = load_embedder(model)
    emb, speech, silent = embed_measured_by_utt(embedder, utts, progress)
    if silent:
        warnings.warn(
            f"{len(silent)} clips without speech left out (a decision refuses them): "
            + ", ".join(silent[:5]),
            stacklevel=2,
        )
    trial_set = enroll_style_trials([u for u in utts if u.utt not in set(silent)], enroll_utts)
    labels = trial_set.labels
    sides = trial_set.side_seconds(speech)
    # What the model as it is decides on this data, before it is recalibrated.
    before_scores = score_trial_set(embedder.scorer, trial_set, emb)
    before_llr = embedder.scorer.llr(before_scores, *sides)
    before = operating_points(embedder.decision, before_llr, labels, *sides, p_target)
    info = {"kind": "user data", "folder": source, "enroll_utts": enroll_utts}
    old_backend = embedder.scorer.backend
    old_calibration = old_backend.calibration
    backend = fit_calibration(
        embedder.scorer,
        trial_set,
        emb,
        p_target,
        info,
        far,
        speech_by_utt=speech if old_calibration is not None and old_calibration.quality else None,
        min_speech_seconds=old_backend.decision.min_speech_seconds if old_backend.decision else 0.0,
    )
    written = write_backend(model, backend, out)
    scorer = Scorer(backend)
    scores = score_trial_set(scorer, trial_set, emb)
    llr = scorer.llr(scores, *sides)
    spk_a, spk_b = trial_set.speakers()
    crossed = cross_fitted_llr(scores, labels, spk_a, p_target, seed=0)
    if crossed is None:
        warnings.warn(
            SmallCalibrationSetWarning(
                f"the cross-fitted actual DCF is left out: split in two halves, the "
                f"{len(set(spk_a))} enrolling speakers leave a half without target or "
                f"without non-target trials to fit on; calibrate on more speakers, each "
                f"with more than {enroll_utts} clip(s)"
            ),
            stacklevel=2,
        )
    figures = metrics.report(
        scores, labels, spk_a, spk_b, p_target, crossed, n_boot=500, seed=0, n_boot_dcf=200
    )
    figures.setdefault("act_dcf", None)  # act_dcf, act_dcf_ci95: of the cross-fitted LLRs
    figures.setdefault("act_dcf_ci95", None)
    report = {
        **figures,
        "act_dcf_self": metrics.act_dcf(llr[labels], llr[~labels], p_target),
        "n_speakers": int(backend.provenance["speakers"]),
        # the model's decisions on this data before recalibration (fractions)
        "before": before,
        "after": operating_points(backend.decision, llr, labels, *sides, p_target),
        "calibration": backend.calibration.to_dict(),  # type: ignore[union-attr]
        "decision": backend.decision.to_dict(),  # type: ignore[union-attr]
        "model": str(model),
        "out": str(written),
    }
    folder = Path(report_dir) if report_dir else written.with_name(written.stem + "_calibration")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    if plots.can_draw(str(folder / "calibration.png")):
        plots.plot_calibration(llr[labels], llr[~labels], folder / "calibration.png", p_target)
    report["report"] = str(folder)
    return report
