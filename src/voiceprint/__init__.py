"""voiceprint: speaker verification and identification (声纹识别) in PyTorch.

The lab's names are importable from the top level (loaded on first use)::

    from voiceprint import Xvector, GlobalAveragePooling, Softmax, AMSoftmax, ECAPA_TDNN
    from voiceprint import get_eer, roc, verification, Embedder, SpeakerDB
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Xvector": "voiceprint.models.xvector",
    "ECAPA_TDNN": "voiceprint.models.ecapa",
    "ResNet34": "voiceprint.models.resnet",
    "GlobalAveragePooling": "voiceprint.pooling",
    "StatisticsPooling": "voiceprint.pooling",
    "AttentiveStatisticsPooling": "voiceprint.pooling",
    "Softmax": "voiceprint.losses",
    "AMSoftmax": "voiceprint.losses",
    "Amsoftmax": "voiceprint.losses",
    "AAMSoftmax": "voiceprint.losses",
    "MFCC": "voiceprint.features",
    "Fbank": "voiceprint.features",
    "get_eer": "voiceprint.metrics",
    "eer": "voiceprint.metrics",
    "min_dcf": "voiceprint.metrics",
    "roc": "voiceprint.metrics",
    "verification": "voiceprint.scoring",
    "Embedder": "voiceprint.embedder",
    "SpeakerDB": "voiceprint.store",
    "load_config": "voiceprint.config",
    "load_audio": "voiceprint.audio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'voiceprint' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return getattr(module, "load" if name == "load_audio" else name)
