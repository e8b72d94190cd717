"""x-vector TDNN (Snyder et al., ICASSP 2018), the original lab's baseline encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from voiceprint.pooling import build_pooling, float32_region
from voiceprint.registry import register

# (kernel size, dilation) of the five frame layers: contexts [-2..2], {-2,0,2}, {-3,0,3}, {0}, {0}.
FRAME_CONTEXTS: tuple[tuple[int, int], ...] = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))


def _frames_lost() -> int:
    """Frames an unpadded TDNN stack removes: sum of (k - 1) * dilation = 14."""
    return sum((k - 1) * d for k, d in FRAME_CONTEXTS)


@register("model", "xvector", "tdnn")
class Xvector(nn.Module):
    """TDNN x-vector encoder: (B, T, F) features -> (B, embedding_dim) embeddings.

    Five frame layers (dilated Conv1d without padding, each followed by ReLU and
    BatchNorm) shrink T by 14 frames; the pooling layer turns (B, C5, T - 14) into one
    vector; the segment layer ``Linear(pool_dim, embedding_dim)`` gives the embedding
    before any nonlinearity (Kaldi's segment6). Inputs need at least 15 frames.
    """

    min_frames: int = _frames_lost() + 1

    def __init__(
        self,
        feat_dim: int,
        embedding_dim: int = 512,
        pooling: str = "gap",
        frame_channels: Sequence[int] = (512, 512, 512, 512, 1500),
        pooling_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(frame_channels) != len(FRAME_CONTEXTS):
            raise ValueError(
                f"frame_channels needs {len(FRAME_CONTEXTS)} sizes, got {list(frame_channels)}"
            )
        self.feat_dim = feat_dim
        self.embedding_dim = embedding_dim
        layers: list[nn.Module] = []
        in_channels = feat_dim
        for out_channels, (kernel, dilation) in zip(frame_channels, FRAME_CONTEXTS, strict=True):
            layers += [
                nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation),
                nn.ReLU(),
                nn.BatchNorm1d(out_channels),
            ]
            in_channels = out_channels
        self.frame_layers = nn.Sequential(*layers)
        self.pooling = build_pooling(pooling, in_channels, **(pooling_params or {}))
        self.segment6 = nn.Linear(self.pooling.output_dim, embedding_dim)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """feats (B, T, F), lengths (B,) valid frames or None -> embeddings (B, D)."""
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise ValueError(f"expected features (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        frames = feats.shape[1]
        if frames < self.min_frames:
            raise ValueError(
                f"x-vector needs at least {self.min_frames} frames, got an input of {frames}"
            )
        if lengths is not None:
            # Value checks cannot be traced by the ONNX exporter; the embedder checks
            # lengths before export-time graphs run.
            shortest = self.min_frames if torch.compiler.is_exporting() else int(lengths.min())
            if shortest < self.min_frames:
                raise ValueError(
                    f"x-vector needs at least {self.min_frames} frames, "
                    f"got an item of {shortest} valid frames"
                )
            lengths = lengths - _frames_lost()
        # A valid output frame only reads valid input frames (no padding), so the
        # padded tail needs no masking before pooling.
        x = self.frame_layers(feats.transpose(1, 2))
        pooled = self.pooling(x, lengths)
        with float32_region(pooled):  # the bf16 autocast region (training) ends at pooling
            return self.segment6(pooled.float())
