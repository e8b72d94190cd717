"""Property-based tests (hypothesis): audio decoding of arbitrary bytes, metric invariants."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voiceprint import audio, metrics

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_decoded(data: bytes) -> None:
    """A clear AudioError naming the upload, or a usable wave: never another exception."""
    try:
        wave = audio.decode_bytes(data, 16000, name="fuzz.bin")
    except audio.AudioError as err:
        assert str(err).startswith("fuzz.bin: ")
        return
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0
    assert np.all(np.isfinite(wave)) and float(np.abs(wave).max()) <= 1.0


@FAST
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_fail_clearly(data: bytes) -> None:
    _check_decoded(data)


def _wav_header(channels: int, rate: int, bits: int, n_bytes: int, fmt: int) -> bytes:
    block = channels * max(bits // 8, 1)
    return (
        b"RIFF"
        + struct.pack("<I", (36 + n_bytes) % 2**32)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt, channels, rate, (rate * block) % 2**32, block, bits)
        + b"data"
        + struct.pack("<I", n_bytes)
    )


@FAST
@given(
    channels=st.integers(0, 9),
    rate=st.sampled_from([0, 1, 8000, 16000, 44100, 48000, 192000, 2**31 - 1]),
    bits=st.sampled_from([0, 8, 12, 16, 24, 32, 64]),
    fmt=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0]),
    payload=st.binary(max_size=8192),
    declared=st.integers(0, 2**32 - 1),
)
def test_wav_headers_with_any_fields_decode_or_fail_clearly(
    channels: int, rate: int, bits: int, fmt: int, payload: bytes, declared: int
) -> None:
    """Plausible and implausible RIFF headers in front of random samples."""
    _check_decoded(_wav_header(channels, rate, bits, len(payload), fmt) + payload)
    _check_decoded(_wav_header(channels, rate, bits, declared, fmt) + payload)


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(0.0, 2.0),
    rate=st.sampled_from([8000, 11025, 22050, 44100, 48000]),
    channels=st.integers(1, 3),
    subtype=st.sampled_from(["PCM_U8", "PCM_16", "PCM_24", "FLOAT"]),
    cut=st.floats(0.0, 1.0),
)
def test_real_files_truncated_anywhere(
    seconds: float, rate: int, channels: int, subtype: str, cut: float
) -> None:
    """Valid files of odd rates, channels and widths, cut off at any byte."""
    wave = 0.5 * np.sin(np.linspace(0, 300, max(int(seconds * rate), 1)))
    buffer = io.BytesIO()
    sf.write(buffer, np.tile(wave[:, None], (1, channels)), rate, subtype=subtype, format="WAV")
    data = buffer.getvalue()
    _check_decoded(data[: int(len(data) * cut)])


# Scores on a 1/8 grid: an affine map with scale >= 0.01 keeps distinct scores distinct
# in floating point (tiny floats would collapse into ties, which is not the property).
scores = st.lists(st.integers(-400, 400).map(lambda x: x / 8), min_size=1, max_size=60)


@FAST
@given(target=scores, nontarget=scores, scale=st.floats(0.01, 100), shift=st.floats(-10, 10))
def test_eer_and_min_dcf_depend_only_on_the_order_of_scores(
    target: list[float], nontarget: list[float], scale: float, shift: float
) -> None:
    t, n = np.array(target), np.array(nontarget)
    e, _ = metrics.eer(t, n)
    d, _ = metrics.min_dcf(t, n, p_target=0.01)
    assert 0.0 <= e <= 1.0 and 0.0 <= d <= 1.0 + 1e-12
    e2, _ = metrics.eer(scale * t + shift, scale * n + shift)
    d2, _ = metrics.min_dcf(scale * t + shift, scale * n + shift, p_target=0.01)
    assert e2 == pytest.approx(e, abs=1e-9) and d2 == pytest.approx(d, abs=1e-9)
    # Negating the scores and swapping the classes describes the same detector.
    e3, _ = metrics.eer(-n, -t)
    assert e3 == pytest.approx(e, abs=1e-9)


@FAST
@given(target=scores, nontarget=scores, p_target=st.floats(0.001, 0.5))
def test_min_dcf_is_a_lower_bound_of_the_actual_dcf(
    target: list[float], nontarget: list[float], p_target: float
) -> None:
    t, n = np.array(target), np.array(nontarget)
    d, _ = metrics.min_dcf(t, n, p_target=p_target)
    assert d <= metrics.act_dcf(t, n, p_target=p_target) + 1e-9


@FAST
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=40, unique=True))
def test_perfectly_separated_scores_have_zero_error(values: list[float]) -> None:
    ordered = np.sort(np.array(values))
    cut = len(ordered) // 2
    nontarget, target = ordered[:cut], ordered[cut:]
    if len(nontarget) == 0:
        return
    assert metrics.eer(target, nontarget)[0] == pytest.approx(0.0, abs=1e-12)
    assert metrics.min_dcf(target, nontarget)[0] == pytest.approx(0.0, abs=1e-12)
