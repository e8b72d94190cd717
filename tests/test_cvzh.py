"""Integration on real speech: a subset of ../shared/data/cv-zh (Common Voice zh-CN, MP3).

Uses the shared corpus: when it is missing these tests FAIL with a message saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voiceprint.cli import main
from voiceprint.data.corpus import scan_split

from .test_training import TINY

pytestmark = pytest.mark.shared


def test_corpus_layout(cvzh_root: Path) -> None:
    train, test = scan_split(cvzh_root, "train"), scan_split(cvzh_root, "test")
    # version 2 (the README of ../shared/data/cv-zh): people under several ids merged or removed
    assert len({u.speaker for u in train}) == 226 and len(train) == 1721
    assert len({u.speaker for u in test}) == 20 and len(test) == 200
    assert train[0].path.suffix == ".mp3"


def test_prepare_train_evaluate_subset(cvzh_root: Path, tmp_path: Path) -> None:
    """prepare + train (2 epochs) + evaluate on 24 training and 6 test speakers."""
    overrides = [
        f"exp_dir={tmp_path}",
        "data.train_speakers=24",
        "data.train_utts=4",
        "data.test_speakers=6",
        "data.test_utts=5",
        "train.epochs=2",
        *TINY,
    ]
    config = ["--config", str(Path(__file__).parents[1] / "configs" / "xvector_gap_softmax.yaml")]
    assert main(["run", *config, "--root", str(cvzh_root), "--quiet", *overrides]) == 0
    exp = tmp_path / "xvector_gap_softmax"
    utt2spk = (exp / "data" / "train" / "utt2spk").read_text().split()[1::2]
    assert len(set(utt2spk)) == 24 and len(utt2spk) <= 24 * 4  # some speakers have fewer clips
    assert len((exp / "data" / "test" / "trials_pairs").read_text().splitlines()) == 30 * 29 // 2
    results = json.loads((exp / "results.json").read_text())
    assert results["n_target"] == 6 * 10 and results["n_nontarget"] == 435 - 60
    assert 0.0 < results["eer"] < 0.5  # 2 epochs of a tiny model: better than chance
    assert 0.0 < results["min_dcf"] <= 1.0
    for name in ("model.pth", "train_state.pth", "roc.png", "det.png", "training.png"):
        assert (exp / name).stat().st_size > 0
