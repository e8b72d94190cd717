"""One trial set: utterances, speaker models and trials, as evaluation, calibration and
the benchmarks score them.

    ts = TrialSet.read("exp/x/data/test", "enroll")   # a prepared Kaldi folder
    labels = ts.labels                                # (n,) bool, True for target trials
    spk_a, spk_b = ts.speakers()                      # the speaker on each side

A trial is ``(enroll id, test utterance id, is_target)``. An enroll id names either a
speaker model listed in ``enroll`` (id -> its enrollment clip ids) or, when it is not
listed there, a single clip. The trial files use Kaldi's format
(:func:`voiceprint.data.protocol.read_trials`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiceprint.data.corpus import Utterance, read_kaldi_dir
from voiceprint.data.protocol import Trial, corpus_of, read_trials

__all__ = ["TrialSet", "read_enroll"]


@dataclass
class TrialSet:
    """Utterances, speaker models (enroll id -> clip ids) and trials over them.

    ``folder``: the prepared folder the set was read from, if any.
    """

    utts: list[Utterance]
    trials: list[Trial]
    enroll: dict[str, list[str]] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def labels(self) -> np.ndarray:
        """(n_trials,) bool, True for target (same-speaker) trials."""
        return np.array([t for _, _, t in self.trials], dtype=bool)

    def pairs(self) -> list[tuple[str, str]]:
        """The ``(enroll id, test id)`` of each trial."""
        return [(a, b) for a, b, _ in self.trials]

    def speakers(self) -> tuple[np.ndarray, np.ndarray]:
        """The speaker on each side of each trial: two (n_trials,) arrays (a speaker
        model's is that of its first clip)."""
        spk = {u.utt: u.speaker for u in self.utts}
        side = {**spk, **{m: spk[ids[0]] for m, ids in self.enroll.items()}}
        return (
            np.array([side[a] for a, _, _ in self.trials]),
            np.array([spk[b] for _, b, _ in self.trials]),
        )

    def side_seconds(self, speech_by_utt: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Net speech (s) of each trial's two sides: a speaker model's clips summed, and
        the test clip."""
        seconds = dict(speech_by_utt)
        seconds.update({m: sum(speech_by_utt[i] for i in ids) for m, ids in self.enroll.items()})
        return (
            np.array([seconds[a] for a, _, _ in self.trials]),
            np.array([seconds[b] for _, b, _ in self.trials]),
        )

    def test_corpora(self, corpora: Sequence[str]) -> np.ndarray:
        """The corpus of each trial's test clip ("" where ids carry no corpus prefix)."""
        spk = {u.utt: u.speaker for u in self.utts}
        return np.array([corpus_of(spk[b], list(corpora)) for _, b, _ in self.trials])

    @classmethod
    def read(cls, folder: str | Path, kind: str = "pairs") -> TrialSet:
        """Read a prepared folder: ``wav.scp``, ``utt2spk``, ``trials_<kind>`` (or
        ``trials``, an official list, when there is no such file) and, for ``kind``
        "enroll", the speaker models in ``enroll``.

        Raises ValueError when a trial or a speaker model names an utterance the folder
        does not list.
        """
        folder = Path(folder)
        utts = read_kaldi_dir(folder)
        path = folder / f"trials_{kind}"
        if not path.is_file() and (folder / "trials").is_file():
            path = folder / "trials"
        trials = read_trials(path)
        enroll = read_enroll(folder / "enroll") if kind == "enroll" else {}
        known = {u.utt for u in utts}
        missing = {x for ids in enroll.values() for x in ids} - known
        missing |= {a for a, _, _ in trials if a not in enroll} - known
        missing |= {b for _, b, _ in trials} - known
        if missing:
            raise ValueError(f"{path} names utterances not in wav.scp: {sorted(missing)[:3]}")
        return cls(utts, trials, enroll, folder)


def read_enroll(path: str | Path) -> dict[str, list[str]]:
    """An ``enroll`` file: one ``<model id> <clip id> ...`` line per speaker model."""
    enroll = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        spk, *ids = line.split()
        enroll[spk] = ids
    return enroll
