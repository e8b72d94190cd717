"""Conversations with known truth, built from any labelled corpus.

    pool = corpus_pool(root="data_aishell", split="test")     # or data="kaldi_dir"
    conv = simulate_conversation(pool, ["S0001", "S0002"], seconds=120, overlap=0.1, seed=0)
    conv.save("sim/", "conv000")                              # conv000.wav + conv000.rttm

A conversation is a run of turns between 2 to 6 speakers: a turn is one to three of a
speaker's clips one after another, or a short interjection cut from one (``short``
seconds, 0.2-1.5 s: back-channels and one-word replies, a ``short_share`` of turns);
consecutive turns change speaker; pauses between turns are 0.2-1.5 s, sometimes 2-4 s.
With ``overlap`` > 0, some turns start before the previous one ends, until overlapped
speech is that share of all speech (at most two voices at once). Every clip is brought to
the same speech level, then each speaker gets a level of their own, spread over
``level_db`` dB. The truth is where each clip holds speech: its Silero VAD regions at
the default threshold 0.5 (pauses of 0.3 s or more inside a clip are not speech), so a
clip's silent lead-in and tail never count as a speaker's turn. With ``room=True`` each
speaker sits at a distance of their own (0.5-3 m) from one far-field microphone: their
speech goes through a room impulse response of their own (the project's synthetic RIRs,
``data.augment.synthetic_rirs``, reverberation time 0.3-0.8 s), their level falls
6 dB per doubling of distance, and pink noise at ``noise_db`` lies under the room (the
truth stays the dry speech: a reverberant tail is not a turn). Output depends only on
the arguments (the seed included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceprint import audio, vad
from voiceprint.diarization.segments import Segment, write_rttm

SAMPLE_RATE = 16000
SPEECH_RMS_DB = -22.0  # level every clip's speech is brought to before the speaker's gain
SHORT_TURN_SECONDS = (0.2, 1.5)  # back-channels ("yeah", "mm-hmm") and one-word replies
SHORT_TURN_SHARE = 0.25  # of turns: meetings have many turns under 2 s
ROOM_DISTANCE_M = (0.5, 3.0)  # speaker to microphone
ROOM_RT60 = (0.3, 0.8)  # reverberation time of each speaker's impulse response (s)
TRUTH_VAD = {"threshold": 0.5, "min_silence_ms": 300, "min_speech_ms": 150, "pad_ms": 30}

Clip = str | Path | np.ndarray  # a file, or a 16 kHz wave already in memory


@dataclass
class Conversation:
    """A simulated recording: ``wave`` float32 (N,) at ``sample_rate``; ``segments`` the
    true turns (they overlap where voices overlap); ``speakers`` the speaker ids in it;
    ``clips`` the ids of the clips used (keep them out of enrollment)."""

    wave: np.ndarray
    sample_rate: int
    segments: list[Segment]
    speakers: list[str]
    clips: list[str]

    @property
    def duration(self) -> float:
        return len(self.wave) / self.sample_rate

    @property
    def speech_seconds(self) -> float:
        """Seconds where at least one speaker talks."""
        return _union(self.segments)

    @property
    def overlap_share(self) -> float:
        """Share of the speech time where two or more speakers talk at once."""
        total = sum(s.duration for s in self.segments)
        union = self.speech_seconds
        return (total - union) / union if union else 0.0

    def save(self, out_dir: str | Path, file_id: str) -> tuple[Path, Path]:
        """Write ``<file_id>.wav`` and ``<file_id>.rttm`` (the truth); returns both paths."""
        out = Path(out_dir)
        wav = out / f"{file_id}.wav"
        audio.save(wav, self.wave, self.sample_rate)
        return wav, write_rttm(out / f"{file_id}.rttm", self.segments, file_id)


def _union(segments: Sequence[Segment]) -> float:
    total, end = 0.0, -np.inf
    for s in sorted(segments, key=lambda s: s.start):
        if s.end > end:
            total += s.end - max(s.start, end)
            end = s.end
    return float(total)


def corpus_pool(
    root: str | Path | None = None, data: str | Path | None = None, split: str = "test"
) -> dict[str, list[Path]]:
    """{speaker: clip paths} of an AISHELL-layout ``root`` (one ``split``) or a Kaldi folder."""
    from voiceprint.data.corpus import by_speaker, read_kaldi_dir, scan_split

    if (root is None) == (data is None):
        raise ValueError("give one of root (AISHELL layout) or data (a Kaldi folder)")
    utts = read_kaldi_dir(data) if data is not None else scan_split(root, split)  # type: ignore[arg-type]
    return {spk: [u.path for u in group] for spk, group in by_speaker(utts).items()}


class _Clips:
    """Clips decoded once, trimmed to their speech and levelled, with truth regions."""

    def __init__(self, loader: Callable[[Path], np.ndarray] | None) -> None:
        self.loader = loader or (lambda p: audio.load(p, SAMPLE_RATE))
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, clip: Clip, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(wave (n,) trimmed to first..last speech, truth regions (R, 2) inside it)."""
        if key not in self.cache:
            wave = clip if isinstance(clip, np.ndarray) else self.loader(Path(clip))
            wave = np.asarray(wave, dtype=np.float32)
            regions = vad.speech_regions(wave, SAMPLE_RATE, **TRUTH_VAD).regions
            if len(regions) == 0:
                regions = np.array([[0, len(wave)]], dtype=np.int64)
            a, b = int(regions[0, 0]), int(regions[-1, 1])
            wave = wave[a:b]
            speech = np.concatenate([wave[s - a : e - a] for s, e in regions])
            rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2))) or 1.0
            wave = wave * np.float32(10 ** (SPEECH_RMS_DB / 20) / rms)
            self.cache[key] = (wave.astype(np.float16), regions - a)  # half the memory
        wave, regions = self.cache[key]
        return wave.astype(np.float32), regions


def simulate_conversation(
    pool: Mapping[str, Sequence[Clip]],
    speakers: Sequence[str],
    *,
    seconds: float = 120.0,
    overlap: float = 0.0,
    level_db: float = 8.0,
    noise_db: float | None = -65.0,
    seed: int = 0,
    loader: Callable[[Path], np.ndarray] | None = None,
    clips: _Clips | None = None,
    short: tuple[float, float] = SHORT_TURN_SECONDS,
    short_share: float = SHORT_TURN_SHARE,
    room: bool = False,
) -> Conversation:
    """One conversation of about ``seconds`` between ``speakers`` (keys of ``pool``), with
    noise at ``noise_db`` dBFS under it (None: none; white, or pink in a ``room``)."""
    if not 1 <= len(speakers) <= 10 or len(set(speakers)) != len(speakers):
        raise ValueError(f"need 1 to 10 distinct speakers, got {list(speakers)}")
    missing = [s for s in speakers if not pool.get(s)]
    if missing:
        raise ValueError(f"speakers without clips: {missing}")
    if not 0.0 <= overlap < 0.5:
        raise ValueError(f"overlap must lie in [0, 0.5), got {overlap}")
    rng = np.random.default_rng(seed)
    clips = clips or _Clips(loader)
    gains = {s: float(rng.uniform(-level_db / 2, level_db / 2)) for s in speakers}
    weights = rng.uniform(0.6, 1.4, size=len(speakers))
    order = {s: list(rng.permutation(len(pool[s]))) for s in speakers}
    used: list[str] = []

    def next_clip(spk: str) -> tuple[np.ndarray, np.ndarray]:
        if not order[spk]:
            order[spk] = list(rng.permutation(len(pool[spk])))
        index = int(order[spk].pop(0))
        clip = pool[spk][index]
        key = f"{spk}/{index}" if isinstance(clip, np.ndarray) else str(clip)
        used.append(Path(key).stem if not isinstance(clip, np.ndarray) else key)
        return clips.get(clip, key)

    # Turns: (speaker, wave, truth regions in samples from the turn's start).
    turns: list[tuple[str, np.ndarray, np.ndarray]] = []
    previous = None
    total = 0.0
    while total < seconds:
        choices = [i for i, s in enumerate(speakers) if s != previous] or [0]
        p = weights[choices] / weights[choices].sum()
        spk = speakers[int(rng.choice(choices, p=p))]
        if rng.random() < short_share:  # a short interjection cut from one clip
            wave, regions = next_clip(spk)
            length = min(len(wave), int(rng.uniform(*short) * SAMPLE_RATE))
            start = int(rng.integers(0, len(wave) - length + 1))
            piece = wave[start : start + length]
            inside = np.clip(regions - start, 0, length)
            inside = inside[inside[:, 1] - inside[:, 0] > int(0.1 * SAMPLE_RATE)]
            if len(inside) == 0:
                continue
            a, b = int(inside[0, 0]), int(inside[-1, 1])
            turns.append((spk, piece[a:b], inside - a))
        else:
            pieces, marks, offset = [], [], 0
            for _ in range(int(rng.choice([1, 1, 2, 2, 3]))):
                wave, regions = next_clip(spk)
                if pieces:  # a breath between a speaker's sentences
                    gap = int(rng.uniform(0.15, 0.5) * SAMPLE_RATE)
                    pieces.append(np.zeros(gap, dtype=np.float32))
                    offset += gap
                pieces.append(wave)
                marks.append(regions + offset)
                offset += len(wave)
            turns.append((spk, np.concatenate(pieces), np.concatenate(marks)))
        previous = spk
        total += len(turns[-1][1]) / SAMPLE_RATE + 0.7

    # Gaps between turns (negative: overlap), then overlaps until the share is reached.
    gaps = [
        float(rng.uniform(2.0, 4.0) if rng.random() < 0.1 else rng.uniform(0.2, 1.5))
        for _ in range(len(turns) - 1)
    ]
    speech = sum(len(t[1]) for t in turns) / SAMPLE_RATE
    wanted = overlap * speech
    for i in rng.permutation(len(gaps)):
        if wanted <= 0.05:
            break
        shorter = min(len(turns[i][1]), len(turns[i + 1][1])) / SAMPLE_RATE
        amount = min(float(rng.uniform(0.5, 3.0)), 0.45 * shorter, wanted)
        if amount < 0.2:
            continue
        gaps[i] = -amount
        wanted -= amount

    starts = [int(0.5 * SAMPLE_RATE)]
    for i, gap in enumerate(gaps):
        starts.append(starts[-1] + len(turns[i][1]) + int(round(gap * SAMPLE_RATE)))
    length = starts[-1] + len(turns[-1][1]) + int(0.5 * SAMPLE_RATE)
    mix = np.zeros(length, dtype=np.float32)
    segments: list[Segment] = []
    rooms = _rooms(speakers, rng) if room else {}
    for (spk, wave, regions), start in zip(turns, starts, strict=True):
        if spk in rooms:
            rir, distance = rooms[spk]
            tail = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)  # the room rings on
            wave = _reverberate(np.concatenate([wave, tail]), rir) / np.float32(distance)
        mix[start : start + len(wave)] += wave * np.float32(10 ** (gains[spk] / 20))
        for a, b in regions:
            segments.append(Segment((start + a) / SAMPLE_RATE, (start + b) / SAMPLE_RATE, spk))
    if noise_db is not None:
        noise = _pink(length, rng) if room else rng.standard_normal(length).astype(np.float32)
        mix += noise * np.float32(10 ** (noise_db / 20))
    peak = float(np.max(np.abs(mix)))
    if peak > 0.98:
        mix *= np.float32(0.98 / peak)
    segments.sort(key=lambda s: (s.start, s.end))
    return Conversation(mix, SAMPLE_RATE, segments, list(speakers), used)


def _rooms(
    speakers: Sequence[str], rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, float]]:
    """{speaker: (room impulse response (L,), distance to the microphone in m)}."""
    import torch

    from voiceprint.data.augment import synthetic_rirs

    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    rirs = synthetic_rirs(len(speakers), SAMPLE_RATE, ROOM_RT60, generator).numpy()
    return {s: (rirs[i], float(rng.uniform(*ROOM_DISTANCE_M))) for i, s in enumerate(speakers)}


def _reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wave`` through ``rir`` (unit energy), aligned to its direct path, same length."""
    import torch

    from voiceprint.data.augment import reverberate

    out = reverberate(torch.from_numpy(wave)[None], torch.from_numpy(rir))[0]
    return out.numpy().astype(np.float32)


def _pink(length: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f) noise (length,) of unit mean power: a room's hum and air conditioning."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, length)
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def simulate_set(
    pool: Mapping[str, Sequence[Clip]],
    count: int,
    *,
    speakers: tuple[int, int] = (2, 4),
    seconds: tuple[float, float] = (120.0, 300.0),
    overlap: float = 0.0,
    level_db: float = 8.0,
    seed: int = 0,
    loader: Callable[[Path], np.ndarray] | None = None,
    room: bool = False,
    noise_db: float | None = -65.0,
) -> Iterator[Conversation]:
    """``count`` conversations, one at a time, each with a speaker count drawn from
    ``speakers`` (both ends included) and a length drawn from ``seconds``; decoded clips
    are shared between them."""
    names = sorted(pool)
    if speakers[1] > len(names):
        raise ValueError(f"{speakers[1]} speakers asked for, the pool has {len(names)}")
    cache = _Clips(loader)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        n = int(rng.integers(speakers[0], speakers[1] + 1))
        chosen = [names[j] for j in sorted(rng.choice(len(names), size=n, replace=False))]
        yield simulate_conversation(
            pool,
            chosen,
            seconds=float(rng.uniform(*seconds)),
            overlap=overlap,
            level_db=level_db,
            seed=int(rng.integers(2**31)),
            clips=cache,
            room=room,
            noise_db=noise_db,
        )
