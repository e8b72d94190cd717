"""Calibration on held-out speakers: trials in the shape verify uses, the fit against a
direct computation, the model's decision and provenance, and ``voiceprint calibrate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from voiceprint import calibration, metrics
from voiceprint.data.corpus import Utterance
from voiceprint.scoring import Backend, ScoreCalibration, Scorer, length_norm


def fake_corpus(n_spk: int, n_utt: int, corpus: str = "") -> list[Utterance]:
    prefix = f"{corpus}-" if corpus else ""
    return [
        Utterance(f"{prefix}S{s}_{u}", f"{prefix}S{s}", Path(f"/x/{prefix}S{s}_{u}.wav"))
        for s in range(n_spk)
        for u in range(n_utt)
    ]


def clustered_embeddings(utts: list[Utterance], seed: int = 0, noise: float = 0.6) -> dict:
    """One random direction per speaker plus noise: (D,) per utterance."""
    rng = np.random.default_rng(seed)
    centres = {s: rng.normal(size=16) for s in sorted({u.speaker for u in utts})}
    return {u.utt: centres[u.speaker] + noise * rng.normal(size=16) for u in utts}


def test_enroll_style_trials_stay_within_a_corpus() -> None:
    utts = fake_corpus(3, 4, "a") + fake_corpus(2, 4, "b")
    one = calibration.enroll_style_trials(utts, 1, corpora=["a", "b"])
    assert len(one.trials) == 12 * 11 // 2 + 8 * 7 // 2  # all pairs inside each corpus only
    assert all(a.split("-")[0] == b.split("-")[0] for a, b, _ in one.trials)
    assert sum(t for *_, t in one.trials) == 3 * 6 + 2 * 6
    three = calibration.enroll_style_trials(utts, 3, corpora=["a", "b"])
    assert len(three.enroll) == 5 and all(len(v) == 3 for v in three.enroll.values())
    # Each model meets every clip of its corpus that enrolls no one: 3 x 3 + 2 x 2 trials.
    assert len(three.trials) == 3 * 3 + 2 * 2
    with pytest.raises(ValueError, match="no target or no non-target"):
        calibration.enroll_style_trials(fake_corpus(1, 5), 1)


def test_calibration_fit_equals_a_direct_minimisation() -> None:
    """The Newton fit reaches the optimum of the prior-weighted cross-entropy (without
    the tiny slope penalty, which only matters for separable scores)."""
    rng = np.random.default_rng(2)
    tar, non = rng.normal(2.0, 1.0, 300), rng.normal(-1.0, 1.5, 3000)
    p = 0.01
    fitted = ScoreCalibration(l2=0.0).fit(tar, non, p_target=p)
    logit = math.log(p / (1 - p))

    def cross_entropy(theta: np.ndarray) -> float:
        a, b = theta
        return p * np.mean(np.logaddexp(0, -(a * tar + b + logit))) + (1 - p) * np.mean(
            np.logaddexp(0, a * non + b + logit)
        )

    direct = minimize(cross_entropy, x0=[1.0, 0.0], method="BFGS", options={"gtol": 1e-12})
    assert fitted.scale == pytest.approx(direct.x[0], rel=1e-5)
    assert fitted.offset == pytest.approx(direct.x[1], rel=1e-5)


@pytest.mark.parametrize("dim", [6, 4])
def test_lda_projection_equals_scikit_learn(dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the ridge, cosine after lda_projection equals cosine after scikit-learn's
    eigen-solver LDA (the same directions and scaling, signs aside); the kept directions
    whiten the within-speaker covariance and the rest are zero."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    monkeypatch.setattr(calibration, "LDA_RIDGE", 0.0)
    rng = np.random.default_rng(7)
    speakers = np.repeat(np.arange(8), 12)
    x = rng.normal(size=(96, 6)) + 2.0 * rng.normal(size=(8, 6))[speakers]
    x -= x.mean(0)
    projection = calibration.lda_projection(x, speakers.astype(str), dim)
    reference = LinearDiscriminantAnalysis(solver="eigen", n_components=dim).fit(x, speakers)
    ours, theirs = length_norm(x @ projection), length_norm(reference.transform(x))
    np.testing.assert_allclose(ours @ ours.T, theirs @ theirs.T, atol=1e-10)
    assert not projection[:, dim:].any()
    within = x - np.stack([x[speakers == s].mean(0) for s in range(8)])[speakers]
    kept = projection[:, :dim]
    np.testing.assert_allclose(kept.T @ (within.T @ within / len(x)) @ kept, np.eye(dim), atol=1e-9)


def test_lda_ridge_bounds_directions_the_training_clips_never_vary_in() -> None:
    """Fewer clips than dimensions: the within-speaker scatter is singular, and the
    projection stays finite and bounded by the ridge."""
    rng = np.random.default_rng(8)
    speakers = np.repeat(np.arange(3), 2).astype(str)  # 6 clips, 3 within-speaker dofs
    x = rng.normal(size=(6, 10))
    projection = calibration.lda_projection(x - x.mean(0), speakers, 10)
    assert np.all(np.isfinite(projection))
    sw = x - np.stack([x[speakers == s].mean(0) for s in "012"])[speakers.astype(int)]
    mean_eig = np.trace(sw.T @ sw / 6) / 10
    # The null directions get exactly the ridge's scale: the largest gain there is.
    bound = 1.0 / math.sqrt(calibration.LDA_RIDGE * mean_eig)
    assert np.linalg.norm(projection, 2) == pytest.approx(bound, rel=1e-6)
    with pytest.raises(ValueError, match="two or more clips"):
        calibration.lda_projection(x[:3], speakers[::2], 3)  # one clip per speaker
    with pytest.raises(ValueError, match="two training speakers"):
        calibration.lda_projection(x, ["a"] * 6, 3)
    with pytest.raises(ValueError, match="LDA dimension"):
        calibration.lda_projection(x, speakers, 11)


def test_training_stats_builds_the_cohort_after_the_projection() -> None:
    from voiceprint.config import EvalConfig

    rng = np.random.default_rng(9)
    speakers = np.repeat(np.arange(5), 4)
    emb = rng.normal(size=(20, 6)) + 3.0 * rng.normal(size=(5, 6))[speakers]
    names = [f"s{i}" for i in speakers]
    backend = calibration.training_stats(
        emb, names, EvalConfig(mean_subtract=True, lda_dim=3, asnorm_top=2)
    )
    assert backend.projection.shape == (6, 6) and not backend.projection[:, 3:].any()
    # LDA implies centring: without mean_subtract the mean is kept all the same.
    alone = calibration.training_stats(emb, names, EvalConfig(lda_dim=3))
    np.testing.assert_allclose(alone.mean, emb.mean(0), atol=1e-5)
    units = Scorer(backend).units(emb)
    expected = length_norm(np.stack([units[speakers == s].mean(0) for s in range(5)]))
    np.testing.assert_allclose(backend.cohort, expected, atol=1e-6)


def test_fit_calibration_records_decision_and_provenance() -> None:
    utts = fake_corpus(12, 6)
    emb = clustered_embeddings(utts)
    trial_set = calibration.enroll_style_trials(utts, 1)
    scorer = Scorer(Backend(mean=np.zeros(16, dtype=np.float32)))
    fitted = calibration.fit_calibration(scorer, trial_set, emb, 0.01, {"kind": "test"})
    assert fitted.decision.rule == "bayes"
    assert fitted.decision.threshold == pytest.approx(math.log(99))
    assert fitted.provenance["kind"] == "test" and fitted.provenance["speakers"] == 12
    assert fitted.provenance["n_target"] == 12 * 15
    assert fitted.provenance["n_nontarget"] == 72 * 71 // 2 - 12 * 15
    # The decision's FAR table is measured on the calibrated non-target trials.
    scores = calibration.score_trial_set(Scorer(fitted), trial_set, emb)
    labels = trial_set.labels
    llr = fitted.calibration.llr(scores)
    far = 0.01
    measured = np.mean(llr[~labels] >= fitted.decision.at_far(far).threshold)
    assert measured <= far + 1e-3
    assert fitted.provenance["act_dcf"] == pytest.approx(
        metrics.act_dcf(llr[labels], llr[~labels], 0.01)
    )
    with pytest.warns(calibration.SmallCalibrationSetWarning, match="rule of 30"):
        calibration.fit_calibration(scorer, trial_set, emb, 0.01, {}, far=1e-3)


def test_calibrate_command_on_a_small_synthetic_set(synthetic_root: Path, tmp_path: Path) -> None:
    """voiceprint calibrate: a copy with a new calibration, the same model id, a report."""
    from voiceprint.cli import main
    from voiceprint.embedder import load_embedder
    from voiceprint.onnx_export import export_onnx

    from .test_onnx import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "tiny.pth")
    out = tmp_path / "mine.pth"
    argv = ["calibrate", "--model", str(checkpoint), "--root", str(synthetic_root)]
    assert main([*argv, "--out", str(out), "--far", "0.01"]) == 0
    original, calibrated = load_embedder(checkpoint), load_embedder(out)
    assert calibrated.model_id == original.model_id  # enrolled speakers stay valid
    assert calibrated.scorer.calibrated and not original.scorer.calibrated
    assert calibrated.decision.rule == "far" and calibrated.decision.far == 0.01
    report = json.loads((tmp_path / "mine_calibration" / "results.json").read_text())
    assert report["n_speakers"] == 12 and report["out"] == str(out)
    low, high = report["eer_ci95"]
    assert low <= report["eer"] <= high
    assert (tmp_path / "mine_calibration" / "calibration.png").stat().st_size > 0
    # The same on an ONNX file: only the metadata changes.
    onnx_in = export_onnx(checkpoint, tmp_path / "tiny.onnx")
    onnx_out = tmp_path / "mine.onnx"
    assert main([*argv[:2], str(onnx_in), *argv[3:], "--out", str(onnx_out)]) == 0
    again = load_embedder(onnx_out)
    assert again.model_id == original.model_id
    report = json.loads((tmp_path / "mine_calibration" / "results.json").read_text())
    assert again.scorer.backend.calibration.to_dict() == report["calibration"]
    assert again.decision.rule == "bayes"  # no --far this time


def test_cross_fitting_needs_both_kinds_of_trial_in_each_half() -> None:
    """Two speakers of two clips: one half holds the other speaker's target trial only,
    so nothing can be fitted on it (None); with enough speakers every trial gets an LLR."""
    from voiceprint.recalibration import cross_fitted_llr

    rng = np.random.default_rng(0)
    for n_spk, expect_none in ((2, True), (6, False)):
        trial_set = calibration.enroll_style_trials(fake_corpus(n_spk, 3 if n_spk > 2 else 2))
        labels = trial_set.labels
        scores = rng.normal(size=labels.size) + 2.0 * labels
        spk_a, _ = trial_set.speakers()
        llr = cross_fitted_llr(scores, labels, spk_a, 0.01, seed=0)
        if expect_none:
            assert llr is None
        else:
            assert llr is not None and np.isfinite(llr).all() and llr.shape == scores.shape


def test_calibrate_on_two_speakers_leaves_the_cross_fitted_figure_out(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """voiceprint calibrate on too few speakers to cross-fit: the copy and the report are
    written, the cross-fitted actual DCF is None, and a warning says why (it used to fail
    with 'llr contains NaN or infinite values' after writing the model)."""
    from voiceprint.cli import main

    from .test_onnx import make_tiny_checkpoint

    wavs = sorted((synthetic_root / "wav" / "test").glob("*/*.wav"))
    chosen = [w for w in wavs if w.parent.name in {wavs[0].parent.name, wavs[-1].parent.name}]
    chosen = [w for w in chosen if w.stem.endswith(("0001", "0002"))]
    assert len(chosen) == 4
    data = tmp_path / "two"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{w.stem} {w}\n" for w in chosen))
    (data / "utt2spk").write_text("".join(f"{w.stem} {w.parent.name}\n" for w in chosen))
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny.pth")
    out = tmp_path / "mine.pth"
    argv = ["calibrate", "--model", str(checkpoint), "--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "cross-fitted actual DCF is left out" in printed.err
    assert "actual DCF not measured (too few speakers to cross-fit)" in printed.out
    report = json.loads((tmp_path / "mine_calibration" / "results.json").read_text())
    assert report["act_dcf"] is None and report["act_dcf_ci95"] is None
    assert report["n_target"] == 2 and out.is_file()


def test_held_out_clips_without_speech_are_left_out_of_calibration(tmp_path: Path) -> None:
    """A held-out clip in which the speech check hears nothing would be refused by every
    deployed decision: the release leaves it out of the calibration trials (with a log
    line) instead of failing, and the trials are those of the other clips."""
    from voiceprint.audio import save
    from voiceprint.config import EvalConfig
    from voiceprint.embedder import Embedder
    from voiceprint.synth import make_voice, synthesize_utterance

    from .test_onnx import make_tiny_checkpoint

    rng = np.random.default_rng(5)
    spoken = []
    for s in range(4):
        voice = make_voice(rng)
        for u in range(3):
            path = tmp_path / f"S{s}_{u}.wav"
            save(path, synthesize_utterance(voice, 1.5, rng))
            spoken.append(Utterance(f"S{s}_{u}", f"S{s}", path))
    quiet = tmp_path / "S0_quiet.wav"
    save(quiet, (0.01 * rng.standard_normal(32_000)).astype(np.float32))  # hiss, no voice
    heldout = [*spoken, Utterance("S0_quiet", "S0", quiet)]
    embedder = Embedder.from_checkpoint(make_tiny_checkpoint(tmp_path / "tiny.pth"))
    ecfg = EvalConfig(calibrate=True, quality_calibration=True)
    backend = calibration.fit_backend(embedder, [], heldout, ecfg, progress=False)
    expected = calibration.enroll_style_trials(spoken, ecfg.calibration_enroll_utts)
    n_target = sum(t for *_, t in expected.trials)
    assert backend.provenance["n_target"] == n_target
    assert backend.provenance["n_nontarget"] == len(expected.trials) - n_target


def test_calibration_weights_equal_repeating_trials() -> None:
    """Integer trial weights fit what repeating each trial that many times fits."""
    rng = np.random.default_rng(4)
    tar, non = rng.normal(2.0, 1.0, 200), rng.normal(-1.0, 1.5, 900)
    w_tar, w_non = rng.integers(1, 4, tar.size), rng.integers(1, 4, non.size)
    weighted = ScoreCalibration().fit(
        tar, non, p_target=0.01, target_weight=w_tar, nontarget_weight=w_non
    )
    repeated = ScoreCalibration().fit(np.repeat(tar, w_tar), np.repeat(non, w_non), p_target=0.01)
    assert weighted.scale == pytest.approx(repeated.scale, rel=1e-4)
    assert weighted.offset == pytest.approx(repeated.offset, rel=1e-4)
    with pytest.raises(ValueError, match="target weight"):
        ScoreCalibration().fit(tar, non, target_weight=-np.ones(tar.size))


def test_balanced_corpora_and_small_corpora_joined() -> None:
    """Every corpus holds the same share of each class; corpora of fewer speakers than
    asked are measured as one group, the others keep their own."""
    utts = fake_corpus(2, 6, "a") + fake_corpus(6, 2, "b") + fake_corpus(3, 2, "c")
    trial_set = calibration.enroll_style_trials(utts, 1, corpora=["a", "b", "c"])
    corpus = trial_set.test_corpora(["a", "b", "c"])
    labels = trial_set.labels
    weight = calibration.corpus_balanced_weights(corpus, labels)
    for cls in (labels, ~labels):
        shares = [weight[cls & (corpus == c)].sum() for c in ("a", "b", "c")]
        assert shares == pytest.approx([1.0, 1.0, 1.0])
    joined = calibration.small_corpora_joined(corpus, trial_set, 3)
    assert set(joined[corpus == "b"]) == {"b"} and set(joined[corpus == "c"]) == {"c"}
    assert len(set(joined[corpus == "a"])) == 1 and joined[corpus == "a"][0] not in "abc"
