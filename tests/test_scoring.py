"""Scoring back-end: cosine scores, trials, AS-norm against a loop and against the oracles
(tests/oracles.py), calibration vs analytic LLR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.oracles import asnorm, cosine_scores, score_trials
from voiceprint import metrics, scoring


def test_plain_scorer_is_cosine_known_values_and_torch_input() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    expected = np.array([[1.0, 1 / np.sqrt(2), 0.0], [0.0, 1 / np.sqrt(2), -1.0]])
    plain = scoring.Scorer()
    np.testing.assert_allclose(plain.score(plain.units(a), plain.units(b)), expected, atol=1e-12)
    np.testing.assert_allclose(cosine_scores(a, b), expected, atol=1e-12)  # the oracle
    out = plain.score(
        plain.units(torch.tensor(a, dtype=torch.float32)), plain.units(torch.tensor(b))
    )
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match="dimensions differ"):
        plain.score(plain.units(a), plain.units(np.ones((2, 3))))
    with pytest.raises(ValueError, match="2-D"):
        plain.score(plain.units(a[0]), plain.units(b))


def test_verification_is_diagonal_of_cosine_scores() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = scoring.verification(x, y)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, np.diag(cosine_scores(x, y)), atol=1e-12)
    np.testing.assert_allclose(scoring.verification(x, 3 * x), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        scoring.verification(x, y[:3])


def test_score_trials_looks_up_ids() -> None:
    emb = {"spkA": np.array([1.0, 0.0]), "u1": np.array([1.0, 1.0]), "u2": np.array([0.0, -2.0])}
    trials = [("spkA", "u1"), ("spkA", "u2"), ("u1", "u2")]
    expected = [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)]
    scorer = scoring.Scorer()
    units = {k: scorer.units(v) for k, v in emb.items()}
    np.testing.assert_allclose(scorer.score_trials(units, trials), expected, atol=1e-12)
    np.testing.assert_allclose(score_trials(emb, trials), expected, atol=1e-12)  # the oracle
    assert scorer.score_trials(units, []).shape == (0,)
    with pytest.raises(KeyError, match="nope"):
        scorer.score_trials(units, [("spkA", "nope")])


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
    """The scorer's AS-norm (and the oracle's) against a loop over trials and cohort."""
    rng = np.random.default_rng(1)
    enroll, test = rng.normal(size=(11, 8)), rng.normal(size=(11, 8))
    cohort = rng.normal(size=(30, 8))
    raw = scoring.verification(enroll, test)
    expected = _asnorm_loop(raw, enroll, test, cohort, top_n)
    got = asnorm(raw, enroll, test, cohort, top_n=top_n, chunk=4)  # several chunks
    np.testing.assert_allclose(got, expected, atol=1e-10)
    unit_cohort = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    scorer = scoring.Scorer(scoring.Backend(cohort=unit_cohort, asnorm_top=top_n))
    np.testing.assert_allclose(
        scorer.score_pairs(scorer.units(enroll), scorer.units(test)), expected, atol=1e-10
    )
    units = {f"e{i}": u for i, u in enumerate(scorer.units(enroll))}
    units.update({f"t{i}": u for i, u in enumerate(scorer.units(test))})
    pairs = [(f"e{i}", f"t{i}") for i in range(11)]
    np.testing.assert_allclose(scorer.score_trials(units, pairs, chunk=4), expected, atol=1e-10)


def test_asnorm_validates() -> None:
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="top_n"):
        asnorm(np.zeros(3), x, x, np.ones((5, 4)), top_n=6)
    with pytest.raises(ValueError, match="agree"):
        asnorm(np.zeros(2), x, x, np.ones((5, 4)), top_n=2)


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


# ------------------------------------------------------------- the scorer (a model's back-end)


def _backend(rng: np.random.Generator, dim: int = 6, cohort: int = 9, top: int = 4):
    mean = rng.normal(size=dim).astype(np.float32)
    c = rng.normal(size=(cohort, dim))
    c = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
    calibration = scoring.ScoreCalibration(scale=3.0, offset=-1.0)
    return scoring.Backend(mean=mean, cohort=c, asnorm_top=top, calibration=calibration)


def test_scorer_matches_the_back_end_computed_by_hand() -> None:
    """mean subtraction -> cosine -> AS-norm (against asnorm()) -> 3 s - 1."""
    rng = np.random.default_rng(4)
    backend = _backend(rng)
    scorer = scoring.Scorer(backend)
    enroll, probe = rng.normal(size=(5, 6)), rng.normal(size=(7, 6))
    got = scorer.score(scorer.units(enroll), scorer.units(probe))
    e, p = enroll - backend.mean, probe - backend.mean
    raw = cosine_scores(e, p)
    ii, jj = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    expected = asnorm(
        raw.ravel(), e[ii.ravel()], p[jj.ravel()], backend.cohort, backend.asnorm_top
    ).reshape(5, 7)
    # asnorm() renormalises the stored float32 cohort rows in float64: 1e-7-level changes.
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(scorer.llr(got), 3.0 * got - 1.0, atol=1e-12)
    # A speaker model is the normalised mean of its clips' units.
    model = scorer.speaker_model(enroll[:3])
    units = scorer.units(enroll[:3])
    np.testing.assert_allclose(model, units.mean(0) / np.linalg.norm(units.mean(0)))
    np.testing.assert_array_equal(scorer.model_of_units(units), model)  # a cluster's model
    # cosine: the score before AS-norm (what diarization clusters by), the oracle's cosine.
    np.testing.assert_allclose(
        scorer.cosine(scorer.units(enroll), scorer.units(probe)), raw, atol=1e-12
    )
    # Without a back-end: plain cosine, and the LLR is the score.
    plain = scoring.Scorer()
    np.testing.assert_allclose(
        plain.score(plain.units(enroll), plain.units(probe)),
        cosine_scores(enroll, probe),
        atol=1e-12,
    )
    np.testing.assert_array_equal(plain.llr(raw), raw)


def test_projection_applies_after_the_mean_and_travels_with_the_back_end() -> None:
    """units = length_norm((x - mean) @ projection); the projection is in the round trip
    and in the identity (stored units depend on it); a misfit shape is refused."""
    rng = np.random.default_rng(11)
    mean = rng.normal(size=6).astype(np.float32)
    projection = rng.normal(size=(6, 6)).astype(np.float32)
    projection[:, 4:] = 0.0
    backend = scoring.Backend(mean=mean, projection=projection)
    x = rng.normal(size=(5, 6))
    expected = scoring.length_norm((x - mean) @ projection.astype(np.float64))
    np.testing.assert_allclose(scoring.Scorer(backend).units(x), expected, atol=1e-12)
    again = scoring.Backend.from_dict(json.loads(json.dumps(backend.to_dict())))
    np.testing.assert_array_equal(again.projection, projection)
    assert again.identity() == backend.identity() and again.dim == 6
    assert backend.identity() != scoring.Backend(mean=mean).identity()
    with pytest.raises(ValueError, match="projection must be"):
        scoring.Backend(projection=projection[:, :4])
    with pytest.raises(ValueError, match="mean and projection"):
        scoring.Backend(mean=mean[:4], projection=projection)
    with pytest.raises(ValueError, match="dims, the projection"):
        scoring.Scorer(scoring.Backend(projection=projection)).units(x[:, :4])


def test_score_trials_chunked_equals_the_score_matrix() -> None:
    rng = np.random.default_rng(5)
    scorer = scoring.Scorer(_backend(rng))
    emb = rng.normal(size=(12, 6))
    units = dict(zip([f"u{i}" for i in range(12)], scorer.units(emb), strict=True))
    trials = [(f"u{a}", f"u{b}") for a in range(12) for b in range(a + 1, 12)]
    got = scorer.score_trials(units, trials, chunk=7)  # several chunks
    matrix = scorer.score(scorer.units(emb), scorer.units(emb))
    expected = [matrix[int(a[1:]), int(b[1:])] for a, b in trials]
    np.testing.assert_allclose(got, expected, atol=1e-10)
    with pytest.raises(KeyError, match="no embedding"):
        scorer.score_trials(units, [("u1", "zz")])


def test_trials_without_an_embedding_are_a_user_error_naming_them() -> None:
    """The CLI prints a VoiceprintError as one line (a plain KeyError is a bug); it
    stays a KeyError for callers that catch that, and names the missing ids."""
    from voiceprint.cli import USER_ERRORS
    from voiceprint.errors import VoiceprintError

    scorer = scoring.Scorer()
    units = {"u1": scorer.units(np.array([1.0, 0.0])), "u2": scorer.units(np.array([0.0, 1.0]))}
    trials = [("u1", "zz"), ("yy", "u2"), ("u1", "u2")] + [("u1", f"x{i}") for i in range(6)]
    with pytest.raises(scoring.MissingEmbeddingError) as caught:
        scorer.score_trials(units, trials)
    err = caught.value
    assert isinstance(err, VoiceprintError) and isinstance(err, KeyError)
    assert isinstance(err, USER_ERRORS)
    assert str(err).startswith("8 trial ids have no embedding: x0, x1, x2, x3, x4 ...")
    with pytest.raises(scoring.MissingEmbeddingError, match="no embedding: yy, zz "):
        scorer.score_trials(units, trials[:3])


def test_backend_round_trip_and_damaged_values() -> None:
    rng = np.random.default_rng(6)
    backend = _backend(rng)
    backend.decision = scoring.Decision.from_scores(
        4.6, rng.normal(size=2000), rule="bayes", p_target=0.01
    )
    backend.provenance = {"speakers": 3}
    text = json.dumps(backend.to_dict())
    again = scoring.Backend.from_dict(json.loads(text))
    np.testing.assert_array_equal(again.mean, backend.mean)
    np.testing.assert_array_equal(again.cohort, backend.cohort)
    assert again.asnorm_top == 4 and again.identity() == backend.identity()
    assert again.calibration.to_dict() == backend.calibration.to_dict()
    assert again.decision == backend.decision and again.provenance == {"speakers": 3}
    assert scoring.Backend.from_dict(None).identity() == scoring.Backend().identity()
    values = backend.to_dict()
    values["mean"]["shape"] = [7]  # 6 floats stored
    with pytest.raises(ValueError, match="do not hold shape"):
        scoring.Backend.from_dict(values)
    values = backend.to_dict()
    values["cohort"] = scoring.encode_array(np.full((2, 6), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        scoring.Backend.from_dict(values)
    with pytest.raises(ValueError, match="asnorm_top"):
        scoring.Backend(cohort=backend.cohort, asnorm_top=50)


def test_open_set_threshold_grows_with_the_gallery() -> None:
    bayes = scoring.Decision(0.0, "bayes", p_target=0.5).at_prior(0.01)
    assert bayes.threshold == pytest.approx(np.log(99))
    assert bayes.for_gallery(1).threshold == pytest.approx(np.log(99))
    assert bayes.for_gallery(1000).threshold == pytest.approx(np.log(99) + np.log(1000))
    nontarget = np.linspace(-5, 5, 100_001)
    at_far = scoring.Decision.from_scores(0.0, nontarget).at_far(0.01)
    gallery = at_far.for_gallery(10)
    per_comparison = 1 - 0.99 ** (1 / 10)  # an unenrolled voice passes none of 10 w.p. 0.99
    assert gallery.threshold == pytest.approx(
        scoring.Decision.from_scores(0.0, nontarget).at_far(per_comparison).threshold, abs=1e-3
    )
    with pytest.raises(ValueError, match="per comparison"):
        at_far.for_gallery(10**9)
    manual = scoring.Decision(0.3, "manual")
    assert manual.for_gallery(100) is manual
    assert manual.for_gallery(100, scoring.OPEN_SET_PRIOR) is manual  # a prior needs LLRs
    with pytest.raises(ValueError, match="at least one"):
        bayes.for_gallery(0)


def test_open_set_prior_replaces_the_decisions_own() -> None:
    """At an open-set prior P, each of n enrolled speakers has prior odds P/(1-P)/n."""
    stored = scoring.Decision(0.0, "bayes", p_target=0.5).at_prior(0.0075)
    for n, prior in [(1, 0.05), (10, 0.05), (60, 0.3)]:
        named = stored.for_gallery(n, prior)
        assert named.threshold == pytest.approx(np.log((1 - prior) / prior) + np.log(n))
        assert named.p_target == prior and named.rule == "bayes"
    assert stored.for_gallery(10).threshold == pytest.approx(np.log(0.9925 / 0.0075 * 10))
    at_far = scoring.Decision.from_scores(0.0, np.linspace(-5, 5, 10_001)).at_far(0.01)
    assert at_far.for_gallery(10, 0.05).threshold == at_far.for_gallery(10).threshold


def test_act_dcf_and_its_interval() -> None:
    # Hand-computed: threshold logit -> 4.595; 1 of 4 targets missed, 1 of 5 non-targets accepted
    tar = np.array([10.0, 6.0, 5.0, 1.0])
    non = np.array([-3.0, -1.0, 0.0, 2.0, 4.6])
    expected = (0.01 * 0.25 + 0.99 * 0.2) / 0.01
    assert metrics.act_dcf(tar, non, 0.01) == pytest.approx(expected)
    rng = np.random.default_rng(1)
    spk = np.repeat(np.arange(10), 6)
    emb = rng.normal(size=(10, 4))[spk] + 0.4 * rng.normal(size=(60, 4))
    a, b = np.triu_indices(60, 1)
    s = scoring.verification(emb[a], emb[b])
    labels = spk[a] == spk[b]
    llr = 8 * s - 4
    ci = metrics.bootstrap_dcf(s, labels, spk[a], spk[b], 0.01, llr=llr, n_boot=100)
    point = metrics.min_dcf(s[labels], s[~labels])[0]
    act = metrics.act_dcf(llr[labels], llr[~labels], 0.01)
    assert ci["min_dcf"][0] <= point + 0.05 and ci["min_dcf"][1] >= point - 0.05
    assert 0 <= ci["act_dcf"][0] <= ci["act_dcf"][1]
    assert ci["act_dcf"][0] <= act + 0.05 and ci["act_dcf"][1] >= act - 0.05
