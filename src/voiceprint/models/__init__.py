"""Speaker encoders, one module per family, each registered under the kind "model".

Every encoder maps features (B, T, F) [+ lengths (B,)] to embeddings (B, D) and has an
``embedding_dim`` attribute; the classifier lives in the loss head (``voiceprint.losses``).
"""

from __future__ import annotations

from torch import nn

from voiceprint.config import ModelConfig
from voiceprint.models.ecapa import ECAPA_TDNN
from voiceprint.models.resnet import ResNet, ResNet18, ResNet34
from voiceprint.models.xvector import Xvector
from voiceprint.registry import build

__all__ = ["ECAPA_TDNN", "ResNet", "ResNet18", "ResNet34", "Xvector", "build_model"]


def build_model(cfg: ModelConfig, feat_dim: int) -> nn.Module:
    """The encoder ``cfg.name`` for ``feat_dim``-dimensional features.

    ``cfg.params`` holds the family's extra constructor keywords (e.g. ``channels`` for
    ECAPA-TDNN); an unknown keyword raises a TypeError naming the valid ones.
    """
    return build(
        "model",
        cfg.name,
        feat_dim=feat_dim,
        embedding_dim=cfg.embedding_dim,
        pooling=cfg.pooling,
        **cfg.params,
    )
