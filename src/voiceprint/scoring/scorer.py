"""THE scorer: embeddings (+ the model's back-end) -> scores -> LLRs.

:class:`Scorer` holds the only cosine: every path that turns embeddings into a verdict
(evaluation, calibration, the embedder, the speaker store, the CLI, the service,
diarization) scores through it, so the deployed figures are the evaluated ones.

    scorer = Scorer(backend)
    units = scorer.units(embeddings)                 # (N, D) centred, projected, unit rows
    model = scorer.speaker_model(enrollment)         # (D,) from (K, D) enrollment clips
    s = scorer.score(model[None], units)             # (1, N) scores (AS-norm when set)
    llr = scorer.llr(s)                              # calibrated log-likelihood ratios
    accept = llr >= scorer.decision.threshold

Inputs may be numpy arrays or torch tensors (any device); outputs are float64 numpy
arrays. Embeddings are rows: (N, D). :func:`verification` is the lab's name for the
plain cosine of paired rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceprint.errors import VoiceprintError
from voiceprint.scoring import search
from voiceprint.scoring.arrays import EPS, length_norm, mean_subtract, to_numpy
from voiceprint.scoring.backend import Backend
from voiceprint.scoring.decision import Decision
from voiceprint.scoring.llr import REFERENCE_SECONDS, trial_quality

__all__ = ["Match", "MissingEmbeddingError", "Scorer", "verification"]


class MissingEmbeddingError(VoiceprintError, KeyError):
    """Trials name recordings that have no embedding (a trial list of another corpus or
    protocol, or recordings left out of the embedding)."""


def _top_stats(emb: np.ndarray, cohort_n: np.ndarray, top_n: int) -> tuple[np.ndarray, ...]:
    """Mean and std (ddof 0) of each row's ``top_n`` highest cosine scores to the cohort."""
    scores = length_norm(emb) @ cohort_n.T
    k = cohort_n.shape[0]
    top = np.partition(scores, k - top_n, axis=1)[:, k - top_n :]
    return top.mean(axis=1), np.maximum(top.std(axis=1), EPS)


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
        x = to_numpy(emb, "embeddings")
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
        return self.model_of_units(self.units(np.atleast_2d(to_numpy(emb, "enrollment"))))

    def model_of_units(self, units: Any) -> np.ndarray:
        """:meth:`speaker_model` of rows already through :meth:`units`: (K, D) -> (D,),
        their mean at unit length (a diarization cluster's model)."""
        return length_norm(to_numpy(units, "units", ndim=2).mean(0))

    def norm_stats(self, units: Any) -> np.ndarray | None:
        """AS-norm statistics of unit rows (N, D) -> (N, 2) [mean, std] of the top cohort
        cosines; None without a cohort."""
        if not self.backend.asnorm:
            return None
        x = to_numpy(units, "units", ndim=2)
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
        e = to_numpy(enroll_units, "enroll_units", ndim=2)
        p = to_numpy(probe_units, "probe_units", ndim=2)
        raw = self.cosine(e, p)
        if not self.backend.asnorm:
            return raw
        es = self.norm_stats(e) if enroll_stats is None else enroll_stats
        ps = self.norm_stats(p) if probe_stats is None else probe_stats
        return self._normalise(raw, es[:, None, :], ps[None, :, :])  # type: ignore[index]

    def cosine(self, a_units: Any, b_units: Any) -> np.ndarray:
        """The cosine of all pairs of unit rows: a (N, D) x b (M, D) -> (N, M); what
        :meth:`score` is before AS-norm (and is, without a cohort). Diarization compares
        windows and clusters by it."""
        a = to_numpy(a_units, "a_units", ndim=2)
        b = to_numpy(b_units, "b_units", ndim=2)
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"embedding dimensions differ: {a.shape[1]} vs {b.shape[1]}")
        return a @ b.T

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
        :class:`MissingEmbeddingError` names the trial ids without a row.
        """
        if len(trials) == 0:
            return np.zeros(0)
        missing = sorted({k for pair in trials for k in pair if k not in units_by_id})
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise MissingEmbeddingError(
                f"{len(missing)} trial ids have no embedding: {shown} (does the trial list "
                "belong to these recordings?)"
            )
        ids = sorted({k for pair in trials for k in pair})
        row = {k: i for i, k in enumerate(ids)}
        matrix = np.stack([to_numpy(units_by_id[k], k, ndim=1) for k in ids])
        stats = self.norm_stats(matrix)
        a = np.fromiter((row[e] for e, _ in trials), dtype=np.int64, count=len(trials))
        b = np.fromiter((row[t] for _, t in trials), dtype=np.int64, count=len(trials))
        out = np.empty(len(trials))
        for start in range(0, len(trials), chunk):
            ia, ib = a[start : start + chunk], b[start : start + chunk]
            out[start : start + chunk] = self.score_pairs(
                matrix[ia],
                matrix[ib],
                None if stats is None else stats[ia],
                None if stats is None else stats[ib],
            )
        return out

    def score_pairs(
        self,
        enroll_units: Any,
        probe_units: Any,
        enroll_stats: np.ndarray | None = None,
        probe_stats: np.ndarray | None = None,
    ) -> np.ndarray:
        """Paired unit rows: enroll (N, D) with probe (N, D) -> scores (N,), row by row.

        As :meth:`score` on each pair (its diagonal, without the (N, N) matrix); AS-norm
        statistics are computed when not given.
        """
        e = to_numpy(enroll_units, "enroll_units", ndim=2)
        p = to_numpy(probe_units, "probe_units", ndim=2)
        if e.shape != p.shape:
            raise ValueError(f"enroll {e.shape} and probe {p.shape} rows must pair up")
        raw = np.einsum("nd,nd->n", e, p)
        if not self.backend.asnorm:
            return raw
        es = self.norm_stats(e) if enroll_stats is None else enroll_stats
        ps = self.norm_stats(p) if probe_stats is None else probe_stats
        return self._normalise(raw, es, ps)

    def llr(self, scores: Any, enroll_seconds: Any = None, test_seconds: Any = None) -> np.ndarray:
        """Calibrated natural-log likelihood ratios of scores (same shape); the scores
        themselves when the back-end has no calibration.

        ``enroll_seconds``, ``test_seconds``: net speech of each trial's two sides
        (broadcast against ``scores``; None = long), used by a quality-aware calibration.
        """
        if self.backend.calibration is None:
            return to_numpy(scores, "scores")
        quality = None
        if enroll_seconds is not None or test_seconds is not None:
            quality = trial_quality(
                REFERENCE_SECONDS if enroll_seconds is None else enroll_seconds,
                REFERENCE_SECONDS if test_seconds is None else test_seconds,
            )
        return self.backend.calibration.llr(scores, quality)

    # Search rows (voiceprint.scoring.search): score() as one inner product, for faiss.

    def search_width(self, dim: int) -> int:
        """Width of the search rows of ``dim``-dim units: ``dim``, or ``2 dim + 1``."""
        return search.width(dim, self.backend.asnorm)

    def _search_stats(self, units: np.ndarray, stats: np.ndarray | None) -> np.ndarray | None:
        if not self.backend.asnorm:
            return None
        return self.norm_stats(units) if stats is None else stats

    def search_rows(self, units: Any, stats: np.ndarray | None = None) -> np.ndarray:
        """Enrollment unit rows (N, D) -> float32 rows whose inner product with
        :meth:`search_probe`'s rows, plus its offset, is :meth:`score`."""
        u = to_numpy(units, "units", ndim=2)
        return search.enroll_rows(u, self._search_stats(u, stats))

    def search_probe(
        self, units: Any, stats: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probe unit rows (M, D) -> (float32 search rows, (M,) offsets to add)."""
        u = to_numpy(units, "units", ndim=2)
        return search.probe_rows(u, self._search_stats(u, stats))

    def search_units(self, rows: Any) -> np.ndarray:
        """The unit rows (N, D) inside enrollment search rows (inverse of search_rows)."""
        return search.enroll_units(to_numpy(rows, "rows", ndim=2), self.backend.asnorm)

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


def verification(emb1: Any, emb2: Any) -> np.ndarray:
    """Cosine similarity of paired rows: emb1 (N, D), emb2 (N, D) -> (N,).

    The lab's name: the plain scorer (no back-end) on each pair of rows.
    """
    x = to_numpy(emb1, "emb1", ndim=2)
    y = to_numpy(emb2, "emb2", ndim=2)
    if x.shape != y.shape:
        raise ValueError(f"emb1 {x.shape} and emb2 {y.shape} must have the same shape")
    scorer = Scorer()
    return scorer.score_pairs(scorer.units(x), scorer.units(y))
