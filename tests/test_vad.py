"""Speech activity detection on synthetic speech placed at known positions in silence."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from voiceprint import vad
from voiceprint.audio import AudioError
from voiceprint.synth import make_voice, synthesize_utterance

SR = 16000
EDGE = 0.3  # s: allowed distance between a region edge and the true speech edge


def _speech(seed: int, seconds: float = 3.0, sample_rate: int = SR) -> np.ndarray:
    """One synthetic utterance of a random voice."""
    rng = np.random.default_rng([7, seed])
    return synthesize_utterance(make_voice(rng), seconds, rng, sample_rate)


def _noise(seconds: float, rng: np.random.Generator, level: float = 1e-3) -> np.ndarray:
    """Low-level white noise (``level`` is its standard deviation)."""
    return (rng.standard_normal(int(round(seconds * SR))) * level).astype(np.float32)


def _padded(speech: np.ndarray, seed: int, edge: float = 1.5) -> tuple[np.ndarray, int, int]:
    """``speech`` with ``edge`` s of low noise on both sides; also its [start, end)."""
    rng = np.random.default_rng([11, seed])
    before, after = _noise(edge, rng), _noise(edge, rng)
    wave = np.concatenate([before, speech + _noise(len(speech) / SR, rng), after])
    return wave, before.size, before.size + speech.size


@pytest.fixture(params=["onnx", "jit"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Load the model afresh with this backend (jit: as if onnxruntime were missing)."""
    if request.param == "onnx":
        pytest.importorskip("onnxruntime")
    else:
        monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(vad, "_MODEL", None)
    return request.param


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regions_follow_speech_boundaries(backend: str, seed: int) -> None:
    speech = _speech(seed)
    wave, start, end = _padded(speech, seed)
    found = vad.speech_regions(wave, SR)
    assert vad._MODEL is not None and vad._MODEL[0] == backend
    regions = found.regions
    assert regions.dtype == np.int64 and regions.ndim == 2 and regions.shape[1] == 2
    assert len(regions) >= 1
    assert abs(regions[0, 0] - start) <= EDGE * SR
    assert abs(regions[-1, 1] - end) <= EDGE * SR
    assert np.all(regions[:, 1] > regions[:, 0]) and np.all(regions[1:, 0] >= regions[:-1, 1])
    assert found.total_samples == wave.size and found.sample_rate == SR
    assert 0.0 < found.share < 1.0

    trimmed = vad.trim(wave, SR, name="utt.wav")
    assert trimmed.dtype == np.float32 and trimmed.ndim == 1
    assert abs(trimmed.size - speech.size) <= 0.5 * SR
    assert trimmed.size == found.speech_samples
    assert vad.net_speech_seconds(wave, SR) == pytest.approx(trimmed.size / SR)


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_no_speech_raises_naming_the_source(kind: str) -> None:
    rng = np.random.default_rng(3)
    wave = np.zeros(4 * SR, np.float32) if kind == "silence" else _noise(4.0, rng, 0.01)
    assert len(vad.speech_regions(wave, SR).regions) == 0
    assert vad.net_speech_seconds(wave, SR) == 0.0
    with pytest.raises(vad.NoSpeechError, match=r"quiet_\w+\.wav: no speech found") as info:
        vad.trim(wave, SR, name=f"quiet_{kind}.wav")
    assert isinstance(info.value, AudioError)
    assert "4.00 s" in str(info.value)


def test_short_speech_warns_only_below_the_minimum() -> None:
    wave, _, _ = _padded(_speech(4, seconds=2.0), 4, edge=0.5)
    found = vad.net_speech_seconds(wave, SR)
    assert 1.0 < found < 3.0
    with pytest.warns(vad.ShortSpeechWarning, match=r"short\.wav: only \d+\.\d\d s") as caught:
        trimmed = vad.trim(wave, SR, name="short.wav", min_speech_seconds=found + 1.0)
    assert f"{found + 1.0:.2f} s needed" in str(caught[0].message)
    assert trimmed.size == round(found * SR)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vad.trim(wave, SR, name="short.wav", min_speech_seconds=found - 0.5)
        vad.trim(wave, SR, name="short.wav")  # 0 disables the check


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_unsupported_rate_raises(rate: int) -> None:
    with pytest.raises(ValueError, match=r"voiceprint\.audio\.prepare"):
        vad.speech_regions(np.zeros(rate, np.float32), rate)


def test_8khz_is_supported() -> None:
    rate = 8000
    speech = _speech(5, sample_rate=rate)
    silence = np.zeros(rate, np.float32)
    found = vad.speech_regions(np.concatenate([silence, speech, silence]), rate)
    assert found.sample_rate == rate and len(found.regions) >= 1
    assert abs(found.regions[0, 0] - rate) <= EDGE * rate
    assert abs(found.regions[-1, 1] - (rate + speech.size)) <= EDGE * rate


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        vad.speech_regions(np.zeros((SR, 2), np.float32))
    with pytest.raises(ValueError, match="float samples"):
        vad.speech_regions(np.zeros(SR, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        vad.speech_regions(np.full(SR, np.nan, np.float32))


def test_speech_regions_arithmetic() -> None:
    found = vad.SpeechRegions(np.array([[0, 100], [200, 250]], np.int64), 100, 1000)
    assert found.speech_samples == 150
    assert found.speech_seconds == pytest.approx(1.5)
    assert found.share == pytest.approx(0.15)
    assert vad.SpeechRegions(np.zeros((0, 2), np.int64), SR, 0).share == 0.0


def test_torch_thread_count_is_kept(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, module)  # re-run silero_vad's import-time code
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        vad.speech_regions(np.zeros(SR, np.float32), SR)
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


def test_ten_minutes_gives_one_region_per_burst() -> None:
    # Synthetic speech has pauses and weak syllables that the VAD can score as silence for
    # up to about a second; a 2 s minimum silence keeps each burst whole, and the 4-8 s
    # gaps between bursts stay longer than that.
    rng = np.random.default_rng(9)
    pool = [_speech(10 + i, seconds=float(rng.uniform(2.0, 4.0))) for i in range(8)]
    pieces, bursts = [], []
    cursor = 0
    while True:
        gap = _noise(float(rng.uniform(4.0, 8.0)), rng)
        burst = pool[len(bursts) % len(pool)]
        if cursor + gap.size + burst.size + SR > 600 * SR:
            break
        pieces += [gap, burst + _noise(burst.size / SR, rng)]
        bursts.append((cursor + gap.size, cursor + gap.size + burst.size))
        cursor += gap.size + burst.size
    pieces.append(_noise(600 - cursor / SR, rng))
    wave = np.concatenate(pieces)
    assert wave.size == 600 * SR

    found = vad.speech_regions(wave, SR, min_silence_ms=2000)
    assert len(found.regions) == len(bursts)
    # Region i lies in burst i (widened by EDGE) and covers most of it. After long noise
    # the onset of some synthetic voices is found up to ~0.7 s late, so no tighter check.
    expected = np.array(bursts)
    assert np.all(found.regions[:, 0] >= expected[:, 0] - EDGE * SR)
    assert np.all(found.regions[:, 1] <= expected[:, 1] + EDGE * SR)
    overlap = np.minimum(found.regions[:, 1], expected[:, 1]) - found.regions[:, 0]
    assert np.all(overlap >= 0.5 * (expected[:, 1] - expected[:, 0]))


@pytest.mark.parametrize("threshold", [0.15, 0.5])
def test_regions_equal_silero_own_timestamps(backend: str, threshold: float) -> None:
    """Both backends and our state machine give exactly Silero's get_speech_timestamps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import silero_vad

        reference_model = silero_vad.load_silero_vad(onnx=False)
    rng = np.random.default_rng(5)
    parts = []
    for seed in range(4):  # speech bursts of varied length between pauses of varied length
        parts += [_noise(rng.uniform(0.05, 1.2), rng), _speech(seed, rng.uniform(0.4, 2.5))]
    wave = np.concatenate([*parts, _noise(0.7, rng)])
    found = vad.speech_regions(wave, SR, threshold=threshold, min_silence_ms=150)
    stamps = silero_vad.get_speech_timestamps(
        torch.from_numpy(wave),
        reference_model,
        threshold=threshold,
        sampling_rate=SR,
        min_silence_duration_ms=150,
    )
    expected = np.array([[s["start"], s["end"]] for s in stamps], dtype=np.int64)
    assert len(expected) >= 2
    np.testing.assert_array_equal(found.regions, expected.reshape(-1, 2))


def test_probabilities_do_not_depend_on_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks carry the recurrent state and the context: cutting them smaller changes nothing."""
    pytest.importorskip("onnxruntime")
    wave = _padded(_speech(3, 6.0), 3)[0]
    whole = vad.speech_probabilities(wave)
    monkeypatch.setattr(vad, "BLOCK_FRAMES", 7)
    np.testing.assert_allclose(vad.speech_probabilities(wave), whole, atol=1e-6)
    assert whole.shape == (-(-wave.size // vad.FRAME),)
