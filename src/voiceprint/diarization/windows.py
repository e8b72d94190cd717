"""Stage 2, windows: cut speech regions into overlapping windows to embed.

A region at least ``length`` long is covered by windows of ``length`` every ``step``, the
last one aligned to the region's end; a shorter region of at least ``min_length`` gets
one window of its own length; shorter ones get none (refinement labels them from their
neighbours). Output: int64 (W, 2) [start, end) samples, sorted by start.
"""

from __future__ import annotations

import numpy as np

WINDOW_SECONDS = 1.5
STEP_SECONDS = 0.75
MIN_WINDOW_SECONDS = 0.5


def make_windows(
    regions: np.ndarray,
    sample_rate: int = 16000,
    *,
    length: float = WINDOW_SECONDS,
    step: float = STEP_SECONDS,
    min_length: float = MIN_WINDOW_SECONDS,
) -> np.ndarray:
    """Windows (W, 2) over speech ``regions`` (R, 2), in samples at ``sample_rate``."""
    if not 0 < step <= length:
        raise ValueError(f"need 0 < step <= length, got step {step}, length {length}")
    size, hop = int(round(length * sample_rate)), int(round(step * sample_rate))
    shortest = int(round(min_length * sample_rate))
    out: list[tuple[int, int]] = []
    for start, end in np.asarray(regions, dtype=np.int64).reshape(-1, 2):
        span = int(end - start)
        if span < shortest:
            continue
        if span <= size:
            out.append((int(start), int(end)))
            continue
        starts = list(range(int(start), int(end) - size + 1, hop))
        if starts[-1] + size < end:
            starts.append(int(end) - size)
        out.extend((s, s + size) for s in starts)
    return np.array(out, dtype=np.int64).reshape(-1, 2)
