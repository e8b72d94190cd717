"""ECAPA-TDNN (Desplanques et al., Interspeech 2020, arXiv 2005.07143).

Layout for C channels: Conv1d(k=5) + ReLU + BN; three SE-Res2Blocks (k=3, dilations
2, 3, 4), the input of each being the sum of the outputs of all earlier layers; the
concatenated block outputs go through a 1x1 conv to 3C channels + ReLU (multi-layer
feature aggregation); attentive statistics pooling; BN; Linear to the embedding; BN.

Padding: every convolution uses 'same' padding, and when ``lengths`` is given the
padded frames are reset to zero after every layer, so a valid frame near the end of
an utterance sees the same zeros as when that utterance is processed alone. SE means
and the pooling only count valid frames. In eval mode a padded batch therefore gives
the embeddings of its items one by one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from voiceprint.pooling import build_pooling, float32_region, length_mask
from voiceprint.registry import register


def _apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the padded frames of x (B, C, T); mask (B, 1, T) bool or None (no padding)."""
    if mask is None:
        return x
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


class TDNNBlock(nn.Module):
    """Conv1d ('same' padding) + ReLU + BatchNorm on (B, C, T)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, dilation=dilation, padding=padding
        )
        self.relu = nn.ReLU()
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return _apply_mask(self.norm(self.relu(self.conv(x))), mask)


class Res2Conv(nn.Module):
    """Res2Net hierarchy: split C into ``scale`` groups; group i>0 is TDNN(x_i + y_{i-1}).

    The first group passes through unchanged, the second has no predecessor to add.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int) -> None:
        super().__init__()
        if channels % scale != 0:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(
            TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        outputs = [groups[0]]
        previous: Tensor | None = None
        for group, block in zip(groups[1:], self.blocks, strict=True):
            previous = block(group if previous is None else group + previous, mask)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the masked utterance mean: (B, C, T) -> x * sigmoid(MLP(mean))."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(channels, bottleneck)
        self.up = nn.Linear(bottleneck, channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            mean = x.mean(dim=-1)
        else:
            weights = mask.to(x.dtype)
            mean = (x * weights).sum(dim=-1) / weights.sum(dim=-1)
        gates = torch.sigmoid(self.up(torch.relu(self.down(mean))))
        return x * gates.unsqueeze(-1)


class SERes2Block(nn.Module):
    """1x1 TDNN -> Res2 dilated TDNN -> 1x1 TDNN -> SE, plus the identity shortcut."""

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, scale: int, se_channels: int
    ) -> None:
        super().__init__()
        self.inner = TDNNBlock(channels, channels, kernel_size=1)
        self.res2 = Res2Conv(channels, kernel_size, dilation, scale)
        self.outer = TDNNBlock(channels, channels, kernel_size=1)
        self.se = SqueezeExcitation(channels, se_channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        y = self.outer(self.res2(self.inner(x, mask), mask), mask)
        return self.se(y, mask) + x


@register("model", "ecapa_tdnn", "ecapa")
class ECAPA_TDNN(nn.Module):
    """ECAPA-TDNN encoder: (B, T, F) features -> (B, embedding_dim) embeddings.

    With C=512, 80-dimensional input and ASP pooling it has 6,191,360 parameters
    (the paper's 6.2M). The aggregation layer has ``mfa_channels`` outputs, 3C by
    default; the paper keeps it at 1536 for C=1024 (``mfa_channels=1536``: 14,657,728
    parameters, the paper's 14.7M). ``pooling`` may also be "stats" or "gap"; the final
    BatchNorm and Linear follow the pooling's output size.
    """

    def __init__(
        self,
        feat_dim: int,
        embedding_dim: int = 192,
        channels: int = 512,
        pooling: str = "asp",
        scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        mfa_channels: int | None = None,
        dilations: tuple[int, ...] = (2, 3, 4),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.embedding_dim = embedding_dim
        mfa_channels = mfa_channels or channels * len(dilations)
        self.stem = TDNNBlock(feat_dim, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, kernel_size, d, scale, se_channels) for d in dilations
        )
        self.mfa = nn.Conv1d(channels * len(dilations), mfa_channels, kernel_size=1)
        pool_kwargs: dict[str, Any] = {}
        if pooling.lower() in ("asp", "astp"):
            pool_kwargs["attention_channels"] = attention_channels
        self.pooling = build_pooling(pooling, mfa_channels, **pool_kwargs)
        self.pool_norm = nn.BatchNorm1d(self.pooling.output_dim)
        self.fc = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.emb_norm = nn.BatchNorm1d(embedding_dim)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """feats (B, T, F), lengths (B,) valid frames or None -> embeddings (B, D)."""
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise ValueError(f"expected features (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        x = feats.transpose(1, 2)
        mask = None
        if lengths is not None:
            mask = length_mask(lengths, x.shape[0], x.shape[-1], x.device)
            x = _apply_mask(x, mask)
        x = self.stem(x, mask)
        total = x
        outputs = []
        for block in self.blocks:
            out = block(total, mask)
            outputs.append(out)
            total = total + out
        x = torch.relu(self.mfa(torch.cat(outputs, dim=1)))
        x = self.pooling(x, lengths)
        with float32_region(x):  # the bf16 autocast region (training) ends at pooling
            return self.emb_norm(self.fc(self.pool_norm(x.float())))
