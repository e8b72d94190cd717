"""Test oracles: plain numpy re-computations that the scorer and the store are checked against.

Production code scores through :class:`voiceprint.scoring.Scorer` only; these direct,
loop-or-matrix versions (once free functions of ``voiceprint.scoring`` and
``voiceprint.store``) stay here, written without the scorer, so that a test compares two
independent computations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def _rows(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_scores(a: Any, b: Any) -> np.ndarray:
    """All-pairs cosine similarity: a (N, D), b (M, D) -> (N, M) in [-1, 1]."""
    x = _rows(a, "a", ndim=2)
    y = _rows(b, "b", ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    return _unit(x) @ _unit(y).T


def score_trials(embeddings: Mapping[str, Any], trials: Sequence[tuple[str, str]]) -> np.ndarray:
    """Cosine score of each ``(enroll_id, test_id)`` trial -> (len(trials),), one at a time;
    KeyError naming an id without an embedding."""
    out = []
    for a, b in trials:
        for key in (a, b):
            if key not in embeddings:
                raise KeyError(f"trial id {key} has no embedding")
        x, y = _rows(embeddings[a], a), _rows(embeddings[b], b)
        out.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
    return np.array(out, dtype=np.float64)


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
        cohort: (K, D) embeddings of speakers outside the test set.
        top_n: cohort scores kept per side, 1 <= top_n <= K.
        chunk: trials processed at once (bounds memory to chunk x K scores).

    Returns:
        (N,) normalised scores.
    """
    s = _rows(scores, "scores", ndim=1)
    e = _rows(enroll_emb, "enroll_emb", ndim=2)
    t = _rows(test_emb, "test_emb", ndim=2)
    c = _rows(cohort, "cohort", ndim=2)
    if e.shape != t.shape or e.shape[0] != s.shape[0]:
        raise ValueError(
            f"scores {s.shape}, enroll_emb {e.shape} and test_emb {t.shape} must agree in N"
        )
    if c.shape[1] != e.shape[1]:
        raise ValueError(f"cohort dimension {c.shape[1]} != embedding dimension {e.shape[1]}")
    if not 1 <= top_n <= c.shape[0]:
        raise ValueError(f"top_n must lie in [1, {c.shape[0]}] (cohort size), got {top_n}")
    cohort_n = _unit(c)
    k = cohort_n.shape[0]

    def top_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = np.sort(_unit(emb) @ cohort_n.T, axis=1)[:, k - top_n :]
        return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-12)

    out = np.empty_like(s)
    for start in range(0, s.shape[0], chunk):
        sl = slice(start, start + chunk)
        mu_e, sd_e = top_stats(e[sl])
        mu_t, sd_t = top_stats(t[sl])
        out[sl] = 0.5 * ((s[sl] - mu_e) / sd_e + (s[sl] - mu_t) / sd_t)
    return out


def brute_force_identify(
    enrolled: Iterable[tuple[str, np.ndarray]], embedding: np.ndarray, top: int = 5
) -> list[tuple[str, float]]:
    """Reference identification: a Python loop over (name, mean (D,)) pairs, cosine each."""
    probe = np.asarray(embedding, dtype=np.float64)
    probe = probe / np.linalg.norm(probe)
    scored = []
    for name, mean in enrolled:
        mean = np.asarray(mean, dtype=np.float64)
        scored.append((name, float(mean @ probe / np.linalg.norm(mean))))
    scored.sort(key=lambda item: -item[1])
    return scored[:top]
