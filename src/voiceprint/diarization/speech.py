"""Stage 1, speech activity detection: where in a source anyone speaks.

Runs :func:`voiceprint.vad.speech_regions` (Silero VAD, the project's one VAD) on blocks
of the source and joins regions that meet at a block boundary, so a long recording is
scanned in bounded memory. Output: int64 (R, 2) [start, end) sample indices, sorted and
non-overlapping.
"""

from __future__ import annotations

import numpy as np

from voiceprint import vad
from voiceprint.diarization.source import Source

# Silero's speech probability threshold for conversations. Its default (0.5) misses
# quiet voices (the quieter speaker of a conversation, children); lower values start to
# accept breaths and room noise. Chosen on simulated so762 dev conversations.
SAD_THRESHOLD = 0.3
SAD_BLOCK_SECONDS = 300.0  # audio scanned by one VAD call
JOIN_GAP_SECONDS = 0.05  # regions this close across a block boundary are joined
# A pause shorter than this inside speech stays speech: the annotation convention of the
# simulator's truth (and of most diarization references, which do not cut at breaths).
MIN_PAUSE_MS = 300


def detect_speech(
    source: Source,
    *,
    threshold: float = SAD_THRESHOLD,
    min_speech_ms: int = 200,
    min_silence_ms: int = MIN_PAUSE_MS,
    pad_ms: int = 30,
    block_seconds: float = SAD_BLOCK_SECONDS,
) -> np.ndarray:
    """Speech regions of ``source``: int64 (R, 2) [start, end) samples at its rate."""
    rate = source.sample_rate
    block = int(block_seconds * rate)
    join = int(JOIN_GAP_SECONDS * rate) + 2 * int(pad_ms * rate / 1000)
    found: list[list[int]] = []
    for offset, wave in source.blocks(block):
        if wave.size < rate // 10:  # a sliver at the end: nothing Silero can judge
            continue
        regions = vad.speech_regions(
            wave,
            rate,
            threshold=threshold,
            min_speech_ms=min_speech_ms,
            min_silence_ms=min_silence_ms,
            pad_ms=pad_ms,
        ).regions
        for start, end in regions + offset:
            if found and start - found[-1][1] <= join and start - offset <= join:
                found[-1][1] = int(max(found[-1][1], end))  # continues across the boundary
            else:
                found.append([int(start), int(end)])
    return np.array(found, dtype=np.int64).reshape(-1, 2)
