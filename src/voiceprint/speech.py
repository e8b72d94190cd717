"""The speech policy of inference: what happens to a wave before the model embeds it.

    policy = SpeechPolicy()                      # check for speech, refuse none, keep whole
    found = find_speech(wave, 16000, policy, name="a.wav", min_samples=400)
    found.wave, found.seconds, found.speech      # what to embed, net speech (s), any found

Every inference path checks for speech and refuses input without any (tests on
synthetic tones switch the check off). Evaluation and corpus extraction embed such clips
whole instead (``refuse=False``), so that every trial is scored, and list them. A model
evaluated with trimming embeds only the speech it finds (``trim``). A policy is a value:
callers pass one per call, or take an embedder that holds another
(:meth:`voiceprint.embedder.Embedder.with_policy`); nothing is switched on a shared object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Speech probability above which silero-vad counts a frame as speech, for the check and
# for trimming. Its own default (0.5) finds no speech in some real dev clips (children,
# quiet voices: so762 SO0044_000440032 peaks below 0.35); 0.15 still finds none in
# silence or in white noise up to -26 dBFS.
VAD_THRESHOLD = 0.15

# Less net speech than this draws a ShortSpeechWarning: embeddings of shorter speech are
# much less reliable (the models train on 2-3 s crops).
MIN_SPEECH_SECONDS = 1.0


@dataclass(frozen=True)
class SpeechPolicy:
    """What speech activity detection does to an input.

    ``check``: look for speech (no speech is an error or, without ``refuse``, embeds the
    wave whole with 0 s of speech; less than ``MIN_SPEECH_SECONDS`` warns). ``trim``: cut
    the non-speech parts out (the model was evaluated so; it checks even without
    ``check``). ``refuse``: raise :class:`voiceprint.vad.NoSpeechError` for input without
    speech. Without a check, the net speech is the wave's duration.
    """

    check: bool = True
    trim: bool = False
    refuse: bool = True


@dataclass(frozen=True)
class Speech:
    """A wave after the policy: what to embed, its net speech (s), and whether the check
    found speech (False only for a clip embedded whole because nothing was refused)."""

    wave: np.ndarray
    seconds: float
    speech: bool = True


def find_speech(
    wave: np.ndarray, sample_rate: int, policy: SpeechPolicy, *, name: str, min_samples: int
) -> Speech:
    """Apply ``policy`` to a wave (N,) at ``sample_rate``; errors and warnings name
    ``name``. ``min_samples``: the model's shortest input (it raises the warning's floor)."""
    from voiceprint import vad

    wave = np.asarray(wave, dtype=np.float32)
    if not (policy.check or policy.trim):
        return Speech(wave, len(wave) / sample_rate)
    minimum = max(min_samples / sample_rate, MIN_SPEECH_SECONDS)
    try:
        found = vad.checked_speech(
            wave, sample_rate, name=name, min_speech_seconds=minimum, threshold=VAD_THRESHOLD
        )
    except vad.NoSpeechError as err:
        if policy.refuse:
            raise
        log.warning("%s: embedded whole", err)
        return Speech(wave, 0.0, speech=False)
    kept = vad.join_regions(wave, found) if policy.trim else wave
    return Speech(kept, found.speech_seconds)
