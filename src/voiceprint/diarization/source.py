"""Audio for diarization, read block by block so that memory stays bounded.

A source yields float32 mono blocks (N,) in [-1, 1] at ``sample_rate`` (16 kHz), in order,
each with the index of its first sample. :class:`ArraySource` wraps a wave already in
memory (service uploads, tests); :class:`FileSource` streams a file through libsndfile
(channels averaged, other rates converted by a streaming soxr resampler), so a one-hour
recording never sits in memory whole. Files libsndfile cannot stream are refused with
:class:`voiceprint.audio.AudioError` naming them, as :func:`voiceprint.audio.load` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voiceprint.audio import AudioError

BLOCK_SECONDS = 60.0  # audio decoded at once by FileSource


class ArraySource:
    """A float32 wave (N,) at ``sample_rate`` Hz, handed out in blocks."""

    def __init__(self, wave: np.ndarray, sample_rate: int = 16000, name: str = "waveform") -> None:
        array = np.asarray(wave, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(f"{name}: a diarization source must be mono (N,), got {array.shape}")
        self.wave = array
        self.sample_rate = int(sample_rate)
        self.name = name

    @property
    def num_samples(self) -> int:
        return int(self.wave.size)

    def blocks(self, block_samples: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first sample, block (n,) float32) pairs covering the wave in order."""
        for start in range(0, self.wave.size, block_samples):
            yield start, self.wave[start : start + block_samples]


class FileSource:
    """An audio file streamed as 16 kHz (``sample_rate``) mono float32 blocks."""

    def __init__(self, path: str | Path, sample_rate: int = 16000) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.sample_rate = int(sample_rate)
        if not self.path.is_file():
            raise AudioError(f"{self.name}: file does not exist")
        try:
            info = sf.info(str(self.path))
        except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as err:
            raise AudioError(f"{self.name}: cannot decode as audio ({err})") from err
        if info.frames <= 0:
            raise AudioError(f"{self.name}: empty audio (0 samples)")
        self.file_rate = int(info.samplerate)
        self.channels = int(info.channels)
        self._frames = int(info.frames)

    @property
    def num_samples(self) -> int:
        """Length at ``sample_rate`` (rounded when the file is resampled)."""
        return int(round(self._frames * self.sample_rate / self.file_rate))

    def blocks(self, block_samples: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first sample, block (n,) float32) pairs covering the file in order."""
        resampler = (
            soxr.ResampleStream(self.file_rate, self.sample_rate, 1, dtype="float32", quality="HQ")
            if self.file_rate != self.sample_rate
            else None
        )
        read = max(1, int(round(block_samples * self.file_rate / self.sample_rate)))
        offset = 0
        with sf.SoundFile(str(self.path)) as handle:
            while True:
                data = handle.read(read, dtype="float32", always_2d=True)
                last = len(data) < read
                mono = data.mean(axis=1).astype(np.float32) if len(data) else np.zeros(0, "f4")
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last).astype(np.float32)
                if mono.size:
                    if not np.isfinite(mono).all():
                        raise AudioError(f"{self.name}: audio contains NaN or infinite values")
                    yield offset, np.clip(mono, -1.0, 1.0)
                    offset += mono.size
                if last:
                    return


def open_source(audio: str | Path | np.ndarray, sample_rate: int = 16000, name: str | None = None):
    """A source for a file path or a 16 kHz wave (N,) already in memory."""
    if isinstance(audio, np.ndarray):
        return ArraySource(audio, sample_rate, name or "waveform")
    return FileSource(audio, sample_rate)


Source = ArraySource | FileSource
