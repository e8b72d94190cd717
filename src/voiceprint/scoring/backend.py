"""The back-end a model carries for scoring, and its JSON-ready form.

:class:`Backend` holds the training-embedding mean, the LDA projection, the AS-norm
cohort, the score -> LLR calibration, the default decision and the provenance; it is
saved inside the checkpoint and the ONNX file (arrays as :func:`encode_array` text).
:class:`voiceprint.scoring.Scorer` applies it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voiceprint.scoring.decision import Decision
from voiceprint.scoring.llr import ScoreCalibration

__all__ = ["Backend", "decode_array", "encode_array"]


def encode_array(x: np.ndarray) -> dict[str, Any]:
    """A float32 array as JSON-ready text: {"shape": [...], "float32": base64}."""
    arr = np.ascontiguousarray(x, dtype="<f4")
    return {"shape": list(arr.shape), "float32": base64.b64encode(arr.tobytes()).decode()}


def decode_array(value: Mapping[str, Any], name: str) -> np.ndarray:
    """Inverse of :func:`encode_array`; ValueError on a wrong size or non-finite values."""
    try:
        shape = tuple(int(n) for n in value["shape"])
        raw = base64.b64decode(value["float32"], validate=True)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"back-end {name} is not an encoded array: {err}") from err
    if len(raw) != 4 * math.prod(shape):
        raise ValueError(f"back-end {name}: {len(raw)} bytes do not hold shape {shape}")
    arr = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"back-end {name} holds non-finite values")
    return arr


@dataclass
class Backend:
    """What a model carries for scoring, saved inside its checkpoint and ONNX file.

    ``mean`` (D,): training-embedding mean, subtracted before cosine. ``projection``
    (D, D): an LDA of the training speakers applied after the mean (``x @ projection``;
    columns past the kept dimensions are zero, so units keep D dims). ``cohort`` (K, D):
    unit-norm speaker means (after mean and projection) for AS-norm over the
    ``asnorm_top`` best of them. ``calibration``: score -> LLR. ``decision``: the default
    decision on the LLR, with thresholds at false-accept rates. ``provenance``: where
    calibration and back-end came from (corpus, speakers, trials, their metrics).
    """

    mean: np.ndarray | None = None
    cohort: np.ndarray | None = None
    asnorm_top: int = 0
    projection: np.ndarray | None = None
    calibration: ScoreCalibration | None = None
    decision: Decision | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cohort is not None:
            if self.cohort.ndim != 2:
                raise ValueError(f"cohort must be (K, D), got {self.cohort.shape}")
            if not 0 <= self.asnorm_top <= self.cohort.shape[0]:
                raise ValueError(
                    f"asnorm_top {self.asnorm_top} must lie in [0, {self.cohort.shape[0]}]"
                )
            if self.mean is not None and self.mean.shape[0] != self.cohort.shape[1]:
                raise ValueError("back-end mean and cohort dimensions differ")
        if self.projection is not None:
            p = self.projection
            if p.ndim != 2 or p.shape[0] != p.shape[1]:
                raise ValueError(f"projection must be (D, D), got {p.shape}")
            if self.mean is not None and self.mean.shape[0] != p.shape[0]:
                raise ValueError("back-end mean and projection dimensions differ")
            if self.cohort is not None and self.cohort.shape[1] != p.shape[1]:
                raise ValueError("back-end projection and cohort dimensions differ")

    @property
    def asnorm(self) -> bool:
        return self.cohort is not None and self.asnorm_top > 0

    @property
    def dim(self) -> int | None:
        """The embedding dimension the back-end was fitted for (None: any)."""
        for part in (self.mean, self.projection, self.cohort):
            if part is not None:
                return int(part.shape[-1])
        return None

    def identity(self) -> bytes:
        """Bytes that change whenever the scores of stored embeddings would (mean,
        projection, cohort)."""
        parts = [b"mean", b"" if self.mean is None else self.mean.astype("<f4").tobytes()]
        if self.projection is not None:
            parts += [b"projection", self.projection.astype("<f4").tobytes()]
        if self.asnorm:
            parts += [b"cohort", self.cohort.astype("<f4").tobytes(), b"%d" % self.asnorm_top]
        return b"|".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": None if self.mean is None else encode_array(self.mean),
            "cohort": None if self.cohort is None else encode_array(self.cohort),
            "asnorm_top": int(self.asnorm_top),
            "projection": None if self.projection is None else encode_array(self.projection),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "decision": None if self.decision is None else self.decision.to_dict(),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Backend:
        """Inverse of :meth:`to_dict` (None -> the plain-cosine back-end); validates it."""
        if not values:
            return cls()
        if not isinstance(values, Mapping):
            raise ValueError(f"back-end must be a mapping, got {type(values).__name__}")
        mean = values.get("mean")
        cohort = values.get("cohort")
        calibration = values.get("calibration")
        decision = values.get("decision")
        projection = values.get("projection")
        return cls(
            mean=None if mean is None else decode_array(mean, "mean"),
            cohort=None if cohort is None else decode_array(cohort, "cohort"),
            asnorm_top=int(values.get("asnorm_top", 0)),
            projection=None if projection is None else decode_array(projection, "projection"),
            calibration=None if calibration is None else ScoreCalibration.from_dict(calibration),
            decision=None if decision is None else Decision.from_dict(decision),
            provenance=dict(values.get("provenance") or {}),
        )
