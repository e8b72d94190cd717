"""Fit a model's scorer: the back-end on training speakers, calibration on held-out ones.

    backend = fit_backend(embedder, train_utts, heldout_utts, config.eval)

(:mod:`voiceprint.release` fits it for a trained model and writes ``model.pth``;

``voiceprint calibrate``, a copy calibrated on the user's recordings, is
:mod:`voiceprint.recalibration`.)

* Mean, LDA projection and AS-norm cohort come from the training speakers' embeddings
  (a cohort of at most ``MAX_COHORT`` speaker means).
* The score -> LLR map and the thresholds are fitted on trials of speakers the trainer
  never saw (``data.heldout_share``), in the shape ``verify`` scores them: a speaker model
  from ``k`` enrollment clips against single clips of every speaker of the same corpus
  (``k = 1``: every pair of clips). Never on dev or test trials.
* The default decision is the Bayes decision at the evaluation prior on calibrated LLRs,
  with thresholds at false-accept rates measured on the held-out non-target trials. The
  provenance (corpus, speakers, trials, their metrics) is recorded with the back-end.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from voiceprint import metrics
from voiceprint.config import EvalConfig
from voiceprint.data.corpus import Utterance, by_speaker, corpus_of
from voiceprint.data.trials import TrialSet, enroll_trials, pair_trials
from voiceprint.embedder import Embedder
from voiceprint.metrics import bayes_threshold
from voiceprint.scoring import Backend, Decision, ScoreCalibration, Scorer, trial_quality

log = logging.getLogger(__name__)

MAX_COHORT = 3000  # AS-norm cohort: at most this many training-speaker means
LDA_RIDGE = 1e-3  # within-speaker covariance + this x its mean eigenvalue x identity

# A false-accept rate needs about 30 non-target errors to be measured to within +-30%
# with 90% confidence ("rule of 30"); fewer trials than 30 / far draws a warning.
RULE_OF_30 = 30


class SmallCalibrationSetWarning(UserWarning):
    """The calibration data is small for what was asked: too few non-target trials for
    the false-accept rate, or too few speakers to cross-fit the actual DCF."""


def enroll_style_trials(
    utts: Sequence[Utterance], enroll_utts: int = 1, corpora: Sequence[str] = ()
) -> TrialSet:
    """Trials as ``verify`` scores them, within each corpus (ids prefixed ``<corpus>-``).

    ``enroll_utts == 1``: every unordered pair of clips (each clip is a one-clip speaker
    model). ``enroll_utts == k > 1``: the first ``k`` clips of each speaker with more than
    ``k`` enroll it, and every other clip of the corpus is scored against every model.
    Trials across corpora are left out: a user's enrolled and probe voices share a domain.
    """
    if enroll_utts < 1:
        raise ValueError(f"enroll_utts must be >= 1, got {enroll_utts}")
    groups: dict[str, list[Utterance]] = {}
    for u in utts:
        groups.setdefault(corpus_of(u.speaker, list(corpora)), []).append(u)
    enroll: dict[str, list[str]] = {}
    trials: list[tuple[str, str, bool]] = []
    for group in groups.values():
        if enroll_utts == 1:
            enroll.update({u.utt: [u.utt] for u in group})
            trials.extend(pair_trials(group))
            continue
        speakers = by_speaker(group)
        usable = [u for s, g in speakers.items() if len(g) > enroll_utts for u in g]
        if len({u.speaker for u in usable}) < 2:
            continue
        models, these = enroll_trials(usable, enroll_utts)
        enroll.update({f"{spk}#enroll": ids for spk, ids in models.items()})
        trials.extend((f"{spk}#enroll", test, target) for spk, test, target in these)
    labels = [t for _, _, t in trials]
    if not any(labels) or all(labels):
        raise ValueError(
            f"calibration data of {len(list(utts))} clips gives no target or no non-target "
            f"trials with {enroll_utts} enrollment clip(s): it needs at least two speakers "
            f"with more than {enroll_utts} clip(s) each"
        )
    return TrialSet(list(utts), trials, enroll)


def trial_units(
    scorer: Scorer, trial_set: TrialSet, emb_by_utt: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Unit rows for every clip and every speaker model of ``trial_set``."""
    units = dict(zip(emb_by_utt, scorer.units(np.stack(list(emb_by_utt.values()))), strict=True))
    for model, ids in trial_set.enroll.items():
        if len(ids) == 1:
            units[model] = units[ids[0]]
        else:
            units[model] = scorer.speaker_model(np.stack([emb_by_utt[i] for i in ids]))
    return units


def score_trial_set(
    scorer: Scorer, trial_set: TrialSet, emb_by_utt: dict[str, np.ndarray]
) -> np.ndarray:
    """(n,) scores of the trial set's trials through ``scorer``."""
    units = trial_units(scorer, trial_set, emb_by_utt)
    return scorer.score_trials(units, trial_set.pairs())


def lda_projection(emb: np.ndarray, speakers: Sequence[str], dim: int) -> np.ndarray:
    """Linear discriminant analysis of embeddings (N, D) by speaker (N,) -> (D, D).

    The first ``dim`` columns are the directions that maximise between-speaker over
    within-speaker variance (eigenvectors of ``Sw^-1 Sb``, scaled so that the within-speaker
    covariance becomes the identity, strongest first); the other columns are zero. With
    ``dim = D`` it whitens the within-speaker scatter, so cosine after it weighs each
    direction by how well it separates speakers rather than by its raw variance.
    ``Sw`` and ``Sb`` are the (ddof 0) within- and between-speaker covariances; ``Sw``
    gets a ridge of ``LDA_RIDGE`` times its mean eigenvalue, so directions in which the
    training clips happen not to vary (fewer clips than dimensions) are not blown up.
    """
    x = np.asarray(emb, dtype=np.float64)
    labels = np.asarray(speakers)
    n, d = x.shape
    names, inverse = np.unique(labels, return_inverse=True)
    if not 1 <= dim <= d:
        raise ValueError(f"LDA dimension must lie in [1, {d}], got {dim}")
    if len(names) < 2:
        raise ValueError("LDA needs at least two training speakers")
    counts = np.bincount(inverse)
    means = np.zeros((len(names), d))
    np.add.at(means, inverse, x)
    means /= counts[:, None]
    within = x - means[inverse]
    sw = within.T @ within / n
    centred = means - x.mean(0)
    sb = (centred * counts[:, None]).T @ centred / n
    if np.trace(sw) <= 0.0:
        raise ValueError(
            "LDA needs speakers with two or more clips: these clips show no "
            "within-speaker variation"
        )
    sw += LDA_RIDGE * np.trace(sw) / d * np.eye(d)
    values, vectors = np.linalg.eigh(sw)
    whiten = vectors / np.sqrt(values)
    _, rotation = np.linalg.eigh(whiten.T @ sb @ whiten)
    out = np.zeros((d, d))
    out[:, :dim] = (whiten @ rotation[:, ::-1])[:, :dim]
    return out


def training_stats(
    emb: np.ndarray, speakers: Sequence[str], ecfg: EvalConfig, seed: int = 0
) -> Backend:
    """Mean (``eval.mean_subtract``, or implied by LDA), LDA projection
    (``eval.lda_dim``, of the centred embeddings) and AS-norm cohort (``eval.asnorm_top``)
    of training embeddings (N, D) with their speakers (N,): one unit mean per speaker, at
    most ``MAX_COHORT`` of them (a seeded draw)."""
    backend = Backend()
    if ecfg.mean_subtract or ecfg.lda_dim > 0:  # the LDA is of centred embeddings
        backend.mean = emb.mean(0).astype(np.float32)
    if ecfg.lda_dim > 0:
        dim = min(ecfg.lda_dim, emb.shape[1])
        projection = lda_projection(emb - backend.mean, speakers, dim)
        backend.projection = projection.astype(np.float32)
    if ecfg.asnorm_top > 0:
        units = Scorer(backend).units(emb)  # centred and projected as scored
        groups: dict[str, list[int]] = {}
        for i, spk in enumerate(speakers):
            groups.setdefault(spk, []).append(i)
        names = sorted(groups)
        if len(names) > MAX_COHORT:
            rng = np.random.default_rng(seed)
            names = sorted(rng.choice(names, MAX_COHORT, replace=False).tolist())
        cohort = np.stack([units[groups[s]].mean(0) for s in names])
        cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
        backend.cohort = cohort.astype(np.float32)
        backend.asnorm_top = min(ecfg.asnorm_top, len(names))
    return backend


def fit_training_stats(
    embedder: Embedder, train: Sequence[Utterance], ecfg: EvalConfig, seed: int, progress: bool
) -> Backend:
    """:func:`training_stats` of the training utterances' embeddings (embedded only when
    the back-end needs them)."""
    if not (ecfg.mean_subtract or ecfg.lda_dim > 0 or ecfg.asnorm_top > 0):
        return Backend()
    # the trainer's own clips; the check would not change them
    unchecked = replace(embedder.policy, check=False)
    emb = embedder.embed_files([u.path for u in train], progress=progress, policy=unchecked)
    return training_stats(emb, [u.speaker for u in train], ecfg, seed)


def fit_calibration(
    scorer: Scorer,
    trial_set: TrialSet,
    emb_by_utt: dict[str, np.ndarray],
    p_target: float,
    source: dict[str, Any],
    far: float | None = None,
    *,
    speech_by_utt: dict[str, float] | None = None,
    corpora: Sequence[str] = (),
    far_per_corpus: bool = False,
    far_min_speakers: int = 1,
    balance_corpora: bool = False,
    min_speech_seconds: float = 0.0,
    decision_prior: float = 0.0,
) -> Backend:
    """A copy of ``scorer``'s back-end with calibration, decision and provenance fitted
    on ``trial_set``; warns when it has too few non-target trials for ``far``.

    With ``speech_by_utt`` (net speech per clip, s) the calibration is quality-aware
    (:func:`voiceprint.scoring.trial_quality` of each trial's two sides). With
    ``far_per_corpus`` the thresholds at false-accept rates are the strictest of the
    corpora's (by the test clip's ``corpora`` prefix); corpora of fewer than
    ``far_min_speakers`` speakers are measured together as one group. With
    ``balance_corpora`` every corpus weighs the same in the fit, within each class
    (:meth:`ScoreCalibration.fit` weights). The default decision is the Bayes decision
    at ``decision_prior`` (0: at ``p_target``). ``min_speech_seconds`` goes into
    the decision: trials with less speech on a side are answered "not enough speech".
    """
    scores = score_trial_set(scorer, trial_set, emb_by_utt)
    labels = trial_set.labels
    trial_corpus = trial_set.test_corpora(corpora)
    weight = corpus_balanced_weights(trial_corpus, labels) if balance_corpora else None
    enroll_s = test_s = None
    quality = None
    if speech_by_utt is not None:
        enroll_s, test_s = trial_set.side_seconds(speech_by_utt)
        quality = trial_quality(enroll_s, test_s)
    calibration = ScoreCalibration().fit(
        scores[labels],
        scores[~labels],
        p_target=p_target,
        target_quality=None if quality is None else quality[labels],
        nontarget_quality=None if quality is None else quality[~labels],
        target_weight=None if weight is None else weight[labels],
        nontarget_weight=None if weight is None else weight[~labels],
    )
    llr = Scorer(replace(scorer.backend, calibration=calibration)).llr(scores, enroll_s, test_s)
    n_non = int((~labels).sum())
    if far is not None and far * n_non < RULE_OF_30:
        warnings.warn(
            f"{n_non} non-target trials measure a false-accept rate of {far:g} from "
            f"{far * n_non:.1f} expected errors; about {RULE_OF_30 / far:,.0f} are needed "
            f"for +-30% (rule of 30): the threshold is uncertain",
            SmallCalibrationSetWarning,
            stacklevel=2,
        )
    groups = None
    if far_per_corpus:
        groups = small_corpora_joined(trial_corpus, trial_set, far_min_speakers)[~labels]
    # Thresholds are measured on trials a decision answers (enough speech on both sides).
    answered = np.ones(len(scores), dtype=bool)
    if min_speech_seconds > 0 and enroll_s is not None:
        answered = (enroll_s >= min_speech_seconds) & (test_s >= min_speech_seconds)
    non_answered = answered[~labels]
    prior = decision_prior or p_target
    decision = Decision.from_scores(
        bayes_threshold(prior),
        llr[~labels][non_answered],
        rule="bayes",
        p_target=prior,
        groups=None if groups is None else groups[non_answered],
        min_speech_seconds=min_speech_seconds,
    )
    if far is not None:
        decision = decision.at_far(far)
    # The report's block without intervals (the released model's dev summary has them).
    summary = metrics.report(
        scores, labels, *trial_set.speakers(), p_target, llr, n_boot=0, n_boot_dcf=0
    )
    provenance = {
        **source,
        "speakers": len({u.speaker for u in trial_set.utts}),
        "utterances": len(trial_set.utts),
        "n_target": summary["n_target"],
        "n_nontarget": summary["n_nontarget"],
        "eer": summary["eer"],
        "min_dcf": summary["min_dcf"],
        "act_dcf": summary["act_dcf"],
        "p_target": p_target,
        "quality_aware": speech_by_utt is not None,
        "far_per_corpus": groups is not None,
    }
    return replace(
        scorer.backend, calibration=calibration, decision=decision, provenance=provenance
    )


def corpus_balanced_weights(corpus: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) trial weights under which every corpus holds the same share of each class:
    ``1 / n_c`` for a trial of corpus ``c`` among its class' ``n_c`` trials."""
    weight = np.zeros(labels.size)
    for cls in (labels, ~labels):
        _, inverse, counts = np.unique(corpus[cls], return_inverse=True, return_counts=True)
        weight[cls] = 1.0 / counts[inverse]
    return weight


def small_corpora_joined(corpus: np.ndarray, trial_set: TrialSet, min_speakers: int) -> np.ndarray:
    """Each trial's corpus (n,), with the corpora of fewer than ``min_speakers`` speakers
    in ``trial_set`` renamed to one shared group."""
    spk = {u.utt: u.speaker for u in trial_set.utts}
    speakers: dict[str, set[str]] = {}
    for c, (_, b, _) in zip(corpus, trial_set.trials, strict=True):
        speakers.setdefault(str(c), set()).add(spk[b])
    small = {c for c, s in speakers.items() if len(s) < min_speakers}
    return np.array(["<small corpora>" if str(c) in small else str(c) for c in corpus])


def embed_measured_by_utt(
    embedder: Embedder, utts: Sequence[Utterance], progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, float], list[str]]:
    """Each clip's embedding (D,) and net speech (s), by utterance id, and the ids of the
    clips in which the speech check found no speech (embedded whole, not refused)."""
    policy = replace(embedder.policy, refuse=False)
    emb, seconds, silent = embedder.embed_files_measured(
        [u.path for u in utts], progress=progress, policy=policy
    )
    silent_paths = set(silent)
    return (
        {u.utt: emb[i] for i, u in enumerate(utts)},
        {u.utt: float(seconds[i]) for i, u in enumerate(utts)},
        [u.utt for u in utts if str(u.path) in silent_paths],
    )


def fit_backend(
    embedder: Embedder,
    train: Sequence[Utterance],
    heldout: Sequence[Utterance],
    ecfg: EvalConfig,
    *,
    corpora: Sequence[str] = (),
    seed: int = 0,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> Backend:
    """The whole back-end: training statistics, then calibration on ``heldout`` speakers
    (skipped when ``eval.calibrate`` is off or nothing was held out)."""
    backend = fit_training_stats(embedder, train, ecfg, seed, progress)
    if not (ecfg.calibrate and heldout):
        if ecfg.calibrate:
            log.warning("eval.calibrate is on but no speakers were held out: not calibrated")
        return backend
    emb, speech, silent = embed_measured_by_utt(embedder, heldout, progress)
    if silent:
        # a deployed decision refuses these clips, so no calibration trial uses them
        log.warning(
            "%d held-out clips without speech left out of calibration: %s",
            len(silent),
            ", ".join(silent[:5]) + (" ..." if len(silent) > 5 else ""),
        )
        heldout = [u for u in heldout if u.utt not in set(silent)]
    trial_set = enroll_style_trials(heldout, ecfg.calibration_enroll_utts, corpora)
    info = {
        "kind": "held-out training speakers",
        "enroll_utts": ecfg.calibration_enroll_utts,
        "corpora": sorted({corpus_of(u.speaker, list(corpora)) for u in heldout} - {""}),
        **(source or {}),
    }
    fitted = fit_calibration(
        Scorer(backend),
        trial_set,
        emb,
        ecfg.p_target,
        info,
        speech_by_utt=speech if ecfg.quality_calibration else None,
        corpora=corpora,
        far_per_corpus=ecfg.far_per_corpus,
        far_min_speakers=ecfg.far_min_speakers,
        balance_corpora=ecfg.balance_corpora,
        min_speech_seconds=ecfg.min_speech_seconds,
        decision_prior=ecfg.decision_prior,
    )
    log.info(
        "calibrated on %d held-out speakers (%d target, %d non-target trials): EER %.2f%%, "
        "minDCF %.3f, actual DCF %.3f",
        fitted.provenance["speakers"],
        fitted.provenance["n_target"],
        fitted.provenance["n_nontarget"],
        100 * fitted.provenance["eer"],
        fitted.provenance["min_dcf"],
        fitted.provenance["act_dcf"],
    )
    return fitted
