"""Speech activity detection (VAD) with Silero VAD: find, measure and keep the speech.

Waves follow the contract of :mod:`voiceprint.audio`: float32 mono (N,) in [-1, 1], at
16 kHz (8 kHz is accepted too and upsampled first; other rates must be resampled with
:func:`voiceprint.audio.prepare`). Silero scores 32 ms frames (512 samples at 16 kHz).

The model ships inside the ``silero-vad`` wheel. When onnxruntime imports, its
*sequence* ONNX export runs through onnxruntime directly: one call per block of up to 512
frames (16 s of audio) instead of one per frame, and without importing torch (the
``silero_vad`` package imports torch at import time, so the file is found without
importing the package). Otherwise the package's TorchScript model scores the frames. Both
give the same per-frame probabilities; one state machine (:func:`regions_from_probs`)
turns them into speech regions, with the rules of Silero's own ``get_speech_timestamps``
(start at ``threshold``, end after ``min_silence_ms`` below ``threshold - 0.15``, drop
regions shorter than ``min_speech_ms``, pad each side by ``pad_ms``).

Each call carries its own recurrent state, so the module is safe to use from several
threads at once; loading the model is guarded by a lock.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceprint.audio import AudioError

SAMPLE_RATES = (8000, 16000)  # the rates accepted (8 kHz is upsampled to 16 kHz)
MODEL_RATE = 16000
FRAME = 512  # samples per scored frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame
BLOCK_FRAMES = 512  # frames per onnxruntime call (16.4 s of audio)
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"

_LOCK = threading.Lock()  # guards loading the model
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
    scale = MODEL_RATE // int(sample_rate)
    at_16k = samples if scale == 1 else _upsample(samples, int(sample_rate))
    probs = speech_probabilities(at_16k)
    regions = regions_from_probs(
        probs,
        total_samples=at_16k.size,
        threshold=threshold,
        min_speech_ms=min_speech_ms,
        min_silence_ms=min_silence_ms,
        pad_ms=pad_ms,
    )
    if scale != 1:
        regions = regions // scale
    regions = np.clip(regions, 0, samples.size)
    regions = regions[regions[:, 1] > regions[:, 0]]
    regions.setflags(write=False)
    return SpeechRegions(regions, int(sample_rate), int(samples.size))


def speech_probabilities(wave: np.ndarray) -> np.ndarray:
    """Silero's speech probability of each 32 ms frame of a 16 kHz wave (N,): (ceil(N/512),).

    The last frame is zero-padded. Runs the sequence model on onnxruntime when it imports,
    else the TorchScript model; both are deterministic and give the same values.
    """
    samples = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
    with _LOCK:
        backend, model = _load_model()
    if backend == "onnx":
        return _onnx_probabilities(model, samples)
    return _jit_probabilities(model, samples)


def regions_from_probs(
    probs: np.ndarray,
    *,
    total_samples: int,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
) -> np.ndarray:
    """Per-frame speech probabilities (F,) of a 16 kHz wave -> regions int64 (R, 2).

    Hysteresis: a region starts at the first frame at or above ``threshold`` and ends
    where the probability stays below ``threshold - 0.15`` (at least 0.01) for
    ``min_silence_ms``; regions of at most ``min_speech_ms`` are dropped. Then every region
    is widened by ``pad_ms`` each side, clipped to the wave; where two regions are closer
    than twice the pad, they meet halfway instead.
    """
    rate = MODEL_RATE
    min_speech = rate * min_speech_ms / 1000
    min_silence = rate * min_silence_ms / 1000
    pad = int(rate * pad_ms / 1000)
    low = max(threshold - 0.15, 0.01)
    found: list[list[int]] = []
    start = -1  # start of the open region, -1 when none
    silence_from = 0  # where the probability fell below `low` inside a region (0: not)
    for i, p in enumerate(np.asarray(probs, dtype=np.float64).tolist()):
        at = FRAME * i
        if p >= threshold:
            silence_from = 0
            if start < 0:
                start = at
                continue
        if start >= 0 and p < low:
            if not silence_from:
                silence_from = at
            if at - silence_from < min_silence:
                continue
            if silence_from - start > min_speech:
                found.append([start, silence_from])
            start, silence_from = -1, 0
    if start >= 0 and total_samples - start > min_speech:
        found.append([start, total_samples])
    regions = np.array(found, dtype=np.int64).reshape(-1, 2)
    if len(regions):
        gaps = regions[1:, 0] - regions[:-1, 1]  # silence between neighbours
        near = gaps < 2 * pad
        half = gaps // 2
        regions[:-1, 1] += np.where(near, half, pad)
        regions[1:, 0] -= np.where(near, half, pad)
        regions[0, 0] -= pad
        regions[-1, 1] += pad
        np.clip(regions, 0, total_samples, out=regions)
    return regions


def checked_speech(
    wave: np.ndarray,
    sample_rate: int = 16000,
    *,
    name: str = "waveform",
    min_speech_seconds: float = 0.0,
    **vad_kwargs: Any,
) -> SpeechRegions:
    """The speech regions of ``wave``, checked: NoSpeechError naming ``name`` when there
    are none, a ShortSpeechWarning when the net speech is shorter than
    ``min_speech_seconds`` (> 0). ``vad_kwargs`` go to :func:`speech_regions`."""
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
            stacklevel=3,
        )
    return found


def join_regions(wave: np.ndarray, found: SpeechRegions) -> np.ndarray:
    """The regions of ``found`` cut from the wave (N,) they were found in, joined: (M,)."""
    return np.concatenate([wave[start:end] for start, end in found.regions])


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
    found = checked_speech(
        samples, sample_rate, name=name, min_speech_seconds=min_speech_seconds, **vad_kwargs
    )
    return join_regions(samples, found)


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


def _upsample(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """An 8 kHz wave at 16 kHz, exactly twice as long (regions map back by halving)."""
    import soxr

    out = soxr.resample(samples, sample_rate, MODEL_RATE).astype(np.float32)
    target = samples.size * (MODEL_RATE // sample_rate)
    return np.pad(out, (0, max(0, target - out.size)))[:target]


def _frames(samples: np.ndarray, start: int, count: int) -> np.ndarray:
    """Frames ``start .. start+count`` as (count, CONTEXT + FRAME): each with its context."""
    first = start * FRAME
    padded = np.zeros((count + 1) * FRAME, dtype=np.float32)  # one frame of history
    chunk = samples[max(0, first - FRAME) : first + count * FRAME]
    offset = FRAME if first == 0 else 0
    padded[offset : offset + chunk.size] = chunk
    frames = padded.reshape(count + 1, FRAME)
    return np.concatenate([frames[:-1, -CONTEXT:], frames[1:]], axis=1)


def _onnx_probabilities(session: Any, samples: np.ndarray) -> np.ndarray:
    count = -(-samples.size // FRAME)
    hidden = np.zeros((1, 1, 128), dtype=np.float32)
    cell = np.zeros((1, 1, 128), dtype=np.float32)
    out = [np.zeros(0, dtype=np.float32)]
    for start in range(0, count, BLOCK_FRAMES):
        block = _frames(samples, start, min(BLOCK_FRAMES, count - start))
        probs, hidden, cell = session.run(
            ["speech_probs", "hn", "cn"], {"input": block, "h": hidden, "c": cell}
        )
        out.append(np.asarray(probs, dtype=np.float32).reshape(-1))
    return np.concatenate(out)


def _jit_probabilities(model: Any, samples: np.ndarray) -> np.ndarray:
    import torch

    # The TorchScript model runs thousands of tiny steps: with several intra-op threads
    # each pays a fork/join, many times slower on a busy machine. Use one, then restore.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            probs = model.audio_forward(torch.from_numpy(samples), MODEL_RATE)
    finally:
        torch.set_num_threads(threads)
    return probs.reshape(-1).float().numpy()[: -(-samples.size // FRAME)]


def _model_file(name: str) -> Path:
    """A model file of the silero-vad wheel, found without importing the package."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed: pip install silero-vad")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def _load_model() -> tuple[str, Any]:
    """(backend, model), loaded on first use; the caller holds _LOCK."""
    global _MODEL
    if _MODEL is None:
        try:
            import onnxruntime
        except ImportError:
            _MODEL = ("jit", _load_jit())
        else:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(_model_file(SEQUENCE_MODEL)),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            _MODEL = ("onnx", session)
    return _MODEL


def _load_jit() -> Any:
    """Silero's TorchScript model (importing silero_vad sets torch's thread count: restored)."""
    import torch

    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # silero's loader uses deprecated importlib/torch.jit APIs: their warnings are
            # about silero's code, not the caller's.
            warnings.simplefilter("ignore", DeprecationWarning)
            import silero_vad

            return silero_vad.load_silero_vad(onnx=False)
    finally:
        torch.set_num_threads(threads)
