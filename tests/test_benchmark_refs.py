"""The accuracy benchmark's plumbing: trial scoring, metrics, timing, MFCC baseline, output.

None of these needs the optional reference packages (resemblyzer, speechbrain).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import accuracy, pair_similarity
from benchmarks.references import (
    TrialSet,
    embed_waves,
    load_trial_set,
    score_trials,
    trial_metrics,
)
from benchmarks.references.mfcc_baseline import MfccMeanStd
from benchmarks.references.resemblyzer_ref import import_resemblyzer
from benchmarks.references.speechbrain_ref import SBRecipe, learning_rate
from voiceprint import metrics
from voiceprint.data.corpus import Utterance, write_kaldi_dir
from voiceprint.data.trials import pair_trials, write_trials
from voiceprint.features import MFCC
from voiceprint.synth import make_voice, synthesize_utterance


def _utts(speakers: int, per: int) -> list[Utterance]:
    return [
        Utterance(f"s{s}_{u}", f"s{s}", Path(f"/nowhere/s{s}_{u}.wav"))
        for s in range(speakers)
        for u in range(per)
    ]


def _trial_set(speakers: int = 4, per: int = 3) -> TrialSet:
    utts = _utts(speakers, per)
    return TrialSet(utts, pair_trials(utts))


# ----------------------------------------------------------------------------- scoring


def test_score_trials_known_cosines() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    ids = ["a", "b", "c", "d"]
    trials = [("a", "b", False), ("a", "c", False), ("a", "a", True), ("d", "a", True)]
    scores = score_trials(emb, ids, trials)
    np.testing.assert_allclose(scores, [0.0, -1.0, 1.0, 1 / np.sqrt(2)], atol=1e-12)


def test_score_trials_matches_direct_cosine() -> None:
    rng = np.random.default_rng(0)
    ts = _trial_set()
    emb = rng.standard_normal((len(ts.utts), 16))
    ids = [u.utt for u in ts.utts]
    scores = score_trials(emb, ids, ts.trials)
    row = {u: i for i, u in enumerate(ids)}
    for (a, b, _), s in zip(ts.trials, scores, strict=True):
        x, y = emb[row[a]], emb[row[b]]
        assert s == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), abs=1e-12)
    with pytest.raises(ValueError, match="do not match"):
        score_trials(emb[:-1], ids, ts.trials)


def test_trial_metrics_agree_with_voiceprint_metrics() -> None:
    rng = np.random.default_rng(1)
    ts = _trial_set(5, 4)
    labels = ts.labels
    scores = rng.standard_normal(labels.size) + 1.5 * labels
    out = trial_metrics(scores, ts, n_boot=200, seed=3)
    eer, _ = metrics.eer(scores[labels], scores[~labels])
    dcf, _ = metrics.min_dcf(scores[labels], scores[~labels], p_target=0.01)
    assert out["eer"] == pytest.approx(eer)
    assert out["min_dcf"] == pytest.approx(dcf)
    assert out["n_target"] == int(labels.sum()) == 5 * 6
    assert out["n_nontarget"] == labels.size - 30
    low, high = out["eer_ci95"]
    assert 0.0 <= low <= high <= 1.0
    with pytest.raises(ValueError, match="scores for"):
        trial_metrics(scores[:-1], ts)


def test_trial_metrics_perfect_separation() -> None:
    ts = _trial_set()
    scores = ts.labels.astype(float)
    out = trial_metrics(scores, ts, n_boot=50)
    assert out["eer"] == 0.0
    assert out["eer_ci95"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert out["min_dcf"] == 0.0


def test_trial_metrics_finds_a_planted_confusable_pair() -> None:
    ts = _trial_set(6, 4)
    labels = ts.labels
    spk_a, spk_b = ts.speakers()
    scores = np.where(labels, 1.0, 0.0) + np.linspace(0.0, 0.1, labels.size)
    planted = ((spk_a == "s1") & (spk_b == "s4")) | ((spk_a == "s4") & (spk_b == "s1"))
    scores[np.flatnonzero(planted)[:2]] += 2.0  # two s1-s4 trials outscore every target
    out = trial_metrics(scores, ts, n_boot=20)
    top = out["confusable_pairs"][0]
    assert top["speakers"] == ["s1", "s4"]
    assert (top["false_accepts"], top["trials"], top["share"]) == (2, 16, 1.0)
    assert out["min_dcf"] == pytest.approx(2 * 99 / int((~labels).sum()))
    assert out["min_dcf_without_top_pair"] == 0.0


def test_load_trial_set_reads_prepared_folder(tmp_path: Path) -> None:
    utts = _utts(3, 2)
    write_kaldi_dir(tmp_path, utts)
    write_trials(tmp_path / "trials_pairs", pair_trials(utts))
    ts = load_trial_set(tmp_path)
    assert len(ts.trials) == 15 and int(ts.labels.sum()) == 3
    spk_a, spk_b = ts.speakers()
    np.testing.assert_array_equal(spk_a == spk_b, ts.labels)
    write_trials(tmp_path / "trials_pairs", [("s0_0", "ghost", False)])
    with pytest.raises(ValueError, match="not in wav.scp"):
        load_trial_set(tmp_path)


# ----------------------------------------------------------------------------- timing


class _SlowEmbedder:
    """Takes ``delay`` seconds per call and counts calls."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    def embed(self, wave: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay)
        return np.array([wave.mean(), wave.std()])


def test_embed_waves_real_time_factor_and_threads() -> None:
    waves = [np.full(16000, 0.1 * i, dtype=np.float32) for i in range(5)]  # 5 s of audio
    before = torch.get_num_threads()
    embedder = _SlowEmbedder(0.02)
    emb, rtf = embed_waves(embedder, waves, threads=1)
    assert emb.shape == (5, 2) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[:, 0], [0.1 * i for i in range(5)], rtol=1e-6)
    assert embedder.calls == 6  # one untimed warm-up call
    assert 0.1 / 5 <= rtf < 0.1  # 5 x 20 ms over 5 s: 0.02, plus overhead
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="no waves"):
        embed_waves(embedder, [])


# ----------------------------------------------------------------------------- MFCC baseline


def _voice_waves(speakers: int, per: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    waves, labels = [], []
    for s in range(speakers):
        voice = make_voice(np.random.default_rng([seed, s]))
        for u in range(per):
            waves.append(synthesize_utterance(voice, 1.2, np.random.default_rng([seed, s, u])))
            labels.append(s)
    return waves, np.array(labels)


def test_mfcc_stats_match_direct_computation() -> None:
    rng = np.random.default_rng(2)
    wave = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    baseline = MfccMeanStd(n_mels=40, n_mfcc=20)
    stats = baseline.stats(wave)
    feats = MFCC(n_mels=40, n_mfcc=20, mean_norm=False)(torch.from_numpy(wave)[None])[0]
    feats = feats.double().numpy()
    assert stats.shape == (40,)
    np.testing.assert_allclose(stats[:20], feats.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats[20:], feats.std(0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="shorter than one MFCC frame"):
        baseline.stats(np.zeros(100, dtype=np.float32))


def test_mfcc_baseline_standardises_and_separates_synthetic_voices() -> None:
    train, _ = _voice_waves(6, 2, seed=10)
    test, labels = _voice_waves(4, 3, seed=20)
    baseline = MfccMeanStd().fit(train)
    fitted = np.stack([baseline.embed(w) for w in train])
    np.testing.assert_allclose(fitted.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(fitted.std(0), 1.0, atol=1e-4)
    emb = np.stack([baseline.embed(w) for w in test])
    assert emb.shape == (12, 60) and emb.dtype == np.float32
    cos = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    assert cos[same & off_diag].mean() > cos[~same].mean() + 0.2
    with pytest.raises(ValueError, match="at least two"):
        MfccMeanStd().fit(train[:1])


# ----------------------------------------------------------------------------- references


def test_speechbrain_schedule_warmup_then_linear_decay() -> None:
    recipe = SBRecipe(lr=1e-3, lr_final=1e-5, warmup_epochs=1)
    warm = [learning_rate(recipe, 0, s, 10, 0.0) for s in range(10)]
    np.testing.assert_allclose(warm, [1e-4 * (s + 1) for s in range(10)])
    assert learning_rate(recipe, 1, 0, 10, 0.0) == pytest.approx(1e-3)
    assert learning_rate(recipe, 5, 3, 10, 0.5) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert learning_rate(recipe, 9, 9, 10, 1.0) == pytest.approx(1e-5)
    assert learning_rate(recipe, 9, 9, 10, 1.7) == pytest.approx(1e-5)  # clamped


def test_speechbrain_cache_key_tracks_recipe_and_data() -> None:
    base = SBRecipe().key(["a", "b"], ["a_1", "b_1"])
    assert base == SBRecipe().key(["a", "b"], ["a_1", "b_1"])
    assert base != SBRecipe(minutes=2).key(["a", "b"], ["a_1", "b_1"])
    assert SBRecipe(minutes=60).key(["a"], ["a_1"]) == SBRecipe(minutes=60.0).key(["a"], ["a_1"])
    assert base != SBRecipe().key(["a", "b"], ["a_1", "b_2"])
    assert sum(SBRecipe().channels) == 4 * 256 + 768


def test_missing_resemblyzer_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # makes `import resemblyzer` fail
    with pytest.raises(ImportError, match="pip install --no-deps resemblyzer"):
        import_resemblyzer()


# ----------------------------------------------------------------------------- command


def _row(system: str, eer: float, trial_set: str = "dev", act: float | None = None) -> accuracy.Row:
    pairs = [{"speakers": ["A", "B"], "false_accepts": 3, "trials": 4, "share": 0.75}]
    details = {"confusable_pairs": pairs, "min_dcf_without_top_pair": 0.2}
    return accuracy.Row(
        system,
        trial_set,
        eer,
        [eer - 0.01, eer + 0.01],
        0.5,
        act,
        None if act is None else [act - 0.05, act + 0.05],
        1.5,
        0.01,
        [0.1, 0.8],
        details,
    )


def test_read_scores_follows_trial_order(tmp_path: Path) -> None:
    ts = _trial_set(2, 2)
    lines = [f"{a} {b} {0.1 * i:.6f} x\n" for i, (a, b, _) in enumerate(ts.trials)]
    path = tmp_path / "scores.txt"
    path.write_text("".join(reversed(lines)), encoding="utf-8")
    np.testing.assert_allclose(accuracy.read_scores(path, ts), 0.1 * np.arange(len(ts.trials)))
    path.write_text("".join(lines[1:]), encoding="utf-8")
    with pytest.raises(ValueError, match="lacks 1"):
        accuracy.read_scores(path, ts)


def test_the_floor_comparison_reads_the_floors_scores_and_pairs_them(tmp_path: Path) -> None:
    """vs_floor: None before the floor has run; then this system minus the floor, the
    paired interval around it, and the paired column in the table."""
    from types import SimpleNamespace

    ts = _trial_set(6, 4)
    labels = ts.labels
    rng = np.random.default_rng(0)
    floor_scores = rng.normal(size=labels.size) + 1.0 * labels
    ctx = SimpleNamespace(args=SimpleNamespace(work=tmp_path, bootstrap=100))
    s = accuracy.EvalSet("dev", tmp_path, tmp_path, ts, [])
    better = floor_scores + 2.0 * labels
    assert accuracy.vs_floor(ctx, s, better) is None
    accuracy._write_scores(ctx, "mfcc_dev", s, floor_scores)
    got = accuracy.vs_floor(ctx, s, better)
    spk_a, spk_b = ts.speakers()
    expected = metrics.paired_bootstrap(
        floor_scores, better, labels, spk_a, spk_b, accuracy.P_TARGET, 100, seed=42
    )
    assert got == {k: pytest.approx(list(v), abs=1e-6) for k, v in expected.items()}
    assert got["eer"][0] < 0 and got["eer"][1] <= got["eer"][0] <= got["eer"][2]
    row = _row("voiceprint x", 0.05)
    row.details["vs_mfcc"] = {"eer": [-0.0312, -0.05, -0.01], "min_dcf": [-0.2, -0.3, -0.1]}
    assert "| -3.12 [-5.00, -1.00] / -0.200 [-0.300, -0.100] |" in accuracy.markdown_table([row])


def test_write_outputs_merges_rows_of_the_same_trials(tmp_path: Path) -> None:
    out = tmp_path / "acc.json"
    sets = [
        {"name": n, "trials_sha": sha, "n_trials": 10, "n_target": 2, "n_speakers": 2}
        | {"utts_per_speaker": 2}
        for n, sha in (("dev", "abc"), ("test", "123"))
    ]
    protocol = {
        "sets": sets,
        "calibration_speakers": 3,
        "train_utterances": 40,
        "train_speakers": 4,
        "bootstrap": 10,
        "threads": 2,
        "rtf_set": "test",
        "machine": "test",
    }
    accuracy.write_outputs(out, [_row("voiceprint x", 0.05, act=0.55)], protocol)
    table = accuracy.write_outputs(
        out, [_row("MFCC mean+std", 0.12), _row("MFCC mean+std", 0.2, "test")], protocol
    )
    assert [(r.system, r.trial_set) for r in table] == [
        ("MFCC mean+std", "dev"),
        ("MFCC mean+std", "test"),
        ("voiceprint x", "dev"),
    ]
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert [s["system"] for s in saved["systems"]] == ["MFCC mean+std"] * 2 + ["voiceprint x"]
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    dev, test = md.split("## test")
    assert (
        "| MFCC mean+std | 12.00 [11.00, 13.00] | 0.500 | – | 1.5 | 0.0100 | 10.00 / 0.800 |" in dev
    )
    assert "| voiceprint x | 5.00 [4.00, 6.00] | 0.500 | 0.550 [0.50, 0.60] | 1.5 |" in dev
    assert "| MFCC mean+std | 20.00 [19.00, 21.00] |" in test and "voiceprint x" not in test
    assert "| voiceprint x | 0.500 | A–B 3/4 (75%) | 0.200 |" in dev
    other = dict(protocol, sets=[dict(sets[0], trials_sha="def")])
    table = accuracy.write_outputs(out, [_row("MFCC mean+std", 0.12)], other)
    assert [r.system for r in table] == ["MFCC mean+std"]


def test_command_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--only", "mfcc,bogus"])
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(SystemExit, match="NAME=ROOT"):
        accuracy.parse_sets(["no-root"])
    with pytest.raises(SystemExit, match="set elsewhere"):
        accuracy.parse_sets([f"elsewhere={tmp_path / 'no-corpus'}"])


def test_command_line_defaults_and_sets(tmp_path: Path) -> None:
    from voiceprint.synth import synthesize_corpus

    root = synthesize_corpus(tmp_path / "c", train_speakers=2, test_speakers=2, utts_per_speaker=2)
    args = accuracy.parse_args(
        ["--only", "mfcc, resemblyzer", "--sb-minutes", "2", "--set", f"mine={root}"]
    )
    assert args.only == ["mfcc", "resemblyzer"] and args.sb_minutes == 2.0
    assert args.sets == {"mine": root} and args.model == [accuracy.DEFAULT_MODEL]


def test_pair_similarity_standardises_and_ranks_speaker_pairs(tmp_path: Path) -> None:
    ts = _trial_set(4, 3)
    spk_a, spk_b = ts.speakers()
    labels = ts.labels
    rng = np.random.default_rng(0)
    scores = rng.normal(size=labels.size) * 0.1 + 3.0 * labels
    planted = (spk_a != spk_b) & np.isin(spk_a, ["s0", "s2"]) & np.isin(spk_b, ["s0", "s2"])
    scores[planted] += 5.0
    path = tmp_path / "sys.txt"
    path.write_text(
        "".join(
            f"{a} {b} {x} {'target' if t else 'nontarget'}\n"
            for (a, b, t), x in zip(ts.trials, scores, strict=True)
        ),
        encoding="utf-8",
    )
    different, own = pair_similarity.pair_means(scores, spk_a, spk_b)
    z = (scores - scores[~labels].mean()) / scores[~labels].std()
    assert different["s0–s2"] == pytest.approx(z[planted].mean())
    assert max(different, key=different.get) == "s0–s2"
    assert own["s1"] == pytest.approx(z[labels & (spk_a == "s1")].mean())
    assert "| sys | s0–s2" in pair_similarity.table([path], ts, top=2)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks"):
        pair_similarity.table([path], ts, top=2)
