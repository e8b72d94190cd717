"""Decisions that hold when the input changes: quality-aware calibration, the speech floor
("not enough speech") in the CLI, the Python API and the service, per-corpus thresholds,
telephone-band augmentation, and models from before these changes scoring as they did."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voiceprint.audio import save
from voiceprint.cli import main
from voiceprint.config import AugmentConfig
from voiceprint.data.augment import WaveAugmenter
from voiceprint.data.channel import mu_law_code, telephone_band
from voiceprint.embedder import Embedder, load_embedder
from voiceprint.scoring import (
    NOT_ENOUGH_SPEECH,
    REFERENCE_SECONDS,
    UNKNOWN,
    Backend,
    Decision,
    ScoreCalibration,
    Scorer,
    trial_quality,
)
from voiceprint.store import SpeakerDB
from voiceprint.synth import make_voice, synthesize_utterance

from .test_onnx import make_tiny_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"


# ----------------------------------------------------------------- quality-aware LLR


def synthetic_trials(rng: np.random.Generator, n: int = 20000):
    """Scores whose separation shrinks with duration: long trials are well separated,
    short ones barely. Returns (scores, labels, enroll_s, test_s)."""
    enroll = rng.uniform(0.5, 20.0, n)
    test = rng.uniform(0.5, 20.0, n)
    q = trial_quality(enroll, test)  # in [log(0.05), 0]
    labels = rng.random(n) < 0.3
    separation = 3.0 + 0.9 * q  # 3.0 at q = 0, 0.3 at 0.5 s
    scores = np.where(labels, separation, 0.0) + rng.normal(0.0, 1.0, n)
    return scores, labels, enroll, test


def test_trial_quality_is_log_share_of_reference() -> None:
    q = trial_quality([1.0, 20.0, 0.01], [5.0, 30.0, 3.0])
    expected = [math.log(1.0 / REFERENCE_SECONDS), 0.0, math.log(0.1 / REFERENCE_SECONDS)]
    assert q == pytest.approx(expected)


def test_quality_calibration_equals_a_direct_logistic_regression() -> None:
    """The fitted parameters equal scikit-learn's weighted, unpenalised logistic
    regression on [s, q, q s] (the prior's logit moved from the intercept)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    scores, labels, enroll, test = synthetic_trials(rng)
    q = trial_quality(enroll, test)
    p = 0.2
    cal = ScoreCalibration(l2=0.0).fit(
        scores[labels],
        scores[~labels],
        p_target=p,
        target_quality=q[labels],
        nontarget_quality=q[~labels],
    )
    weights = np.where(labels, p / labels.sum(), (1 - p) / (~labels).sum())
    features = np.stack([scores, q, q * scores], axis=1)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000)
    ref.fit(features, labels, sample_weight=weights * len(labels))
    (a, c, d), b = ref.coef_[0], ref.intercept_[0] - math.log(p / (1 - p))
    assert cal.scale == pytest.approx(a, rel=1e-3)
    assert cal.offset == pytest.approx(b, rel=1e-3, abs=1e-3)
    assert cal.quality == pytest.approx((c, d), rel=1e-3, abs=1e-3)
    # and the LLR is that linear form, through the scorer's seconds
    backend = Backend(calibration=cal)
    llr = Scorer(backend).llr(scores, enroll, test)
    assert llr == pytest.approx(a * scores + b + c * q + d * q * scores, rel=1e-3, abs=1e-3)


def test_quality_calibration_shrinks_short_trials_and_calibrates_them_better() -> None:
    rng = np.random.default_rng(1)
    scores, labels, enroll, test = synthetic_trials(rng)
    q = trial_quality(enroll, test)
    plain = ScoreCalibration().fit(scores[labels], scores[~labels], 0.5)
    aware = ScoreCalibration().fit(
        scores[labels], scores[~labels], 0.5, target_quality=q[labels], nontarget_quality=q[~labels]
    )
    c, d = aware.quality
    assert d > 0  # a short trial (q < 0) gets a smaller slope: its score weighs less

    def cllr(llr: np.ndarray) -> float:
        tar, non = llr[labels], llr[~labels]
        return 0.5 * (np.mean(np.logaddexp(0, -tar)) + np.mean(np.logaddexp(0, non))) / math.log(2)

    assert cllr(aware.llr(scores, q)) < cllr(plain.llr(scores))
    # The truth's slope in s is the separation: 3 at 20 s, 0.3 at 0.5 s.
    long_q, short_q = trial_quality(20.0, 20.0), trial_quality(0.5, 0.5)
    two = np.array([1.0, 3.0])
    long_slope = float(np.diff(aware.llr(two, long_q))[0]) / 2
    short_slope = float(np.diff(aware.llr(two, short_q))[0]) / 2
    assert long_slope == pytest.approx(3.0, abs=0.3)
    assert short_slope == pytest.approx(0.3, abs=0.3)


def test_calibration_round_trips_and_old_dicts_ignore_seconds() -> None:
    rng = np.random.default_rng(2)
    scores, labels, enroll, test = synthetic_trials(rng, 4000)
    q = trial_quality(enroll, test)
    aware = ScoreCalibration().fit(
        scores[labels], scores[~labels], 0.1, target_quality=q[labels], nontarget_quality=q[~labels]
    )
    again = ScoreCalibration.from_dict(aware.to_dict())
    assert again.llr(scores, q) == pytest.approx(aware.llr(scores, q))
    # a calibration written before quality existed: llr = scale s + offset, seconds or not
    old = ScoreCalibration.from_dict({"scale": 7.0, "offset": -2.0, "p_target": 0.01})
    scorer = Scorer(Backend(calibration=old))
    assert scorer.llr(scores, enroll, test) == pytest.approx(7.0 * scores - 2.0)
    with pytest.raises(ValueError, match="quality measure"):
        ScoreCalibration.from_dict({"scale": 1, "offset": 0, "quality": {"measure": "snr"}})


def test_quality_is_held_at_the_shortest_fitted_trial() -> None:
    """A trial shorter than any the calibration saw is scored as the shortest fitted one,
    not by extrapolating the linear quality terms (which made 0-s trials accept); the
    floor survives the round trip, and a dict without it keeps the old behaviour."""
    rng = np.random.default_rng(3)
    scores, labels, enroll, test = synthetic_trials(rng, 4000)
    q = trial_quality(enroll, test)
    aware = ScoreCalibration().fit(
        scores[labels], scores[~labels], 0.1, target_quality=q[labels], nontarget_quality=q[~labels]
    )
    assert aware.quality_floor == pytest.approx(q.min())
    shortest = float(np.minimum(enroll, test).min())
    s = np.array([0.2, 0.5])
    held = aware.llr(s, trial_quality(shortest, shortest))
    assert aware.llr(s, trial_quality(0.0, 5.0)) == pytest.approx(held)
    again = ScoreCalibration.from_dict(aware.to_dict())
    assert again.llr(s, trial_quality(0.0, 0.0)) == pytest.approx(held)
    data = aware.to_dict()
    del data["quality"]["floor"]
    unfloored = ScoreCalibration.from_dict(data)
    c, d = aware.quality
    q0 = trial_quality(0.0, 0.0)
    expected = aware.scale * s + aware.offset + c * q0 + d * q0 * s
    assert unfloored.llr(s, q0) == pytest.approx(expected)


# ------------------------------------------------------------------------- decisions


def test_judge_answers_not_enough_speech_below_the_floor() -> None:
    decision = Decision(1.0, "bayes", min_speech_seconds=2.0)
    assert decision.judge(5.0, 3.0, 2.5) == "accept"
    assert decision.judge(0.0, 3.0, 2.5) == "reject"
    assert decision.judge(50.0, 3.0, 1.9) == NOT_ENOUGH_SPEECH  # never an accept
    assert decision.judge(50.0, None, 2.0) == "accept"  # unknown enrollment: not held back
    assert Decision.from_dict(decision.to_dict()) == decision
    assert decision.for_gallery(10).min_speech_seconds == 2.0
    assert decision.at_prior(0.5).min_speech_seconds == 2.0
    accepted = decision.accepts_all([5.0, 5.0, 0.0], [3.0, 3.0, 3.0], [3.0, 1.0, 3.0])
    assert accepted.tolist() == [True, False, False]


def test_name_is_the_open_set_answer_of_judge() -> None:
    """Decision.name: the candidate when judge accepts, else "unknown", or "not enough
    speech" when a side is under the floor (the one rule of CLI, service, diarization)."""
    decision = Decision(1.0, "bayes", min_speech_seconds=2.0)
    assert decision.name("ann", 5.0, 3.0, 2.5) == "ann"
    assert decision.name("ann", 0.0, 3.0, 2.5) == UNKNOWN == "unknown"
    assert decision.name("ann", 50.0, 1.0, 3.0) == NOT_ENOUGH_SPEECH  # enrolled side short
    assert decision.name("ann", 50.0, 3.0, 1.0) == NOT_ENOUGH_SPEECH  # probe short
    assert decision.name("ann", 5.0) == "ann"  # no seconds: no floor
    gallery = decision.for_gallery(100)  # bayes: threshold + log(100)
    assert gallery.name("ann", 5.7) == "ann" and gallery.name("ann", 5.5) == UNKNOWN


def test_far_thresholds_hold_in_every_group() -> None:
    """With groups, each rate's threshold is the strictest group's: the rate holds in
    each group, where the pooled threshold lets the harder group through more often."""
    rng = np.random.default_rng(3)
    easy, hard = rng.normal(0, 1, 20000), rng.normal(1.5, 1, 5000)
    scores = np.concatenate([easy, hard])
    groups = np.array(["easy"] * easy.size + ["hard"] * hard.size)
    pooled = Decision.from_scores(0.0, scores).at_far(0.01).threshold
    strict = Decision.from_scores(0.0, scores, groups=groups).at_far(0.01).threshold
    assert (hard >= pooled).mean() > 0.02
    assert (hard >= strict).mean() <= 0.01 and (easy >= strict).mean() <= 0.01
    assert strict > pooled


# ---------------------------------------------------------- the floor where users are


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("quality_clips")
    rng = np.random.default_rng(21)
    voice = make_voice(rng)
    out = {}
    for name, seconds in (("long1", 3.0), ("long2", 3.0), ("short", 1.0)):
        out[name] = folder / f"{name}.wav"
        save(out[name], synthesize_utterance(voice, seconds, rng))
    return out


@pytest.fixture(scope="module")
def floored_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose decision accepts everything (threshold -100) but needs 2 s of
    speech: any refusal comes from the floor."""
    folder = tmp_path_factory.mktemp("floored")
    decision = Decision(-100.0, "manual", min_speech_seconds=2.0)
    return make_tiny_checkpoint(folder / "floored.pth", decision=decision)


def test_cli_says_not_enough_speech_with_the_seconds(
    floored_model, clips, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("VOICEPRINT_DB", str(tmp_path / "speakers.db"))
    model = ["--model", str(floored_model)]
    assert main(["enroll", "ann", str(clips["long1"]), *model]) == 0
    capsys.readouterr()
    assert main(["verify", "ann", str(clips["long2"]), *model]) == 0
    assert capsys.readouterr().out.split()[-1] == "ACCEPT"
    code = main(["verify", "ann", str(clips["short"]), *model])
    out = capsys.readouterr().out
    assert code == 1
    assert "NOT ENOUGH SPEECH" in out and "2.00 s needed" in out and "ACCEPT" not in out
    found = float(out.split("NOT ENOUGH SPEECH (")[1].split(" s of speech")[0])
    assert 0.3 < found < 2.0
    code = main(["identify", str(clips["short"]), *model])
    out = capsys.readouterr().out
    assert code == 1 and "identified: not enough speech" in out
    code = main(["compare", str(clips["long1"]), str(clips["short"]), *model])
    assert code == 1 and "NOT ENOUGH SPEECH" in capsys.readouterr().out


def test_python_api_judges_with_the_store_seconds(floored_model, clips, tmp_path) -> None:
    embedder = Embedder.from_checkpoint(floored_model)
    emb, seconds, _ = embedder.embed_files_measured(
        [clips["long1"], clips["short"]], progress=False
    )
    assert seconds[0] > 2.0 > seconds[1] > 0.0
    with SpeakerDB(tmp_path / "s.db", embedder.model_id, embedder.scorer) as db:
        db.enroll("ann", emb[:1], speech_seconds=seconds[:1])
        db.enroll("ann", emb[:1], speech_seconds=seconds[:1])  # sums
        assert db.speech_seconds(["ann", "nobody"]) == [pytest.approx(2 * seconds[0]), None]
        match = db.verify("ann", emb[1], float(seconds[1]))
        enrolled = db.speech_seconds(["ann"])[0]
    verdict = embedder.decision.judge(match.llr, enrolled, float(seconds[1]))
    assert verdict == NOT_ENOUGH_SPEECH


def test_service_answers_not_enough_speech(floored_model, clips, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from voiceprint.service import create_app

    embedder = Embedder.from_checkpoint(floored_model)
    app = create_app(embedder, tmp_path / "speakers.db")

    def upload(name: str) -> tuple[str, bytes, str]:
        return (f"{name}.wav", clips[name].read_bytes(), "audio/wav")

    with TestClient(app) as client:
        assert client.post("/v1/enroll", data={"name": "ann"}, files={"file": upload("long1")})
        ok = client.post("/v1/verify", data={"name": "ann"}, files={"file": upload("long2")})
        assert ok.status_code == 200 and ok.json()["decision"] == "ACCEPT"
        short = client.post("/v1/verify", data={"name": "ann"}, files={"file": upload("short")})
        body = short.json()
        assert body["decision"] == "NOT ENOUGH SPEECH" and body["accepted"] is False
        assert body["speech_needed"] == 2.0 and 0.3 < body["speech_seconds"] < 2.0
        who = client.post("/v1/identify", files={"file": upload("short")}).json()
        assert who["identified"] == "not enough speech"


def test_cli_and_service_identify_alike_when_the_enrollment_is_short(
    floored_model, clips, tmp_path, monkeypatch, capsys
) -> None:
    """A speaker enrolled with less speech than the floor: identify answers "not enough
    speech" in the CLI as in the service (one Decision.name), never the name."""
    from fastapi.testclient import TestClient

    from voiceprint.service import create_app

    db = tmp_path / "speakers.db"
    model = ["--model", str(floored_model)]
    monkeypatch.setenv("VOICEPRINT_DB", str(db))
    assert main(["enroll", "ann", str(clips["short"]), *model]) == 0
    capsys.readouterr()
    code = main(["identify", str(clips["long1"]), *model])
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and "NOT ENOUGH SPEECH" in out[0]
    assert out[-1].startswith("identified: not enough speech (") and "2.00 s needed" in out[-1]
    app = create_app(Embedder.from_checkpoint(floored_model), db)
    with TestClient(app) as client:
        files = {"file": ("long1.wav", clips["long1"].read_bytes(), "audio/wav")}
        who = client.post("/v1/identify", files=files).json()
    assert who["identified"] == NOT_ENOUGH_SPEECH and who["best"]["accepted"] is False


# ---------------------------------------------------------------- telephone channel


def test_telephone_band_removes_energy_above_4_khz() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    wave = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
    out = telephone_band(torch.tensor(wave, dtype=torch.float32)[None], rate)[0].numpy()
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(out.size, 1 / rate)
    above = spectrum[freqs > 4000].sum() / spectrum.sum()
    assert above < 1e-4  # the 6 kHz tone (half the input power) is gone
    kept = (
        spectrum[np.abs(freqs - 1000) < 5].sum()
        / (np.abs(np.fft.rfft(wave)) ** 2)[np.abs(freqs - 1000) < 5].sum()
    )
    assert kept == pytest.approx(1.0, abs=0.05)  # the 1 kHz tone passes
    assert out.shape == wave.shape


def test_mu_law_is_g711_companding() -> None:
    x = torch.linspace(-1, 1, 10001)
    y = mu_law_code(x)
    assert torch.all(torch.diff(y) >= 0)  # monotone
    assert float((y - x).abs().max()) < 0.03  # 8-bit coding error, largest at full scale
    small = torch.tensor([0.001])
    assert float((mu_law_code(small) - small).abs()) < 2e-4  # fine steps near zero


def test_augmenter_applies_the_telephone_band_when_asked() -> None:
    rng = np.random.default_rng(4)
    wave = torch.tensor(rng.normal(0, 0.1, (4, 16000)), dtype=torch.float32)
    always = WaveAugmenter(AugmentConfig(telephone_prob=1.0)).train()
    out = always(wave).numpy()
    spectrum = np.abs(np.fft.rfft(out, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    assert (spectrum[:, freqs > 4000].sum(-1) / spectrum.sum(-1)).max() < 1e-3
    never = WaveAugmenter(AugmentConfig(telephone_prob=0.0, gain_prob=0.0)).train()
    assert torch.equal(never(wave), wave)


# ------------------------------------------------------- models from before the change


@pytest.mark.parametrize("kind", ["pth", "onnx"])
def test_model_files_from_before_score_as_they_did(kind: str) -> None:
    """A calibrated .pth and its ONNX export written by the code before quality-aware
    calibration and the speech floor (tests/fixtures/before_quality, made at commit
    b99eb53): same model id, scores, LLRs (durations or not) and thresholds as then."""
    folder = FIXTURES / "before_quality"
    expected = json.loads((folder / "expected.json").read_text())[kind]
    embedder = load_embedder(folder / f"model.{kind}")
    assert embedder.model_id == expected["model_id"]
    clips = [folder / f"clip{i}.flac" for i in range(3)]
    vectors, seconds, _ = embedder.embed_files_measured(clips, progress=False)
    scorer = embedder.scorer
    for (a, b), score, llr in zip(
        [(0, 1), (0, 2), (1, 2)], expected["scores"], expected["llr"], strict=True
    ):
        got = scorer.compare(vectors[a], vectors[b])
        assert got == pytest.approx(score, abs=1e-5)
        assert float(scorer.llr(np.array([got]))[0]) == pytest.approx(llr, abs=1e-4)
        with_speech = scorer.llr(np.array([got]), seconds[a], seconds[b])
        assert float(with_speech[0]) == pytest.approx(llr, abs=1e-4)  # no quality terms
    assert embedder.decision.threshold == pytest.approx(expected["threshold"])
    assert embedder.decision.at_far(0.01).threshold == pytest.approx(expected["far_0.01"])
    assert embedder.decision.min_speech_seconds == 0.0
    assert embedder.decision.judge(1e6, 0.01, 0.01) == "accept"  # no floor before


def test_wav_upload_measures_speech(floored_model, clips) -> None:
    """embed_measured on a decoded upload gives the same seconds as the file path."""
    embedder = Embedder.from_checkpoint(floored_model)
    wave, rate = sf.read(io.BytesIO(clips["short"].read_bytes()), dtype="float32")
    _, seconds = embedder.embed_measured(wave, rate, "short")
    by_path = embedder.embed_files_measured([clips["short"]], progress=False).seconds
    assert seconds == pytest.approx(float(by_path[0]))


def test_evaluate_writes_the_operating_points(synthetic_root, tmp_path: Path) -> None:
    """results.json holds the default decision's and --far 0.01's measured rates; a
    speech floor above every clip refuses every trial, counted as rejected."""
    from voiceprint.evaluation import evaluate

    decision = Decision.from_scores(0.3, np.linspace(-1.0, 1.0, 2001), rule="manual")
    plain = make_tiny_checkpoint(tmp_path / "plain.pth", decision=decision)
    results = evaluate(plain, root=str(synthetic_root), out_dir=tmp_path / "a", progress=False)
    points = results["operating_points"]
    assert set(points) == {"default", "far_0.01"}
    scores = np.array([float(line.split()[2]) for line in (tmp_path / "a/scores.txt").open()])
    labels = np.array([line.split()[3] == "target" for line in (tmp_path / "a/scores.txt").open()])
    # an uncalibrated model: the LLR is the score
    assert points["default"]["far"] == pytest.approx(float((scores[~labels] >= 0.3).mean()))
    assert points["default"]["frr"] == pytest.approx(float((scores[labels] < 0.3).mean()))
    far_threshold = decision.at_far(0.01).threshold
    assert points["far_0.01"]["far"] == pytest.approx(
        float((scores[~labels] >= far_threshold).mean())
    )
    assert points["default"]["refused"] == 0.0
    floored = Decision(-100.0, "manual", min_speech_seconds=60.0)
    strict = make_tiny_checkpoint(tmp_path / "strict.pth", decision=floored)
    results = evaluate(strict, root=str(synthetic_root), out_dir=tmp_path / "b", progress=False)
    assert results["operating_points"]["default"] == {
        "threshold": -100.0,
        "far": 0.0,
        "frr": 1.0,
        "refused": 1.0,
        "dcf": pytest.approx(1.0),
    }
    assert json.loads((tmp_path / "b/results.json").read_text())["operating_points"]
