"""A synthetic multi-speaker corpus, so the pipeline and the tests run offline anywhere.

Each speaker is a :class:`Voice`: a source-filter model with its own pitch, vocal-tract
length (which scales every formant), vowel set, higher formants, formant bandwidths,
spectral tilt, glottal open quotient, breathiness, jitter, shimmer, speaking rate and
fricative colour. An utterance is a run of random syllables (an optional unvoiced noise
burst, then a voiced vowel) with short pauses. Every utterance also draws its own
intonation, speaking-rate factor, small formant and pitch shifts, a gentle channel
equaliser and low-level coloured noise, so that telling speakers apart is learnable but
not trivial.

Synthesis is vectorised numpy: a glottal pulse train (Rosenberg flow derivative with
per-period jitter and shimmer) plus aspiration and frication noise are filtered in the
short-time Fourier domain by per-frame spectral envelopes (a cascade of formant
resonances, tilt and channel EQ) and overlap-added. A 3 s utterance takes a few ms.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from voiceprint.audio import save

# F1-F3 (Hz) of ten vowels for a reference adult male vocal tract (i, ɪ, ɛ, æ, ɑ, ɔ, u, ʊ, ʌ, ɝ).
_VOWELS = np.array(
    [
        [270, 2290, 3010],
        [390, 1990, 2550],
        [530, 1840, 2480],
        [660, 1720, 2410],
        [730, 1090, 2440],
        [570, 840, 2410],
        [300, 870, 2240],
        [440, 1020, 2240],
        [640, 1190, 2390],
        [490, 1350, 1690],
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([60.0, 90.0, 130.0, 180.0, 250.0])  # F1-F5 reference bandwidths, Hz

_N_FFT = 512  # STFT size of the synthesis filter (32 ms at 16 kHz)
_HOP = 128  # control and STFT hop (8 ms at 16 kHz)
MARKER = "SYNTHETIC_CORPUS.json"  # written last: its presence means the corpus is complete


@dataclass
class Voice:
    """One synthetic speaker's parameters (frequencies in Hz)."""

    f0: float  # mean fundamental frequency
    f0_spread: float  # std of per-syllable pitch accents, semitones
    formant_scale: float  # vocal-tract length factor applied to all formants (1 = reference)
    vowels: np.ndarray  # (V, 3) F1-F3 of this speaker's vowels, already scaled
    high_formants: tuple[float, float]  # F4, F5: fixed across vowels, a strong speaker cue
    bandwidth_scale: float  # multiplies the reference formant bandwidths
    tilt_db: float  # extra source slope in dB per octave above 500 Hz (negative = darker)
    open_quotient: float  # fraction of each glottal period the glottis is open
    breathiness: float  # aspiration noise relative to the voiced source (RMS ratio)
    jitter: float  # period-to-period std of the pitch period, fraction
    shimmer: float  # period-to-period std of the pulse amplitude, fraction
    rate: float  # syllables per second
    fricative_hz: float  # centre frequency of the speaker's unvoiced noise bursts


def make_voice(rng: np.random.Generator) -> Voice:
    """Draw a random speaker: about half low voices (F0 85-155 Hz), half high (165-260 Hz)."""
    high = bool(rng.random() < 0.5)
    f0 = float(rng.uniform(165.0, 260.0) if high else rng.uniform(85.0, 155.0))
    scale = float(rng.uniform(1.08, 1.25) if high else rng.uniform(0.9, 1.08))
    chosen = rng.choice(len(_VOWELS), size=int(rng.integers(4, 7)), replace=False)
    idiolect = rng.uniform(0.92, 1.08, size=(len(chosen), 3))  # speaker's own vowel quality
    vowels = _VOWELS[np.sort(chosen)] * idiolect * scale
    f4 = float(rng.uniform(3250.0, 3750.0) * scale)
    f5 = float(min(rng.uniform(4300.0, 4900.0) * scale, 7000.0))
    return Voice(
        f0=f0,
        f0_spread=float(rng.uniform(0.8, 2.5)),
        formant_scale=scale,
        vowels=vowels,
        high_formants=(f4, f5),
        bandwidth_scale=float(rng.uniform(0.75, 1.6)),
        tilt_db=float(rng.uniform(-5.0, 1.0)),
        open_quotient=float(rng.uniform(0.4, 0.75)),
        breathiness=float(rng.uniform(0.02, 0.35)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        rate=float(rng.uniform(3.0, 6.0)),
        fricative_hz=float(rng.uniform(2500.0, 6000.0)),
    )


def synthesize_utterance(
    voice: Voice, seconds: float, rng: np.random.Generator, sample_rate: int = 16000
) -> np.ndarray:
    """Synthesise ``seconds`` of speech by ``voice``: float32 (N,) with peak in [0.3, 0.9]."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    num = max(int(round(seconds * sample_rate)), 1)
    pad = _N_FFT - _HOP
    frames = (num + 2 * pad - _N_FFT) // _HOP + 2  # as many as _stft_filter cuts
    centres = np.arange(frames) * _HOP - pad + _N_FFT // 2  # frame centres in samples
    plan = _plan(voice, num / sample_rate, rng)
    tracks = _control_tracks(voice, plan, centres / sample_rate, rng)

    # Sources at the sample rate; control tracks interpolated from frame centres.
    t = np.arange(num)
    f0 = np.interp(t, centres, tracks["f0"])
    voiced_gate = np.interp(t, centres, tracks["voiced"])
    fric_gate = np.interp(t, centres, tracks["fricative"])
    glottal, open_phase = _glottal_source(voice, f0, sample_rate, rng)
    aspiration = rng.standard_normal(num) * (0.4 + 0.6 * open_phase) * voice.breathiness
    voiced = (glottal + aspiration) * voiced_gate
    fricative = rng.standard_normal(num) * fric_gate
    noise = rng.standard_normal(num)

    # Per-frame spectral envelopes.
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / sample_rate)
    octaves = np.log2(np.maximum(freqs, 500.0) / 500.0)
    channel = _channel_eq(freqs, rng)
    tract = _formant_cascade(freqs, tracks["formants"], tracks["bandwidths"])
    voiced_env = tract * 10.0 ** (voice.tilt_db * octaves / 20.0) * channel
    fric_env = _fricative_shape(freqs, tracks["fric_hz"]) * channel
    noise_env = (np.maximum(freqs, 100.0) / 100.0) ** rng.uniform(-1.0, -0.2) * channel

    speech = _normalised(_stft_filter(voiced, voiced_env, num), voiced_gate)
    hiss = _normalised(_stft_filter(fricative, fric_env, num), fric_gate)
    background = _normalised(_stft_filter(noise, noise_env[None, :], num), None)
    snr_db = rng.uniform(25.0, 45.0)
    out = speech + hiss * 10.0 ** (rng.uniform(-14.0, -6.0) / 20.0)
    out = out + background * 10.0 ** (-snr_db / 20.0)
    out *= rng.uniform(0.3, 0.9) / max(float(np.max(np.abs(out))), 1e-9)
    return out.astype(np.float32)


def synthesize_corpus(
    root: str | Path,
    *,
    train_speakers: int = 40,
    test_speakers: int = 20,
    utts_per_speaker: int = 12,
    seconds: tuple[float, float] = (2.0, 4.0),
    seed: int = 0,
    sample_rate: int = 16000,
    progress: bool = True,
) -> Path:
    """Write a corpus in the AISHELL-1 layout and return ``root``.

    Files are ``<root>/wav/{train,test}/<spk>/<spk>_<nnnn>.wav`` with speakers ``S0001``...
    (the first ``train_speakers`` in train, the next ``test_speakers`` in test) and
    utterances numbered from 0001; durations are uniform in ``seconds``. The output depends
    only on the arguments. A marker file written last records them: a complete corpus with
    the same settings is left untouched, one with other settings is replaced.
    """
    root = Path(root)
    settings = {
        "train_speakers": int(train_speakers),
        "test_speakers": int(test_speakers),
        "utts_per_speaker": int(utts_per_speaker),
        "seconds": [float(seconds[0]), float(seconds[1])],
        "seed": int(seed),
        "sample_rate": int(sample_rate),
    }
    marker = root / MARKER
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous == settings:
            return root
        marker.unlink()
        shutil.rmtree(root / "wav", ignore_errors=True)  # ours: the marker proves it

    splits = ["train"] * train_speakers + ["test"] * test_speakers
    total = len(splits) * utts_per_speaker
    with tqdm(total=total, desc="synthesising corpus", unit="utt", disable=not progress) as bar:
        for index, split in enumerate(splits, start=1):
            speaker = f"S{index:04d}"
            voice = make_voice(np.random.default_rng([seed, index]))
            folder = root / "wav" / split / speaker
            for utt in range(1, utts_per_speaker + 1):
                rng = np.random.default_rng([seed, index, utt])
                length = float(rng.uniform(seconds[0], seconds[1]))
                wave = synthesize_utterance(voice, length, rng, sample_rate)
                save(folder / f"{speaker}_{utt:04d}.wav", wave, sample_rate)
                bar.update(1)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    tmp.replace(marker)
    return root


def voice_summary(voice: Voice) -> dict[str, object]:
    """The voice as plain JSON-able values (for logs and reports)."""
    values = asdict(voice)
    values["vowels"] = np.round(voice.vowels).astype(int).tolist()
    return values


# --- internals -------------------------------------------------------------------------


def _plan(voice: Voice, duration: float, rng: np.random.Generator) -> list[tuple]:
    """Segments (kind, start_s, end_s, value): kind 'v' (vowel index) or 'f' (fricative Hz)."""
    rate = voice.rate * rng.uniform(0.85, 1.15)
    cursor = rng.uniform(0.05, 0.15)
    end = duration - rng.uniform(0.05, 0.15)
    segments: list[tuple] = []
    while cursor < end - 0.06:
        syllable = 1.0 / rate * float(rng.lognormal(0.0, 0.25))
        if rng.random() < 0.35:
            burst = min(float(rng.uniform(0.04, 0.1)), syllable * 0.5)
            fric_hz = voice.fricative_hz * float(rng.uniform(0.85, 1.15))
            segments.append(("f", cursor, cursor + burst, fric_hz))
            cursor += burst
            syllable -= burst
        stop = min(cursor + syllable, end)
        segments.append(("v", cursor, stop, int(rng.integers(len(voice.vowels)))))
        cursor = stop + (float(rng.uniform(0.08, 0.25)) if rng.random() < 0.2 else 0.01)
    return segments


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over axis 0 with edge padding; keeps the shape."""
    if width <= 1:
        return x
    left = width // 2
    padded = np.concatenate([np.repeat(x[:1], left, 0), x, np.repeat(x[-1:], width - 1 - left, 0)])
    csum = np.cumsum(padded, axis=0, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(csum[:1]), csum])
    return (csum[width:] - csum[:-width]) / width


def _control_tracks(
    voice: Voice, plan: list[tuple], times: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-frame F0, gates, formants (T, 5), bandwidths (T, 5) and fricative centres."""
    frames = len(times)
    voiced = np.zeros(frames)
    fricative = np.zeros(frames)
    semitones = np.zeros(frames)
    fric_hz = np.full(frames, voice.fricative_hz)
    f123 = np.empty((frames, 3))
    first_vowel = next((value for kind, *_, value in plan if kind == "v"), 0)
    f123[:] = voice.vowels[first_vowel]
    shift = rng.uniform(0.97, 1.03, size=3)  # this utterance's small formant shift
    for kind, start, stop, value in plan:
        inside = (times >= start) & (times < stop)
        if kind == "f":
            fricative[inside] = 1.0
            fric_hz[inside] = value
        else:
            voiced[inside] = rng.uniform(0.6, 1.0)
            f123[inside] = voice.vowels[value] * shift
            semitones[inside] = rng.normal(0.0, voice.f0_spread)
    # Hold formants through gaps so that coarticulation glides between vowels.
    active = voiced > 0
    if active.any():
        last = np.maximum.accumulate(np.where(active, np.arange(frames), 0))
        f123 = f123[last]
    f123 = _smooth(f123, 7)
    # Intonation: syllable accents, declination, an utterance offset and a slow wobble.
    span = max(times[-1] - times[0], 1e-3)
    progress = (times - times[0]) / span
    semitones = _smooth(semitones, 9)
    semitones += rng.normal(0.0, 1.0) - rng.uniform(0.0, 3.0) * progress
    semitones += 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * times + rng.uniform(0, 6.3))
    high = np.broadcast_to(np.array(voice.high_formants) * shift[2], (frames, 2))
    formants = np.concatenate([f123, high], axis=1)
    bandwidths = _BANDWIDTHS * voice.bandwidth_scale * rng.uniform(0.9, 1.1)
    return {
        "f0": voice.f0 * 2.0 ** (semitones / 12.0),
        "voiced": _smooth(voiced, 3),
        "fricative": _smooth(fricative, 3),
        "formants": formants,
        "bandwidths": np.broadcast_to(bandwidths, formants.shape),
        "fric_hz": fric_hz,
    }


def _glottal_source(
    voice: Voice, f0: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Glottal flow derivative (unit RMS) and the open-phase indicator, both (N,)."""
    period = np.floor(np.cumsum(f0) / sample_rate).astype(np.int64)
    jitter = 1.0 + voice.jitter * rng.standard_normal(int(period[-1]) + 2)
    phase = np.cumsum(f0 * jitter[period]) / sample_rate + rng.random()
    index = np.floor(phase).astype(np.int64)
    frac = phase - index
    opening = voice.open_quotient * 0.65
    closing = voice.open_quotient - opening
    flow = np.where(
        frac < opening,
        0.5 * (1.0 - np.cos(np.pi * frac / opening)),
        np.where(
            frac < voice.open_quotient,
            np.cos(0.5 * np.pi * (frac - opening) / closing),
            0.0,
        ),
    )
    shimmer = 1.0 + voice.shimmer * rng.standard_normal(int(index[-1]) + 1)
    flow *= shimmer[index]
    derivative = np.diff(flow, prepend=flow[0])
    derivative /= max(float(np.sqrt(np.mean(derivative**2))), 1e-12)
    return derivative, (frac < voice.open_quotient).astype(np.float64)


def _formant_cascade(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Magnitude (T, F) of cascaded two-pole resonators (T, K), unity gain at 0 Hz.

    Resonator k: (F^2 + b^2) / sqrt(((f - F)^2 + b^2) ((f + F)^2 + b^2)) with b = B / 2;
    the product under the root is (f^2 + F^2 + b^2)^2 - 4 f^2 F^2.
    """
    f2 = (freqs**2)[None, :]
    c2 = formants**2 + (0.5 * bandwidths) ** 2
    denominator = np.ones((formants.shape[0], freqs.size))
    for k in range(formants.shape[1]):
        a = f2 + c2[:, k : k + 1]
        denominator *= a * a - 4.0 * f2 * formants[:, k : k + 1] ** 2
    return np.prod(c2, axis=1)[:, None] / np.sqrt(denominator)


def _fricative_shape(freqs: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(T, F): a bump about one octave wide around each frame's centre, plus a floor."""
    distance = np.log2(np.maximum(freqs[None, :], 50.0) / centres[:, None])
    return np.exp(-0.5 * (distance / 0.45) ** 2) + 0.05


def _channel_eq(freqs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(F,) a smooth random equaliser of a few dB with a gentle low cut."""
    position = np.log2(np.maximum(freqs, 60.0) / 60.0) / np.log2(8000.0 / 60.0)
    db = sum(rng.normal(0.0, 1.5) * np.cos(np.pi * k * position) for k in range(1, 4))
    cutoff = rng.uniform(60.0, 200.0)
    low_cut = freqs / np.sqrt(freqs**2 + cutoff**2)
    return 10.0 ** (db / 20.0) * low_cut


def _stft_filter(x: np.ndarray, envelope: np.ndarray, num: int) -> np.ndarray:
    """Filter ``x`` (N,) by a per-frame magnitude ``envelope`` (T or 1, F); (N,) out.

    Periodic-Hann frames of _N_FFT samples every _HOP (x padded by _N_FFT - _HOP on both
    sides, so every output sample lies under _N_FFT / _HOP frames), multiplied in the
    frequency domain, windowed again and overlap-added. The squared windows then sum to
    exactly 1.5 at every output sample, which is divided out.
    """
    pad = _N_FFT - _HOP
    padded = np.pad(x, (pad, pad + _HOP))
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_N_FFT) / _N_FFT)
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]
    count = len(frames)
    if envelope.shape[0] not in (1, count):
        raise ValueError(f"envelope has {envelope.shape[0]} frames, signal has {count}")
    pieces = np.fft.irfft(np.fft.rfft(frames * window, axis=1) * envelope, n=_N_FFT, axis=1)
    pieces *= window
    out = np.zeros(len(padded))
    for j in range(_N_FFT // _HOP):
        out[j * _HOP : (j + count) * _HOP] += pieces[:, j * _HOP : (j + 1) * _HOP].reshape(-1)
    return out[pad : pad + num] / 1.5


def _normalised(x: np.ndarray, gate: np.ndarray | None) -> np.ndarray:
    """Scale ``x`` to unit RMS over the samples where ``gate`` is on (all when None)."""
    active = x if gate is None else x[gate > 0.5]
    if active.size == 0:
        return x
    rms = float(np.sqrt(np.mean(active**2)))
    return x / rms if rms > 0 else x
