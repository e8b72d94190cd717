"""Training batches over several corpora: corpus-tempered sampling and short crops."""

from __future__ import annotations

import numpy as np
import pytest

from voiceprint.config import ConfigError, load_config
from voiceprint.data.dataset import CropBatches, corpus_weights


def test_corpus_weights_give_each_corpus_its_tempered_share() -> None:
    groups = ["big"] * 900 + ["small"] * 100
    w = corpus_weights(groups, 0.5)
    share_small = w[900:].sum()
    assert share_small == pytest.approx(10 / (30 + 10))  # sqrt(100) / (sqrt(900) + sqrt(100))
    assert w.sum() == pytest.approx(1.0)
    assert np.allclose(w[:900], w[0]) and np.allclose(w[900:], w[900])  # uniform within
    assert corpus_weights(groups, 1.0) is None  # plain shuffling
    equal = corpus_weights(groups, 0.0)
    assert equal[900:].sum() == pytest.approx(0.5)


def test_weighted_epochs_draw_the_small_corpus_at_its_share() -> None:
    waves = [np.zeros(100, dtype=np.float32) for _ in range(1000)]
    labels = np.arange(1000)
    groups = ["big"] * 900 + ["small"] * 100
    batches = CropBatches(waves, labels, 50, 80, seed=3, weights=corpus_weights(groups, 0.0))
    drawn = np.concatenate([lab.numpy() for _, lab in batches.epoch(0)])
    assert len(drawn) == 1000
    assert (drawn >= 900).mean() == pytest.approx(0.5, abs=0.05)
    again = np.concatenate([lab.numpy() for _, lab in batches.epoch(0)])
    assert np.array_equal(drawn, again)  # an epoch is the same whenever it runs


def test_short_crops_take_their_share_of_batches_and_match_across_ranks() -> None:
    waves = [np.arange(40000, dtype=np.float32) for _ in range(640)]
    labels = np.zeros(640, dtype=np.int64)
    lengths = []
    for rank in (0, 1):
        batches = CropBatches(
            waves,
            labels,
            8,
            32000,
            seed=1,
            rank=rank,
            world_size=2,
            short_crop_samples=16000,
            short_crop_share=0.3,
        )
        lengths.append([w.shape[1] for w, _ in batches.epoch(5)])
    assert lengths[0] == lengths[1]  # ranks crop alike, batch by batch
    assert set(lengths[0]) == {16000, 32000}
    assert np.mean(np.array(lengths[0]) == 16000) == pytest.approx(0.3, abs=0.15)


def test_config_reads_the_new_keys() -> None:
    config = load_config(
        None,
        [
            "data.corpus_sampling_power=0.5",
            "train.short_crop_share=0.25",
            "augment.telephone_prob=0.1",
            "eval.quality_calibration=true",
            "eval.min_speech_seconds=1.5",
        ],
    )
    assert config.data.corpus_sampling_power == 0.5
    assert config.train.short_crop_share == 0.25
    assert config.eval.min_speech_seconds == 1.5
    with pytest.raises(ConfigError, match="telephone_probability"):
        load_config(None, ["augment.telephone_probability=0.1"])
