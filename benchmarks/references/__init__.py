"""Shared plumbing of the accuracy benchmark: one trial set, one scorer, one timer.

Every system in ``benchmarks/accuracy.py`` turns each test utterance into an embedding
(:class:`WaveEmbedder`: 16 kHz float32 mono (N,) -> (D,)); :func:`score_trials` scores the
trial list through the plain scorer (cosine, :class:`voiceprint.scoring.Scorer`) and
:func:`trial_metrics` reports EER (with the speaker-bootstrap 95% interval), minDCF, the
actual DCF of calibrated LLRs and trial counts (:func:`voiceprint.metrics.report`). A
system whose scores come from elsewhere (voiceprint's own evaluation, with its back-end)
goes through :func:`trial_metrics` too, so every row of the table is computed the same
way. The trial set is voiceprint's own (:class:`voiceprint.data.trials.TrialSet`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from voiceprint import metrics
from voiceprint.data.trials import Trial, TrialSet
from voiceprint.scoring import Scorer

__all__ = [
    "TrialSet",
    "WaveEmbedder",
    "embed_waves",
    "load_trial_set",
    "score_trials",
    "trial_metrics",
]

# Read a prepared test folder (``wav.scp``, ``utt2spk``, ``trials_<kind>``); ValueError
# when a trial names an utterance the folder does not list.
load_trial_set = TrialSet.read


class WaveEmbedder(Protocol):
    """Anything with ``embed(wave)``: float32 (N,) at 16 kHz -> embedding (D,)."""

    def embed(self, wave: np.ndarray) -> np.ndarray: ...


def score_trials(
    embeddings: np.ndarray, utt_ids: Sequence[str], trials: Sequence[Trial]
) -> np.ndarray:
    """Cosine score of each trial, through the plain scorer.

    Args:
        embeddings: (N, D) one row per utterance, in the order of ``utt_ids``.
        utt_ids: (N,) utterance ids.
        trials: (enroll utt, test utt, is_target) triples; both ids must be in ``utt_ids``.

    Returns:
        (len(trials),) float64 cosine similarities in [-1, 1].
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(utt_ids):
        raise ValueError(f"embeddings {emb.shape} do not match {len(utt_ids)} utterance ids")
    scorer = Scorer()
    units = dict(zip(utt_ids, scorer.units(emb), strict=True))
    return scorer.score_trials(units, [(a, b) for a, b, _ in trials])


def trial_metrics(
    scores: np.ndarray,
    trial_set: TrialSet,
    *,
    n_boot: int = 1000,
    seed: int = 42,
    p_target: float = 0.01,
    llr: np.ndarray | None = None,
    n_boot_dcf: int = 200,
) -> dict[str, Any]:
    """EER, its speaker-bootstrap 95% interval, minDCF (and the actual DCF of ``llr``)
    of ``scores`` on ``trial_set``.

    Args:
        scores: (n_trials,) one score per trial, in trial-list order.
        n_boot, seed: EER resamples and the seed of :func:`voiceprint.metrics.report`.
        p_target: target prior of the minDCF and actual DCF.
        llr: (n_trials,) calibrated LLRs of the trials, or None.
        n_boot_dcf: resamples of the minDCF and actual DCF intervals (0: none).

    Returns:
        :func:`voiceprint.metrics.report`'s figures (``eer``, ``eer_ci95`` [low, high],
        ``eer_threshold``, ``min_dcf``, ``min_dcf_threshold``, ``min_dcf_ci95``,
        ``p_target``, ``n_target``, ``n_nontarget``; with ``llr`` ``act_dcf``,
        ``act_dcf_ci95``) plus ``confusable_pairs`` and ``min_dcf_without_top_pair``,
        rates as fractions.
        ``confusable_pairs`` (:func:`voiceprint.metrics.confusable_pairs`) are the speaker
        pairs behind the false accepts at the minDCF threshold;
        ``min_dcf_without_top_pair`` is the minDCF with the first pair's trials left out,
        a sensitivity check (one pair of 190 can hold most of the cost), not a result.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = trial_set.labels
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores for {labels.shape[0]} trials")
    spk_a, spk_b = trial_set.speakers()
    out = metrics.report(
        scores,
        labels,
        spk_a,
        spk_b,
        p_target,
        llr,
        n_boot=n_boot,
        seed=seed,
        n_boot_dcf=n_boot_dcf,
    )
    pairs = metrics.confusable_pairs(scores, labels, spk_a, spk_b, out["min_dcf_threshold"], top=3)
    without = out["min_dcf"]
    if pairs:
        a, b = pairs[0]["speakers"]
        keep = ~(((spk_a == a) & (spk_b == b)) | ((spk_a == b) & (spk_b == a)))
        without, _ = metrics.min_dcf(scores[labels & keep], scores[~labels & keep], p_target)
    out["confusable_pairs"] = pairs
    out["min_dcf_without_top_pair"] = without
    return out


def embed_waves(
    embedder: WaveEmbedder,
    waves: Sequence[np.ndarray],
    *,
    sample_rate: int = 16000,
    threads: int = 2,
) -> tuple[np.ndarray, float]:
    """Embed each wave on its own, timed; returns ((N, D) float32, real-time factor).

    The real-time factor is the wall-clock embedding time divided by the audio duration
    (``sum(len(w)) / sample_rate`` seconds), with torch limited to ``threads`` threads.
    Decoding is not counted: ``waves`` are already 16 kHz float32 arrays.
    """
    if not waves:
        raise ValueError("no waves to embed")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        embedder.embed(waves[0])  # warm-up: lazy initialisation is not embedding time
        started = time.perf_counter()
        out = [np.asarray(embedder.embed(w), dtype=np.float32).reshape(-1) for w in waves]
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    audio_seconds = sum(len(w) for w in waves) / sample_rate
    return np.stack(out), seconds / audio_seconds
