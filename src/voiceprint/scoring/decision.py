"""Decisions on the LLR: thresholds, the false-accept table, the open-set rule, verdicts.

A :class:`Decision` is the one place thresholds live: the model's default one travels in
its back-end, :meth:`Decision.at_far` and :meth:`Decision.at_prior` pick others, and
:meth:`Decision.for_gallery` turns a verification threshold into an open-set one.
:meth:`Decision.judge` answers :data:`ACCEPT`, :data:`REJECT` or, when a side holds too
little speech to keep the promised false-accept rate, :data:`NOT_ENOUGH_SPEECH`;
:meth:`Decision.name` gives the open-set answer: the candidate's name, :data:`UNKNOWN`
or :data:`NOT_ENOUGH_SPEECH`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from voiceprint import metrics
from voiceprint.metrics import bayes_threshold
from voiceprint.scoring.arrays import finite_1d

__all__ = [
    "ACCEPT",
    "FAR_GRID",
    "NOT_ENOUGH_SPEECH",
    "OPEN_SET_PRIOR",
    "REJECT",
    "UNKNOWN",
    "Decision",
]

# False-accept rates at which a calibration records thresholds (Decision.far_points).
FAR_GRID = (
    1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5
)  # fmt: skip


# Open-set identification with the model's own decision: the prior that a voice searched
# for is one of the enrolled (Decision.for_gallery spreads it over them). The model's
# stored prior (0.0075) is a verification prior; as an open-set prior it named 2-21% of
# enrolled voices. Chosen on four dev sets (benchmarks/results/identification.md): the
# highest prior whose false-positive identification rate stays within 1% on their mean and
# 2% on each (0.05: 0.49-0.88% on so762 dev up to 60 enrolled, 1.14% on ar-cmd test).
OPEN_SET_PRIOR = 0.05

# A verdict's words (Decision.judge): the three answers a decision gives.
ACCEPT, REJECT, NOT_ENOUGH_SPEECH = "accept", "reject", "not enough speech"
# The open-set answer (Decision.name) for a voice that none of the enrolled speakers is.
UNKNOWN = "unknown"


@dataclass
class Decision:
    """Accept a trial when its LLR (:meth:`Scorer.llr`) reaches ``threshold``.

    The one place thresholds live. ``rule`` says where the threshold came from:
    "bayes" (``-logit(p_target)`` on calibrated LLRs), "far" (false-accept rate ``far``
    measured on the calibration's non-target trials), "eer" (the equal-error point) or
    "manual". For a model without calibration the LLR is the score itself.
    ``far_points`` are (far, threshold) pairs ascending in far, measured on the
    calibration trials, from which :meth:`at_far` picks a threshold for any rate in
    their range. Stored as ``far_thresholds``: the rate as text ("0.01") -> threshold.
    ``min_speech_seconds``: below this net speech on either side (enrollment or test)
    the decision cannot keep its false-accept promise, and :meth:`judge` answers
    "not enough speech" instead of a verdict (0: no floor).
    """

    threshold: float
    rule: str = "eer"
    far: float | None = None
    far_points: list[tuple[float, float]] | None = None
    p_target: float | None = None
    min_speech_seconds: float = 0.0

    def accepts(self, llr: float) -> bool:
        return bool(llr >= self.threshold)

    def enough_speech(self, *seconds: float | None) -> bool:
        """Whether every given side's net speech (s; None = unknown, counted as enough)
        reaches ``min_speech_seconds``."""
        return all(s is None or s >= self.min_speech_seconds for s in seconds)

    def judge(self, llr: float, *speech_seconds: float | None) -> str:
        """The verdict on one trial: "accept", "reject", or "not enough speech" when a
        side's net speech (enrollment, test; seconds) lies below ``min_speech_seconds``."""
        if not self.enough_speech(*speech_seconds):
            return NOT_ENOUGH_SPEECH
        return ACCEPT if self.accepts(llr) else REJECT

    def name(self, candidate: str, llr: float, *speech_seconds: float | None) -> str:
        """The open-set answer for the best-scoring enrolled speaker ``candidate`` (use
        the decision :meth:`for_gallery` gives): its name when :meth:`judge` accepts,
        "not enough speech" when a side holds too little, else "unknown"."""
        verdict = self.judge(llr, *speech_seconds)
        if verdict == ACCEPT:
            return candidate
        return NOT_ENOUGH_SPEECH if verdict == NOT_ENOUGH_SPEECH else UNKNOWN

    def accepts_all(self, llr: Any, *speech_seconds: Any) -> np.ndarray:
        """Vectorised :meth:`judge` == "accept": (n,) LLRs and (n,) seconds per side ->
        (n,) bool; trials with too little speech are not accepted."""
        ok = np.asarray(llr, dtype=np.float64) >= self.threshold
        for seconds in speech_seconds:
            if seconds is not None:
                ok &= np.asarray(seconds, dtype=np.float64) >= self.min_speech_seconds
        return ok

    def rates(self, llr: Any, labels: Any, *speech_seconds: Any) -> dict[str, float]:
        """What this decision does on trials with known labels: false-accept and
        false-reject rates (fractions), trials answered "not enough speech" counted as
        rejected, and ``refused``, their share. llr, labels, seconds: (n,) each."""
        lab = np.asarray(labels, dtype=bool)
        if lab.all() or not lab.any():
            raise ValueError("rates need target and non-target trials")
        accepted = self.accepts_all(llr, *speech_seconds)
        answered = self.accepts_all(np.full(lab.size, np.inf), *speech_seconds)
        return {
            "threshold": float(self.threshold),
            "far": float(accepted[~lab].mean()),
            "frr": float(1.0 - accepted[lab].mean()),
            "refused": float(1.0 - answered.mean()),
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "rule": self.rule, "far": self.far}
        if self.p_target is not None:
            out["p_target"] = self.p_target
        if self.far_points:
            out["far_thresholds"] = {f"{f:g}": float(t) for f, t in self.far_points}
        if self.min_speech_seconds:
            out["min_speech_seconds"] = float(self.min_speech_seconds)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Decision:
        table = values.get("far_thresholds") or {}
        points = sorted((float(f), float(t)) for f, t in table.items())
        threshold = float(values["threshold"])
        if not math.isfinite(threshold):
            raise ValueError(f"decision threshold must be finite, got {threshold}")
        p_target = values.get("p_target")
        return cls(
            threshold,
            str(values.get("rule", "eer")),
            None if values.get("far") is None else float(values["far"]),
            points or None,
            None if p_target is None else float(p_target),
            float(values.get("min_speech_seconds", 0.0)),
        )

    @classmethod
    def from_scores(
        cls,
        threshold: float,
        nontarget: Any,
        grid: Sequence[float] = FAR_GRID,
        rule: str = "eer",
        p_target: float | None = None,
        groups: Any = None,
        min_speech_seconds: float = 0.0,
    ) -> Decision:
        """``threshold`` plus far_points measured on (n,) non-target LLRs.

        Only rates that allow at least one false accept among the ``n`` non-target trials
        (``far * n >= 1``) are kept: smaller ones cannot be measured on this many trials.
        With ``groups`` ((n,) labels, e.g. each trial's corpus) the threshold at each rate
        is the strictest of the groups' (each measured where it holds ``far * n_g >= 1``
        trials), so that the rate holds in every group, not only on their mixture.
        """
        nontarget = finite_1d(nontarget, "nontarget")
        labels = np.zeros(nontarget.size, dtype=np.int64) if groups is None else np.asarray(groups)
        if labels.shape != nontarget.shape:
            raise ValueError("groups must give one label per non-target score")
        parts = [nontarget[labels == g] for g in np.unique(labels)]
        points = []
        for far in grid:
            measurable = [p for p in parts if far * p.size >= 1.0]
            if far * nontarget.size >= 1.0 and measurable:
                points.append(
                    (float(far), max(metrics.threshold_at_far(p, far) for p in measurable))
                )
        return cls(float(threshold), rule, None, points or None, p_target, min_speech_seconds)

    def at_far(self, far: float) -> Decision:
        """The decision at false-accept rate ``far``, interpolated in log(far).

        Raises ValueError when no far_points were recorded or ``far`` is outside them.
        """
        if not self.far_points:
            raise ValueError(
                "this model carries no false-accept calibration (calibrate it with "
                "'voiceprint calibrate'); use --threshold or its stored decision"
            )
        fars = np.array([f for f, _ in self.far_points])
        thresholds = np.array([t for _, t in self.far_points])
        if not fars[0] <= far <= fars[-1]:
            raise ValueError(
                f"false-accept rate {far:g} is outside the calibrated range "
                f"{fars[0]:g}..{fars[-1]:g} measured on the calibration trials"
            )
        threshold = float(np.interp(np.log(far), np.log(fars), thresholds))
        return replace(self, threshold=threshold, rule="far", far=float(far))

    def at_prior(self, p_target: float) -> Decision:
        """The Bayes decision at prior ``p_target`` (meaningful on calibrated LLRs)."""
        return replace(
            self, threshold=bayes_threshold(p_target), rule="bayes", far=None, p_target=p_target
        )

    def for_gallery(self, n_enrolled: int, prior: float | None = None) -> Decision:
        """Open-set identification among ``n_enrolled`` speakers: the best match is named
        only when its LLR reaches the returned threshold, else the voice is "unknown".

        * "bayes": ``-logit(prior) + log(n)``, with ``prior`` the probability that the
          voice is one of the enrolled (None: this decision's own prior, i.e. its
          threshold + log(n)), spread evenly over the ``n`` enrolled speakers, so each
          one's prior odds are ``n`` times smaller. Callers pass :data:`OPEN_SET_PRIOR`.
        * "far": the per-comparison rate ``1 - (1 - far)**(1/n)``, so that a voice that is
          not enrolled passes any of the ``n`` with probability ``far`` (the
          false-positive identification rate); ValueError when that rate lies below the
          calibrated range.
        * "eer" and "manual" thresholds (uncalibrated scores) are used as they are.
        """
        if n_enrolled < 1:
            raise ValueError(f"a gallery needs at least one enrolled speaker, got {n_enrolled}")
        if self.rule == "bayes":
            base = self if prior is None else self.at_prior(prior)
            return replace(base, threshold=base.threshold + math.log(n_enrolled))
        if self.rule == "far" and self.far is not None:
            per_comparison = -math.expm1(math.log1p(-self.far) / n_enrolled)
            try:
                chosen = self.at_far(per_comparison)
            except ValueError as err:
                raise ValueError(
                    f"identification among {n_enrolled} speakers at a false-positive rate "
                    f"of {self.far:g} needs a false-accept rate of {per_comparison:.2g} per "
                    f"comparison: {err}"
                ) from err
            return replace(self, threshold=chosen.threshold)
        return self
