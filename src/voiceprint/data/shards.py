"""Training data as tar shards (webdataset), streamed through DataLoader workers.

A shard folder holds ``index.json`` and ``shard-000000.tar``, ``shard-000001.tar``, ...
Each tar is a plain POSIX tar in webdataset's convention: per utterance ``<key>.flac``
(16-bit mono at the index's sample rate, decoded and resampled once when the shards are
written) and ``<key>.json`` (``{"utt": ..., "speaker": ...}``). Utterances are shuffled
before they are cut into shards, so every shard mixes speakers.

    index = write_shards(utts, "exp/x/shards")            # voiceprint shard
    batches = ShardBatches("exp/x/shards", 64, 32000, workers=2, augment=cfg.augment)
    for waves, labels in batches.epoch(3): ...            # (B, N) float32, (B,) int64

Reading: each (rank, DataLoader worker) pair is a *slot* that reads its own shards (of
the epoch's seeded shard order, slot k takes shards k, k + slots, ...; with fewer shards
than slots every slot reads all of them and keeps every slots-th utterance), shuffles
them in a seeded buffer, crops, speed-perturbs and augments in the worker, and yields
whole batches. An epoch is a fixed number of batches per rank (the utterances over
``world_size * batch_size``), so DDP ranks stay in step; a slot whose shards run out
reads them again. Every draw is seeded by (seed, epoch, rank, worker): an epoch is the
same whenever it is run, which is what resuming at an epoch needs. Memory holds the
shuffle buffer and the batches in flight, whatever the corpus size.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from voiceprint import audio
from voiceprint.config import AugmentConfig
from voiceprint.data.corpus import CorpusError, Utterance
from voiceprint.data.dataset import (
    random_crop,
    speed_perturbed_names,
    stream_seed,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
FORMAT = 1
# Utterances (as compressed bytes, ~30 kB per second) in each slot's shuffle buffer: with
# utterances already shuffled into the shards and shards reordered every epoch, a few
# hundred mix batches well and keep a worker's memory small and flat.
SHUFFLE_BUFFER = 256
# Extra input samples on each side of a crop before speed perturbation, so the resampling
# filter's edges fall outside the crop that is kept.
SPEED_MARGIN = 64
# DataLoader workers' nice value: below every trainer thread (see _worker_start).
WORKER_NICE = 19


@dataclass
class ShardIndex:
    """What ``index.json`` records: sample rate, the sorted speakers, and per shard its
    file name, utterance count and seconds of audio."""

    sample_rate: int
    speakers: list[str]
    shards: list[dict[str, Any]]
    source: str = ""

    @property
    def utterances(self) -> int:
        return sum(int(s["samples"]) for s in self.shards)

    @property
    def seconds(self) -> float:
        return float(sum(float(s["seconds"]) for s in self.shards))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sample_rate": self.sample_rate,
            "speakers": self.speakers,
            "shards": self.shards,
            "source": self.source,
        }


def read_index(folder: str | Path) -> ShardIndex:
    """The index of a shard folder; CorpusError naming what is missing or wrong."""
    folder = Path(folder)
    path = folder / INDEX_FILE
    if not path.is_file():
        raise CorpusError(
            f"{folder}: not a shard folder (no {INDEX_FILE}; write one with 'voiceprint shard')"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except ValueError as err:
        raise CorpusError(f"{path}: not valid JSON ({err})") from err
    if data.get("format") != FORMAT:
        raise CorpusError(f"{path}: shard format {data.get('format')!r}, expected {FORMAT}")
    missing = [s["file"] for s in data["shards"] if not (folder / s["file"]).is_file()]
    if missing:
        raise CorpusError(
            f"{folder}: {len(missing)} shard(s) listed in {INDEX_FILE} are "
            f"missing: {', '.join(missing[:5])}"
        )
    if not data["shards"]:
        raise CorpusError(f"{path}: lists no shards")
    return ShardIndex(
        int(data["sample_rate"]),
        list(data["speakers"]),
        list(data["shards"]),
        str(data.get("source", "")),
    )


def encode_flac(wave: np.ndarray, sample_rate: int) -> bytes:
    """float32 (N,) in [-1, 1] -> FLAC bytes, 16-bit PCM."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_flac(data: bytes, name: str) -> np.ndarray:
    """FLAC bytes -> float32 (N,); AudioError naming ``name`` (shard and key) if corrupt."""
    try:
        wave, _ = sf.read(io.BytesIO(data), dtype="float32")
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        raise audio.AudioError(f"{name}: cannot decode the shard's audio ({err})") from err
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def _webdataset() -> Any:
    """The webdataset module, or an ImportError that says which extra installs it."""
    try:
        import webdataset
    except ImportError as err:
        raise ImportError(
            "sharded training data needs webdataset: pip install 'voiceprint[scale]'"
        ) from err
    return webdataset


def write_shards(
    utts: Sequence[Utterance],
    out_dir: str | Path,
    *,
    sample_rate: int = 16000,
    shard_size: int = 1000,
    seed: int = 0,
    source: str = "",
    progress: bool = True,
) -> ShardIndex:
    """Decode ``utts`` (any format the project reads) into tar shards of ``shard_size``
    utterances in ``out_dir``. A bad file stops the run with an AudioError naming it;
    ``index.json`` is written last, so a folder without one is an unfinished run."""
    wds = _webdataset()

    if not utts:
        raise CorpusError(f"{out_dir}: no utterances to shard")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)
    order = list(utts)
    random.Random(seed).shuffle(order)
    shards: list[dict[str, Any]] = []
    bar = tqdm(order, desc="writing shards", unit="utt", disable=not progress)
    for first in range(0, len(order), shard_size):
        name = f"shard-{len(shards):06d}.tar"
        seconds = 0.0
        part = order[first : first + shard_size]
        with wds.TarWriter(str(out / f"{name}.tmp"), encoder=False) as sink:
            for number, utt in enumerate(part, first):
                wave = audio.load(utt.path, sample_rate)
                seconds += len(wave) / sample_rate
                meta = {"utt": utt.utt, "speaker": utt.speaker}
                sink.write(
                    {
                        "__key__": f"{number:09d}",
                        "flac": encode_flac(wave, sample_rate),
                        "json": json.dumps(meta).encode("utf-8"),
                    }
                )
                bar.update(1)
        (out / f"{name}.tmp").replace(out / name)
        shards.append({"file": name, "samples": len(part), "seconds": round(seconds, 3)})
    bar.close()
    index = ShardIndex(sample_rate, sorted({u.speaker for u in utts}), shards, source)
    (out / INDEX_FILE).write_text(json.dumps(index.to_json(), indent=1), "utf-8")
    log.info(
        "wrote %d utterances (%.1f h) to %d shards in %s",
        index.utterances,
        index.seconds / 3600,
        len(shards),
        out,
    )
    return index


def slot_shards(
    num_shards: int, seed: int, epoch: int, slot: int, slots: int
) -> tuple[list[int], int, int]:
    """Shards a slot reads in an epoch, and (offset, stride) of the utterances it keeps.

    The epoch's shard order is a seeded permutation; with at least ``slots`` shards slot
    k takes every slots-th shard from k and keeps all their utterances (offset 0, stride
    1); with fewer, every slot reads every shard and keeps utterances k, k + slots, ...
    """
    order = [int(i) for i in np.random.default_rng([seed, epoch, 7]).permutation(num_shards)]
    if num_shards >= slots:
        return order[slot::slots], 0, 1
    return order, slot, slots


class ShardBatches(torch.utils.data.IterableDataset):
    """Epochs of random-crop batches from a shard folder: (waves (B, N), labels (B,)).

    Labels index :attr:`speakers`: the index's speakers, then their copies at each of
    ``speed_factors`` as new speakers (as
    :func:`voiceprint.data.dataset.add_speed_perturbed_speakers` names them). Every
    utterance yields one item per speed (1 + len(speed_factors)). ``augment``
    (wave noise, babble and reverberation, :class:`voiceprint.data.augment.WaveAugmenter`)
    is applied in the workers; ``augments`` says so, for the trainer.
    """

    def __init__(
        self,
        folder: str | Path,
        batch_size: int,
        crop_samples: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        speed_factors: Sequence[float] = (),
        augment: AugmentConfig | None = None,
        shuffle_buffer: int = SHUFFLE_BUFFER,
    ) -> None:
        super().__init__()
        _webdataset()  # fail here, not in a worker
        self.folder = Path(folder)
        self.index = read_index(self.folder)
        self.batch_size, self.crop_samples = batch_size, crop_samples
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.workers, self.shuffle_buffer = workers, shuffle_buffer
        self.factors: tuple[float, ...] = (1.0, *speed_factors)
        self.augment_config = augment
        base = self.index.speakers
        self.speakers = base + speed_perturbed_names(base, self.factors[1:])
        self._label = {s: i for i, s in enumerate(base)}
        self.current_epoch = 0

    @property
    def augments(self) -> bool:
        from voiceprint.data.augment import augments_waves

        return self.augment_config is not None and augments_waves(self.augment_config)

    @property
    def sample_rate(self) -> int:
        return self.index.sample_rate

    def __len__(self) -> int:
        """Batches per rank in one epoch."""
        items = self.index.utterances * len(self.factors)
        return max(1, items // (self.world_size * self.batch_size))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` for this rank, produced by ``workers`` processes."""
        self.current_epoch = epoch
        if self.workers == 0:
            yield from iter(self)
            return
        loader = torch.utils.data.DataLoader(
            self,
            batch_size=None,
            num_workers=self.workers,
            worker_init_fn=_worker_start,
            prefetch_factor=2,
        )
        yield from loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        steps = len(self)
        quota = steps // workers + (1 if worker < steps % workers else 0)
        if quota == 0:
            return
        epoch, slot = self.current_epoch, self.rank * workers + worker
        slots = self.world_size * workers
        keys = [self.seed, epoch, self.rank, worker]
        rng = np.random.default_rng([*keys, 1])
        augmenter = None
        if self.augments:
            from voiceprint.data.augment import WaveAugmenter

            augmenter = WaveAugmenter(
                self.augment_config, self.sample_rate, seed=stream_seed(self.seed, slot, epoch, 3)
            )
        items = self._items(epoch, slot, slots, rng)
        for _ in range(quota):
            crops, labels = [], []
            for wave, label in items:
                crops.append(wave)
                labels.append(label)
                if len(crops) == self.batch_size:
                    break
            waves = torch.from_numpy(np.stack(crops))
            label_tensor = torch.tensor(labels, dtype=torch.int64)
            if augmenter is not None:
                with torch.no_grad():
                    waves = augmenter(waves, labels=label_tensor)
            yield waves, label_tensor

    def _items(
        self, epoch: int, slot: int, slots: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, int]]:
        """Endless (crop, label) items of this slot: its shards, again when they run out.

        Utterances are shuffled as compressed bytes (``shuffle_buffer`` of them), decoded,
        cropped once per speed, and the crops shuffled again in a buffer of a few batches,
        so the speed copies of one utterance do not travel together.
        """
        wds = _webdataset()
        shards, offset, stride = slot_shards(len(self.index.shards), self.seed, epoch, slot, slots)
        urls = [str(self.folder / self.index.shards[i]["file"]) for i in shards]
        shuffle = random.Random(int(rng.integers(2**31)))
        buffer = max(1, self.shuffle_buffer)
        mix = 4 * self.batch_size

        def utterances() -> Iterator[dict[str, Any]]:
            while True:
                yield from wds.DataPipeline(
                    wds.SimpleShardList(urls),
                    wds.tarfile_to_samples(),
                    _every(offset, stride),
                    wds.shuffle(buffer, initial=buffer, rng=shuffle),
                )

        def crops() -> Iterator[tuple[np.ndarray, int]]:
            count = len(self.index.speakers)
            for sample in utterances():
                name = f"{sample.get('__url__', '?')}:{sample['__key__']}"
                wave = decode_flac(sample["flac"], name)
                label = self._label[json.loads(sample["json"])["speaker"]]
                for k, factor in enumerate(self.factors):
                    yield self._crop(wave, factor, rng), label + k * count

        yield from wds.shuffle(mix, initial=mix, rng=shuffle)(crops())

    def _crop(self, wave: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
        """A ``crop_samples`` crop of ``wave`` played ``factor`` times faster."""
        if factor == 1.0:
            return random_crop(wave, self.crop_samples, rng)
        from voiceprint.data.channel import speed_perturb

        wanted = math.ceil(self.crop_samples * factor) + 2 * SPEED_MARGIN
        piece = speed_perturb(random_crop(wave, wanted, rng), factor)
        start = (len(piece) - self.crop_samples) // 2
        return np.ascontiguousarray(piece[start : start + self.crop_samples], dtype=np.float32)


def _every(offset: int, stride: int) -> Any:
    """A pipeline stage keeping samples offset, offset + stride, ... of its input."""

    def stage(samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for i, sample in enumerate(samples):
            if i % stride == offset:
                yield sample

    return stage


def _worker_start(_: int) -> None:
    """Worker start-up: one torch thread, the lowest CPU priority, and glibc's default
    malloc (so a worker's heap is trimmed and stays flat over a long epoch).

    The priority matters where the trainer's threads fill the cores (a CPU run): a worker
    at the trainer's priority preempts one of its threads and the others spin at the next
    barrier, which cost 13% of a cv-zh step on 2 cores; at nice 19 the workers take the
    trainer's idle moments, and when they fall behind, the trainer waiting for a batch is
    such a moment. Where the trainer waits on a GPU, the cores are the workers' anyway.
    """
    from voiceprint.allocator import release_freed_memory

    torch.set_num_threads(1)
    os.nice(WORKER_NICE - os.nice(0))
    release_freed_memory()
