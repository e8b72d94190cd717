"""Verification metrics: ROC/DET points, EER, minDCF, actual DCF of calibrated LLRs,
speaker-bootstrap intervals (EER, minDCF, actual DCF) and the speaker pairs behind the
false accepts at a threshold; :func:`report` gathers the figures every report gives.

Pure vectorised numpy: every figure is read from one descending sort of the scores and
cumulative sums of (optionally weighted) trial counts, never a loop over thresholds
(:class:`~voiceprint.metrics.operating_points.OperatingPoints`, shared by the plain, the
pooled and the resampled figures).

Modules: ``operating_points`` (checks, the walk, EER crossing, detection cost),
``figures`` (one trial list), ``bootstrap`` (speaker resampling), ``summary``
(``summarize``, ``report``).

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

from voiceprint.metrics.bootstrap import bootstrap_dcf, bootstrap_eer, paired_bootstrap
from voiceprint.metrics.figures import (
    act_dcf,
    auc,
    bayes_threshold,
    confusable_pairs,
    det_curve,
    eer,
    get_eer,
    min_dcf,
    roc,
    threshold_at_far,
    weighted_summary,
)
from voiceprint.metrics.summary import report, summarize

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
    "weighted_summary",
]
