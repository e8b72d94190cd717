"""Training batches: decoded audio in memory, random fixed-length crops, labels.

Decoding is fast (MP3 48 kHz -> 16 kHz runs at ~1000x real time here), so the training
set is decoded once at start-up and held in memory as float32 (3.6 h ~ 0.8 GB).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from voiceprint import audio
from voiceprint.config import AugmentConfig
from voiceprint.data.corpus import Utterance


def load_waves(
    utts: Sequence[Utterance], sample_rate: int = 16000, progress: bool = True
) -> list[np.ndarray]:
    """Decode every utterance to float32 mono at ``sample_rate`` (AudioError names a bad file)."""
    return [
        audio.load(u.path, sample_rate)
        for u in tqdm(utts, desc="loading audio", unit="utt", disable=not progress)
    ]


def speaker_labels(utts: Sequence[Utterance]) -> tuple[list[str], np.ndarray]:
    """Sorted speaker names and each utterance's class index."""
    speakers = sorted({u.speaker for u in utts})
    index = {s: i for i, s in enumerate(speakers)}
    return speakers, np.array([index[u.speaker] for u in utts], dtype=np.int64)


# Speed perturbation's copies of every training speaker, as new speakers: the config's
# default (the field's 0.9/1.1), one literal for both.
SPEED_FACTORS: tuple[float, ...] = AugmentConfig.speed_factors


def stream_seed(seed: int, rank: int, epoch: int, stream: int) -> int:
    """The seed of one random stream of one rank (or data slot) in one epoch.

    Streams: 0 wave augmentation, 1 SpecAugment, 2 torch's global generator (the trainer),
    3 wave augmentation in a shard reader's slot. Every rank draws its own augmentation,
    and a run resumed at an epoch continues each stream exactly where it stood.
    """
    return int(np.random.SeedSequence([seed, rank, epoch, stream]).generate_state(1)[0])


def speed_perturbed_names(speakers: Sequence[str], factors: Sequence[float]) -> list[str]:
    """Names of the speed-perturbed copies of ``speakers``: all at factor 1, then 2, ..."""
    return [f"{s}-sp{factor}" for factor in factors for s in speakers]


def add_speed_perturbed_speakers(
    waves: list[np.ndarray],
    labels: np.ndarray,
    speakers: list[str],
    factors: Sequence[float] = SPEED_FACTORS,
    progress: bool = True,
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Append a speed-perturbed copy of every utterance per factor, each as new speakers.

    Speed change shifts pitch and formants, so a 0.9x copy of a voice is treated as
    another voice (as in the field's recipes): classes grow to len(speakers)*(1+len(factors)).
    """
    from voiceprint.data.channel import speed_perturb

    out_waves, out_labels = list(waves), [labels]
    for k, factor in enumerate(factors, 1):
        bar = tqdm(waves, desc=f"speed x{factor}", unit="utt", disable=not progress)
        out_waves.extend(np.asarray(speed_perturb(w, factor), dtype=np.float32) for w in bar)
        out_labels.append(labels + k * len(speakers))
    out_speakers = list(speakers) + speed_perturbed_names(speakers, factors)
    return out_waves, np.concatenate(out_labels), out_speakers


def random_crop(wave: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """A ``samples``-long crop at a random offset; shorter waves are tiled to length."""
    if len(wave) < samples:
        wave = np.tile(wave, samples // len(wave) + 1)
    start = int(rng.integers(0, len(wave) - samples + 1))
    return wave[start : start + samples]


def corpus_weights(groups: Sequence[str], power: float) -> np.ndarray | None:
    """Per-utterance sampling probabilities that give each group (corpus) a share of the
    draws proportional to (its utterances)^power, uniform within the group.

    groups: one group name per utterance. power 1 is uniform over utterances (returns
    None: plain shuffling); 0 gives every group the same share. Sums to 1.
    """
    if power == 1.0:
        return None
    names, index, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    share = counts.astype(np.float64) ** power
    share /= share.sum()
    weights = share[index] / counts[index]
    return weights / weights.sum()


class CropBatches:
    """Epochs of shuffled random-crop batches: (waves (B, N) float32, labels (B,) int64).

    Each epoch visits every utterance once in a seeded random order, or, with ``weights``
    (per-utterance probabilities, :func:`corpus_weights`), draws as many utterances with
    those probabilities. ``short_crop_share`` of the batches (a seeded draw per batch) are
    cropped to ``short_crop_samples`` instead of ``crop_samples``: short inputs. Under DDP
    every rank draws the same order and takes its own shard, so ranks see equal batch
    counts. Augmentation is left to the trainer (``augments`` is False).
    """

    augments = False

    def __init__(
        self,
        waves: Sequence[np.ndarray],
        labels: np.ndarray,
        batch_size: int,
        crop_samples: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: np.ndarray | None = None,
        short_crop_samples: int = 0,
        short_crop_share: float = 0.0,
    ) -> None:
        if len(waves) != len(labels):
            raise ValueError(f"{len(waves)} waves but {len(labels)} labels")
        if weights is not None and len(weights) != len(waves):
            raise ValueError(f"{len(waves)} waves but {len(weights)} sampling weights")
        self.waves, self.labels = waves, labels
        self.batch_size, self.crop_samples = batch_size, crop_samples
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.weights = weights
        self.short_crop_samples, self.short_crop_share = short_crop_samples, short_crop_share

    def __len__(self) -> int:
        per_rank = len(self.waves) // self.world_size
        return max(1, per_rank // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order_rng = np.random.default_rng([self.seed, epoch])
        n = len(self.waves)
        if self.weights is None:
            order = order_rng.permutation(n)
        else:
            order = order_rng.choice(n, size=n, replace=True, p=self.weights)
        per_rank = len(order) // self.world_size
        mine = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        rng = np.random.default_rng([self.seed, epoch, self.rank, 1])
        # one draw per batch, the same on every rank, so that ranks crop alike
        short = np.random.default_rng([self.seed, epoch, 2]).random(len(self))
        for b in range(len(self)):
            idx = mine[b * self.batch_size : (b + 1) * self.batch_size]
            if len(idx) == 0:
                idx = mine[: self.batch_size]
            samples = self.crop_samples
            if self.short_crop_samples and short[b] < self.short_crop_share:
                samples = self.short_crop_samples
            crops = np.stack([random_crop(self.waves[i], samples, rng) for i in idx])
            yield torch.from_numpy(crops), torch.from_numpy(self.labels[idx])
