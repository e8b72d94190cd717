"""The model shipped in the package: small, self-describing, and usable without training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voiceprint.cli import main
from voiceprint.cli.use import default_model
from voiceprint.embedder import OnnxEmbedder
from voiceprint.scoring import verification
from voiceprint.synth import make_voice, synthesize_utterance


def test_default_model_carries_its_scorer_and_dev_figures() -> None:
    """The shipped model scores as it was evaluated: back-end and calibration inside it,
    calibrated on held-out training speakers, its so762 dev figures recorded."""
    path = default_model()
    assert path is not None, "voiceprint/assets/default.onnx is missing from the package"
    assert path.stat().st_size <= 10 * 1024 * 1024
    model = OnnxEmbedder(path)
    assert model.scorer.calibrated and model.decision.rule == "bayes"
    recipe = model.config.eval  # the default decision: Bayes at the prior chosen on dev
    prior = recipe.decision_prior or recipe.p_target
    assert model.decision.threshold == pytest.approx(math.log((1 - prior) / prior))
    assert model.decision.far_points  # thresholds at chosen false-accept rates
    assert model.decision.min_speech_seconds == recipe.min_speech_seconds > 0  # speech floor
    provenance = model.scorer.backend.provenance
    assert provenance["kind"] == "held-out training speakers" and provenance["speakers"] >= 30
    assert sorted(provenance["corpora"]) == ["arcmd", "cvfa", "cvzh", "dsp20", "so762"]
    evaluation = model.evaluation  # all pairs of the 60 so762 dev speakers
    assert evaluation["n_speakers"] == 60 and evaluation["n_target"] == 11_400
    assert 0.0 < evaluation["eer"] < 0.15 and "act_dcf" in evaluation
    assert model.sample_rate == 16000


def test_compare_works_right_after_install(tmp_path, capsys) -> None:
    from voiceprint.audio import save

    rng = np.random.default_rng(0)
    voice = make_voice(rng)
    for name in ("a", "b"):
        save(tmp_path / f"{name}.wav", synthesize_utterance(voice, 2.0, rng))
    # A clip against itself: score 1 after the model's mean subtraction, accepted (exit 0).
    assert main(["compare", str(tmp_path / "a.wav"), str(tmp_path / "a.wav")]) == 0
    same = capsys.readouterr().out
    assert "score 1.000" in same and same.rstrip().endswith("ACCEPT")
    code = main(["compare", str(tmp_path / "a.wav"), str(tmp_path / "b.wav")])
    other = capsys.readouterr().out
    score = float(other.split("score ")[1].split()[0])
    assert -1.0 <= score < 1.0 and code == (0 if other.rstrip().endswith("ACCEPT") else 1)


def test_default_int8_copy_stands_for_the_float32_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged int8 copy keeps the model id and scorer, and embeds as float32 does.

    On CPUs without VNNI, onnxruntime's u8s8 kernels sum byte pairs in 16 bits, which can
    saturate (0.990 measured on an AMD EPYC without VNNI): there ``precision=auto`` keeps
    float32, and the copy is held to a looser bound."""
    from voiceprint.quantize import choose_precision, copy_mismatch, int8_path, int8_pays_off

    monkeypatch.delenv("VOICEPRINT_PRECISION", raising=False)  # auto, as a user gets it
    path = default_model()
    assert path is not None
    copy = int8_path(path)
    if not copy.is_file():
        pytest.skip("no int8 copy ships beside the default model")
    fp32, int8 = OnnxEmbedder(path), OnnxEmbedder(copy)
    assert int8.runner.precision == "int8" and fp32.runner.precision == "fp32"
    assert int8.model_id == fp32.model_id and int8.evaluation == fp32.evaluation
    assert copy_mismatch(path, copy) is None  # so auto may run it
    rng = np.random.default_rng(4)
    clips = [synthesize_utterance(make_voice(rng), 3.0, rng) for _ in range(4)]
    a, b = fp32.embed_batch(clips), int8.embed_batch(clips)
    cosine = verification(a, b)
    if int8_pays_off():
        assert choose_precision(path) == copy
        assert cosine.min() >= 0.995
    else:
        assert choose_precision(path) == path
        assert cosine.min() >= 0.98


def test_identify_names_at_the_open_set_prior(tmp_path, capsys, monkeypatch) -> None:
    """`identify` (CLI and service) judges the best match with the model's decision at
    OPEN_SET_PRIOR spread over the gallery; a decision the user chose is used as it is."""
    from fastapi.testclient import TestClient

    from voiceprint.audio import save
    from voiceprint.scoring import OPEN_SET_PRIOR
    from voiceprint.service import create_app

    monkeypatch.setenv("VOICEPRINT_DB", str(tmp_path / "speakers.db"))
    rng = np.random.default_rng(5)
    for name in ("a", "b", "c"):
        voice = make_voice(rng)
        for take in (1, 2):
            save(tmp_path / f"{name}{take}.wav", synthesize_utterance(voice, 3.0, rng))
        assert main(["enroll", name, str(tmp_path / f"{name}1.wav")]) == 0
    model = OnnxEmbedder(default_model())
    open_set = model.decision.for_gallery(3, OPEN_SET_PRIOR).threshold
    assert open_set == pytest.approx(math.log((1 - OPEN_SET_PRIOR) / OPEN_SET_PRIOR) + math.log(3))
    at_far = model.decision.at_far(0.01).for_gallery(3).threshold
    assert open_set != pytest.approx(at_far)
    probe = str(tmp_path / "b2.wav")
    capsys.readouterr()
    main(["identify", probe])
    assert f"threshold {open_set:.3f}" in capsys.readouterr().out
    main(["identify", probe, "--far", "0.01"])
    assert f"threshold {at_far:.3f}" in capsys.readouterr().out

    for decision, expected in [(None, open_set), (model.decision.at_far(0.01), at_far)]:
        app = create_app(model, tmp_path / "speakers.db", decision=decision)
        with TestClient(app) as client, open(probe, "rb") as f:
            body = client.post("/v1/identify", files={"file": ("b2.wav", f)}).json()
        assert body["gallery_size"] == 3
        assert body["best"]["threshold"] == pytest.approx(expected)
