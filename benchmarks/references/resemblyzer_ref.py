"""Pretrained reference: Resemblyzer's GE2E voice encoder (weights ship with the package).

Install with ``pip install --no-deps resemblyzer==0.1.4 webrtcvad-wheels`` (its other
needs, librosa, scipy and torch, are already there). Each 16 kHz wave from
``voiceprint.audio.load`` goes through the package's own preprocessing (volume
normalisation, WebRTC-VAD trimming of long silences) and ``embed_utterance`` (mean of
1.6 s partial embeddings, L2-normalised): a (256,) vector per utterance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESEMBLYZER_RATE = 16000  # the encoder's sample rate (resemblyzer.hparams.sampling_rate)


def import_resemblyzer() -> Any:
    """The ``resemblyzer`` module, or an ImportError that says how to install it."""
    try:
        import resemblyzer
    except ImportError as err:
        raise ImportError(
            "the Resemblyzer reference needs the resemblyzer package: "
            "pip install --no-deps resemblyzer==0.1.4 webrtcvad-wheels "
            f"(see benchmarks/README.md); import failed: {err}"
        ) from err
    return resemblyzer


class ResemblyzerEmbedder:
    """``embed(wave)``: float32 (N,) at 16 kHz -> (256,) float32 unit vector."""

    sample_rate = RESEMBLYZER_RATE

    def __init__(self, device: str = "cpu") -> None:
        resemblyzer = import_resemblyzer()
        self._preprocess = resemblyzer.preprocess_wav
        self.encoder = resemblyzer.VoiceEncoder(device, verbose=False)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        trimmed = self._preprocess(wave)  # no source rate: the wave is already at 16 kHz
        if len(trimmed) < RESEMBLYZER_RATE // 10:  # VAD kept (almost) nothing: use it all
            trimmed = wave
        return np.asarray(self.encoder.embed_utterance(trimmed), dtype=np.float32)
