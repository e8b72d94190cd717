"""voiceprint.audio: decoding, conversion, resampling and the errors it raises."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceprint.audio import AudioError, AudioTooLongError, decode_bytes, load, prepare, save

SR = 16000


def tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    """Frequency of the largest magnitude in the Hann-windowed spectrum."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1.0 / sr)[np.argmax(spectrum)])


def test_wav_round_trip(tmp_path: Path) -> None:
    x = tone(440.0)
    save(tmp_path / "a" / "b.wav", x)  # parent folders are created
    info = sf.info(str(tmp_path / "a" / "b.wav"))
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", SR)
    y = load(tmp_path / "a" / "b.wav")
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.0 / 32768 + 1e-7)


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left = tone(440.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(str(tmp_path / "st.wav"), stereo, SR, subtype="PCM_16")
    np.testing.assert_allclose(load(tmp_path / "st.wav"), 0.5 * left, atol=1e-4)


@pytest.mark.parametrize(
    ("subtype", "atol"),
    [("PCM_U8", 1 / 128 + 1e-6), ("PCM_16", 1 / 32768 + 1e-7), ("PCM_24", 1e-6),
     ("PCM_32", 1e-6), ("FLOAT", 1e-7)],
)  # fmt: skip
def test_sample_widths(tmp_path: Path, subtype: str, atol: float) -> None:
    x = tone(300.0, 0.5)
    sf.write(str(tmp_path / "w.wav"), x, SR, subtype=subtype)
    np.testing.assert_allclose(load(tmp_path / "w.wav"), x, atol=atol)


@pytest.mark.parametrize(("rate", "freq"), [(44100, 440.0), (8000, 1000.0), (22050, 3000.0)])
def test_resampling_keeps_a_tone(tmp_path: Path, rate: int, freq: float) -> None:
    sf.write(str(tmp_path / "r.wav"), tone(freq, 1.0, sr=rate), rate, subtype="PCM_16")
    y = load(tmp_path / "r.wav")
    assert abs(len(y) - SR) <= 1
    assert abs(peak_hz(y, SR) - freq) <= 1.0  # 1 Hz FFT bins for 1 s
    # The level survives too (sine RMS = amp / sqrt(2)), away from the edges.
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_load_to_another_rate(tmp_path: Path) -> None:
    save(tmp_path / "a.wav", tone(440.0))
    y = load(tmp_path / "a.wav", sample_rate=8000)
    assert len(y) == 8000 and abs(peak_hz(y, 8000) - 440.0) <= 1.0


@pytest.mark.parametrize(("ext", "subtype", "atol"), [("flac", "PCM_16", 1e-4),
                                                     ("ogg", "VORBIS", 0.05),
                                                     ("mp3", "MPEG_LAYER_III", 0.1)])  # fmt: skip
def test_compressed_formats(tmp_path: Path, ext: str, subtype: str, atol: float) -> None:
    x = tone(440.0)
    path = tmp_path / f"c.{ext}"
    sf.write(str(path), x, SR, subtype=subtype)
    y = load(path)
    assert abs(len(y) - len(x)) < 0.05 * SR  # lossy codecs may pad a frame
    assert abs(peak_hz(y[: SR // 2], SR) - 440.0) <= 2.0
    n = min(len(x), len(y))
    if ext == "flac":
        np.testing.assert_allclose(y[:n], x[:n], atol=atol)
    else:  # lossy: compare levels only
        assert np.sqrt(np.mean(y[:n] ** 2)) == pytest.approx(np.sqrt(np.mean(x**2)), abs=atol)


def test_decode_bytes_matches_load(tmp_path: Path) -> None:
    save(tmp_path / "a.wav", tone(440.0))
    sf.write(str(tmp_path / "b.flac"), tone(440.0, sr=44100), 44100)
    for name in ("a.wav", "b.flac"):
        data = (tmp_path / name).read_bytes()
        np.testing.assert_array_equal(decode_bytes(data), load(tmp_path / name))


def test_float_beyond_full_scale_is_scaled_not_clipped(tmp_path: Path) -> None:
    x = tone(440.0, amp=2.0)
    sf.write(str(tmp_path / "loud.wav"), x, SR, subtype="FLOAT")
    y = load(tmp_path / "loud.wav")
    assert np.max(np.abs(y)) <= 1.0
    np.testing.assert_allclose(y, x / np.max(np.abs(x)), atol=1e-6)


def test_prepare_arrays() -> None:
    x = tone(440.0)
    as_int16 = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare(as_int16, SR), x, atol=1e-4)
    as_uint8 = np.round(x * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(prepare(as_uint8, SR), x, atol=1 / 64)
    as_int32 = np.round(x.astype(np.float64) * 2**31).astype(np.int32)
    np.testing.assert_allclose(prepare(as_int32, SR), x, atol=1e-6)
    stereo = np.stack([x, -x, x], axis=1).astype(np.float64)  # (N, 3) channels-last
    out = prepare(stereo, SR)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x / 3, atol=1e-6)
    resampled = prepare(tone(440.0, sr=48000), 48000)
    assert len(resampled) == SR and abs(peak_hz(resampled, SR) - 440.0) <= 1.0


def test_prepare_errors() -> None:
    x = tone(440.0)
    with pytest.raises(AudioError, match="clip7.*channels-first"):
        prepare(np.stack([x, x]), SR, name="clip7")
    with pytest.raises(AudioError, match="clip7.*silent"):
        prepare(np.zeros(SR), SR, name="clip7")
    with pytest.raises(AudioError, match="clip7.*NaN"):
        prepare(np.full(SR, np.inf), SR, name="clip7")
    with pytest.raises(AudioError, match="clip7.*too short"):
        prepare(x[:800], SR, name="clip7")  # 0.05 s < 0.1 s
    with pytest.raises(AudioError, match="clip7.*shape"):
        prepare(np.zeros((10, 2, 2)), SR, name="clip7")
    assert len(prepare(x[:800], SR, min_seconds=0.0)) == 800


def _broken_files(folder: Path) -> dict[str, str]:
    """File name -> the problem its error message must mention."""
    (folder / "notes.wav").write_text("this is text, not audio\n" * 20, encoding="utf-8")
    (folder / "zero_bytes.wav").write_bytes(b"")
    sf.write(str(folder / "no_samples.wav"), np.zeros(0, np.float32), SR, subtype="PCM_16")
    save(folder / "tiny.wav", tone(440.0, 0.02))
    save(folder / "silence.wav", np.zeros(SR, np.float32))
    sf.write(str(folder / "nan.wav"), np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    head = (folder / "silence.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(head[:30])  # header cut in the middle
    (folder / "a_folder.wav").mkdir()
    return {
        "notes.wav": "cannot decode",
        "zero_bytes.wav": "empty",
        "no_samples.wav": "empty",
        "tiny.wav": "too short",
        "silence.wav": "silent",
        "nan.wav": "NaN",
        "truncated.wav": "cannot decode",
        "a_folder.wav": "not a regular file",
        "missing.wav": "does not exist",
    }


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    for name, problem in _broken_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load(tmp_path / name)
        message = str(info.value)
        assert name in message and problem in message, message
        assert isinstance(info.value, ValueError)


def test_decode_bytes_errors_name_the_upload(tmp_path: Path) -> None:
    problems = _broken_files(tmp_path)
    for name in ("notes.wav", "no_samples.wav", "tiny.wav", "silence.wav", "nan.wav"):
        with pytest.raises(AudioError) as info:
            decode_bytes((tmp_path / name).read_bytes(), name=f"upload:{name}")
        assert f"upload:{name}" in str(info.value) and problems[name] in str(info.value)
    with pytest.raises(AudioError, match="upload.*empty"):
        decode_bytes(b"")


# --- duration caps: sized from the header, before decoding -----------------------------

BOMB_SECONDS = 2 * 3600.0
DECODED_BYTES = int(BOMB_SECONDS * SR * 4)  # 460 MB of float32 once decoded


def flac_bomb(path: Path, seconds: float = BOMB_SECONDS) -> Path:
    """``seconds`` of one constant sample at 16 kHz as FLAC: a few hundred kB."""
    block = np.full(60 * SR, 0.25, dtype=np.float32)
    with sf.SoundFile(path, "w", SR, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = flac_bomb(tmp_path_factory.mktemp("bomb") / "bomb.flac")
    assert path.stat().st_size < 1_000_000
    return path


def _refused(call, match: str) -> tuple[float, int]:
    """Run ``call`` expecting AudioTooLongError matching ``match``: (seconds, peak bytes)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(AudioTooLongError, match=match):
            call()
        return time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_flac_bomb_is_refused_from_its_header(bomb: Path) -> None:
    match = r"bomb\.flac: 7200\.0 s of audio is longer than the 300 s accepted"
    seconds, peak = _refused(lambda: load(bomb, max_seconds=300), match)
    assert seconds < 1.0 and peak < DECODED_BYTES / 100  # nothing decoded
    data = bomb.read_bytes()
    seconds, peak = _refused(
        lambda: decode_bytes(data, name="upload bomb.flac", max_seconds=300), f"upload {match}"
    )
    assert seconds < 1.0 and peak < DECODED_BYTES / 100


def test_decoding_stops_at_the_cap_when_the_header_does_not_say(bomb: Path, tmp_path: Path) -> None:
    data = bytearray(bomb.read_bytes())
    # STREAMINFO's 36-bit total sample count (bytes 18-25 of the file): 0 means unknown.
    fields = int.from_bytes(data[18:26], "big")
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    blind = tmp_path / "blind.flac"
    blind.write_bytes(bytes(data))
    assert sf.info(str(blind)).frames > BOMB_SECONDS * SR  # libsndfile: length unknown
    match = r"blind\.flac: more than the 60 s of audio accepted"
    seconds, peak = _refused(lambda: load(blind, max_seconds=60), match)
    assert seconds < 1.0 and peak < 3 * 60 * SR * 4  # about the cap's worth, never more


def test_audio_within_the_cap_loads_as_without_one(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.flac", tone(300.0, seconds=2.0), SR)
    np.testing.assert_array_equal(
        load(tmp_path / "a.flac", max_seconds=2.0), load(tmp_path / "a.flac")
    )
    with pytest.raises(
        AudioTooLongError, match=r"a\.flac: 2\.0 s of audio is longer than the 1\.5 s"
    ):
        load(tmp_path / "a.flac", max_seconds=1.5)
    with pytest.raises(ValueError, match="max_seconds"):
        load(tmp_path / "a.flac", max_seconds=0)
