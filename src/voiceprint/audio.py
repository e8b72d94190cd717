"""All audio I/O: decode files or bytes to float32 mono in [-1, 1] at one sample rate.

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis, MP3 and the other formats it knows,
with any PCM width (8/16/24/32-bit) or float samples; channels are averaged to mono and
other sample rates are converted with soxr (its "HQ" quality). Every failure raises
:class:`AudioError`, whose message starts with the file (or given) name and then says
what is wrong: missing, not a file, not decodable audio, empty, too short, silent or
holding NaN/inf values.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SILENCE_PEAK = 1e-4  # a signal whose absolute peak stays below this is treated as silent


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


def load(path: str | Path, sample_rate: int = 16000, *, min_seconds: float = 0.1) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at ``sample_rate`` Hz.

    Returns an array of shape (N,). Raises AudioError naming ``path`` when the file is
    missing, is not a regular file, cannot be decoded, or holds no usable signal.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise AudioError(f"{name}: file does not exist")
    if not path.is_file():
        raise AudioError(f"{name}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{name}: empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise AudioError(f"{name}: cannot decode as audio ({_reason(err)})") from err
    return _finish(data, int(rate), sample_rate, name, min_seconds)


def decode_bytes(
    data: bytes,
    sample_rate: int = 16000,
    *,
    name: str = "upload",
    min_seconds: float = 0.1,
) -> np.ndarray:
    """Decode an in-memory audio file (e.g. an upload) like :func:`load`.

    ``name`` is used in error messages. Returns float32 (N,) in [-1, 1] at ``sample_rate``.
    """
    if not data:
        raise AudioError(f"{name}: empty upload (0 bytes)")
    try:
        wave, rate = sf.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise AudioError(f"{name}: cannot decode as audio ({_reason(err)})") from err
    return _finish(wave, int(rate), sample_rate, name, min_seconds)


def prepare(
    wave: np.ndarray,
    sr: int,
    sample_rate: int = 16000,
    *,
    name: str = "waveform",
    min_seconds: float = 0.1,
) -> np.ndarray:
    """Bring an in-memory waveform to float32 mono in [-1, 1] at ``sample_rate``.

    ``wave`` is (N,) or channels-last (N, C); integer dtypes are scaled by their full range
    (int16 / 32768, unsigned 8-bit centred on 128), floats are used as they are.
    """
    array = np.asarray(wave)
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim != 2:
        raise AudioError(f"{name}: expected shape (N,) or (N, C), got {array.shape}")
    elif array.shape[1] > array.shape[0]:
        raise AudioError(
            f"{name}: shape {array.shape} looks channels-first; pass (samples, channels)"
        )
    if int(sr) <= 0:
        raise AudioError(f"{name}: sample rate must be positive, got {sr}")
    return _finish(_to_float(array, name), int(sr), sample_rate, name, min_seconds)


def save(path: str | Path, wave: np.ndarray, sample_rate: int = 16000) -> None:
    """Write a mono (N,) or (N, C) float waveform in [-1, 1] as 16-bit PCM (WAV for .wav).

    Parent folders are created; samples beyond [-1, 1] are clipped.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    sf.write(str(path), data, int(sample_rate), subtype="PCM_16")


def _reason(err: BaseException) -> str:
    """libsndfile's own words when it has some, else the exception's text."""
    text = getattr(err, "error_string", None) or str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def _to_float(array: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM -> float in [-1, 1]; floats pass through as float32."""
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.signedinteger):
        scale = float(2 ** (8 * array.dtype.itemsize - 1))
        return (array.astype(np.float64) / scale).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise AudioError(f"{name}: unsupported sample type {array.dtype}")


def _finish(
    data: np.ndarray, rate: int, sample_rate: int, name: str, min_seconds: float
) -> np.ndarray:
    """Checks shared by every entry point; ``data`` is float (N, C) at ``rate`` Hz."""
    if sample_rate <= 0:
        raise AudioError(f"{name}: target sample rate must be positive, got {sample_rate}")
    num_samples = data.shape[0]
    if num_samples == 0 or data.shape[1] == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: audio contains NaN or infinite values")
    seconds = num_samples / rate
    if seconds < min_seconds:
        raise AudioError(f"{name}: audio too short ({seconds:.3f} s < {min_seconds:g} s minimum)")
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise AudioError(f"{name}: audio is silent (peak below {SILENCE_PEAK:g})")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        # Float files may exceed full scale and resampling can overshoot slightly:
        # scale down rather than clip, which keeps the waveform's shape.
        mono = mono / np.float32(peak)
    return np.ascontiguousarray(mono, dtype=np.float32)
