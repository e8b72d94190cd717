"""Scoring back-end: cosine scores, trials, AS-norm against a loop, calibration vs analytic LLR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from voiceprint import metrics, scoring


def test_cosine_scores_known_values_and_torch_input() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    expected = np.array([[1.0, 1 / np.sqrt(2), 0.0], [0.0, 1 / np.sqrt(2), -1.0]])
    np.testing.assert_allclose(scoring.cosine_scores(a, b), expected, atol=1e-12)
    out = scoring.cosine_scores(torch.tensor(a, dtype=torch.float32), torch.tensor(b))
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match="dimensions differ"):
        scoring.cosine_scores(a, np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        scoring.cosine_scores(a[0], b)


def test_verification_is_diagonal_of_cosine_scores() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = scoring.verification(x, y)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, np.diag(scoring.cosine_scores(x, y)), atol=1e-12)
    np.testing.assert_allclose(scoring.verification(x, 3 * x), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        scoring.verification(x, y[:3])


def test_score_trials_looks_up_ids() -> None:
    emb = {"spkA": np.array([1.0, 0.0]), "u1": np.array([1.0, 1.0]), "u2": np.array([0.0, -2.0])}
    got = scoring.score_trials(emb, [("spkA", "u1"), ("spkA", "u2"), ("u1", "u2")])
    np.testing.assert_allclose(got, [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)], atol=1e-12)
    assert scoring.score_trials(emb, []).shape == (0,)
    with pytest.raises(KeyError, match="nope"):
        scoring.score_trials(emb, [("spkA", "nope")])


def test_length_norm_and_mean_subtract() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(scoring.length_norm(x), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(scoring.mean_subtract(x, [1.0, 2.0]), [[2.0, 2.0], [-1.0, -2.0]])
    with pytest.raises(ValueError, match="dimension"):
        scoring.mean_subtract(x, [1.0, 2.0, 3.0])


def _asnorm_loop(scores, enroll, test, cohort, top_n):
    out = []
    for s, e, t in zip(scores, enroll, test, strict=True):
        sides = []
        for v in (e, t):
            cs = [float(v @ c / (np.linalg.norm(v) * np.linalg.norm(c))) for c in cohort]
            top = sorted(cs, reverse=True)[:top_n]
            sides.append((s - np.mean(top)) / np.std(top))
        out.append(0.5 * sum(sides))
    return np.array(out)


@pytest.mark.parametrize("top_n", [2, 5, 30])
def test_asnorm_matches_per_trial_loop(top_n: int) -> None:
    rng = np.random.default_rng(1)
    enroll, test = rng.normal(size=(11, 8)), rng.normal(size=(11, 8))
    cohort = rng.normal(size=(30, 8))
    raw = scoring.verification(enroll, test)
    got = scoring.asnorm(raw, enroll, test, cohort, top_n=top_n, chunk=4)  # several chunks
    np.testing.assert_allclose(got, _asnorm_loop(raw, enroll, test, cohort, top_n), atol=1e-10)


def test_asnorm_validates() -> None:
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="top_n"):
        scoring.asnorm(np.zeros(3), x, x, np.ones((5, 4)), top_n=6)
    with pytest.raises(ValueError, match="agree"):
        scoring.asnorm(np.zeros(2), x, x, np.ones((5, 4)), top_n=2)


@pytest.mark.parametrize("p_target", [0.5, 0.1])
def test_calibration_recovers_gaussian_llr(p_target: float) -> None:
    # Equal-variance Gaussians: LLR(s) = (mu_t - mu_n) / var * (s - (mu_t + mu_n) / 2).
    rng = np.random.default_rng(0)
    mu_t, mu_n, sd = 1.5, -0.5, 0.8
    tar = rng.normal(mu_t, sd, 20000)
    non = rng.normal(mu_n, sd, 20000)
    cal = scoring.ScoreCalibration().fit(tar, non, p_target=p_target)
    grid = np.linspace(-1.0, 2.0, 7)
    analytic = (mu_t - mu_n) / sd**2 * (grid - (mu_t + mu_n) / 2)
    np.testing.assert_allclose(cal.llr(grid), analytic, atol=0.15)
    assert cal.scale == pytest.approx((mu_t - mu_n) / sd**2, rel=0.05)
    assert np.all(np.diff(cal.llr(np.sort(rng.normal(size=100)))) > 0)


def test_calibration_separable_finite_and_roundtrip() -> None:
    cal = scoring.ScoreCalibration().fit([1.0, 2.0, 3.0], [-1.0, -2.0])
    assert np.isfinite(cal.scale) and cal.scale > 0
    assert cal.llr(np.array([3.0]))[0] > 0 > cal.llr(np.array([-2.0]))[0]
    again = scoring.ScoreCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(again.llr([0.3, 1.7]), cal.llr([0.3, 1.7]))
    with pytest.raises(ValueError, match="scale"):
        scoring.ScoreCalibration.from_dict({"offset": 0.0})
    with pytest.raises(RuntimeError, match="not fitted"):
        scoring.ScoreCalibration().llr([0.0])


def test_calibration_threshold_for_far() -> None:
    rng = np.random.default_rng(2)
    tar, non = rng.normal(2, 1, 500), rng.normal(0, 1, 1000)
    cal = scoring.ScoreCalibration().fit(tar, non)
    thr = cal.threshold_for_far(0.01, non)
    assert np.mean(cal.llr(non) >= thr) <= 0.01
    assert np.mean(cal.llr(non) >= thr - 1e-6) > 0.01  # the smallest such threshold
    raw = metrics.threshold_at_far(non, 0.01)
    assert thr == pytest.approx(cal.llr(np.array([raw]))[0])
