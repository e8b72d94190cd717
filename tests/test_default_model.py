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
