"""The model shipped in the package: small, self-describing, and usable without training."""

from __future__ import annotations

import numpy as np

from voiceprint.cli import main
from voiceprint.cli.use import default_model
from voiceprint.embedder import OnnxEmbedder
from voiceprint.synth import make_voice, synthesize_utterance


def test_default_model_ships_with_its_threshold_and_eer() -> None:
    path = default_model()
    assert path is not None, "voiceprint/assets/default.onnx is missing from the package"
    assert path.stat().st_size <= 10 * 1024 * 1024
    model = OnnxEmbedder(path)
    assert model.decision is not None and -1.0 < model.decision.threshold < 1.0
    assert model.decision.far_points  # thresholds at chosen false-accept rates
    assert 0.0 < model.evaluation["eer"] < 0.15  # recorded on cv-zh's 20x10 test speakers
    assert model.sample_rate == 16000


def test_compare_works_right_after_install(tmp_path, capsys) -> None:
    from voiceprint.audio import save

    rng = np.random.default_rng(0)
    voice = make_voice(rng)
    for name in ("a", "b"):
        save(tmp_path / f"{name}.wav", synthesize_utterance(voice, 2.0, rng))
    code = main(["compare", str(tmp_path / "a.wav"), str(tmp_path / "b.wav")])
    assert code in (0, 1)
    assert "score" in capsys.readouterr().out
