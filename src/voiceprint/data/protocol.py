"""The lab protocol: seeded speaker/utterance selection and the lists it writes.

Training: ``train_speakers`` speakers x ``train_utts`` utterances from the training part
of a corpus. Test: ``test_speakers`` x ``test_utts`` from its test part, with the two
trial lists of :mod:`voiceprint.data.trials` (``trials_pairs``, ``trials_enroll``), or the
corpus' official trial list. A count of 0 means "all there is".

Several corpora (``data.corpora``) train together with ids prefixed ``<corpus>-``; a share
of the training speakers (``data.heldout_share``) goes to ``calibration/`` instead of
``train/``: the trainer never sees them, and the back-end is calibrated on them.

Every draw is seeded by ``data.seed`` (training by the top-level ``seed``), so the lists
do not change when the training seed does. :meth:`voiceprint.experiment.Experiment.prepare`
writes them under ``exp/<name>/data``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from voiceprint.config import DataConfig
from voiceprint.data.corpus import (
    CorpusError,
    Utterance,
    by_speaker,
    corpus_of,
    prefixed,
    write_kaldi_dir,
)
from voiceprint.data.layouts import Corpus, open_corpus
from voiceprint.data.trials import enroll_trials, pair_trials, write_trials

log = logging.getLogger(__name__)


def select(
    utts: list[Utterance], n_speakers: int, n_utts: int, seed: int, what: str = "data"
) -> list[Utterance]:
    """Pick ``n_speakers`` speakers and ``n_utts`` utterances each, reproducibly.

    Speakers are drawn with ``random.Random(seed)`` from the sorted speaker list,
    utterances likewise per speaker; the result is sorted. When the corpus has fewer
    than asked, it takes what there is and logs how many it got.
    """
    rng = random.Random(seed)
    groups = by_speaker(utts)
    speakers = sorted(groups)
    if n_speakers and len(speakers) < n_speakers:
        log.warning(
            "%s: asked for %d speakers, the corpus has %d: taking all",
            what,
            n_speakers,
            len(speakers),
        )
    chosen = (
        sorted(rng.sample(speakers, n_speakers)) if 0 < n_speakers < len(speakers) else speakers
    )
    picked: list[Utterance] = []
    short = 0
    for spk in chosen:
        group = sorted(groups[spk], key=lambda u: u.utt)
        if n_utts and len(group) > n_utts:
            group = sorted(rng.sample(group, n_utts), key=lambda u: u.utt)
        elif n_utts and len(group) < n_utts:
            short += 1
        picked.extend(group)
    if short:
        log.warning(
            "%s: %d of %d speakers have fewer than %d utterances: taking all they have",
            what,
            short,
            len(chosen),
            n_utts,
        )
    log.info("%s: %d speakers, %d utterances", what, len(chosen), len(picked))
    return picked


def select_per_corpus(
    utts: list[Utterance],
    counts: dict[str, int],
    n_speakers: int,
    n_utts: int,
    seed: int,
    corpora: list[str],
) -> list[Utterance]:
    """:func:`select` corpus by corpus: ``counts[name]`` speakers of each named corpus
    (0: all), then the rest of ``n_speakers`` (0: all) in one draw over the others."""
    unknown = sorted(set(counts) - set(corpora))
    if unknown:
        raise CorpusError(
            f"data.corpus_speakers names {', '.join(unknown)}, not one of data.corpora "
            f"({', '.join(corpora)})"
        )
    picked: list[Utterance] = []
    for k, name in enumerate(corpora):
        if name in counts:
            mine = [u for u in utts if corpus_of(u.speaker, corpora) == name]
            picked += select(mine, counts[name], n_utts, seed + 101 * k, f"train {name}")
    others = [u for u in utts if corpus_of(u.speaker, corpora) not in counts]
    if others:
        taken = len({u.speaker for u in picked})
        left = max(n_speakers - taken, 0) if n_speakers else 0
        if n_speakers and left == 0:
            log.warning("train: the named corpora fill all %d speakers", n_speakers)
        else:
            picked += select(others, left, n_utts, seed, "train (other corpora)")
    return sorted(picked, key=lambda u: u.utt)


def hold_out(
    utts: list[Utterance], share: float, seed: int, corpora: list[str] | None = None
) -> tuple[list[Utterance], list[Utterance]]:
    """Split off ``share`` of the speakers (per corpus, seeded) -> (kept, held out).

    Only speakers with at least 2 utterances can be held out (a trial needs two); within
    each corpus ``round(share * speakers)`` of them are drawn, at least one when
    ``share > 0``.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"data.heldout_share must lie in [0, 1), got {share}")
    if share == 0.0:
        return utts, []
    groups = by_speaker(utts)
    rng = random.Random(seed)
    held: set[str] = set()
    names = corpora or [""]
    for corpus in names:
        speakers = sorted(s for s in groups if corpus_of(s, names) == corpus)
        eligible = [s for s in speakers if len(groups[s]) >= 2]
        n = min(max(1, round(share * len(speakers))), len(eligible))
        held.update(rng.sample(eligible, n))
    kept = [u for u in utts if u.speaker not in held]
    out = [u for u in utts if u.speaker in held]
    log.info("held out %d speakers (%d utterances) for calibration", len(held), len(out))
    return kept, out


def write_test_lists(test_dir: Path, test: list[Utterance], enroll_utts: int) -> None:
    """Write ``trials_pairs``, ``trials_enroll`` and ``enroll`` next to a test data folder."""
    write_trials(test_dir / "trials_pairs", pair_trials(test))
    if enroll_utts > 0 and all(len(g) > enroll_utts for g in by_speaker(test).values()):
        enroll, trials = enroll_trials(test, enroll_utts)
        (test_dir / "enroll").write_text(
            "".join(f"{spk} {' '.join(us)}\n" for spk, us in enroll.items()), "utf-8"
        )
        write_trials(test_dir / "trials_enroll", trials)


def prepare_test(utts: list[Utterance], data: DataConfig, out_dir: Path) -> Path:
    """Select the test protocol from ``utts`` and write its lists into ``out_dir``."""
    test = select(utts, data.test_speakers, data.test_utts, data.seed + 1, "test")
    write_kaldi_dir(out_dir, test)
    write_test_lists(out_dir, test, data.enroll_utts)
    return out_dir


def write_test_folder(
    corpus: Corpus,
    data: DataConfig,
    out_dir: Path,
    sample_rate: int = 16000,
    trial_list: str | None = None,
) -> Path:
    """The test lists of ``corpus`` in ``out_dir``: its official trial list (VoxCeleb1,
    CN-Celeb; ``trial_list`` names another one) or the lab protocol over its test part."""
    if corpus.official or trial_list:  # VoxCeleb2 has none: the error says so
        return corpus.write_official_test(out_dir, trial_list, sample_rate)
    return prepare_test(corpus.test(), data, out_dir)


def dev_corpus(data: DataConfig, progress: bool = True) -> Corpus:
    """The corpus whose test part is the experiment's dev set: ``data.dev_corpus`` (the
    first of ``data.corpora`` by default), else ``data.root`` (the synthetic corpus
    without one, unless ``data.kaldi_dir`` trains: then a root is needed)."""
    if not data.corpora:
        if data.kaldi_dir and not data.root:
            raise CorpusError("data.kaldi_dir is set but no data.root gives the test speakers")
        return open_corpus(data.root, data=data, progress=progress)
    name = data.dev_corpus or next(iter(data.corpora))
    if name not in data.corpora:
        raise CorpusError(
            f"data.dev_corpus {name!r} is not one of data.corpora ({', '.join(data.corpora)})"
        )
    return open_corpus(data.corpora[name], progress=progress)


def training_pool(data: DataConfig, dev: Corpus, progress: bool = True) -> list[Utterance]:
    """What the training draw picks from: ``data.kaldi_dir``, else the training parts of
    ``data.corpora`` (ids prefixed per corpus), else that of ``dev`` (the root's)."""
    if data.kaldi_dir:
        return open_corpus(data.kaldi_dir, layout="kaldi").train()
    if data.corpora:
        return [
            u
            for name, root in data.corpora.items()
            for u in prefixed(open_corpus(root, progress=progress).train(), name)
        ]
    return dev.train()


def write_lists(
    data: DataConfig, out: Path, sample_rate: int = 16000, progress: bool = True
) -> tuple[Path, Path]:
    """Apply the protocol and write ``out/{train,calibration,test}``; returns the train
    and test folders.

    ``data.heldout_share`` of the selected training speakers go to ``calibration/``
    instead of ``train/``; ``sample_rate``: that of the joined CN-Celeb enroll recordings.
    """
    dev = dev_corpus(data, progress)
    pool = training_pool(data, dev, progress)
    if data.corpora and data.corpus_speakers:
        train = select_per_corpus(
            pool,
            data.corpus_speakers,
            data.train_speakers,
            data.train_utts,
            data.seed,
            list(data.corpora),
        )
    else:
        train = select(pool, data.train_speakers, data.train_utts, data.seed, "train")
    train, heldout = hold_out(train, data.heldout_share, data.seed + 2, list(data.corpora))
    write_kaldi_dir(out / "train", train)
    if heldout:
        write_kaldi_dir(out / "calibration", heldout)
    elif (out / "calibration").is_dir():
        import shutil

        shutil.rmtree(out / "calibration")  # a stale split from an earlier prepare
    write_test_folder(dev, data, out / "test", sample_rate)
    return out / "train", out / "test"
