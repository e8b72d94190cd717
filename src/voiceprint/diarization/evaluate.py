"""Scoring a diarization against the truth: DER, JER, speaker count, naming.

DER and JER come from pyannote.metrics (the ``diarization`` extra). ``collar`` follows
NIST md-eval: ``collar=0.25`` forgives 0.25 s on each side of every reference boundary
(pyannote's ``collar`` is the whole width, so it is passed 0.5). Overlapped speech is
scored (not skipped). JER is measured without a collar, as DIHARD does.

Frame-level figures (10 ms) use the same segments: ``overlap_miss`` is the speech a
single-speaker output cannot cover (in a region where n speakers talk, n - 1 of them),
as a share of all reference speech; naming accuracy is the share of enrolled speakers'
single-speaker speech that carries their name (over the frames the output gives to
someone, and over all of it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from voiceprint.diarization.segments import Segment

FRAME = 0.01
COMPONENTS = ("missed detection", "false alarm", "confusion", "total")


def _annotation(segments: Sequence[Segment], uri: str) -> Any:
    try:
        from pyannote.core import Annotation
        from pyannote.core import Segment as Span
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "scoring diarization needs pyannote.metrics: pip install 'voiceprint[diarization]'"
        ) from err
    ann = Annotation(uri=uri)
    for i, s in enumerate(segments):
        if s.end > s.start:
            ann[Span(s.start, s.end), i] = s.speaker
    return ann


def _frames(segments: Sequence[Segment], end: float) -> tuple[np.ndarray, list[str]]:
    """(T, S) bool activity of each speaker label per 10 ms frame, and the labels."""
    labels = sorted({s.speaker for s in segments})
    out = np.zeros((int(np.ceil(end / FRAME)) + 1, max(len(labels), 1)), dtype=bool)
    for s in segments:
        a, b = int(round(s.start / FRAME)), int(round(s.end / FRAME))
        out[a:b, labels.index(s.speaker)] = True
    return out, labels


def score_file(
    reference: Sequence[Segment],
    hypothesis: Sequence[Segment],
    uri: str = "file",
    enrolled: Collection[str] = (),
) -> dict[str, Any]:
    """Scores of one recording: DER (collar 0.25 s and 0) with components in seconds,
    JER, speaker counts, overlap and, for ``enrolled`` reference speakers, naming."""
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    ref, hyp = _annotation(reference, uri), _annotation(hypothesis, uri)
    out: dict[str, Any] = {"uri": uri}
    for collar in (0.25, 0.0):
        metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
        detail = metric(ref, hyp, detailed=True)
        out[f"der_{collar:g}"] = {k: float(detail[k]) for k in COMPONENTS}
    jer = JaccardErrorRate(collar=0.0)
    out["jer"] = float(jer(ref, hyp))
    out["ref_speakers"] = len({s.speaker for s in reference})
    out["hyp_speakers"] = len({s.speaker for s in hypothesis})

    end = max([s.end for s in reference] + [s.end for s in hypothesis] + [FRAME])
    ref_act, ref_labels = _frames(reference, end)
    hyp_act, hyp_labels = _frames(hypothesis, end)
    count = ref_act.sum(1)
    out["speech"] = float((count > 0).sum() * FRAME)
    out["overlap"] = float((count > 1).sum() * FRAME)
    out["overlap_miss"] = float(np.maximum(count - 1, 0).sum() * FRAME)
    out["ref_total"] = float(count.sum() * FRAME)

    named = {"enrolled": 0.0, "detected": 0.0, "correct": 0.0, "other": 0.0, "misnamed": 0.0}
    single = count == 1
    hyp_any = hyp_act.any(1) if hypothesis else np.zeros(len(count), dtype=bool)
    enrolled = set(enrolled)
    for j, label in enumerate(ref_labels):
        mine = single & ref_act[:, j]
        if label in enrolled:
            named["enrolled"] += mine.sum() * FRAME
            named["detected"] += (mine & hyp_any).sum() * FRAME
            if label in hyp_labels:
                named["correct"] += (mine & hyp_act[:, hyp_labels.index(label)]).sum() * FRAME
        elif enrolled:  # a voice nobody enrolled, given an enrolled name
            named["other"] += mine.sum() * FRAME
            for name in enrolled & set(hyp_labels):
                named["misnamed"] += (mine & hyp_act[:, hyp_labels.index(name)]).sum() * FRAME
    out["naming"] = {k: float(v) for k, v in named.items()}
    return out


def summarise(files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over files: DERs from summed components, mean JER, count and naming rates."""
    if not files:
        raise ValueError("no files to summarise")
    out: dict[str, Any] = {"files": len(files)}
    for key in ("der_0.25", "der_0"):
        parts = {k: sum(f[key][k] for f in files) for k in COMPONENTS}
        total = max(parts["total"], 1e-9)
        out[key] = {
            "der": (parts["missed detection"] + parts["false alarm"] + parts["confusion"]) / total,
            "missed": parts["missed detection"] / total,
            "false_alarm": parts["false alarm"] / total,
            "confusion": parts["confusion"] / total,
        }
    out["jer"] = float(np.mean([f["jer"] for f in files]))
    out["count_right"] = float(np.mean([f["ref_speakers"] == f["hyp_speakers"] for f in files]))
    out["count_error"] = [f["hyp_speakers"] - f["ref_speakers"] for f in files]
    ref_total = sum(f["ref_total"] for f in files)
    out["overlap_share"] = sum(f["overlap"] for f in files) / max(
        sum(f["speech"] for f in files), 1e-9
    )
    out["overlap_miss"] = sum(f["overlap_miss"] for f in files) / max(ref_total, 1e-9)
    naming = {k: sum(f["naming"][k] for f in files) for k in files[0]["naming"]}
    if naming["enrolled"] > 0:
        out["naming_detected"] = naming["correct"] / max(naming["detected"], 1e-9)
        out["naming_all"] = naming["correct"] / naming["enrolled"]
        out["misnamed"] = naming["misnamed"] / max(naming["other"], 1e-9)
    return out


def score_sets(
    reference: Mapping[str, Sequence[Segment]],
    hypothesis: Mapping[str, Sequence[Segment]],
    enrolled: Collection[str] = (),
) -> dict[str, Any]:
    """Score every reference file (a missing hypothesis counts as silence): per-file
    results under ``"per_file"`` and the :func:`summarise` totals."""
    files = [
        score_file(reference[uri], hypothesis.get(uri, []), uri, enrolled)
        for uri in sorted(reference)
    ]
    return {**summarise(files), "per_file": files}
