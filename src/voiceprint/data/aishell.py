"""AISHELL-1 as openslr ships it (SLR33): two archives, one inner archive per speaker.

```
data_aishell.tgz      data_aishell/wav/S0002.tar.gz ... one per speaker, each holding
                        {train,dev,test}/S0002/BAC009S0002W0122.wav ...
                      data_aishell/transcript/aishell_transcript_v0.8.txt
resource_aishell.tgz  resource_aishell/speaker.info   ("0002 F": speaker id, gender)
                      resource_aishell/lexicon.txt
```

:func:`extract` unpacks both archives next to them, then every inner archive into
``data_aishell/wav/`` (as Kaldi's ``download_and_untar.sh`` does), removing each inner
archive once its speaker is in place. The result is the layout
:func:`voiceprint.data.corpus.find_wav_root` reads. A run killed half-way is simply run
again: each archive is unpacked into a ``.partial`` folder first and moved into place
whole. :func:`download` fetches the archives first (resumable, MD5-checked).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path, PurePosixPath

from voiceprint.data import fetch
from voiceprint.data.corpus import CorpusError

log = logging.getLogger(__name__)

OPENSLR_URL = "https://www.openslr.org/resources/33"
# The digests openslr publishes for SLR33.
CHECKSUMS: dict[str, str | None] = {
    "data_aishell.tgz": "md5:2f494334227864a8a8fec932999db9d8",
    "resource_aishell.tgz": "md5:957d480a0fcac85fc18e550756f624e5",
}
TRANSCRIPT = "transcript/aishell_transcript_v0.8.txt"  # under data_aishell/
SPEAKER_INFO = "speaker.info"  # under resource_aishell/
SPLITS = ("train", "dev", "test")
DONE = ".voiceprint-extracted"  # written into data_aishell/ once everything is in place


def locate(root: str | Path) -> Path:
    """The folder that holds (or will hold) ``data_aishell/`` and ``resource_aishell/``.

    ``root`` may be that folder, ``data_aishell/`` itself or the ``data_aishell.tgz`` file.
    """
    root = Path(root).expanduser()
    if root.is_file() or root.name == "data_aishell":
        return root.parent
    return root


def needs_extraction(root: str | Path) -> bool:
    """True when ``root`` holds AISHELL-1 archives that are not yet fully unpacked."""
    folder = locate(root)
    data = folder / "data_aishell"
    if (data / DONE).is_file():
        return False
    return (folder / "data_aishell.tgz").is_file() or any((data / "wav").glob("*.tar.gz"))


def usable_root(root: str | Path, progress: bool = True) -> Path:
    """``root`` itself, or the ``data_aishell/`` folder after :func:`extract` when ``root``
    holds the distributed archives."""
    return extract(root, progress=progress) if needs_extraction(root) else Path(root).expanduser()


def download(
    folder: str | Path,
    base_url: str = OPENSLR_URL,
    *,
    checksums: dict[str, str | None] | None = None,
    keep_archives: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch both archives from ``base_url`` into ``folder`` (resuming partial files,
    checking ``checksums``, by default openslr's MD5s), then :func:`extract` them."""
    folder = Path(folder).expanduser()
    sums = {**CHECKSUMS, **(checksums or {})}
    data = folder / "data_aishell"
    for name in CHECKSUMS:
        extracted = folder / name.removesuffix(".tgz")
        if (data / DONE).is_file() or (extracted.is_dir() and not (folder / name).is_file()):
            continue  # unpacked by an earlier run
        fetch.download(
            f"{base_url.rstrip('/')}/{name}", folder / name, checksum=sums[name], progress=progress
        )
    return extract(folder, keep_archives=keep_archives, progress=progress)


def read_speaker_info(path: Path) -> dict[str, str]:
    """``speaker.info`` -> {"S0002": "F", ...}; ids get AISHELL's ``S`` prefix."""
    speakers: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or parts[1].upper() not in ("M", "F"):
            raise CorpusError(f"{path}:{number}: expected '<speaker id> M|F', got {line!r}")
        spk = parts[0] if parts[0].upper().startswith("S") else f"S{parts[0]}"
        speakers[spk.upper()] = parts[1].upper()
    if not speakers:
        raise CorpusError(f"{path} lists no speakers")
    return speakers


def extract(root: str | Path, *, keep_archives: bool = False, progress: bool = True) -> Path:
    """Unpack ``data_aishell.tgz``, ``resource_aishell.tgz`` and every inner speaker
    archive; returns the ``data_aishell/`` folder.

    Raises CorpusError naming what is missing: an archive, the transcript, speaker.info,
    or the audio of speakers that speaker.info lists.
    """
    folder = locate(root)
    data, resource = folder / "data_aishell", folder / "resource_aishell"
    if (data / DONE).is_file():
        return data
    missing = [
        f"{name} (or an unpacked {target.name}/)"
        for name, target in (("data_aishell.tgz", data), ("resource_aishell.tgz", resource))
        if not (folder / name).is_file() and not target.is_dir()
    ]
    if missing:
        raise CorpusError(
            f"{folder}: AISHELL-1 as openslr distributes it needs {' and '.join(missing)}; "
            f"missing (download them from {OPENSLR_URL}, or run 'voiceprint download aishell "
            f"{folder}')"
        )
    if not data.is_dir():
        _extract_outer(folder / "data_aishell.tgz", folder, "data_aishell", TRANSCRIPT)
    if not resource.is_dir():
        _extract_outer(folder / "resource_aishell.tgz", folder, "resource_aishell", SPEAKER_INFO)
    for needed in (data / TRANSCRIPT, resource / SPEAKER_INFO):
        if not needed.is_file():
            raise CorpusError(f"{needed} is missing: the AISHELL-1 archives are incomplete")
    speakers = read_speaker_info(resource / SPEAKER_INFO)
    wav = data / "wav"
    inner = sorted(wav.glob("*.tar.gz"))
    from tqdm import tqdm

    for archive in tqdm(inner, desc="speaker archives", unit="spk", disable=not progress):
        _extract_speaker(archive, wav, keep_archives)
    present = {
        p.name for split in SPLITS if (wav / split).is_dir() for p in (wav / split).iterdir()
    }
    absent = sorted(set(speakers) - present)
    if absent:
        shown = ", ".join(f"wav/{s}.tar.gz" for s in absent[:5])
        raise CorpusError(
            f"{resource / SPEAKER_INFO} lists {len(absent)} speaker(s) with no audio in {wav}: "
            f"the inner archives {shown}{' ...' if len(absent) > 5 else ''} are missing from "
            "data_aishell.tgz"
        )
    unlisted = sorted(present - set(speakers))
    if unlisted:
        log.warning(
            "%s: %d speaker(s) not in speaker.info, e.g. %s", wav, len(unlisted), unlisted[0]
        )
    counts = {
        split: len(list((wav / split).iterdir())) for split in SPLITS if (wav / split).is_dir()
    }
    (data / DONE).write_text(json.dumps({"speakers": counts}), encoding="utf-8")
    log.info("AISHELL-1 unpacked in %s: speakers per split %s", data, counts)
    return data


def _extract_outer(archive: Path, folder: Path, top: str, required: str) -> None:
    """Unpack an outer archive into ``.<top>.partial/`` and move ``<top>/`` into place."""
    partial = folder / f".{top}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    log.info("unpacking %s", archive)
    members = fetch.safe_extract(archive, partial)
    stray = [m.name for m in members if PurePosixPath(m.name).parts[:1] not in ((top,), ())]
    if stray or not (partial / top).is_dir():
        shutil.rmtree(partial)
        raise CorpusError(
            f"{archive}: expected everything under {top}/, found {stray[:1] or 'nothing'}: "
            "not the archive openslr distributes"
        )
    if not (partial / top / required).is_file():
        shutil.rmtree(partial)
        raise CorpusError(f"{archive} holds no {top}/{required}: not the complete archive")
    fetch.move_into(partial / top, folder / top)
    shutil.rmtree(partial)


def _extract_speaker(archive: Path, wav: Path, keep: bool) -> None:
    """Unpack ``wav/<spk>.tar.gz`` (``<split>/<spk>/*.wav``) into ``wav/<split>/<spk>/``."""
    spk = archive.name.removesuffix(".tar.gz")
    members = fetch.list_members(archive)
    fetch.check_members(archive, members)
    files = [m for m in members if m.isfile()]
    if not files:
        raise CorpusError(f"{archive} holds no audio for speaker {spk}")
    splits = set()
    for member in files:
        parts = [p for p in PurePosixPath(member.name).parts if p != "."]
        if len(parts) != 3 or parts[0] not in SPLITS or parts[1] != spk:
            raise CorpusError(
                f"{archive}: member {member.name!r} is not <train|dev|test>/{spk}/<utt>.wav "
                f"(the inner archive of speaker {spk} must hold that speaker only)"
            )
        splits.add(parts[0])
    partial = wav / f".{spk}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    fetch.safe_extract(archive, partial)
    for split in sorted(splits):
        fetch.move_into(partial / split / spk, wav / split / spk)
    shutil.rmtree(partial)
    if not keep:
        archive.unlink()
