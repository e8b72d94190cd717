"""Corpus scanning, the seeded protocol, Kaldi lists, trial lists and crop batches."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from voiceprint.config import load_config
from voiceprint.data.corpus import (
    CorpusError,
    Utterance,
    find_wav_root,
    read_kaldi_dir,
    scan_split,
    write_kaldi_dir,
)
from voiceprint.data.dataset import CropBatches, random_crop, speaker_labels
from voiceprint.data.protocol import select
from voiceprint.data.trials import enroll_trials, pair_trials, read_trials, write_trials
from voiceprint.experiment import Experiment


def fake_utts(n_spk: int, n_utt: int) -> list[Utterance]:
    return [
        Utterance(f"S{s:03d}_{u:02d}", f"S{s:03d}", Path(f"/x/S{s:03d}_{u:02d}.wav"))
        for s in range(n_spk)
        for u in range(n_utt)
    ]


def test_lab_protocol_counts() -> None:
    test = select(fake_utts(25, 12), 20, 10, seed=1)
    assert len(test) == 200
    assert len({u.speaker for u in test}) == 20
    trials = pair_trials(test)
    assert len(trials) == 19_900
    assert sum(t for _, _, t in trials) == 20 * 45


def test_selection_is_seeded() -> None:
    utts = fake_utts(50, 12)
    assert select(utts, 10, 5, seed=7) == select(utts, 10, 5, seed=7)
    assert select(utts, 10, 5, seed=7) != select(utts, 10, 5, seed=8)


def test_fewer_than_asked_takes_all_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    utts = fake_utts(5, 3)
    with caplog.at_level(logging.WARNING):
        picked = select(utts, 300, 10, seed=0, what="train")
    assert picked == utts
    assert "asked for 300 speakers, the corpus has 5" in caplog.text
    assert "fewer than 10 utterances" in caplog.text


def test_enroll_trials() -> None:
    utts = fake_utts(3, 4)
    enroll, trials = enroll_trials(utts, 1)
    assert enroll == {"S000": ["S000_00"], "S001": ["S001_00"], "S002": ["S002_00"]}
    assert len(trials) == 3 * 3 * 3  # 3 speakers x 3 remaining utterances x 3 models
    assert sum(t for _, _, t in trials) == 9
    assert ("S001", "S001_02", True) in trials and ("S000", "S001_02", False) in trials


def test_trials_round_trip(tmp_path: Path) -> None:
    trials = pair_trials(fake_utts(3, 2))
    assert read_trials(write_trials(tmp_path / "trials", trials)) == trials
    (tmp_path / "bad").write_text("a b maybe\n")
    with pytest.raises(CorpusError, match="bad:1"):
        read_trials(tmp_path / "bad")


def test_kaldi_round_trip(tmp_path: Path) -> None:
    utts = [Utterance(u.utt, u.speaker, tmp_path / f"{u.utt}.wav") for u in fake_utts(3, 2)]
    folder = write_kaldi_dir(tmp_path / "data", utts)
    assert read_kaldi_dir(folder) == utts
    assert (folder / "spk2utt").read_text().splitlines()[0] == "S000 S000_00 S000_01"


def test_kaldi_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no wav.scp"):
        read_kaldi_dir(tmp_path)
    (tmp_path / "wav.scp").write_text("u1 /a.wav\nu2 sox x.wav -t wav - |\n")
    (tmp_path / "utt2spk").write_text("u1 s1\n")
    with pytest.raises(CorpusError, match="utterance u2 from wav.scp has no speaker"):
        read_kaldi_dir(tmp_path)
    (tmp_path / "utt2spk").write_text("u1 s1\nu2 s1\n")
    assert str(read_kaldi_dir(tmp_path)[1].path) == "sox x.wav -t wav - |"  # a command, kept


def make_layout(base: Path, speakers: dict[str, int], ext: str = ".wav") -> None:
    for split in ("train", "test"):
        for spk, n in speakers.items():
            folder = base / "wav" / split / f"{split}{spk}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{split}{spk}_{i}{ext}").write_bytes(b"")


def test_scan_accepts_each_root_form(tmp_path: Path) -> None:
    make_layout(tmp_path / "data_aishell", {"A": 2, "B": 3})
    for root in (tmp_path, tmp_path / "data_aishell", tmp_path / "data_aishell" / "wav"):
        utts = scan_split(root, "train")
        assert [u.utt for u in utts] == ["trainA_0", "trainA_1", "trainB_0", "trainB_1", "trainB_2"]
        assert utts[0].speaker == "trainA"


def test_scan_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        find_wav_root(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="AISHELL-1 layout"):
        find_wav_root(tmp_path)
    make_layout(tmp_path, {"A": 1})
    (tmp_path / "wav" / "train" / "empty_speaker").mkdir()
    with pytest.raises(CorpusError, match="empty_speaker holds no audio"):
        scan_split(tmp_path, "train")
    with pytest.raises(CorpusError, match="dev does not exist"):
        scan_split(tmp_path, "dev")


def test_prepare_writes_lists(synthetic_root: Path, tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            f"data.root={synthetic_root}",
            f"exp_dir={tmp_path}",
            "data.test_speakers=3",
            "data.test_utts=4",
        ],
    )
    prepared = Experiment(config).prepare(progress=False)
    assert len({u.speaker for u in prepared.train}) == 8
    test = prepared.test
    assert len(test) == 12
    assert len(read_trials(prepared.test_dir / "trials_pairs")) == 12 * 11 // 2
    assert len(read_trials(prepared.test_dir / "trials_enroll")) == 3 * 3 * 3
    assert not {u.speaker for u in test} & {u.speaker for u in prepared.train}


def test_random_crop_tiles_short_waves() -> None:
    rng = np.random.default_rng(0)
    wave = np.arange(5, dtype=np.float32)
    crop = random_crop(wave, 12, rng)
    assert crop.shape == (12,)
    assert set(crop.tolist()) <= set(wave.tolist())
    long = np.arange(100, dtype=np.float32)
    crop = random_crop(long, 10, rng)
    assert np.all(np.diff(crop) == 1)


def test_crop_batches_shard_across_ranks() -> None:
    waves = [np.full(50, i, dtype=np.float32) for i in range(40)]
    _, labels = speaker_labels(fake_utts(10, 4))
    seen = []
    for rank in range(2):
        batches = CropBatches(
            waves, labels, batch_size=5, crop_samples=20, seed=1, rank=rank, world_size=2
        )
        assert len(batches) == 4
        for x, y in batches.epoch(0):
            assert x.shape == (5, 20) and y.shape == (5,)
            ids = x[:, 0].long()
            assert np.array_equal(labels[ids.numpy()], y.numpy())
            seen.extend(ids.tolist())
    assert len(seen) == len(set(seen)) == 40


def test_select_per_corpus_keeps_every_speaker_of_a_named_corpus() -> None:
    from voiceprint.data.corpus import CorpusError, Utterance
    from voiceprint.data.protocol import select_per_corpus

    utts = [
        Utterance(f"{c}-{c}{s}_{u}", f"{c}-{c}{s}", Path(f"{c}{s}_{u}.wav"))
        for c, speakers in (("a", 5), ("b", 4))
        for s in range(speakers)
        for u in range(3)
    ]
    picked = select_per_corpus(utts, {"a": 0}, 7, 2, seed=1, corpora=["a", "b"])
    speakers = {u.speaker for u in picked}
    assert {s for s in speakers if s.startswith("a-")} == {f"a-a{s}" for s in range(5)}
    assert len([s for s in speakers if s.startswith("b-")]) == 2  # the rest of the 7
    assert all(sum(u.speaker == s for u in picked) == 2 for s in speakers)  # 2 utts each
    assert picked == select_per_corpus(utts, {"a": 0}, 7, 2, seed=1, corpora=["a", "b"])
    three = select_per_corpus(utts, {"a": 3, "b": 0}, 0, 0, seed=1, corpora=["a", "b"])
    assert len({u.speaker for u in three if u.speaker.startswith("a-")}) == 3
    assert len({u.speaker for u in three if u.speaker.startswith("b-")}) == 4
    with pytest.raises(CorpusError, match="names c, not one of data.corpora"):
        select_per_corpus(utts, {"c": 1}, 0, 0, seed=1, corpora=["a", "b"])


def test_the_lists_follow_the_data_seed_not_the_training_seed(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """data.seed draws the protocol; the top-level seed (training) leaves it alone."""

    def lists(*extra: str) -> list[str]:
        base = [f"data.root={synthetic_root}", "data.train_speakers=4", "data.test_speakers=3"]
        config = load_config(None, [*base, f"exp_dir={tmp_path / '_'.join(extra)}", *extra])
        prepared = Experiment(config).prepare(progress=False)
        return [u.utt for u in prepared.train + prepared.test]

    assert lists("seed=1") == lists("seed=2")
    assert lists("data.seed=1") != lists("data.seed=2")
