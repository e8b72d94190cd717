"""Stage 3, embeddings: one speaker embedding per window, in batches, streaming.

Only the embedder's public API is used (``embed_batch``, ``sample_rate``,
``min_samples``). The source is read once, in order; the samples kept at any time are
one block plus the windows still waiting for a batch, so memory does not grow with the
recording. Output: float32 (W, D), row ``i`` for window ``i``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from voiceprint.diarization.source import Source

BATCH_WINDOWS = 64  # windows embedded in one call
READ_SECONDS = 60.0


def embed_windows(
    embedder: Any,
    source: Source,
    windows: np.ndarray,
    *,
    batch_windows: int = BATCH_WINDOWS,
    progress: bool = False,
) -> np.ndarray:
    """Embeddings (W, D) of ``windows`` (W, 2) [start, end) samples of ``source``.

    Windows must be sorted by start; a window shorter than the model's minimum is padded
    with zeros to it (the embedder refuses shorter input).
    """
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    if len(windows) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if np.any(np.diff(windows[:, 0]) < 0):
        raise ValueError("windows must be sorted by start")
    minimum = int(embedder.min_samples)
    rows: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0
    nxt = 0
    block = int(READ_SECONDS * source.sample_rate)
    bar = tqdm(total=len(windows), desc="embedding", unit="win", disable=not progress)

    def flush() -> None:
        if pending:
            rows.append(embedder.embed_batch(pending))
            bar.update(len(pending))
            pending.clear()

    for _, wave in source.blocks(block):
        buffer = np.concatenate([buffer, wave]) if buffer.size else wave
        end = buffer_start + buffer.size
        while nxt < len(windows) and windows[nxt, 1] <= end:
            a, b = windows[nxt] - buffer_start
            piece = buffer[a:b]
            if piece.size < minimum:
                piece = np.pad(piece, (0, minimum - piece.size))
            pending.append(np.array(piece, dtype=np.float32))
            nxt += 1
            if len(pending) >= batch_windows:
                flush()
        keep = int(windows[nxt, 0]) if nxt < len(windows) else end
        drop = max(0, min(keep, end) - buffer_start)
        buffer, buffer_start = buffer[drop:], buffer_start + drop
    while nxt < len(windows):  # windows past the end of a resampled stream: clip them
        a = int(windows[nxt, 0]) - buffer_start
        piece = buffer[max(a, 0) :]
        pending.append(np.pad(piece, (0, max(0, minimum - piece.size))).astype(np.float32))
        nxt += 1
    flush()
    bar.close()
    return np.concatenate(rows).astype(np.float32)
