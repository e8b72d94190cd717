"""Classification heads for training speaker encoders; each owns its classifier weights.

Every head maps ``(embeddings (B, D), labels (B,))`` to ``(loss, accuracy)``: the mean
cross entropy and the fraction of items whose highest logit is their label. For the
margin heads the accuracy is taken from the logits without margin (plain cosine
similarity to each class weight), i.e. what a nearest-class decision would give.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voiceprint.config import LossConfig
from voiceprint.registry import lookup, register


def _accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of rows whose argmax is the label, as a float scalar tensor."""
    return (logits.argmax(dim=1) == labels).float().mean().detach()


@register("loss", "softmax")
class Softmax(nn.Module):
    """Linear classifier + cross entropy (the lab's baseline head)."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.fc(embeddings)
        return F.cross_entropy(logits, labels), _accuracy(logits, labels)


class _CosineHead(nn.Module):
    """Shared part of the margin heads: class weights and cosine logits."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight, gain=1.0)
        self.scale = float(scale)
        self.margin = 0.0
        self.set_margin(margin)

    def set_margin(self, margin: float) -> None:
        """Change the margin (e.g. a warm-up schedule from 0 to its final value)."""
        self.margin = float(margin)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """cos(theta) between each embedding and each class weight: (B, num_classes)."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def target_logit(self, cosine: Tensor) -> Tensor:
        """The target class's cosine after the margin, same shape as ``cosine``."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        cosine = self.cosine(embeddings)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        logits = self.scale * torch.where(target, self.target_logit(cosine), cosine)
        return F.cross_entropy(logits, labels), _accuracy(cosine, labels)

    def extra_repr(self) -> str:
        classes, dim = self.weight.shape
        return (
            f"embedding_dim={dim}, num_classes={classes}, scale={self.scale}, margin={self.margin}"
        )


@register("loss", "amsoftmax", "cosface")
class AMSoftmax(_CosineHead):
    """Additive margin softmax (arXiv 1801.05599): logits s * (cos(theta) - m * [target])."""

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, margin)

    def target_logit(self, cosine: Tensor) -> Tensor:
        return cosine - self.margin


Amsoftmax = AMSoftmax


@register("loss", "aamsoftmax", "arcface")
class AAMSoftmax(_CosineHead):
    """Additive angular margin softmax (ArcFace): target logit s * cos(theta + m).

    cos(theta + m) is not monotonic once theta + m > pi, so beyond theta > pi - m the
    target logit continues linearly as cos(theta) - m * sin(m) (its value at the
    threshold, minus a fixed penalty). With ``easy_margin`` the margin only applies where
    cos(theta) > 0.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 30.0,
        margin: float = 0.2,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, margin)
        self.easy_margin = easy_margin

    def set_margin(self, margin: float) -> None:
        self.margin = float(margin)
        self._cos_m = math.cos(self.margin)
        self._sin_m = math.sin(self.margin)
        self._threshold = math.cos(math.pi - self.margin)  # cos(theta) below: theta + m > pi
        self._penalty = math.sin(math.pi - self.margin) * self.margin

    def target_logit(self, cosine: Tensor) -> Tensor:
        sine = (1.0 - cosine.square()).clamp(min=1e-12, max=1.0).sqrt()
        phi = cosine * self._cos_m - sine * self._sin_m  # cos(theta + m)
        if self.easy_margin:
            return torch.where(cosine > 0, phi, cosine)
        return torch.where(cosine > self._threshold, phi, cosine - self._penalty)


def build_loss(cfg: LossConfig, embedding_dim: int, num_classes: int) -> nn.Module:
    """The head ``cfg.name``; ``scale`` and ``margin`` go only to heads that take them."""
    ctor = lookup("loss", cfg.name)
    params = inspect.signature(ctor).parameters
    kwargs: dict[str, Any] = {}
    if "scale" in params:
        kwargs["scale"] = cfg.scale
    if "margin" in params:
        kwargs["margin"] = cfg.margin
    return ctor(embedding_dim=embedding_dim, num_classes=num_classes, **kwargs)
