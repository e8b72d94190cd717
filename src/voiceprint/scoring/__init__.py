"""THE scorer: embeddings (+ the model's back-end) -> scores -> LLRs -> decisions.

Every path that turns embeddings into a verdict calls this package: evaluation,
calibration, the embedder, the speaker store, the CLI, the service and diarization.

* :mod:`~voiceprint.scoring.scorer`: :class:`Scorer`, the only cosine (mean, LDA
  projection, AS-norm), and :class:`Match`; :func:`verification`, the lab's name;
  :class:`MissingEmbeddingError` (trials without an embedding).
* :mod:`~voiceprint.scoring.backend`: :class:`Backend`, what a model carries for
  scoring, and its JSON form (:func:`encode_array`, :func:`decode_array`).
* :mod:`~voiceprint.scoring.llr`: :class:`ScoreCalibration` (score -> LLR, fitted by
  weighted logistic regression) and :func:`trial_quality` (net speech of both sides).
* :mod:`~voiceprint.scoring.decision`: :class:`Decision` (thresholds, the false-accept
  table :data:`FAR_GRID`, the open-set rule) and the verdicts :data:`ACCEPT`,
  :data:`REJECT`, :data:`NOT_ENOUGH_SPEECH` (:meth:`Decision.judge`) and the open-set
  answer, a name or :data:`UNKNOWN` (:meth:`Decision.name`).
* :mod:`~voiceprint.scoring.search`: the scores as inner products of search rows (faiss).
* :mod:`~voiceprint.scoring.arrays`: array helpers (:func:`length_norm`,
  :func:`mean_subtract`).

    scorer = Scorer(backend)
    units = scorer.units(embeddings)                 # (N, D) centred, projected, unit rows
    model = scorer.speaker_model(enrollment)         # (D,) from (K, D) enrollment clips
    s = scorer.score(model[None], units)             # (1, N) scores (AS-norm when set)
    llr = scorer.llr(s)                              # calibrated log-likelihood ratios
    accept = llr >= scorer.decision.threshold
"""

from voiceprint.scoring.arrays import length_norm, mean_subtract
from voiceprint.scoring.backend import Backend, decode_array, encode_array
from voiceprint.scoring.decision import (
    ACCEPT,
    FAR_GRID,
    NOT_ENOUGH_SPEECH,
    OPEN_SET_PRIOR,
    REJECT,
    UNKNOWN,
    Decision,
)
from voiceprint.scoring.llr import (
    MIN_QUALITY_SECONDS,
    REFERENCE_SECONDS,
    ScoreCalibration,
    trial_quality,
)
from voiceprint.scoring.scorer import Match, MissingEmbeddingError, Scorer, verification

__all__ = [
    "ACCEPT",
    "FAR_GRID",
    "MIN_QUALITY_SECONDS",
    "NOT_ENOUGH_SPEECH",
    "OPEN_SET_PRIOR",
    "REFERENCE_SECONDS",
    "REJECT",
    "UNKNOWN",
    "Backend",
    "Decision",
    "Match",
    "MissingEmbeddingError",
    "ScoreCalibration",
    "Scorer",
    "decode_array",
    "encode_array",
    "length_norm",
    "mean_subtract",
    "trial_quality",
    "verification",
]
