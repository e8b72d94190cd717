"""Shared plumbing of the accuracy benchmark: one trial set, one scorer, one timer.

Every system in ``benchmarks/accuracy.py`` turns each test utterance into an embedding
(:class:`WaveEmbedder`: 16 kHz float32 mono (N,) -> (D,)); :func:`score_trials` scores the
trial list by cosine similarity and :func:`trial_metrics` reports EER (with the
speaker-bootstrap 95% interval), minDCF and trial counts from the scores. A system whose
scores come from elsewhere (voiceprint's own evaluation, with its back-end) goes through
:func:`trial_metrics` too, so every row of the table is computed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from voiceprint import metrics, scoring
from voiceprint.data.corpus import Utterance, read_kaldi_dir
from voiceprint.data.protocol import Trial, read_trials

__all__ = [
    "TrialSet",
    "WaveEmbedder",
    "embed_waves",
    "load_trial_set",
    "score_trials",
    "trial_metrics",
]


class WaveEmbedder(Protocol):
    """Anything with ``embed(wave)``: float32 (N,) at 16 kHz -> embedding (D,)."""

    def embed(self, wave: np.ndarray) -> np.ndarray: ...


@dataclass
class TrialSet:
    """Test utterances and their trial list (``<enroll utt> <test utt> target|nontarget``)."""

    utts: list[Utterance]
    trials: list[Trial]

    @property
    def labels(self) -> np.ndarray:
        """(n_trials,) bool, True for target (same-speaker) trials."""
        return np.array([t for _, _, t in self.trials], dtype=bool)

    def speakers(self) -> tuple[np.ndarray, np.ndarray]:
        """Speaker of each side of each trial: two (n_trials,) arrays."""
        spk = {u.utt: u.speaker for u in self.utts}
        return (
            np.array([spk[a] for a, _, _ in self.trials]),
            np.array([spk[b] for _, b, _ in self.trials]),
        )


def load_trial_set(folder: str | Path, kind: str = "pairs") -> TrialSet:
    """Read a prepared test folder: ``wav.scp``, ``utt2spk`` and ``trials_<kind>``.

    Raises ValueError when a trial names an utterance the folder does not list.
    """
    folder = Path(folder)
    utts = read_kaldi_dir(folder)
    trials = read_trials(folder / f"trials_{kind}")
    known = {u.utt for u in utts}
    missing = sorted({x for a, b, _ in trials for x in (a, b)} - known)
    if missing:
        raise ValueError(f"{folder}/trials_{kind} names utterances not in wav.scp: {missing[:3]}")
    return TrialSet(utts, trials)


def score_trials(
    embeddings: np.ndarray, utt_ids: Sequence[str], trials: Sequence[Trial]
) -> np.ndarray:
    """Cosine score of each trial.

    Args:
        embeddings: (N, D) one row per utterance, in the order of ``utt_ids``.
        utt_ids: (N,) utterance ids.
        trials: (enroll utt, test utt, is_target) triples; both ids must be in ``utt_ids``.

    Returns:
        (len(trials),) float64 cosine similarities in [-1, 1].
    """
    emb = scoring.length_norm(np.asarray(embeddings, dtype=np.float64))
    if emb.ndim != 2 or emb.shape[0] != len(utt_ids):
        raise ValueError(f"embeddings {emb.shape} do not match {len(utt_ids)} utterance ids")
    row = {u: i for i, u in enumerate(utt_ids)}
    a = np.array([row[x] for x, _, _ in trials], dtype=np.int64)
    b = np.array([row[y] for _, y, _ in trials], dtype=np.int64)
    return np.einsum("nd,nd->n", emb[a], emb[b])


def trial_metrics(
    scores: np.ndarray,
    trial_set: TrialSet,
    *,
    n_boot: int = 1000,
    seed: int = 42,
    p_target: float = 0.01,
) -> dict[str, Any]:
    """EER, its speaker-bootstrap 95% interval and minDCF of ``scores`` on ``trial_set``.

    Args:
        scores: (n_trials,) one score per trial, in trial-list order.
        n_boot, seed: resamples and seed of :func:`voiceprint.metrics.bootstrap_eer`.
        p_target: target prior of the minDCF.

    Returns:
        ``{"eer", "eer_ci95": [low, high], "eer_threshold", "min_dcf", "p_target",
        "n_target", "n_nontarget", "confusable_pairs", "min_dcf_without_top_pair"}``, rates
        as fractions. ``confusable_pairs`` (:func:`voiceprint.metrics.confusable_pairs`)
        are the speaker pairs behind the false accepts at the minDCF threshold;
        ``min_dcf_without_top_pair`` is the minDCF with the first pair's trials left out,
        a sensitivity check (one pair of 190 can hold most of the cost), not a result.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = trial_set.labels
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores for {labels.shape[0]} trials")
    summary = metrics.summarize(scores[labels], scores[~labels], p_target=p_target)
    spk_a, spk_b = trial_set.speakers()
    low, high = metrics.bootstrap_eer(scores, labels, spk_a, spk_b, n_boot=n_boot, seed=seed)
    pairs = metrics.confusable_pairs(
        scores, labels, spk_a, spk_b, summary["min_dcf_threshold"], top=3
    )
    without = summary["min_dcf"]
    if pairs:
        a, b = pairs[0]["speakers"]
        keep = ~(((spk_a == a) & (spk_b == b)) | ((spk_a == b) & (spk_b == a)))
        without, _ = metrics.min_dcf(scores[labels & keep], scores[~labels & keep], p_target)
    return {
        "eer": summary["eer"],
        "eer_ci95": [low, high],
        "eer_threshold": summary["eer_threshold"],
        "min_dcf": summary["min_dcf"],
        "p_target": summary["p_target"],
        "n_target": summary["n_target"],
        "n_nontarget": summary["n_nontarget"],
        "confusable_pairs": pairs,
        "min_dcf_without_top_pair": without,
    }


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
