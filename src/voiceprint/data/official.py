"""VoxCeleb1, VoxCeleb2 and CN-Celeb as distributed, with their official trial lists.

Layouts (``root`` may be the folder shown or the one above it):

* VoxCeleb1: ``wav/idXXXXX/<youtube id>/00001.wav``; trial lists ``veri_test2.txt``
  (VoxCeleb1-O, cleaned), ``list_test_hard2.txt`` (-H), ``list_test_all2.txt`` (-E), lines
  ``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav`` (1 = same speaker).
  Its test speakers are id10270-id10309; the rest are the dev (training) speakers.
* VoxCeleb2: ``dev/aac/idXXXXX/<youtube id>/00001.m4a`` (and ``aac/`` for its test part);
  AAC, decoded with PyAV (``pip install 'voiceprint[voxceleb2]'``). Training data only.
* CN-Celeb(1): ``data/<spk>/<genre>-<session>-<nnn>.flac`` (``dev/dev.lst`` lists the
  training speakers); ``eval/lists/enroll.lst`` (``<enroll id> <path under eval/>``),
  ``eval/lists/test.lst`` and ``eval/lists/trials.lst`` (``<enroll id> <test path> 0|1``).
  An enroll id listed with several files is enrolled with them concatenated, one
  recording per speaker as the official protocol has it. CN-Celeb2 (``data/`` only)
  reads as training data.

Utterance ids are the names the official lists use (``id10270/x6uYqmx31kE/00001.wav``,
``id00800-enroll``, ``test/id00800-singing-01-001.flac``), so a trial list maps to the
project's :data:`voiceprint.data.trials.Trial` without renaming (the VoxCeleb lists are read
by :func:`voiceprint.data.trials.read_voxceleb_trials`). :func:`write_test_folder`
writes a Kaldi folder (wav.scp, utt2spk, spk2utt and ``trials``) that
``voiceprint evaluate --data`` scores; :func:`training_utterances` gives the training part,
written with :func:`voiceprint.data.corpus.write_kaldi_dir` for ``data.kaldi_dir``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from voiceprint.data.corpus import CorpusError, Utterance, write_kaldi_dir
from voiceprint.data.trials import LABELS, Trial, read_voxceleb_trials, write_trials

log = logging.getLogger(__name__)

LAYOUTS = ("voxceleb1", "voxceleb2", "cnceleb")
SPEAKER_ID = re.compile(r"^id\d{5}$")
VOX1_TEST_SPEAKERS = frozenset(f"id{n}" for n in range(10270, 10310))
VOX1_LISTS = ("veri_test2.txt", "veri_test.txt", "list_test_hard2.txt", "list_test_all2.txt")


def _speaker_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and SPEAKER_ID.match(p.name))


def voxceleb_root(root: str | Path, version: int) -> Path | None:
    """The folder holding the ``idXXXXX/`` speaker folders of VoxCeleb1 or 2, or None."""
    root = Path(root).expanduser()
    names = ("wav",) if version == 1 else ("dev/aac", "aac")
    candidates = [root / n for n in names] + [root]
    candidates += [root / sub / n for sub in ("vox1" if version == 1 else "vox2",) for n in names]
    suffix = ".wav" if version == 1 else ".m4a"
    for folder in candidates:
        speakers = _speaker_dirs(folder)
        if speakers and _has_audio(speakers[0], suffix):
            return folder
    return None


def _has_audio(speaker: Path, suffix: str) -> bool:
    for video in speaker.iterdir():
        if video.is_dir() and any(f.suffix.lower() == suffix for f in video.iterdir()):
            return True
    return False


def cnceleb_root(root: str | Path) -> Path | None:
    """The CN-Celeb folder (holding ``data/`` or ``eval/lists/``), or None."""
    root = Path(root).expanduser()
    for folder in (root, root / "CN-Celeb_flac", root / "CN-Celeb", root / "CN-Celeb2_flac"):
        if (folder / "eval" / "lists" / "trials.lst").is_file():
            return folder
        speakers = _speaker_dirs(folder / "data")
        if speakers and any(f.suffix.lower() in (".flac", ".wav") for f in speakers[0].iterdir()):
            return folder
    return None


def detect(root: str | Path) -> str | None:
    """Which official layout ``root`` is: ``voxceleb1``, ``voxceleb2``, ``cnceleb`` or None."""
    if not Path(root).expanduser().is_dir():
        return None
    if cnceleb_root(root) is not None:
        return "cnceleb"
    for version in (1, 2):
        if voxceleb_root(root, version) is not None:
            return f"voxceleb{version}"
    return None


def _scan_voxceleb(folder: Path, suffix: str) -> list[Utterance]:
    """``idXXXXX/<video>/<nnnnn><suffix>`` -> utterances with id ``idXXXXX/<video>/<file>``."""
    utts = []
    for spk in _speaker_dirs(folder):
        with os.scandir(spk) as videos:
            for video in sorted(v.name for v in videos if v.is_dir()):
                with os.scandir(spk / video) as files:
                    for name in sorted(f.name for f in files if f.name.lower().endswith(suffix)):
                        rel = f"{spk.name}/{video}/{name}"
                        utts.append(Utterance(rel, spk.name, spk / video / name))
    if not utts:
        raise CorpusError(f"{folder} holds no idXXXXX/<video>/*{suffix} files")
    return utts


def find_list(root: Path, name: str | None, defaults: tuple[str, ...]) -> Path:
    """A trial list: ``name`` as a path, else looked up in ``root``, its parent and ``meta/``."""
    if name and Path(name).expanduser().is_file():
        return Path(name).expanduser()
    places = [root, root.parent, root / "meta", root.parent / "meta"]
    for candidate in [name] if name else defaults:
        for place in places:
            if (place / candidate).is_file():
                return place / candidate
    wanted = name or " or ".join(defaults[:2])
    raise CorpusError(
        f"no trial list {wanted} in {root} (nor its parent or meta/): download the official "
        "list and put it there, or pass its path"
    )


def _check_files(utts: list[Utterance], source: Path) -> None:
    absent = [u for u in utts if not Path(u.path).is_file()]
    if absent:
        raise CorpusError(
            f"{source} names {len(absent)} file(s) that are missing, e.g. {absent[0].path}"
        )


def voxceleb1_test(
    root: str | Path, trial_list: str | None = None
) -> tuple[list[Utterance], list[Trial], Path]:
    """The files an official VoxCeleb1 list names, its trials and the list's path."""
    wav = voxceleb_root(root, 1)
    if wav is None:
        raise CorpusError(f"{root} is not VoxCeleb1 (wav/idXXXXX/<video>/*.wav)")
    listed = find_list(Path(root).expanduser(), trial_list, VOX1_LISTS)
    trials = read_voxceleb_trials(listed)
    names = sorted({n for a, b, _ in trials for n in (a, b)})
    utts = [Utterance(n, n.split("/")[0], wav / n) for n in names]
    _check_files(utts, listed)
    return utts, trials, listed


def _cnceleb_speaker(name: str) -> str:
    """``id00800-enroll`` / ``test/id00800-singing-01-001.flac`` -> ``id00800``."""
    return Path(name).name.split("-")[0]


def _read_pairs(path: Path, fields: int) -> list[list[str]]:
    if not path.is_file():
        raise CorpusError(f"CN-Celeb list {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != fields:
            raise CorpusError(f"{path}:{number}: expected {fields} fields, got {line!r}")
        rows.append(parts)
    return rows


def cnceleb_test(
    root: str | Path, out_dir: Path, trial_list: str | None = None, sample_rate: int = 16000
) -> tuple[list[Utterance], list[Trial], Path]:
    """CN-Celeb's eval part: enroll recordings (concatenated per enroll id when listed with
    several files, into ``out_dir/enroll_joined/``), test files and the official trials."""
    folder = cnceleb_root(root)
    if folder is None or not (folder / "eval" / "lists").is_dir():
        raise CorpusError(f"{root} is not CN-Celeb with eval/lists/ (enroll.lst, trials.lst)")
    lists = folder / "eval" / "lists"
    listed = find_list(lists, trial_list, ("trials.lst",))
    enroll_files: dict[str, list[str]] = defaultdict(list)
    for enroll_id, rel in _read_pairs(lists / "enroll.lst", 2):
        enroll_files[enroll_id].append(rel)
    rows = _read_pairs(listed, 3)
    bad = next((r for r in rows if r[2] not in LABELS), None)
    if bad:
        raise CorpusError(f"{listed}: label {bad[2]!r} is not 0 or 1 ({' '.join(bad)})")
    trials: list[Trial] = [(a, b, LABELS[label]) for a, b, label in rows]
    unknown = sorted({a for a, _, _ in trials} - set(enroll_files))
    if unknown:
        raise CorpusError(f"{listed}: enroll id {unknown[0]} is not in {lists / 'enroll.lst'}")
    if (lists / "test.lst").is_file():
        tests = {r[0] for r in _read_pairs(lists / "test.lst", 1)}
        stray = sorted({b for _, b, _ in trials} - tests)
        if stray:
            raise CorpusError(f"{listed}: test file {stray[0]} is not in {lists / 'test.lst'}")
    eval_dir = folder / "eval"
    enrolled = sorted({a for a, _, _ in trials})
    utts = [
        Utterance(
            e,
            _cnceleb_speaker(e),
            _enroll_recording(e, enroll_files[e], eval_dir, out_dir, sample_rate),
        )
        for e in enrolled
    ]
    utts += [
        Utterance(t, _cnceleb_speaker(t), eval_dir / t) for t in sorted({b for _, b, _ in trials})
    ]
    _check_files(utts, listed)
    return utts, trials, listed


def _enroll_recording(
    enroll_id: str, files: list[str], eval_dir: Path, out_dir: Path, sample_rate: int
) -> Path:
    """The one recording an enroll id is modelled with: its file, or its files joined."""
    paths = [eval_dir / f for f in files]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise CorpusError(f"enroll id {enroll_id}: {absent[0]} (from enroll.lst) is missing")
    if len(paths) == 1:
        return paths[0]
    from voiceprint import audio

    joined = out_dir / "enroll_joined" / f"{enroll_id}.wav"
    if not joined.is_file():
        wave = np.concatenate([audio.load(p, sample_rate) for p in paths])
        audio.save(joined, wave, sample_rate)
    return joined


def training_utterances(root: str | Path, layout: str | None = None) -> list[Utterance]:
    """The training part of an official layout (VoxCeleb1 dev speakers, VoxCeleb2 dev,
    CN-Celeb ``dev/dev.lst`` speakers or all of ``data/``)."""
    layout = layout or detect(root)
    if layout == "voxceleb1":
        wav = voxceleb_root(root, 1)
        assert wav is not None
        utts = [u for u in _scan_voxceleb(wav, ".wav") if u.speaker not in VOX1_TEST_SPEAKERS]
    elif layout == "voxceleb2":
        aac = voxceleb_root(root, 2)
        if aac is None:
            raise CorpusError(f"{root} is not VoxCeleb2 (dev/aac/idXXXXX/<video>/*.m4a)")
        utts = _scan_voxceleb(aac, ".m4a")
    elif layout == "cnceleb":
        utts = _cnceleb_training(root)
    else:
        raise CorpusError(
            f"{root}: no official layout found ({', '.join(LAYOUTS)}); see docs/corpora.md"
        )
    if not utts:
        raise CorpusError(f"{root}: the {layout} training part holds no utterances")
    return sorted(utts, key=lambda u: (u.speaker, u.utt))


def _cnceleb_training(root: str | Path) -> list[Utterance]:
    folder = cnceleb_root(root)
    if folder is None or not (folder / "data").is_dir():
        raise CorpusError(f"{root} is not CN-Celeb (data/<speaker>/*.flac)")
    dev_list = folder / "dev" / "dev.lst"
    if dev_list.is_file():
        speakers = [s for s in dev_list.read_text(encoding="utf-8").split() if s]
    else:
        speakers = sorted(p.name for p in (folder / "data").iterdir() if p.is_dir())
    utts = []
    for spk in speakers:
        spk_dir = folder / "data" / spk
        if not spk_dir.is_dir():
            raise CorpusError(f"{dev_list}: speaker {spk} has no folder {spk_dir}")
        for f in sorted(spk_dir.iterdir()):
            if f.suffix.lower() in (".flac", ".wav"):
                utts.append(Utterance(f"{spk}-{f.stem}", spk, f))
    return utts


def test_set(
    root: str | Path, out_dir: Path, trial_list: str | None = None, sample_rate: int = 16000
) -> tuple[list[Utterance], list[Trial], Path]:
    """The official test utterances and trials of ``root``'s layout, and the list read."""
    layout = detect(root)
    if layout == "voxceleb1":
        return voxceleb1_test(root, trial_list)
    if layout == "cnceleb":
        return cnceleb_test(root, out_dir, trial_list, sample_rate)
    if layout == "voxceleb2":
        raise CorpusError(
            f"{root} is VoxCeleb2, which has no official trial list: train on it "
            "(data.kaldi_dir) and evaluate on VoxCeleb1 (veri_test2.txt)"
        )
    raise CorpusError(f"{root}: no official layout with trial lists ({', '.join(LAYOUTS)})")


def write_test_folder(
    root: str | Path, out_dir: str | Path, trial_list: str | None = None, sample_rate: int = 16000
) -> Path:
    """Write the official test set as a Kaldi folder with ``trials``; returns the folder."""
    out_dir = Path(out_dir)
    utts, trials, listed = test_set(root, out_dir, trial_list, sample_rate)
    write_kaldi_dir(out_dir, utts)
    write_trials(out_dir / "trials", trials)
    for stale in ("trials_pairs", "trials_enroll", "enroll"):
        if (out_dir / stale).is_file():  # lab-protocol lists of an earlier prepare
            (out_dir / stale).unlink()
    log.info(
        "%s: %d utterances, %d trials (%d target) from %s",
        out_dir,
        len(utts),
        len(trials),
        sum(t for _, _, t in trials),
        listed,
    )
    return out_dir
