"""All audio I/O: decode files or bytes to float32 mono in [-1, 1] at one sample rate.

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis, MP3 and the other formats it knows,
with any PCM width (8/16/24/32-bit) or float samples; channels are averaged to mono and
other sample rates are converted with soxr (its "HQ" quality). Every failure raises
:class:`AudioError`, whose message starts with the file (or given) name and then says
what is wrong: missing, not a file, not decodable audio, empty, too short, silent or
holding NaN/inf values.

Size first: with ``max_seconds``, :func:`load` and :func:`decode_bytes` read the duration
from the header (frames and sample rate) and refuse longer input before decoding any of it
(:class:`AudioTooLongError`); decoding never reads more than ``max_seconds`` either, so a
header that does not say (or lies) cannot make it decode more. A few hundred kB of FLAC
can hold hours of audio.

Kaldi ``wav.scp`` commands: a "path" that ends in ``|`` (``sox x.wav -t wav - |``,
``ffmpeg -i x.m4a -f wav - |``) is run as Kaldi runs it, through the shell (``/bin/sh -c``,
so quoting, pipes and variables work as in Kaldi), and the WAV (or any format soundfile
reads) it writes to stdout is decoded. A command that fails raises AudioError naming the
utterance (see :class:`PipeCommand`), the command, its exit status and its stderr. Only
run commands from wav.scp files you trust, as with Kaldi. ``ark:offset`` entries
(``foo.ark:1234``) are not read.

AAC in MP4/M4A (VoxCeleb2) is decoded with PyAV, FFmpeg's libraries with their own AAC
decoder: ``pip install 'voiceprint[voxceleb2]'``.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voiceprint.errors import VoiceprintError

SILENCE_PEAK = 1e-4  # a signal whose absolute peak stays below this is treated as silent
AV_SUFFIXES = (".m4a", ".mp4", ".aac")  # decoded with PyAV (the voxceleb2 extra)
COMMAND_SECONDS = 600.0  # a wav.scp command running longer than this is stopped
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count when the header does not say


class AudioError(VoiceprintError, ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


class AudioTooLongError(AudioError):
    """Audio longer than the caller's ``max_seconds``, refused before it is decoded."""


class PipeCommand(str):
    """A Kaldi ``wav.scp`` command ending in ``|``, with the utterance id it reads."""

    utt: str

    def __new__(cls, command: str, utt: str = "") -> PipeCommand:
        self = super().__new__(cls, command)
        self.utt = utt
        return self


def is_command(path: str | Path) -> bool:
    """True for a Kaldi pipe: text that ends in ``|``."""
    return isinstance(path, str) and path.rstrip().endswith("|")


def load(
    path: str | Path,
    sample_rate: int = 16000,
    *,
    min_seconds: float = 0.1,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at ``sample_rate`` Hz.

    Returns an array of shape (N,). Raises AudioError naming ``path`` when the file is
    missing, is not a regular file, cannot be decoded, or holds no usable signal, and
    AudioTooLongError when it holds more than ``max_seconds`` (None: no cap), judged from
    the header before decoding. ``path`` may also be a Kaldi command ending in ``|``
    whose stdout is audio.
    """
    _check_cap(max_seconds)
    if is_command(path):
        return _load_command(
            str(path), getattr(path, "utt", ""), sample_rate, min_seconds, max_seconds
        )
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise AudioError(f"{name}: file does not exist")
    if not path.is_file():
        raise AudioError(f"{name}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{name}: empty file (0 bytes)")
    if path.suffix.lower() in AV_SUFFIXES:
        data, rate = _decode_av(path, name, max_seconds)
    else:
        data, rate = _decode(str(path), name, max_seconds)
    return _finish(data, rate, sample_rate, name, min_seconds)


def _check_cap(max_seconds: float | None) -> None:
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")


def _too_long(name: str, seconds: float | None, max_seconds: float) -> AudioTooLongError:
    """The refusal of audio over the cap; ``seconds`` None: the header did not say."""
    if seconds is None:
        return AudioTooLongError(
            f"{name}: more than the {max_seconds:g} s of audio accepted (decoding stopped there)"
        )
    return AudioTooLongError(
        f"{name}: {seconds:.1f} s of audio is longer than the {max_seconds:g} s accepted"
    )


def _decode(
    source: str | io.BytesIO, name: str, max_seconds: float | None
) -> tuple[np.ndarray, int]:
    """Decode with soundfile -> (float32 (N, C), rate). With ``max_seconds``, the
    header's duration is checked first and at most ``max_seconds`` (+1 frame, to see an
    overrun) are decoded."""
    errors = (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError)
    try:
        f = sf.SoundFile(source)
    except errors as err:
        raise AudioError(f"{name}: cannot decode as audio ({_reason(err)})") from err
    with f:
        rate, frames = int(f.samplerate), int(f.frames)
        limit = -1  # everything
        if max_seconds is not None:
            if frames < UNKNOWN_FRAMES and frames > max_seconds * rate:
                raise _too_long(name, frames / rate, max_seconds)  # nothing decoded
            limit = int(max_seconds * rate) + 1
        try:
            data = f.read(limit, dtype="float32", always_2d=True)
        except errors as err:
            raise AudioError(f"{name}: cannot decode as audio ({_reason(err)})") from err
    if max_seconds is not None and len(data) > max_seconds * rate:  # the header said less
        raise _too_long(name, None, max_seconds)
    return data, rate


def _load_command(
    command: str, utt: str, sample_rate: int, min_seconds: float, max_seconds: float | None
) -> np.ndarray:
    """Run a wav.scp command through the shell, as Kaldi does, and decode its stdout."""
    shell = command.rstrip()[:-1].strip()
    name = f"utterance {utt} (command {shell!r})" if utt else f"command {shell!r}"
    try:
        done = subprocess.run(  # noqa: S602 (Kaldi's wav.scp semantics: a shell command)
            shell, shell=True, capture_output=True, timeout=COMMAND_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise AudioError(f"{name}: still running after {COMMAND_SECONDS:g} s; stopped") from err
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        tail = stderr[-500:] or "(nothing on stderr)"
        raise AudioError(f"{name}: exited with status {done.returncode}: {tail}")
    if not done.stdout:
        raise AudioError(
            f"{name}: wrote no audio to stdout{f' ({stderr[-300:]})' if stderr else ''}"
        )
    return decode_bytes(
        done.stdout, sample_rate, name=name, min_seconds=min_seconds, max_seconds=max_seconds
    )


def _decode_av(path: Path, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode AAC/MP4 with PyAV -> (float32 (N, C), rate); with ``max_seconds``, as
    :func:`_decode`: the container's duration first, then decoding stops past the cap."""
    try:
        import av
    except ImportError as err:
        raise AudioError(
            f"{name}: decoding {path.suffix} (AAC) needs PyAV: pip install 'voiceprint[voxceleb2]'"
        ) from err
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioError(f"{name}: holds no audio stream")
            seconds = None if container.duration is None else container.duration / av.time_base
            if max_seconds is not None and seconds is not None and seconds > max_seconds:
                raise _too_long(name, seconds, max_seconds)  # nothing decoded
            resampler = av.AudioResampler(format="fltp")
            chunks, rate, decoded = [], 0, 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    rate = out.sample_rate
                    chunks.append(out.to_ndarray())
                    decoded += out.samples
                if max_seconds is not None and rate and decoded > max_seconds * rate:
                    raise _too_long(name, None, max_seconds)
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, OSError, StopIteration) as err:
        raise AudioError(f"{name}: cannot decode as audio ({_reason(err)})") from err
    if not chunks:
        raise AudioError(f"{name}: empty audio (0 samples)")
    return np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False), int(rate)


def decode_bytes(
    data: bytes,
    sample_rate: int = 16000,
    *,
    name: str = "upload",
    min_seconds: float = 0.1,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode an in-memory audio file (e.g. an upload) like :func:`load`, refusing more
    than ``max_seconds`` from its header before decoding (AudioTooLongError).

    ``name`` is used in error messages. Returns float32 (N,) in [-1, 1] at ``sample_rate``.
    """
    _check_cap(max_seconds)
    if not data:
        raise AudioError(f"{name}: empty upload (0 bytes)")
    wave, rate = _decode(io.BytesIO(bytes(data)), name, max_seconds)
    return _finish(wave, rate, sample_rate, name, min_seconds)


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
