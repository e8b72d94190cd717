"""The composed embedder: a speech policy is a value each caller passes or holds, never a
switch on a shared embedder, and the clips without speech come back with the call that
found them (nothing accumulates on the embedder)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_onnx import tiny_exported
from voiceprint import audio
from voiceprint.embedder import EmbeddedFiles, Embedder, load_embedder
from voiceprint.runners import OnnxRunner
from voiceprint.speech import SpeechPolicy
from voiceprint.synth import make_voice, synthesize_utterance
from voiceprint.vad import NoSpeechError


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic voice (2 s), the same between 1 s of silence on each side, faint noise."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(5)
    speech = synthesize_utterance(make_voice(rng), 2.0, rng, 16000)
    silence = np.zeros(16000, dtype=np.float32)
    waves = {
        "speech": speech,
        "padded": np.concatenate([silence, speech, silence]),
        "faint": (0.003 * rng.standard_normal(24000)).astype(np.float32),
    }
    paths = {}
    for name, wave in waves.items():
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], wave, 16000, subtype="FLOAT")
    return paths


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    _, onnx = tiny_exported()
    return load_embedder(onnx, precision="fp32")


def test_the_embedder_is_composed(embedder: Embedder) -> None:
    assert isinstance(embedder.runner, OnnxRunner) and embedder.runtime == "onnxruntime"
    assert embedder.policy == SpeechPolicy(check=True, trim=False, refuse=True)
    assert embedder.model_id == embedder.spec.model_id and embedder.sample_rate == 16000
    assert embedder.min_samples == embedder.runner.min_samples == 400
    assert not hasattr(embedder, "no_speech")


def test_callers_with_different_policies_do_not_affect_each_other(
    embedder: Embedder, clips: dict[str, Path]
) -> None:
    faint, padded = audio.load(clips["faint"]), audio.load(clips["padded"])
    before = embedder.policy
    lenient = embedder.with_policy(refuse=False)
    trimming = embedder.with_policy(SpeechPolicy(trim=True))
    assert lenient.runner is embedder.runner is trimming.runner  # one model in memory
    assert lenient.scorer is embedder.scorer and lenient.spec is embedder.spec
    for _ in range(2):  # interleaved: no call leaves anything behind for the next
        kept, seconds = lenient.measured(faint, "faint")
        assert seconds == 0.0 and len(kept) == len(faint)  # embedded whole
        with pytest.raises(NoSpeechError, match="faint"):
            embedder.measured(faint, "faint")
        assert len(trimming.speech(padded, "padded")) < len(padded) - 16000
        assert len(embedder.speech(padded, "padded")) == len(padded)  # checked, not trimmed
        # a policy for one call only
        once = embedder.measured(faint, "faint", policy=SpeechPolicy(refuse=False))
        assert once[1] == 0.0
        with pytest.raises(NoSpeechError, match="faint"):
            embedder.embed_files_measured([clips["faint"]], progress=False)
    assert embedder.policy == before and lenient.policy == SpeechPolicy(refuse=False)


def test_two_threads_with_two_policies_on_one_embedder(
    embedder: Embedder, clips: dict[str, Path]
) -> None:
    faint = audio.load(clips["faint"])
    start = threading.Barrier(2)
    outcomes: dict[str, list[str]] = {"lenient": [], "strict": []}

    def caller(name: str, policy: SpeechPolicy | None) -> None:
        start.wait()
        for _ in range(4):
            try:
                seconds = embedder.measured(faint, "faint", policy=policy)[1]
                outcomes[name].append(f"embedded {seconds:g} s")
            except NoSpeechError:
                outcomes[name].append("refused")

    threads = [
        threading.Thread(target=caller, args=("lenient", SpeechPolicy(refuse=False))),
        threading.Thread(target=caller, args=("strict", None)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == {"lenient": ["embedded 0 s"] * 4, "strict": ["refused"] * 4}


def test_embed_files_measured_returns_the_clips_without_speech(
    embedder: Embedder, clips: dict[str, Path]
) -> None:
    lenient = SpeechPolicy(refuse=False)
    paths = [clips["speech"], clips["faint"], clips["padded"]]
    first = embedder.embed_files_measured(paths, progress=False, policy=lenient)
    assert isinstance(first, EmbeddedFiles)
    assert first.no_speech == [str(clips["faint"])]
    assert first.embeddings.shape == (3, 32) and first.seconds[1] == 0.0
    assert first.seconds[0] > 1.0 and first.seconds[2] > 1.0
    # the next call reports its own clips only
    again = embedder.embed_files_measured([clips["speech"]], progress=False, policy=lenient)
    assert again.no_speech == []
    twice = embedder.embed_files_measured([clips["faint"]] * 2, progress=False, policy=lenient)
    assert twice.no_speech == [str(clips["faint"])] * 2
    np.testing.assert_allclose(twice.embeddings[0], first.embeddings[1], atol=1e-6)
    # embed_files gives the embeddings alone, the same ones
    matrix = embedder.embed_files(paths, progress=False, policy=lenient)
    np.testing.assert_array_equal(matrix, first.embeddings)
