"""The training graph: front-end, encoder, margin head and augmentation in one module.

Everything with weights or randomness lives here, so DistributedDataParallel wraps it
whole and one call reseeds every random stream for a rank's epoch.
"""

from __future__ import annotations

import torch
from torch import nn

from voiceprint.config import ExperimentConfig
from voiceprint.data.dataset import stream_seed
from voiceprint.features import build_frontend
from voiceprint.losses import build_loss
from voiceprint.models import build_model

# train.precision -> compute dtype of the encoder trunk (float32: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


class TrainingGraph(nn.Module):
    """Everything with weights or randomness in one module, so DDP wraps it whole.

    forward(waves (B, N), labels (B,)) -> (loss, accuracy)
    """

    def __init__(
        self, config: ExperimentConfig, num_classes: int, augment_waves: bool = True
    ) -> None:
        super().__init__()
        from voiceprint.data.augment import SpecAugment, WaveAugmenter

        aug = config.augment
        self.frontend = build_frontend(config.features)
        self.model = build_model(config.model, self.frontend.dim)
        self.head = build_loss(config.loss, self.model.embedding_dim, num_classes)
        # Off when the data source augments the waves itself (shard reader workers).
        self.wave_augment = (
            WaveAugmenter(aug, config.features.sample_rate, seed=config.seed)
            if augment_waves
            else None
        )
        self.spec_augment = (
            SpecAugment.from_config(aug, seed=config.seed) if aug.specaugment else nn.Identity()
        )
        if config.train.precision not in AUTOCAST_DTYPES:
            raise ValueError(
                f"train.precision must be one of {sorted(AUTOCAST_DTYPES)}, "
                f"got {config.train.precision!r}"
            )
        self.autocast_dtype = AUTOCAST_DTYPES[config.train.precision]

    def reseed(self, seed: int, rank: int, epoch: int) -> None:
        """Seed the augmentation generators and torch's global one for ``rank``'s ``epoch``."""
        if self.wave_augment is not None:  # None when the data source augments
            self.wave_augment.generator.manual_seed(stream_seed(seed, rank, epoch, 0))
        if hasattr(self.spec_augment, "generator"):  # nn.Identity when SpecAugment is off
            self.spec_augment.generator.manual_seed(stream_seed(seed, rank, epoch, 1))
        torch.manual_seed(stream_seed(seed, rank, epoch, 2))

    def rng_state(self) -> dict[str, torch.Tensor]:
        """The generators' states (saved in checkpoints, compared by tests)."""
        state = {}
        if self.wave_augment is not None:
            state["wave_augment"] = self.wave_augment.generator.get_state()
        if hasattr(self.spec_augment, "generator"):
            state["spec_augment"] = self.spec_augment.generator.get_state()
        return state

    def forward(
        self, waves: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if self.wave_augment is not None:
                waves = self.wave_augment(waves, labels=labels)
            feats = self.spec_augment(self.frontend(waves))
        # With bf16 the trunk's convolutions run in bfloat16; front-end, pooling and the
        # embedding layers after it keep float32 themselves (pooling.float32_region), and
        # the margin loss (cosines near 1, acos) gets float32.
        with torch.autocast(
            device_type=feats.device.type,
            dtype=self.autocast_dtype,
            enabled=self.autocast_dtype != torch.float32,
        ):
            embeddings = self.model(feats)
        return self.head(embeddings.float(), labels)
