"""Sharded training data: writing, reading by (rank, worker) slots, crops, and training."""

from __future__ import annotations

import collections
import io
import json
import multiprocessing
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voiceprint import audio
from voiceprint.artifact import load_train_state
from voiceprint.config import AugmentConfig
from voiceprint.data import shards as shard_module
from voiceprint.data.corpus import CorpusError, Utterance, scan_split
from voiceprint.data.dataset import SPEED_FACTORS, CropBatches, load_waves, speaker_labels
from voiceprint.data.shards import ShardBatches, read_index, slot_shards, write_shards
from voiceprint.experiment import Experiment
from voiceprint.training.trainer import train

pytest.importorskip("webdataset")

SR = 16000


@pytest.fixture(scope="module")
def sharded(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The synthetic corpus' 48 training utterances in shards of 10 (5 shards)."""
    utts = scan_split(synthetic_root, "train")
    folder = tmp_path_factory.mktemp("shards")
    write_shards(utts, folder, shard_size=10, progress=False)
    return folder, utts


def test_write_shards_round_trips_every_utterance(sharded: tuple[Path, list]) -> None:
    folder, utts = sharded
    index = read_index(folder)
    assert [s["samples"] for s in index.shards] == [10, 10, 10, 10, 8]
    assert index.speakers == sorted({u.speaker for u in utts})
    stored = {}
    for shard in index.shards:
        with tarfile.open(folder / shard["file"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = sorted({name.split(".")[0] for name in members})
        assert len(keys) == shard["samples"]
        for key in keys:
            meta = json.loads(members[f"{key}.json"])
            wave, rate = sf.read(io.BytesIO(members[f"{key}.flac"]), dtype="float32")
            assert rate == SR
            stored[meta["utt"]] = (meta["speaker"], wave)
    assert sorted(stored) == sorted(u.utt for u in utts)
    for u in utts:
        speaker, wave = stored[u.utt]
        original = audio.load(u.path, SR)
        assert speaker == u.speaker
        assert wave.shape == original.shape
        assert np.max(np.abs(wave - original)) <= 1.0 / 32768 + 1e-7  # 16-bit PCM
    assert index.seconds == pytest.approx(sum(len(w) for _, w in stored.values()) / SR, abs=0.01)


def test_every_slot_reads_its_own_shards() -> None:
    for shards, slots in ((5, 4), (8, 4), (3, 4), (1, 2)):
        taken = collections.Counter()
        for slot in range(slots):
            mine, offset, stride = slot_shards(shards, seed=1, epoch=2, slot=slot, slots=slots)
            if shards >= slots:
                assert (offset, stride) == (0, 1)
                taken.update(mine)
            else:  # everyone reads all shards and keeps its own stride of utterances
                assert sorted(mine) == list(range(shards)) and (offset, stride) == (slot, slots)
                taken.update({(s, offset) for s in mine})
        if shards >= slots:
            assert sorted(taken) == list(range(shards)) and max(taken.values()) == 1
        else:
            assert len(taken) == shards * slots and max(taken.values()) == 1
    first = slot_shards(8, seed=1, epoch=0, slot=0, slots=1)[0]
    assert first == slot_shards(8, seed=1, epoch=0, slot=0, slots=1)[0]  # seeded
    assert first != slot_shards(8, seed=1, epoch=1, slot=0, slots=1)[0]  # reshuffled


def test_ranks_read_disjoint_utterances(
    sharded: tuple[Path, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two DDP ranks in one epoch decode disjoint utterances that cover the corpus."""
    folder, utts = sharded
    seen: dict[int, list[str]] = {0: [], 1: []}
    real = shard_module.decode_flac
    rank_now = [0]

    def recording(data: bytes, name: str) -> np.ndarray:
        seen[rank_now[0]].append(name)
        return real(data, name)

    monkeypatch.setattr(shard_module, "decode_flac", recording)
    for rank in (0, 1):
        rank_now[0] = rank
        batches = ShardBatches(folder, 4, SR, seed=5, rank=rank, world_size=2, workers=0)
        assert len(list(batches.epoch(0))) == len(batches) == 48 // (2 * 4)
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) >= 40  # a rank stops when its batches are full


def test_epochs_are_seeded_with_workers(sharded: tuple[Path, list]) -> None:
    folder, _ = sharded
    augment = AugmentConfig(noise_prob=0.5, reverb_prob=0.3)
    batches = ShardBatches(
        folder, 8, SR, seed=3, workers=2, speed_factors=SPEED_FACTORS, augment=augment
    )
    assert batches.augments and len(batches) == 48 * 3 // 8
    first, again = list(batches.epoch(1)), list(batches.epoch(1))
    other = list(batches.epoch(2))
    assert len(first) == len(batches)
    for (w1, l1), (w2, l2) in zip(first, again, strict=True):
        assert w1.shape == (8, SR) and w1.dtype == torch.float32
        assert torch.equal(w1, w2) and torch.equal(l1, l2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other, strict=True))
    labels = torch.cat([lab for _, lab in first])
    assert labels.min() >= 0 and labels.max() < len(batches.speakers) == 3 * 8


def _report_worker_settings(queue: multiprocessing.Queue) -> None:
    shard_module._worker_start(0)
    queue.put((os.nice(0), torch.get_num_threads()))


def test_workers_start_below_the_trainer_with_one_thread() -> None:
    # Forked, as DataLoader forks its workers.
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_report_worker_settings, args=(queue,))
    child.start()
    nice, threads = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert (nice, threads) == (shard_module.WORKER_NICE, 1)


def test_shard_and_memory_epochs_have_the_same_statistics(
    sharded: tuple[Path, list], synthetic_root: Path
) -> None:
    """One epoch from shards (2 workers) and from memory: the same number of batches, each
    speaker about as often, and crops of the same loudness."""
    folder, utts = sharded
    _, labels = speaker_labels(utts)
    memory = CropBatches(load_waves(utts, SR, progress=False), labels, 8, SR, seed=3)
    streamed = ShardBatches(folder, 8, SR, seed=3, workers=2)
    a, b = list(memory.epoch(0)), list(streamed.epoch(0))
    assert len(a) == len(b) == 6
    count_a = np.bincount(torch.cat([x[1] for x in a]).numpy(), minlength=8)
    count_b = np.bincount(torch.cat([x[1] for x in b]).numpy(), minlength=8)
    assert count_a.sum() == count_b.sum() == 48
    assert np.max(np.abs(count_a - count_b)) <= 3  # 6 per speaker; a slot may reread one
    rms_a = torch.cat([x[0] for x in a]).pow(2).mean().sqrt()
    rms_b = torch.cat([x[0] for x in b]).pow(2).mean().sqrt()
    assert float(rms_b) == pytest.approx(float(rms_a), rel=0.15)


def test_speed_perturbed_crops_shift_a_tone(tmp_path: Path) -> None:
    """A 1 kHz tone's 1.1x copy peaks at 1.1 kHz and has the crop's length."""
    t = np.arange(3 * SR) / SR
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 1000 * t), SR)
    write_shards([Utterance("u1", "spk", path)], tmp_path / "sh", progress=False)
    batches = ShardBatches(tmp_path / "sh", 3, SR, speed_factors=SPEED_FACTORS)
    assert batches.speakers == ["spk", "spk-sp0.9", "spk-sp1.1"]
    waves, labels = next(iter(batches.epoch(0)))  # one utterance: 3 items, one batch
    assert waves.shape == (3, SR)
    for wave, label in zip(waves, labels, strict=True):
        spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(SR)))
        peak = np.argmax(spectrum)  # one second: 1 Hz bins
        assert peak == pytest.approx(1000 * (1.0, 0.9, 1.1)[int(label)], abs=3)


def test_bad_shards_are_named(sharded: tuple[Path, list], tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no index.json"):
        read_index(tmp_path)
    broken = tmp_path / "broken"
    write_shards(sharded[1][:3], broken, progress=False)
    (broken / "shard-000000.tar").unlink()
    with pytest.raises(CorpusError, match="missing: shard-000000.tar"):
        read_index(broken)
    corrupt = tmp_path / "corrupt"
    write_shards(sharded[1][:3], corrupt, progress=False)
    with tarfile.open(corrupt / "shard-000000.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(corrupt / "shard-000000.tar", "w") as tar:
        for member, data in members:
            if member.name.endswith(".flac"):
                data = b"not audio" * 10
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    batches = ShardBatches(corrupt, 1, SR)
    with pytest.raises(audio.AudioError, match=r"shard-000000.tar:00000000\d: cannot decode"):
        next(iter(batches.epoch(0)))
    with pytest.raises(audio.AudioError, match="missing.wav"):
        write_shards(
            [Utterance("x", "s", tmp_path / "missing.wav")], tmp_path / "x", progress=False
        )


@pytest.mark.slow
def test_training_from_shards_with_two_workers_learns_like_the_folder(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """The same tiny recipe trained from the folder (in memory) and from shards read by
    2 DataLoader workers: both learn the training speakers, to the same accuracy band."""
    from .test_training import tiny_config

    accuracy = {}
    for mode in ("folder", "shards"):
        extra = ["train.epochs=12"]
        if mode == "shards":
            extra += [f"data.shards={tmp_path / 'shards'}", "train.workers=2"]
        config = tiny_config(synthetic_root, tmp_path / mode, *extra)
        prepared = Experiment(config).prepare(progress=False)
        if mode == "shards":
            write_shards(prepared.train, tmp_path / "shards", shard_size=8, progress=False)
        state = load_train_state(train(config, prepared, progress=False))
        assert len(state["speakers"]) == 8 and state["epoch"] == 12
        accuracy[mode] = np.mean([h["accuracy"] for h in state["history"][-3:]])
    assert accuracy["folder"] > 0.6 and accuracy["shards"] > 0.6, accuracy
    assert abs(accuracy["folder"] - accuracy["shards"]) < 0.2, accuracy


def test_shard_command_writes_the_recipe_list(synthetic_root: Path, tmp_path: Path) -> None:
    from voiceprint.cli import main

    code = main(
        [
            "shard",
            "--quiet",
            "--root",
            str(synthetic_root),
            f"exp_dir={tmp_path}",
            "--shard-size",
            "20",
        ]
    )
    assert code == 0
    index = read_index(tmp_path / "xvector_gap_softmax" / "shards")
    assert index.utterances == 48 and len(index.shards) == 3
    assert index.source.endswith("data/train")


@pytest.mark.slow
def test_torchrun_two_processes_stream_their_own_shards(
    sharded: tuple[Path, list], synthetic_root: Path, tmp_path: Path
) -> None:
    """DDP with gloo over shards: 2 ranks x 2 workers (4 slots over 5 shards) keep in step
    (equal batch counts: no rank waits forever) and rank 0 writes the checkpoint."""
    from .test_training import TINY, torchrun_train

    folder, _ = sharded
    overrides = [
        f"data.root={synthetic_root}",
        f"exp_dir={tmp_path}",
        *TINY,
        "train.epochs=2",
        "train.threads=1",
        f"data.shards={folder}",
        "train.workers=2",
        "augment.noise_prob=0.5",
    ]
    stderr = torchrun_train(overrides)
    assert "2 process(es)" in stderr and "epoch 2/2" in stderr
    state = load_train_state(tmp_path / "xvector_gap_softmax" / "train_state.pth")
    assert state["epoch"] == 2 and len(state["speakers"]) == 8


def test_shard_speakers_follow_the_speed_factors(tmp_path: Path) -> None:
    """Each of ``speed_factors`` adds a copy of every speaker, named by its factor, and
    the crops of an epoch carry every speed's label."""
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * SR) / SR), SR)
    write_shards([Utterance("u1", "spk", path)], tmp_path / "sh", progress=False)
    batches = ShardBatches(tmp_path / "sh", 4, SR, speed_factors=(0.9, 1.1, 1.2))
    assert batches.speakers == ["spk", "spk-sp0.9", "spk-sp1.1", "spk-sp1.2"]
    assert len(batches) == 1  # one utterance, four speeds, batches of four
    labels = [int(x) for epoch in range(4) for _, y in batches.epoch(epoch) for x in y]
    assert set(labels) == {0, 1, 2, 3}
