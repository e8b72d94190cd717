"""Temporal pooling: frame-level features (B, C, T) -> one vector per utterance.

Every layer takes ``lengths`` (B,), the number of valid frames of each item, and ignores
the frames after them, so a padded batch gives the same vectors as its items one by one.
Standard deviations are population (biased) estimates, floored at ``eps`` before the
square root so that constant inputs keep a finite gradient. Pooling always computes in
float32, also inside a bfloat16 autocast region: a variance of 8-bit-mantissa numbers
loses most of its digits to cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import torch
from torch import Tensor, nn

from voiceprint.registry import build, register


def length_mask(lengths: Tensor | None, batch: int, frames: int, device: torch.device) -> Tensor:
    """Boolean mask (B, 1, T), True on the valid frames ``t < lengths[b]``.

    ``lengths=None`` means every frame is valid. Lengths are clipped to [1, T].
    """
    if lengths is None:
        return torch.ones(batch, 1, frames, dtype=torch.bool, device=device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    lengths = lengths.to(device=device).long().clamp(1, frames)
    steps = torch.arange(frames, device=device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1)


def masked_mean_std(
    x: Tensor, weights: Tensor, eps: float = 1e-6, need_std: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Weighted mean and std over time.

    x (B, C, T), weights (B, 1 or C, T) summing to 1 over T (zero on padded frames).
    Returns mean (B, C) and std (B, C) (``None`` when ``need_std`` is False).
    """
    mean = (weights * x).sum(dim=-1)
    if not need_std:
        return mean, None
    centred = x - mean.unsqueeze(-1)
    var = (weights * centred * centred).sum(dim=-1)  # a product, not Pow: faster in ONNX
    return mean, var.clamp(min=eps).sqrt()


def _uniform_weights(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, 1, T) weights 1/n on the n valid frames of each item."""
    weights = mask.to(dtype)
    return weights / weights.sum(dim=-1, keepdim=True)


def _zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """Set padded frames to 0 (robust to inf/NaN garbage, unlike multiplication)."""
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def float32_region(x: Tensor) -> torch.autocast:
    """A context with autocast off on ``x``'s device: the embedding layers after pooling
    run in float32 even when the trunk before them runs in bfloat16."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def full_precision(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a pooling ``forward(self, x, lengths)`` in float32 with autocast switched off."""

    @wraps(forward)
    def wrapper(self: nn.Module, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        with float32_region(x):
            return forward(self, x.float(), lengths)

    return wrapper


@register("pooling", "gap", "tap")
class GlobalAveragePooling(nn.Module):
    """Mean over valid frames: (B, C, T) -> (B, C), e.g. (64, 1500, 86) -> (64, 1500).

    Built as the lab builds it, ``GlobalAveragePooling()``: the mean needs no weights, so
    ``channels`` is optional; when given (``build_pooling`` gives it) it is the
    ``output_dim`` that models size their next layer with.
    """

    def __init__(self, channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.output_dim = channels

    @full_precision
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        mask = length_mask(lengths, x.shape[0], x.shape[-1], x.device)
        mean, _ = masked_mean_std(
            _zero_padding(x, mask), _uniform_weights(mask, x.dtype), need_std=False
        )
        return mean


@register("pooling", "stats", "tstp")
class StatisticsPooling(nn.Module):
    """Mean and standard deviation over valid frames: (B, C, T) -> (B, 2C) = [mean, std]."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.output_dim = 2 * channels

    @full_precision
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        mask = length_mask(lengths, x.shape[0], x.shape[-1], x.device)
        mean, std = masked_mean_std(
            _zero_padding(x, mask), _uniform_weights(mask, x.dtype), self.eps
        )
        return torch.cat([mean, std], dim=1)


@register("pooling", "asp", "astp")
class AttentiveStatisticsPooling(nn.Module):
    """Channel- and context-dependent attentive statistics (ECAPA-TDNN, arXiv 2005.07143).

    For every channel c and frame t a logit e_{c,t} = v_c^T tanh(BN(ReLU(W h_t + b))) + k_c
    is computed, where h_t is the frame vector, concatenated with the utterance's
    (masked) mean and std when ``global_context`` is set. Softmax over the valid frames
    gives weights alpha_{c,t}; the output is [sum_t alpha h, sqrt(sum_t alpha (h - mu)^2)],
    shape (B, 2C).
    """

    def __init__(
        self,
        channels: int,
        attention_channels: int = 128,
        global_context: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.global_context = global_context
        self.eps = eps
        self.output_dim = 2 * channels
        in_channels = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_channels, attention_channels, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, kernel_size=1),
        )

    @full_precision
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        batch, _, frames = x.shape
        mask = length_mask(lengths, batch, frames, x.device)
        x = _zero_padding(x, mask)
        if self.global_context:
            mean, std = masked_mean_std(x, _uniform_weights(mask, x.dtype), self.eps)
            context = torch.cat(
                [x, mean.unsqueeze(-1).expand_as(x), std.unsqueeze(-1).expand_as(x)], dim=1
            )
        else:
            context = x
        logits = self.attention(context)
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1)
        mean, std = masked_mean_std(x, weights, self.eps)
        return torch.cat([mean, std], dim=1)


def build_pooling(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """Registered pooling ``name`` over ``channels`` input channels (has ``output_dim``)."""
    return build("pooling", name, channels=channels, **kwargs)
