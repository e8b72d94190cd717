"""The torch side of inference: front-end and encoder as one module.

    encoder = SpeakerEncoder(build_frontend(features), build_model(model, frontend.dim))
    encoder(wave, lengths)                 # (B, N) float32 [+ (B,) int64] -> (B, D)

Only the torch backend of :mod:`voiceprint.embedder` and the ONNX export use it; an
embedder for an ONNX file never imports this module (nor torch).
"""

from __future__ import annotations

import torch


class SpeakerEncoder(torch.nn.Module):
    """Front-end + encoder in one module: waveform (B, N) [+ lengths] -> embeddings (B, D)."""

    def __init__(self, frontend: torch.nn.Module, model: torch.nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.frontend(wave, lengths)
        frames = None if lengths is None else self.frontend.num_frames(lengths)
        return self.model(feats, frames)


def min_samples_of(encoder: SpeakerEncoder) -> int:
    """Shortest input (samples) that gives the encoder enough frames (``min_frames``)."""
    frames = int(getattr(encoder.model, "min_frames", 1))
    frontend = encoder.frontend
    win = int(getattr(frontend, "win_length", 0))
    hop = int(getattr(frontend, "hop_length", 0))
    return win + max(frames - 1, 0) * hop
