"""Thin ResNet over the (frequency, time) plane, as used for speaker embeddings by WeSpeaker.

Features (B, T, F) become an image (B, 1, F, T). A 3x3 stem and four stages of
BasicBlocks (channels b, 2b, 4b, 8b; strides 1, 2, 2, 2) downsample both axes by 8;
frequency and channels are flattened into (B, 8b * ceil(F / 8), ceil(T / 8)), pooled over
time and projected by a Linear layer to the embedding.

Padding: convolutions pad with zeros, and when ``lengths`` is given the padded time
steps are reset to zero before every 3x3 convolution, so a padded batch gives the
embeddings of its items one by one (in eval mode). The valid length after a stride-2
stage is ``(L - 1) // 2 + 1``, the same rule as the convolution's output size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from voiceprint.pooling import build_pooling, float32_region, length_mask
from voiceprint.registry import register


def _downsampled(size: Tensor | int, stride: int) -> Any:
    """Output size of a k=3, padding=1 (or k=1, padding=0) conv with ``stride``."""
    return (size - 1) // stride + 1


def _apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero padded time steps of x (B, C, F, T); mask (B, 1, 1, T) bool or None."""
    if mask is None:
        return x
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and ReLU, plus a (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, C, F, T) with zeroed padding -> (output, output lengths)."""
        out_lengths = None if lengths is None else _downsampled(lengths, self.stride)
        out = torch.relu(self.bn1(self.conv1(x)))
        mask = None
        if out_lengths is not None:
            mask = length_mask(out_lengths, out.shape[0], out.shape[-1], out.device).unsqueeze(1)
        out = _apply_mask(out, mask)
        out = torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))
        return _apply_mask(out, mask), out_lengths


@register("model", "resnet")
class ResNet(nn.Module):
    """ResNet speaker encoder: (B, T, F) -> (B, embedding_dim); depth set by ``blocks``."""

    strides: tuple[int, ...] = (1, 2, 2, 2)

    def __init__(
        self,
        feat_dim: int,
        embedding_dim: int = 256,
        base_channels: int = 32,
        pooling: str = "stats",
        blocks: Sequence[int] = (3, 4, 6, 3),
        pooling_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(blocks) != len(self.strides):
            raise ValueError(f"blocks needs {len(self.strides)} stage sizes, got {list(blocks)}")
        self.feat_dim = feat_dim
        self.embedding_dim = embedding_dim
        self.stem = nn.Sequential(
            nn.Conv2d(1, base_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(),
        )
        layers: list[BasicBlock] = []
        in_channels = base_channels
        freq = feat_dim
        for stage, (count, stride) in enumerate(zip(blocks, self.strides, strict=True)):
            out_channels = base_channels * 2**stage
            for i in range(count):
                layers.append(BasicBlock(in_channels, out_channels, stride if i == 0 else 1))
                in_channels = out_channels
            freq = _downsampled(freq, stride)
        self.layers = nn.ModuleList(layers)
        self.pooling = build_pooling(pooling, in_channels * freq, **(pooling_params or {}))
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """feats (B, T, F), lengths (B,) valid frames or None -> embeddings (B, D)."""
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise ValueError(f"expected features (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        mask = None
        if lengths is not None:
            mask = length_mask(lengths, x.shape[0], x.shape[-1], x.device).unsqueeze(1)
            x = _apply_mask(x, mask)
        x = _apply_mask(self.stem(x), mask)
        for layer in self.layers:
            x, lengths = layer(x, lengths)
        batch, channels, freq, frames = x.shape
        x = x.reshape(batch, channels * freq, frames)
        pooled = self.pooling(x, lengths)
        with float32_region(pooled):  # the bf16 autocast region (training) ends at pooling
            return self.embedding(pooled.float())


@register("model", "resnet34")
class ResNet34(ResNet):
    """Thin ResNet34 (BasicBlocks 3, 4, 6, 3; channels 32/64/128/256) with stats pooling."""

    def __init__(
        self,
        feat_dim: int,
        embedding_dim: int = 256,
        base_channels: int = 32,
        pooling: str = "stats",
        blocks: Sequence[int] = (3, 4, 6, 3),
        pooling_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(feat_dim, embedding_dim, base_channels, pooling, blocks, pooling_params)


@register("model", "resnet18")
class ResNet18(ResNet):
    """Thin ResNet18 (BasicBlocks 2, 2, 2, 2)."""

    def __init__(
        self,
        feat_dim: int,
        embedding_dim: int = 256,
        base_channels: int = 32,
        pooling: str = "stats",
        blocks: Sequence[int] = (2, 2, 2, 2),
        pooling_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(feat_dim, embedding_dim, base_channels, pooling, blocks, pooling_params)
