"""The lab protocol: seeded speaker/utterance selection, Kaldi lists and trial lists.

Training: ``train_speakers`` speakers x ``train_utts`` utterances from train/.
Test: ``test_speakers`` x ``test_utts`` from test/. A count of 0 means "all there is".
Two trial lists over the test utterances:

* ``trials_pairs``: every unordered pair (n*(n-1)/2; 19,900 for 20x10).
* ``trials_enroll``: the first ``enroll_utts`` utterances of each test speaker enroll it
  (listed in ``enroll``); every other test utterance is scored against every enrolled
  speaker.

Trial files use Kaldi's format: ``<enroll> <test> target|nontarget``.

Several corpora (``data.corpora``) train together with ids prefixed ``<corpus>-``; a share
of the training speakers (``data.heldout_share``) goes to ``calibration/`` instead of
``train/``: the trainer never sees them, and the back-end is calibrated on them.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

from voiceprint.config import DataConfig, ExperimentConfig
from voiceprint.data.corpus import (
    CorpusError,
    Utterance,
    by_speaker,
    read_kaldi_dir,
    scan_split,
    write_kaldi_dir,
)

log = logging.getLogger(__name__)

Trial = tuple[str, str, bool]  # (enroll id, test utterance id, same speaker)


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
        if len(parts) != 3 or parts[2] not in ("target", "nontarget", "1", "0"):
            raise CorpusError(f"{path}:{number}: expected '<enroll> <test> target|nontarget'")
        trials.append((parts[0], parts[1], parts[2] in ("target", "1")))
    return trials


def prefixed(utts: list[Utterance], corpus: str) -> list[Utterance]:
    """The same utterances with speaker and utterance ids prefixed ``<corpus>-``."""
    return [Utterance(f"{corpus}-{u.utt}", f"{corpus}-{u.speaker}", u.path) for u in utts]


def corpus_of(speaker: str, corpora: list[str]) -> str:
    """The corpus whose ``<corpus>-`` prefix ``speaker`` carries ("" for none)."""
    return next((c for c in corpora if speaker.startswith(f"{c}-")), "")


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


@dataclass
class Prepared:
    """The folders :func:`prepare` wrote: ``train/`` and ``test/`` Kaldi data folders
    (and ``calibration/``, the held-out training speakers, when any were held out)."""

    train_dir: Path
    test_dir: Path

    @property
    def calibration_dir(self) -> Path:
        return self.train_dir.parent / "calibration"

    @property
    def train(self) -> list[Utterance]:
        return read_kaldi_dir(self.train_dir)

    @property
    def test(self) -> list[Utterance]:
        return read_kaldi_dir(self.test_dir)


def corpus_root(data: DataConfig, progress: bool = True) -> Path:
    """The configured root, or the package's synthetic corpus (built on first use)."""
    if data.root:
        from voiceprint.data.aishell import usable_root

        return usable_root(data.root, progress)  # AISHELL-1's archives are unpacked first
    from voiceprint.synth import synthesize_corpus

    folder = Path(data.cache_dir) / (
        f"synthetic_{data.synthetic_speakers}x{data.synthetic_utts}_seed{data.seed}"
    )
    log.info("no corpus root given: using the synthetic corpus in %s", folder)
    return synthesize_corpus(
        folder,
        train_speakers=data.synthetic_speakers,
        test_speakers=max(data.test_speakers, 2) if data.test_speakers else 10,
        utts_per_speaker=data.synthetic_utts,
        seed=data.seed,
        progress=progress,
    )


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


def prepare_official_or_lab_test(root: Path, data: DataConfig, out_dir: Path) -> Path:
    """The test lists of ``root``: its official trial list (VoxCeleb1, CN-Celeb) or the
    lab protocol over its ``wav/test`` split."""
    from voiceprint.data import official

    if official.detect(root) is not None:  # VoxCeleb2 has none: the error says so
        return official.write_test_folder(root, out_dir, sample_rate=data.sample_rate)
    return prepare_test(scan_split(root, "test"), data, out_dir)


def dev_root(data: DataConfig) -> Path | None:
    """The root whose test split is the experiment's dev set (``data.dev_corpus``)."""
    if not data.corpora:
        return Path(data.root).expanduser() if data.root else None
    name = data.dev_corpus or next(iter(data.corpora))
    if name not in data.corpora:
        raise CorpusError(
            f"data.dev_corpus {name!r} is not one of data.corpora ({', '.join(data.corpora)})"
        )
    return Path(data.corpora[name]).expanduser()


def prepare(config: ExperimentConfig, progress: bool = True) -> Prepared:
    """Apply the protocol and write ``exp/<name>/data/{train,calibration,test}``.

    Training data comes from ``data.kaldi_dir`` when set, else from the train splits of
    ``data.corpora`` (ids prefixed per corpus), else from ``<root>/wav/train`` (or the
    training part of a VoxCeleb/CN-Celeb root); test data from the dev corpus' (or the
    root's) ``wav/test``, or the root's official trial list. AISHELL-1 archives as openslr
    ships them are unpacked first (:mod:`voiceprint.data.aishell`). ``data.heldout_share`` of the
    selected training speakers go to ``calibration/`` instead of ``train/``.
    """
    data = config.data
    out = config.out_dir / "data"
    if data.kaldi_dir:
        train_pool = read_kaldi_dir(data.kaldi_dir)
        root = dev_root(data)
    elif data.corpora:
        from voiceprint.data.aishell import usable_root

        train_pool = [
            u
            for name, corpus in data.corpora.items()
            for u in prefixed(scan_split(usable_root(corpus, progress), "train"), name)
        ]
        root = dev_root(data)
    else:
        from voiceprint.data import official

        root = corpus_root(data, progress)
        layout = official.detect(root)
        train_pool = (
            official.training_utterances(root, layout) if layout else scan_split(root, "train")
        )
    if data.corpora and data.corpus_speakers:
        train = select_per_corpus(
            train_pool,
            data.corpus_speakers,
            data.train_speakers,
            data.train_utts,
            data.seed,
            list(data.corpora),
        )
    else:
        train = select(train_pool, data.train_speakers, data.train_utts, data.seed, "train")
    train, heldout = hold_out(train, data.heldout_share, data.seed + 2, list(data.corpora))
    write_kaldi_dir(out / "train", train)
    if heldout:
        write_kaldi_dir(out / "calibration", heldout)
    elif (out / "calibration").is_dir():
        import shutil

        shutil.rmtree(out / "calibration")  # a stale split from an earlier prepare
    if root is None:
        raise CorpusError("data.kaldi_dir is set but no data.root gives the test speakers")
    prepare_official_or_lab_test(root, data, out / "test")
    (out / SETTINGS_FILE).write_text(json.dumps(_settings(config), indent=2), "utf-8")
    log.info("wrote Kaldi lists and trials to %s", out)
    return Prepared(out / "train", out / "test")


SETTINGS_FILE = "settings.json"


def _settings(config: ExperimentConfig) -> dict:
    """What the prepared lists depend on: the data settings and the seed, as JSON."""
    return json.loads(json.dumps({"data": asdict(config.data), "seed": config.seed}))


def prepared_lists(config: ExperimentConfig) -> tuple[Prepared | None, str]:
    """The lists ``prepare`` wrote for exactly these settings, or None and the reason.

    Lists written for other ``data.*`` settings (or by a version that did not record
    them) are not reused: the reason names the settings that changed.
    """
    out = config.out_dir / "data"
    if not (out / "train" / "wav.scp").is_file():
        return None, f"no prepared lists in {out}"
    try:
        saved = json.loads((out / SETTINGS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None, f"{out} does not record the settings it was prepared with"
    now = _settings(config)
    changed = sorted(
        f"data.{k}: {saved['data'].get(k)!r} -> {v!r}"
        for k, v in now["data"].items()
        if saved.get("data", {}).get(k) != v
    )
    if saved.get("seed") != now["seed"]:
        changed.append(f"seed: {saved.get('seed')!r} -> {now['seed']!r}")
    if changed:
        return None, f"the lists in {out} were prepared with other settings ({'; '.join(changed)})"
    return Prepared(out / "train", out / "test"), ""
