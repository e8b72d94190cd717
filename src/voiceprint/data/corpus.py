"""Corpora as lists of utterances: the AISHELL-1 layout and Kaldi data folders.

AISHELL-1 layout: ``<root>/wav/{train,dev,test}/<speaker>/<utt>.<ext>``. ``root`` may be
the folder holding ``wav/`` (``data_aishell/``), the folder above it, or ``wav/`` itself.
Kaldi data folder: ``wav.scp`` (utt path) and ``utt2spk`` (utt speaker); ``spk2utt`` is
derived. A wav.scp entry may be a command ending in ``|`` (``sox x.wav -t wav - |``): it is
kept as a :class:`voiceprint.audio.PipeCommand` and run when the audio is loaded.
VoxCeleb, CN-Celeb and AISHELL-1 as distributed: :mod:`voiceprint.data.official`,
:mod:`voiceprint.data.aishell`; which layout a root has: :mod:`voiceprint.data.layouts`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from voiceprint.audio import PipeCommand, is_command
from voiceprint.errors import VoiceprintError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".au")


class CorpusError(VoiceprintError, ValueError):
    """A corpus folder or list that cannot be used; the message names the path."""


@dataclass(frozen=True)
class Utterance:
    """One recording: its id, its speaker and where the audio lies."""

    utt: str
    speaker: str
    path: Path | PipeCommand  # a file, or a wav.scp command ending in "|"


def find_wav_root(root: str | Path) -> Path:
    """The folder that holds the split folders (train/, dev/, test/)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus root {root} does not exist")
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} is not a folder")
    for candidate in (root / "wav", root / "data_aishell" / "wav", root):
        if candidate.is_dir() and any((candidate / s).is_dir() for s in ("train", "dev", "test")):
            return candidate
    raise CorpusError(
        f"corpus root {root} has no wav/{{train,dev,test}}/ folders (AISHELL-1 layout expected)"
    )


def scan_split(root: str | Path, split: str) -> list[Utterance]:
    """All utterances of one split, sorted by speaker then utterance id.

    Raises CorpusError naming the folder when the split is missing or a speaker folder
    holds no audio.
    """
    split_dir = find_wav_root(root) / split
    if not split_dir.is_dir():
        raise CorpusError(f"corpus split folder {split_dir} does not exist")
    utts: list[Utterance] = []
    speakers = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not speakers:
        raise CorpusError(f"corpus split folder {split_dir} has no speaker folders")
    for spk_dir in speakers:
        files = sorted(
            f for f in spk_dir.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
        )
        if not files:
            raise CorpusError(f"speaker folder {spk_dir} holds no audio files")
        utts.extend(Utterance(f.stem, spk_dir.name, f) for f in files)
    ids = [u.utt for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise CorpusError(f"corpus split folder {split_dir} repeats utterance ids, e.g. {dup}")
    return utts


def _read_table(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise CorpusError(f"{path}:{number}: expected '<key> <value>', got {line!r}")
        table[parts[0]] = parts[1].strip()
    return table


def read_kaldi_dir(folder: str | Path) -> list[Utterance]:
    """Utterances of a Kaldi data folder (wav.scp + utt2spk), sorted by speaker, utt.

    Relative paths in wav.scp are taken relative to the folder. Commands (``... |``) are
    kept as they are and run through the shell by :func:`voiceprint.audio.load`, in the
    current working directory as Kaldi runs them; ``ark:offset`` entries are refused.
    """
    folder = Path(folder).expanduser()
    wav_scp, utt2spk = folder / "wav.scp", folder / "utt2spk"
    for needed in (wav_scp, utt2spk):
        if not needed.is_file():
            raise CorpusError(f"Kaldi data folder {folder} has no {needed.name}")
    paths, speakers = _read_table(wav_scp), _read_table(utt2spk)
    utts = []
    for utt, location in paths.items():
        if utt not in speakers:
            raise CorpusError(f"{utt2spk}: utterance {utt} from wav.scp has no speaker")
        if is_command(location):
            utts.append(Utterance(utt, speakers[utt], PipeCommand(location, utt)))
            continue
        if _is_ark(location):
            raise CorpusError(
                f"{wav_scp}: utterance {utt} is an ark offset ({location}); only files and "
                "commands ending in '|' are read (write the audio out with Kaldi's wav-copy)"
            )
        path = Path(location)
        utts.append(Utterance(utt, speakers[utt], path if path.is_absolute() else folder / path))
    if not utts:
        raise CorpusError(f"Kaldi data folder {folder} lists no utterances")
    return sorted(utts, key=lambda u: (u.speaker, u.utt))


def _is_ark(location: str) -> bool:
    """``foo.ark:1234`` (an offset into a Kaldi archive)."""
    head, sep, tail = location.rpartition(":")
    return bool(sep) and tail.isdigit() and head.endswith(".ark")


def _location(path: Path | PipeCommand) -> str:
    """What wav.scp holds for ``path``: a command as it is, a file as an absolute path."""
    return str(path) if is_command(path) else str(Path(path).resolve())


def by_speaker(utts: list[Utterance]) -> dict[str, list[Utterance]]:
    """Group utterances by speaker, keeping order."""
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        groups[u.speaker].append(u)
    return dict(groups)


def prefixed(utts: list[Utterance], corpus: str) -> list[Utterance]:
    """The same utterances with speaker and utterance ids prefixed ``<corpus>-`` (several
    corpora train together so, and never share a speaker)."""
    return [Utterance(f"{corpus}-{u.utt}", f"{corpus}-{u.speaker}", u.path) for u in utts]


def corpus_of(speaker: str, corpora: list[str]) -> str:
    """The corpus whose ``<corpus>-`` prefix ``speaker`` carries ("" for none)."""
    return next((c for c in corpora if speaker.startswith(f"{c}-")), "")


def write_kaldi_dir(folder: str | Path, utts: list[Utterance]) -> Path:
    """Write wav.scp, utt2spk and spk2utt for ``utts`` (absolute paths; commands as is)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    utts = sorted(utts, key=lambda u: (u.speaker, u.utt))
    (folder / "wav.scp").write_text(
        "".join(f"{u.utt} {_location(u.path)}\n" for u in utts), encoding="utf-8"
    )
    (folder / "utt2spk").write_text("".join(f"{u.utt} {u.speaker}\n" for u in utts), "utf-8")
    (folder / "spk2utt").write_text(
        "".join(
            f"{spk} {' '.join(u.utt for u in group)}\n" for spk, group in by_speaker(utts).items()
        ),
        encoding="utf-8",
    )
    return folder
