"""Stage 5b, overlapped speech: a second speaker on the frames where two voices meet.

Clustering gives each speech frame one speaker; real meetings talk over each other. Two
ways to find where, both ending in a second label per 10 ms frame:

* :class:`OverlapDetector`, a small learned detector (log-mel 64 -> dilated convolutions
  -> bidirectional GRU -> P(two or more voices) per 10 ms frame, ~40k parameters, the
  whole block as context), on by default, trained
  by :mod:`.overlap_train` on conversations simulated from TRAINING speakers only (so762
  and cv-zh ``wav/train``, half through far-field rooms), shipped as
  ``assets/overlap.npz`` (numpy arrays and a JSON header: loading runs no code). Frames
  whose probability passes ``threshold`` inside speech, in runs of at least
  ``min_frames``, get as second speaker the nearest other speaker in time
  (:func:`nearest_other`), if one speaks within ``NEAREST_MAX_SECONDS``: who talks over
  someone is mostly who spoke just before or just after, and with nobody that near the
  frame keeps one speaker (no guess).
* :func:`second_speaker`, the heuristic it replaces (both speakers either side of each
  change): kept for comparison, off by default.

Output of both: int64 (T,) per 10 ms frame, the second speaker's label or -1 (none); never
equal to the frame's first label.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

# Heuristic: seconds either side of a speaker change given both speakers; 0 turns it off.
# Off: on the AMI dev excerpts 1.5 s took DER(0.25) only from 27.5% to 26.5% (missed -2.1
# points, false alarm +3.2) and on simulated conversations without overlap it is pure
# false alarm (2-min files: 4.8% -> 5.8%).
CHANGE_OVERLAP_SECONDS = 0.0
# The learned detector, on by default (Diarizer(overlap_model=OVERLAP_MODEL)). The first
# one (convolutions only, +-0.3 s of context: held-out simulated frames precision 58%,
# recall 32%) was shipped off; with a bidirectional GRU on top (precision 71%, recall 64%)
# it fires mostly at turn changes, but also at some turn onsets after a pause in
# conversations without overlap. The second speaker is therefore taken only from within
# NEAREST_MAX_SECONDS, at P >= OVERLAP_THRESHOLD: both chosen on conversations simulated
# from cv-multi-dev speakers (28 languages, unseen by both models; 30 and 90 s, 0% and 10%
# overlap), where 1.5 s / 0.7 cost +0.1 to +0.25 points of DER without overlap and gained
# 2.4 to 2.6 points with 10% overlap (benchmarks/results/diarization.md, 2026-12-05).
# Beyond 1.5 s the detector's false alarms on onsets cost more than its hits gained there.
OVERLAP_MODEL = Path(__file__).resolve().parents[1] / "assets" / "overlap.npz"
OVERLAP_THRESHOLD = 0.7  # P(overlap) above which a speech frame gets a second speaker
OVERLAP_MIN_SECONDS = 0.3  # shorter runs of such frames are dropped
NEAREST_MAX_SECONDS = 1.5  # the second speaker must speak within this far of the frame
BLOCK_SECONDS = 60.0  # audio run through the detector at once (bounded memory)


def second_speaker(labels: np.ndarray, margin_frames: int) -> np.ndarray:
    """Second-speaker labels (T,) for first labels ``labels`` (T,) (-1: non-speech)."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    if margin_frames <= 0 or len(labels) < 2:
        return out
    change = np.flatnonzero((labels[1:] != labels[:-1]) & (labels[1:] >= 0) & (labels[:-1] >= 0))
    for c in change + 1:  # frame c starts the new speaker; c - 1 ends the old one
        before, after = int(labels[c - 1]), int(labels[c])
        a, b = max(0, c - margin_frames), min(len(labels), c + margin_frames)
        left = np.arange(a, c)
        right = np.arange(c, b)
        left = left[labels[left] == before]  # stay inside the turns that meet here
        right = right[labels[right] == after]
        out[left] = np.where(out[left] < 0, after, out[left])
        out[right] = np.where(out[right] < 0, before, out[right])
    return out


def runs_at_least(mask: np.ndarray, min_frames: int) -> np.ndarray:
    """``mask`` (T,) bool with its runs of True shorter than ``min_frames`` cleared."""
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if b - a < min_frames:
            out[a:b] = False
    return out


def nearest_other(labels: np.ndarray, mask: np.ndarray, max_frames: int) -> np.ndarray:
    """Second labels (T,): on ``mask`` frames with a label, the label of the nearest frame
    (either side, at most ``max_frames`` away) whose speaker is another one; else -1."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    frames = np.flatnonzero(np.asarray(mask, dtype=bool) & (labels >= 0))
    if len(frames) == 0:
        return out
    speakers = np.unique(labels[labels >= 0])
    index = np.arange(len(labels))
    best = np.full(len(frames), np.inf)
    for k in speakers:  # distance from every frame to speaker k's nearest frame
        where = labels == k
        prev = np.maximum.accumulate(np.where(where, index, -(10**9)))
        nxt = np.minimum.accumulate(np.where(where, index, 10**9)[::-1])[::-1]
        dist = np.minimum(index - prev, nxt - index)[frames].astype(float)
        dist[labels[frames] == k] = np.inf
        closer = (dist < best) & (dist <= max_frames)
        out[frames[closer]] = k
        best = np.where(closer, dist, best)
    return out


def build_net(
    n_mels: int = 64,
    channels: int = 32,
    dilations: tuple[int, ...] = (2, 4, 8),
    gru: int = 0,
) -> Any:
    """The detector's network: log-mel (B, T, n_mels) -> logits (B, T). A convolution of
    5 frames, then 3-frame convolutions dilated by ``dilations`` (residual), so each
    frame sees about +-0.3 s around it; with ``gru`` > 0, a bidirectional GRU of ``gru``
    units a side on top, so each frame sees the whole block (turn changes, who was
    speaking before)."""
    from torch import Tensor, nn

    class OverlapNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv1d(n_mels, channels, 5, padding=2)
            self.blocks = nn.ModuleList(
                nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in dilations
            )
            self.gru = nn.GRU(channels, gru, batch_first=True, bidirectional=True) if gru else None
            self.out = nn.Conv1d(2 * gru if gru else channels, 1, 1)

        def forward(self, x: Tensor) -> Tensor:
            h = self.inp(x.transpose(1, 2)).relu()
            for block in self.blocks:
                h = h + block(h).relu()
            if self.gru is not None:
                h = self.gru(h.transpose(1, 2))[0].transpose(1, 2)
            return self.out(h)[:, 0]

    return OverlapNet()


def normalise(logmel: np.ndarray) -> np.ndarray:
    """Log-mel (T, F) with each band's mean over the block removed (its spread is kept:
    how much louder the loudest frames are is part of what tells two voices from one)."""
    x = np.asarray(logmel, dtype=np.float32)
    return x - x.mean(0)


class OverlapDetector:
    """P(two or more voices) per 10 ms frame, from the weights of ``assets/overlap.npz``."""

    def __init__(self, path: str | Path = OVERLAP_MODEL) -> None:
        import torch

        from voiceprint.features import Fbank

        with np.load(path, allow_pickle=False) as z:
            self.info = json.loads(str(z["info"]))
            state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files if k != "info"}
        self.net = build_net(
            self.info["n_mels"],
            self.info["channels"],
            tuple(self.info["dilations"]),
            int(self.info.get("gru", 0)),
        )
        self.net.load_state_dict(state)
        self.net.eval()
        self.sample_rate = int(self.info["sample_rate"])
        self.fbank = Fbank(self.sample_rate, n_mels=self.info["n_mels"], mean_norm=False)

    def logmel(self, wave: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.fbank(torch.from_numpy(np.asarray(wave, dtype=np.float32))[None])[0].numpy()

    def frame_probabilities(self, logmel: np.ndarray) -> np.ndarray:
        """P(overlap) (T,) for one block's log-mel (T, n_mels)."""
        import torch

        if len(logmel) == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.no_grad():
            x = torch.from_numpy(normalise(logmel))[None]
            return torch.sigmoid(self.net(x))[0].numpy()

    def __call__(self, source: Any, num_frames: int, hop: float = 0.01) -> np.ndarray:
        """P(overlap) (num_frames,) per ``hop`` seconds of a source (read in blocks)."""
        out = np.zeros(num_frames, dtype=np.float32)
        block = int(BLOCK_SECONDS * source.sample_rate)
        for offset, wave in source.blocks(block):
            if wave.size < source.sample_rate // 10:
                continue
            prob = self.frame_probabilities(self.logmel(wave))
            a = int(round(offset / (hop * source.sample_rate)))
            n = max(0, min(len(prob), num_frames - a))
            out[a : a + n] = prob[:n]
        return out


@functools.lru_cache(maxsize=4)
def load_detector(path: str = str(OVERLAP_MODEL)) -> OverlapDetector:
    """The detector of ``path``, loaded once per process."""
    return OverlapDetector(path)
