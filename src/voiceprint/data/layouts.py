"""One way into a corpus, whatever its layout: :func:`open_corpus`.

    corpus = open_corpus("../shared/data/cv-zh")    # decides the layout once
    corpus.layout                                   # "aishell"
    train, test = corpus.train(), corpus.test()     # lists of Utterance

Layouts, in the order they are recognised:

* ``aishell``: the AISHELL-1 layout ``wav/{train,dev,test}/<speaker>/<utt>.<ext>``
  (:mod:`voiceprint.data.corpus`); a root holding AISHELL-1 as openslr ships it
  (``data_aishell.tgz`` + ``resource_aishell.tgz``) is unpacked first
  (:mod:`voiceprint.data.aishell`) and read so.
* ``kaldi``: a Kaldi data folder (``wav.scp`` + ``utt2spk``; wav.scp commands ending in
  ``|`` included); every utterance is both training and test material.
* ``voxceleb1``, ``voxceleb2``, ``cnceleb``: the official layouts
  (:mod:`voiceprint.data.official`): their training part, and their official trial list
  instead of a test split.
* ``synthetic``: no root at all: the package's synthetic corpus (AISHELL layout), built
  on first use under ``data.cache_dir``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from voiceprint.config import DataConfig
from voiceprint.data import official
from voiceprint.data.aishell import needs_extraction, usable_root
from voiceprint.data.corpus import (
    CorpusError,
    Utterance,
    find_wav_root,
    read_kaldi_dir,
    scan_split,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
LAYOUTS = ("aishell", "kaldi", *official.LAYOUTS, "synthetic")


@dataclass(frozen=True)
class Corpus:
    """A corpus root opened in its layout; ``root`` is the folder read (for AISHELL-1 as
    distributed, the unpacked ``data_aishell/``)."""

    layout: str
    root: Path

    @property
    def official(self) -> bool:
        """VoxCeleb1/2 or CN-Celeb: tested on an official trial list, not a test split."""
        return self.layout in official.LAYOUTS

    @property
    def trials_file(self) -> Path | None:
        """A Kaldi folder's own trial list (``trials_pairs``, else ``trials``), if any."""
        if self.layout != "kaldi":
            return None
        return next(
            (self.root / n for n in ("trials_pairs", "trials") if (self.root / n).is_file()), None
        )

    def splits(self) -> list[str]:
        """The split folders present (AISHELL layout); none for the other layouts."""
        if self.layout not in ("aishell", "synthetic"):
            return []
        wav = find_wav_root(self.root)
        return [s for s in SPLITS if (wav / s).is_dir()]

    def train(self) -> list[Utterance]:
        """The training utterances: the train split, a Kaldi folder's every utterance, or
        an official layout's training part (VoxCeleb1 dev speakers, VoxCeleb2 dev,
        CN-Celeb dev speakers)."""
        if self.layout == "kaldi":
            return read_kaldi_dir(self.root)
        if self.official:
            return official.training_utterances(self.root, self.layout)
        return scan_split(self.root, "train")

    def test(self) -> list[Utterance]:
        """The test utterances the lab protocol draws from: the test split, or a Kaldi
        folder's every utterance. An official layout has its trial list instead
        (:meth:`write_official_test`)."""
        if self.layout == "kaldi":
            return read_kaldi_dir(self.root)
        if self.official:
            raise CorpusError(
                f"{self.root} is {self.layout}: its test part is its official trial list"
            )
        return scan_split(self.root, "test")

    def recordings(self, splits: list[str] | None = None) -> list[Utterance]:
        """Every labelled recording: those of the split folders present (or of those
        named), a Kaldi folder's, or an official layout's training part."""
        if self.layout not in ("aishell", "synthetic"):
            if splits:
                raise CorpusError(f"{self.root} is {self.layout}: it has no split folders")
            return self.train()
        present = self.splits()
        chosen = splits or present
        missing = sorted(set(chosen) - set(present))
        if missing:
            raise CorpusError(f"{self.root} has no wav/{missing[0]}/ folder")
        return [u for split in chosen for u in scan_split(self.root, split)]

    def write_official_test(
        self, out_dir: str | Path, trial_list: str | None = None, sample_rate: int = 16000
    ) -> Path:
        """Write the official test set (its utterances and ``trials``) as a Kaldi folder;
        ``trial_list`` picks another official list. CorpusError for a layout with none."""
        return official.write_test_folder(self.root, out_dir, trial_list, sample_rate)


def open_corpus(
    root: str | Path | None,
    *,
    layout: str | None = None,
    data: DataConfig | None = None,
    progress: bool = True,
) -> Corpus:
    """Decide the layout of ``root`` (see the module docstring) and open it.

    ``layout`` names it instead of detecting it (``"kaldi"`` for a folder given as a
    Kaldi folder). Without a root: the synthetic corpus ``data`` (default
    :class:`DataConfig`) describes. AISHELL-1 archives are unpacked here, once.
    Raises CorpusError naming the root when it is none of the layouts.
    """
    if root is None or root == "":
        return synthetic_corpus(data or DataConfig(), progress)
    if layout is not None and layout not in LAYOUTS:
        raise CorpusError(f"unknown corpus layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    path = Path(root).expanduser()
    if layout == "kaldi" or (layout is None and (path / "wav.scp").is_file()):
        return Corpus("kaldi", path)
    if layout in official.LAYOUTS:
        return Corpus(layout, path)
    if layout is None and not needs_extraction(path):
        detected = official.detect(path)
        if detected is not None:
            return Corpus(detected, path)
    path = usable_root(path, progress)  # AISHELL-1's archives are unpacked first
    find_wav_root(path)  # CorpusError naming the root when it is no AISHELL layout
    return Corpus("aishell", path)


def synthetic_corpus(data: DataConfig, progress: bool = True) -> Corpus:
    """The package's synthetic corpus for ``data`` (built on first use)."""
    from voiceprint.synth import synthesize_corpus

    folder = Path(data.cache_dir) / (
        f"synthetic_{data.synthetic_speakers}x{data.synthetic_utts}_seed{data.seed}"
    )
    log.info("no corpus root given: using the synthetic corpus in %s", folder)
    root = synthesize_corpus(
        folder,
        train_speakers=data.synthetic_speakers,
        test_speakers=max(data.test_speakers, 2) if data.test_speakers else 10,
        utts_per_speaker=data.synthetic_utts,
        seed=data.seed,
        progress=progress,
    )
    return Corpus("synthetic", Path(root))
