"""Stage 5, boundary refinement: window labels -> speaker turns at frame resolution.

Each window votes for its cluster on every frame it covers, with a Hann weight that
peaks at its centre, so a frame covered by two windows of different speakers goes to
the one centred nearer to it. Speech frames (from the SAD regions) take the label with
the most votes; speech frames no window covers (regions too short to embed) take the
label of the nearest voted frame; non-speech frames stay silent. Runs of one label
become segments; turns shorter than ``min_turn`` inside speech are given to the
neighbouring speaker.
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.01
MIN_TURN_SECONDS = 0.25


def frame_labels(
    windows: np.ndarray,
    labels: np.ndarray,
    regions: np.ndarray,
    num_samples: int,
    sample_rate: int = 16000,
    frame_seconds: float = FRAME_SECONDS,
) -> np.ndarray:
    """Label per frame (T,) int64: a cluster in 0..K-1, or -1 for non-speech."""
    hop = frame_seconds * sample_rate
    frames = int(np.ceil(num_samples / hop))
    out = np.full(frames, -1, dtype=np.int64)
    speech = np.zeros(frames, dtype=bool)
    for start, end in np.asarray(regions).reshape(-1, 2):
        speech[int(start // hop) : int(np.ceil(end / hop))] = True
    if len(windows) == 0 or not speech.any():
        return out
    k = int(np.max(labels)) + 1
    votes = np.zeros((frames, k), dtype=np.float32)
    for (start, end), label in zip(np.asarray(windows), np.asarray(labels), strict=True):
        a, b = int(start // hop), min(int(np.ceil(end / hop)), frames)
        if b > a:
            votes[a:b, int(label)] += np.hanning(b - a + 2)[1:-1].astype(np.float32)
    voted = votes.sum(1) > 0
    best = np.argmax(votes, axis=1)
    if not voted.any():
        return out
    # Nearest voted frame for the frames no window reached.
    index = np.arange(frames)
    prev = np.maximum.accumulate(np.where(voted, index, -1))
    nxt = np.minimum.accumulate(np.where(voted, index, frames)[::-1])[::-1]
    use_prev = (prev >= 0) & ((nxt >= frames) | (index - prev <= nxt - index))
    source = np.where(use_prev, prev, np.minimum(nxt, frames - 1))
    out[speech] = best[source][speech]
    return out


def smooth_turns(labels: np.ndarray, min_frames: int) -> np.ndarray:
    """Give speech runs shorter than ``min_frames`` to the speaker before (or after) them."""
    out = labels.copy()
    change = np.flatnonzero(np.diff(out)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(out)]])
    for a, b in zip(starts, ends, strict=True):
        if out[a] < 0 or b - a >= min_frames:
            continue
        before = out[a - 1] if a > 0 else -1
        after = out[b] if b < len(out) else -1
        neighbour = before if before >= 0 else after
        if neighbour >= 0:
            out[a:b] = neighbour
    return out


def to_turns(
    labels: np.ndarray, frame_seconds: float = FRAME_SECONDS
) -> list[tuple[float, float, int]]:
    """Runs of one label (>= 0) as (start s, end s, label), in time order."""
    turns: list[tuple[float, float, int]] = []
    if len(labels) == 0:
        return turns
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    for a, b in zip(starts, ends, strict=True):
        if labels[a] >= 0:
            turns.append((a * frame_seconds, b * frame_seconds, int(labels[a])))
    return turns


def merge_turns(turns: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Turns of one speaker that touch or overlap joined into one; sorted by (start, label)."""
    out: list[tuple[float, float, int]] = []
    last_of: dict[int, int] = {}  # speaker -> index of their latest turn in out
    for a, b, k in sorted(turns, key=lambda t: (t[0], t[1], t[2])):
        i = last_of.get(k)
        if i is not None and a <= out[i][1] + 1e-9:
            out[i] = (out[i][0], max(out[i][1], b), k)
        else:
            last_of[k] = len(out)
            out.append((a, b, k))
    return out
