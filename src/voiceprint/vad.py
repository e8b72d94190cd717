"""Speech activity detection (VAD) with Silero VAD: find, measure and keep the speech.

Waves follow the contract of :mod:`voiceprint.audio`: float32 mono (N,) in [-1, 1], at
16 kHz (8 kHz is accepted too; other rates must be resampled first with
:func:`voiceprint.audio.prepare`). The model ships inside the ``silero-vad`` wheel and is
loaded lazily, once per process: the ONNX model when ``onnxruntime`` imports, else the
TorchScript one. Silero scores 32 ms windows (512 samples at 16 kHz, 256 at 8 kHz) one
after another, so memory beyond the wave itself is a few bytes per window.

The model keeps a recurrent state between windows, so calls are serialised by a lock:
the module is safe to use from several threads, one wave at a time. torch's global
thread count is left as it was (the TorchScript backend runs on one thread during a call).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from voiceprint.audio import AudioError

SAMPLE_RATES = (8000, 16000)  # the rates Silero VAD scores natively

_LOCK = threading.Lock()  # guards loading the model and every use of its recurrent state
_MODEL: tuple[str, Any] | None = None  # (backend name, model) once loaded


class NoSpeechError(AudioError):
    """A wave in which the VAD found no speech; the message names the source."""


class ShortSpeechWarning(UserWarning):
    """A wave whose net speech is shorter than the caller asked for."""


@dataclass(frozen=True, eq=False)
class SpeechRegions:
    """Speech found in one wave.

    ``regions`` is int64 (R, 2): [start, end) sample indices at ``sample_rate`` Hz, sorted
    and non-overlapping (read-only); ``total_samples`` is the length of the wave.
    """

    regions: np.ndarray
    sample_rate: int
    total_samples: int

    @property
    def speech_samples(self) -> int:
        """Samples inside the regions."""
        return int(np.sum(self.regions[:, 1] - self.regions[:, 0]))

    @property
    def speech_seconds(self) -> float:
        """Net speech duration in seconds."""
        return self.speech_samples / self.sample_rate

    @property
    def share(self) -> float:
        """Fraction of the wave that is speech, in [0, 1] (0 for an empty wave)."""
        return self.speech_samples / self.total_samples if self.total_samples else 0.0


def speech_regions(
    wave: np.ndarray,
    sample_rate: int = 16000,
    *,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
) -> SpeechRegions:
    """Find the speech in ``wave`` (float32 (N,) in [-1, 1] at ``sample_rate`` Hz).

    ``threshold`` is Silero's speech probability threshold (it leaves speech below
    ``threshold - 0.15``); regions shorter than ``min_speech_ms`` are dropped, pauses
    shorter than ``min_silence_ms`` do not split a region, and each region is widened by
    ``pad_ms`` on both sides (less where two regions nearly touch).
    """
    samples = _checked(wave, sample_rate)
    with _LOCK:
        backend, model = _load_model()
        from silero_vad import get_speech_timestamps

        # The TorchScript model runs thousands of tiny steps: with several intra-op threads
        # each pays a fork/join, many times slower on a busy machine. Use one, then restore.
        threads = torch.get_num_threads()
        if backend == "jit" and threads != 1:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                stamps = get_speech_timestamps(
                    torch.from_numpy(samples),
                    model,
                    threshold=threshold,
                    sampling_rate=int(sample_rate),
                    min_speech_duration_ms=min_speech_ms,
                    min_silence_duration_ms=min_silence_ms,
                    speech_pad_ms=pad_ms,
                )
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
    regions = np.array([[s["start"], s["end"]] for s in stamps], dtype=np.int64).reshape(-1, 2)
    regions = np.clip(regions, 0, samples.size)
    regions = regions[regions[:, 1] > regions[:, 0]]
    regions.setflags(write=False)
    return SpeechRegions(regions, int(sample_rate), int(samples.size))


def trim(
    wave: np.ndarray,
    sample_rate: int = 16000,
    *,
    name: str = "waveform",
    min_speech_seconds: float = 0.0,
    **vad_kwargs: Any,
) -> np.ndarray:
    """The speech regions of ``wave`` joined end to end: float32 (M,), M <= N.

    Raises NoSpeechError naming ``name`` when there is no speech. When the net speech is
    shorter than ``min_speech_seconds`` (> 0) a ShortSpeechWarning says so, and the trimmed
    wave is still returned. ``vad_kwargs`` go to :func:`speech_regions`.
    """
    samples = _checked(wave, sample_rate)
    found = speech_regions(samples, sample_rate, **vad_kwargs)
    if not len(found.regions):
        seconds = samples.size / sample_rate
        raise NoSpeechError(f"{name}: no speech found (VAD) in {seconds:.2f} s of audio")
    if min_speech_seconds > 0 and found.speech_seconds < min_speech_seconds:
        warnings.warn(
            f"{name}: only {found.speech_seconds:.2f} s of speech found (VAD), "
            f"{min_speech_seconds:.2f} s needed",
            ShortSpeechWarning,
            stacklevel=2,
        )
    return np.concatenate([samples[start:end] for start, end in found.regions])


def net_speech_seconds(wave: np.ndarray, sample_rate: int = 16000, **vad_kwargs: Any) -> float:
    """Seconds of speech in ``wave`` (0.0 when there is none); see :func:`speech_regions`."""
    return speech_regions(wave, sample_rate, **vad_kwargs).speech_seconds


# --- internals -------------------------------------------------------------------------


def _checked(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wave`` as contiguous float32 (N,), after checking it and the rate."""
    if int(sample_rate) not in SAMPLE_RATES:
        raise ValueError(
            f"VAD supports sample rates {SAMPLE_RATES}, got {sample_rate}; "
            "resample first with voiceprint.audio.prepare(wave, sr, 16000)"
        )
    array = np.asarray(wave)
    if array.ndim != 1:
        raise ValueError(f"VAD expects a mono wave of shape (N,), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"VAD expects float samples in [-1, 1], got {array.dtype}; "
            "convert with voiceprint.audio.prepare"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError("VAD input contains NaN or infinite values")
    return array


def _load_model() -> tuple[str, Any]:
    """(backend, model), loaded on first use; the caller holds _LOCK.

    Importing silero_vad sets torch's global thread count to 1: the count is restored.
    """
    global _MODEL
    if _MODEL is None:
        threads = torch.get_num_threads()
        try:
            with warnings.catch_warnings():
                # silero's loader uses importlib.resources.path and torch.jit.load, both
                # deprecated: their warnings are about silero's code, not the caller's.
                warnings.simplefilter("ignore", DeprecationWarning)
                import silero_vad

                try:
                    import onnxruntime  # noqa: F401
                except ImportError:
                    _MODEL = ("jit", silero_vad.load_silero_vad(onnx=False))
                else:
                    _MODEL = ("onnx", silero_vad.load_silero_vad(onnx=True))
        finally:
            torch.set_num_threads(threads)
    return _MODEL
