"""One trial set: utterances, speaker models and trials, as evaluation, calibration and
the benchmarks score them.

    ts = TrialSet.read("exp/x/data/test", "enroll")   # a prepared Kaldi folder
    labels = ts.labels                                # (n,) bool, True for target trials
    spk_a, spk_b = ts.speakers()                      # the speaker on each side

A trial is ``(enroll id, test utterance id, is_target)``. An enroll id names either a
speaker model listed in ``enroll`` (id -> its enrollment clip ids) or, when it is not
listed there, a single clip. Trial files use Kaldi's format, one
``<enroll> <test> target|nontarget`` line per trial (:func:`read_trials`,
:func:`write_trials`); VoxCeleb's official lists put a 1/0 label first
(:func:`read_voxceleb_trials`); :data:`LABELS` reads every label word. The lab
protocol's two lists over a test set:

* :func:`pair_trials`: every unordered pair (n*(n-1)/2; 19,900 for 20x10).
* :func:`enroll_trials`: the first ``enroll_utts`` utterances of each test speaker enroll
  it (listed in ``enroll``); every other test utterance is scored against every enrolled
  speaker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from voiceprint.data.corpus import CorpusError, Utterance, by_speaker, corpus_of, read_kaldi_dir

__all__ = [
    "LABELS",
    "Trial",
    "TrialSet",
    "enroll_trials",
    "pair_trials",
    "read_enroll",
    "read_trials",
    "read_voxceleb_trials",
    "trial_lines",
    "write_trials",
]

Trial = tuple[str, str, bool]  # (enroll id, test utterance id, same speaker)
# A trial's label as lists write it -> same speaker: Kaldi's words, or 1 / 0.
LABELS = {"target": True, "nontarget": False, "1": True, "0": False}


def pair_trials(utts: list[Utterance]) -> list[Trial]:
    """Every unordered pair of utterances, in list order."""
    return [(a.utt, b.utt, a.speaker == b.speaker) for a, b in combinations(utts, 2)]


def enroll_trials(
    utts: list[Utterance], enroll_utts: int
) -> tuple[dict[str, list[str]], list[Trial]]:
    """Enrollment lists (speaker -> first k utterances) and speaker-vs-utterance trials."""
    groups = by_speaker(utts)
    enroll = {spk: [u.utt for u in group[:enroll_utts]] for spk, group in groups.items()}
    for spk, group in groups.items():
        if len(group) <= enroll_utts:
            raise CorpusError(
                f"speaker {spk} has {len(group)} test utterances: none left after "
                f"enrolling with {enroll_utts}"
            )
    trials = [
        (spk, u.utt, u.speaker == spk)
        for group in groups.values()
        for u in group[enroll_utts:]
        for spk in enroll
    ]
    return enroll, trials


def write_trials(path: str | Path, trials: list[Trial]) -> Path:
    path = Path(path)
    path.write_text(
        "".join(f"{a} {b} {'target' if t else 'nontarget'}\n" for a, b, t in trials), "utf-8"
    )
    return path


def trial_lines(path: str | Path) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, line) of each non-blank line of a trial list; CorpusError
    when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"trial list {path} does not exist")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if parts := line.split():
            yield number, parts, line


def read_trials(path: str | Path) -> list[Trial]:
    """Read a Kaldi trial list; the third column is target/nontarget (or 1/0)."""
    trials = []
    for number, parts, _ in trial_lines(path):
        if len(parts) != 3 or parts[2] not in LABELS:
            raise CorpusError(f"{path}:{number}: expected '<enroll> <test> target|nontarget'")
        trials.append((parts[0], parts[1], LABELS[parts[2]]))
    return trials


def read_voxceleb_trials(path: str | Path) -> list[Trial]:
    """A VoxCeleb list (``1 a.wav b.wav``; Kaldi's ``a b target`` is read too) -> trials."""
    trials = []
    for number, parts, line in trial_lines(path):
        if len(parts) == 3 and parts[0] in ("0", "1"):
            trials.append((parts[1], parts[2], LABELS[parts[0]]))
        elif len(parts) == 3 and parts[2] in ("target", "nontarget"):
            trials.append((parts[0], parts[1], LABELS[parts[2]]))
        else:
            raise CorpusError(f"{path}:{number}: expected '<0|1> <enroll> <test>', got {line!r}")
    if not trials:
        raise CorpusError(f"trial list {path} holds no trials")
    return trials


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
