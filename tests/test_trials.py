"""The one trial set (voiceprint.data.trials): reading prepared folders, speakers and net
speech of each side, speaker models, missing ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voiceprint.data.corpus import Utterance, write_kaldi_dir
from voiceprint.data.trials import TrialSet, enroll_trials, pair_trials, write_trials


def _utts(speakers: int, per: int, corpus: str = "") -> list[Utterance]:
    prefix = f"{corpus}-" if corpus else ""
    return [
        Utterance(f"{prefix}s{s}_{u}", f"{prefix}s{s}", Path(f"/nowhere/{prefix}s{s}_{u}.wav"))
        for s in range(speakers)
        for u in range(per)
    ]


def test_pairs_folder_labels_speakers_and_seconds(tmp_path: Path) -> None:
    utts = _utts(3, 2)
    write_kaldi_dir(tmp_path, utts)
    write_trials(tmp_path / "trials_pairs", pair_trials(utts))
    ts = TrialSet.read(tmp_path)
    assert ts.folder == tmp_path and ts.enroll == {}
    assert len(ts.trials) == 15 and int(ts.labels.sum()) == 3
    assert ts.pairs() == [(a, b) for a, b, _ in ts.trials]
    spk_a, spk_b = ts.speakers()
    np.testing.assert_array_equal(spk_a == spk_b, ts.labels)
    speech = {u.utt: float(i + 1) for i, u in enumerate(utts)}
    enroll_s, test_s = ts.side_seconds(speech)
    np.testing.assert_array_equal(enroll_s, [speech[a] for a, _, _ in ts.trials])
    np.testing.assert_array_equal(test_s, [speech[b] for _, b, _ in ts.trials])


def test_enroll_folder_models_speakers_by_their_clips(tmp_path: Path) -> None:
    utts = _utts(3, 4)
    write_kaldi_dir(tmp_path, utts)
    enroll, trials = enroll_trials(utts, 2)
    (tmp_path / "enroll").write_text(
        "".join(f"{spk} {' '.join(ids)}\n" for spk, ids in enroll.items()), "utf-8"
    )
    write_trials(tmp_path / "trials_enroll", trials)
    ts = TrialSet.read(tmp_path, "enroll")
    assert ts.enroll == enroll and len(ts.trials) == 3 * 6
    spk_a, spk_b = ts.speakers()
    np.testing.assert_array_equal(spk_a == spk_b, ts.labels)
    speech = {u.utt: 1.5 for u in utts}
    enroll_s, test_s = ts.side_seconds(speech)
    assert set(enroll_s) == {3.0} and set(test_s) == {1.5}  # a model's clips summed


def test_official_list_and_missing_ids(tmp_path: Path) -> None:
    utts = _utts(2, 2)
    write_kaldi_dir(tmp_path, utts)
    write_trials(tmp_path / "trials", pair_trials(utts))  # an official list's name
    assert len(TrialSet.read(tmp_path, "pairs").trials) == 6
    write_trials(tmp_path / "trials_pairs", [("s0_0", "ghost", False)])
    with pytest.raises(ValueError, match="not in wav.scp"):
        TrialSet.read(tmp_path)
    write_trials(tmp_path / "trials_enroll", [("s0", "s1_0", False)])
    (tmp_path / "enroll").write_text("s0 s0_0 lost\n", "utf-8")
    with pytest.raises(ValueError, match="lost"):
        TrialSet.read(tmp_path, "enroll")


def test_models_named_apart_from_their_speaker_and_test_corpora() -> None:
    """A model id need not be a speaker id (calibration's ``<spk>#enroll``): its side's
    speaker is that of its clips; the test clip's corpus comes from its speaker's prefix."""
    utts = _utts(2, 3, "a") + _utts(1, 3, "b")
    trials = [("a-s0#enroll", "a-s0_2", True), ("a-s0#enroll", "a-s1_2", False)]
    trials.append(("b-s0_0", "b-s0_1", True))
    enroll = {"a-s0#enroll": ["a-s0_0", "a-s0_1"]}
    ts = TrialSet(utts, trials, enroll)
    spk_a, spk_b = ts.speakers()
    assert spk_a.tolist() == ["a-s0", "a-s0", "b-s0"]
    assert spk_b.tolist() == ["a-s0", "a-s1", "b-s0"]
    assert ts.test_corpora(["a", "b"]).tolist() == ["a", "a", "b"]
    assert ts.labels.tolist() == [True, False, True]
