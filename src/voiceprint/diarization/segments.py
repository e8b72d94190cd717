"""Segments of a diarization and the field's file formats: RTTM (write and read) and JSON.

An RTTM line is ``SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>``
(times in seconds); speaker labels cannot hold white space, so it becomes ``_``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Segment:
    """One speaker turn: [start, end) in seconds, the speaker's label, and when the
    recording was named against a store, the enrolled ``name`` (or ``"unknown"``) and the
    best match's ``score`` and calibrated ``llr``."""

    start: float
    end: float
    speaker: str
    name: str | None = None
    score: float | None = None
    llr: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


def rttm_label(label: str) -> str:
    """A speaker label as one RTTM field (white space -> ``_``)."""
    return "_".join(str(label).split()) or "_"


def write_rttm(path: str | Path, segments: Iterable[Segment], file_id: str) -> Path:
    """Write ``segments`` of recording ``file_id`` as RTTM; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fid = rttm_label(file_id)
    lines = [
        f"SPEAKER {fid} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {rttm_label(s.speaker)} "
        "<NA> <NA>\n"
        for s in sorted(segments, key=lambda s: (s.start, s.end, s.speaker))
        if s.duration > 0
    ]
    out.write_text("".join(lines), encoding="utf-8")
    return out


def read_rttm(path: str | Path) -> dict[str, list[Segment]]:
    """RTTM file -> {file id: segments sorted by start}; only SPEAKER lines are read.

    A malformed line raises ValueError naming the file and line number.
    """
    path = Path(path)
    out: dict[str, list[Segment]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"{path}:{number}: an RTTM SPEAKER line needs 8+ fields: {line!r}")
        try:
            start, duration = float(fields[3]), float(fields[4])
        except ValueError as err:
            raise ValueError(f"{path}:{number}: bad start or duration in {line!r}") from err
        if not (math.isfinite(start) and math.isfinite(duration)) or duration < 0:
            raise ValueError(f"{path}:{number}: bad start or duration in {line!r}")
        out.setdefault(fields[1], []).append(Segment(start, start + duration, fields[7]))
    return {k: sorted(v, key=lambda s: (s.start, s.end)) for k, v in out.items()}


def read_rttm_tree(path: str | Path) -> dict[str, list[Segment]]:
    """One RTTM file, or every ``*.rttm`` under a folder, as {file id: segments}."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.rttm"))
        if not files:
            raise FileNotFoundError(f"no .rttm files under {path}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"{path} does not exist")
    out: dict[str, list[Segment]] = {}
    for f in files:
        for fid, segs in read_rttm(f).items():
            out.setdefault(fid, []).extend(segs)
    return out


def segments_to_json(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    """Segments as JSON-ready dicts (times rounded to ms)."""
    rows = []
    for s in segments:
        row = asdict(s)
        row["start"], row["end"] = round(s.start, 3), round(s.end, 3)
        rows.append(row)
    return rows


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def merge_adjacent(segments: Sequence[Segment], gap: float = 0.0) -> list[Segment]:
    """Join consecutive segments of the same speaker separated by at most ``gap`` s."""
    out: list[Segment] = []
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        last = out[-1] if out else None
        if last is not None and last.speaker == s.speaker and s.start - last.end <= gap:
            out[-1] = Segment(
                last.start, max(last.end, s.end), last.speaker, last.name, last.score, last.llr
            )
        else:
            out.append(s)
    return out
