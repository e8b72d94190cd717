"""Training-free reference: MFCC mean and standard deviation over frames, cosine scored.

An utterance becomes the (2 * n_mfcc,) vector [mean over frames, std over frames] of its
MFCCs (voiceprint's :class:`~voiceprint.features.MFCC`, without cepstral mean
normalisation, which would zero the mean half). Left as they are, the low cepstral
coefficients (c0 is log energy) dominate the cosine; so each dimension is standardised
with the mean and standard deviation measured on the training speakers' utterances
(:meth:`MfccMeanStd.fit`): statistics, not a trained model.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from voiceprint.features import MFCC


class MfccMeanStd:
    """Per-utterance MFCC statistics, standardised with statistics of a training set.

    ``embed(wave)``: float32 (N,) at ``sample_rate`` -> (2 * n_mfcc,) float32.
    """

    def __init__(self, n_mels: int = 40, n_mfcc: int = 30, sample_rate: int = 16000) -> None:
        self.frontend = MFCC(
            sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc, mean_norm=False
        ).eval()
        self.dim = 2 * n_mfcc
        self.centre = np.zeros(self.dim, dtype=np.float64)
        self.scale = np.ones(self.dim, dtype=np.float64)
        self.fitted = False

    @torch.inference_mode()
    def stats(self, wave: np.ndarray) -> np.ndarray:
        """[mean, std] over frames of one wave's MFCCs: (2 * n_mfcc,) float64.

        The std is the population std (divided by T). Raises ValueError for a wave
        shorter than one frame.
        """
        feats = self.frontend(torch.as_tensor(np.asarray(wave, dtype=np.float32))[None])[0]
        if feats.shape[0] == 0:
            raise ValueError(f"a wave of {len(wave)} samples is shorter than one MFCC frame")
        feats = feats.double()
        return torch.cat([feats.mean(0), feats.std(0, correction=0)]).numpy()

    def fit(self, waves: Iterable[np.ndarray]) -> MfccMeanStd:
        """Measure each dimension's mean and std over ``waves`` (the training utterances)."""
        stats = np.stack([self.stats(w) for w in waves])
        if stats.shape[0] < 2:
            raise ValueError("fit needs at least two utterances")
        self.centre = stats.mean(0)
        self.scale = np.maximum(stats.std(0), 1e-8)
        self.fitted = True
        return self

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """Standardised [mean, std] vector of one wave: (2 * n_mfcc,) float32."""
        return ((self.stats(wave) - self.centre) / self.scale).astype(np.float32)
