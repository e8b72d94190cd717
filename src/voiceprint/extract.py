"""Embed a whole corpus, on one process or on many, resumably.

    info = embed_corpus("model.onnx", utts, "out/")   # -> out/embeddings.npy, utts.txt, info.json

The utterances are sorted by id and cut into chunks of ``chunk_size`` (the same chunks
whatever the number of processes). Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the
environment; no process group is needed) rank ``r`` of ``w`` embeds chunks ``r, r + w,
...``. Each chunk is written atomically (temporary file, then rename) as
``OUT/parts/chunk-NNNNN.npy`` beside ``chunk-NNNNN.json`` (its ids and its clips without
speech), so a killed run resumes by skipping the chunks already written, even with
another number of processes. Rank 0 then waits for every chunk and merges them into one
matrix and its index. Since every chunk is embedded in the same batches whatever the
number of processes, the merged output of N processes is the same bytes as one process's
(for the same model file, backend and thread count).

Inference only: nothing here imports training code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voiceprint.data.corpus import CorpusError, Utterance
from voiceprint.embedder import Embedder, load_embedder

log = logging.getLogger(__name__)

CHUNK_SIZE = 200
PLAN = "plan.json"


@dataclass(frozen=True)
class Shard:
    """Which process this is: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        """Rank and world size as torchrun sets them (one process when unset)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} WORLD_SIZE={world} is not a valid rank")
        return cls(rank, world)


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, then rename the result onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    _atomic_write(path, write)


def sorted_utterances(utts: Sequence[Utterance]) -> list[Utterance]:
    """Utterances sorted by id; CorpusError when there are none or an id repeats."""
    if not utts:
        raise CorpusError("no utterances to embed")
    ordered = sorted(utts, key=lambda u: u.utt)
    repeated = sorted({a.utt for a, b in zip(ordered, ordered[1:], strict=False) if a.utt == b.utt})
    if repeated:
        raise CorpusError(f"utterance ids repeat, e.g. {repeated[:3]}")
    return ordered


def _plan(embedder: Embedder, ids: list[str], chunk_size: int) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()
    return {
        "model_id": embedder.model_id,
        "dim": embedder.embedding_dim,
        "count": len(ids),
        "chunk_size": chunk_size,
        "utts_sha256": digest,
    }


def _check_plan(parts: Path, plan: dict[str, Any]) -> None:
    """Refuse to resume into parts of another model, corpus or chunk size."""
    path = parts / PLAN
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in plan if old.get(k) != plan[k]]
        if changed:
            raise ValueError(
                f"{parts} holds the parts of another run (different {', '.join(changed)}): "
                "give another --out or delete that folder"
            )
    else:
        _write_text(path, json.dumps(plan, indent=1))  # every rank writes the same bytes


def _chunk_done(parts: Path, k: int, ids: list[str], dim: int) -> bool:
    npy, meta = parts / f"chunk-{k:05d}.npy", parts / f"chunk-{k:05d}.json"
    if not (npy.is_file() and meta.is_file()):
        return False
    try:
        if json.loads(meta.read_text(encoding="utf-8"))["utts"] != ids:
            return False
        shape = np.load(npy, mmap_mode="r").shape
    except (ValueError, KeyError, OSError):
        return False
    return shape == (len(ids), dim)


def _embed_chunk(embedder: Embedder, chunk: list[Utterance], batch_seconds: float) -> tuple:
    """(N, D) embeddings of a chunk, and the ids of its clips without speech (embedded
    whole, not refused: every clip is embedded; info.json lists those a user gets refused)."""
    names = {str(u.path): u.utt for u in chunk}
    matrix, _, found_none = embedder.embed_files_measured(
        [u.path for u in chunk],
        batch_seconds=batch_seconds,
        progress=False,
        policy=replace(embedder.policy, refuse=False),
    )
    no_speech = sorted({names.get(n, n) for n in found_none})
    return np.ascontiguousarray(matrix, dtype=np.float32), no_speech


def _merge(
    out: Path, parts: Path, ordered: list[Utterance], plan: dict[str, Any], chunks: int
) -> dict[str, Any]:
    """Chunks -> OUT/embeddings.npy, utts.txt, info.json (info.json last)."""
    size, dim = plan["chunk_size"], plan["dim"]
    no_speech: list[str] = []

    def write(tmp: Path) -> None:
        matrix = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(len(ordered), dim)
        )
        for k in range(chunks):
            matrix[k * size : (k + 1) * size] = np.load(parts / f"chunk-{k:05d}.npy")
            meta = json.loads((parts / f"chunk-{k:05d}.json").read_text(encoding="utf-8"))
            no_speech.extend(meta["no_speech"])
        matrix.flush()
        del matrix

    _atomic_write(out / "embeddings.npy", write)
    _write_text(out / "utts.txt", "".join(f"{u.utt}\n" for u in ordered))
    info = {
        "model_id": plan["model_id"],
        "dim": dim,
        "count": len(ordered),
        "no_speech": sorted(no_speech),
        "utts_sha256": plan["utts_sha256"],
    }
    _write_text(out / "info.json", json.dumps(info, indent=1, ensure_ascii=False))
    return info


def embed_corpus(
    model: str | Path | Embedder,
    utts: Sequence[Utterance],
    out: str | Path,
    *,
    shard: Shard | None = None,
    batch_seconds: float = 120.0,
    chunk_size: int = CHUNK_SIZE,
    threads: int = 2,
    progress: bool | None = None,
    merge_timeout: float = 3600.0,
) -> dict[str, Any] | None:
    """Embed ``utts`` into ``out``; returns the merged ``info.json`` on rank 0, else None.

    Clips without speech are embedded whole and listed in ``info["no_speech"]`` (as in
    evaluation), not refused. Chunks already in ``out/parts`` are kept (resume). Rank 0
    waits up to ``merge_timeout`` seconds for the other ranks' chunks, then merges.
    """
    shard = shard or Shard.from_env()
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    ordered = sorted_utterances(utts)
    embedder = model if isinstance(model, Embedder) else load_embedder(model, threads=threads)
    out = Path(out).expanduser()
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    ids = [u.utt for u in ordered]
    plan = _plan(embedder, ids, chunk_size)
    _check_plan(parts, plan)

    chunks = -(-len(ordered) // chunk_size)
    mine = range(shard.rank, chunks, shard.world_size)
    show = sys.stderr.isatty() if progress is None else progress
    tag = f"rank {shard.rank}/{shard.world_size}"
    bar = tqdm(
        total=sum(len(ids[k * chunk_size : (k + 1) * chunk_size]) for k in mine),
        desc=f"embedding ({tag})",
        unit="utt",
        position=shard.rank,
        disable=not show,
    )
    for k in mine:
        chunk = ordered[k * chunk_size : (k + 1) * chunk_size]
        chunk_ids = [u.utt for u in chunk]
        if _chunk_done(parts, k, chunk_ids, plan["dim"]):
            bar.update(len(chunk))
            continue
        matrix, no_speech = _embed_chunk(embedder, chunk, batch_seconds)
        meta = {"utts": chunk_ids, "no_speech": no_speech}
        _write_text(parts / f"chunk-{k:05d}.json", json.dumps(meta, ensure_ascii=False))
        _save_npy(parts / f"chunk-{k:05d}.npy", matrix)  # written last: marks the chunk done
        bar.update(len(chunk))
        log.info("%s: chunk %d of %d written (%d utterances)", tag, k + 1, chunks, len(chunk))
    bar.close()
    if shard.rank != 0:
        return None

    deadline = time.monotonic() + merge_timeout
    while True:
        missing = [
            k
            for k in range(chunks)
            if not _chunk_done(parts, k, ids[k * chunk_size : (k + 1) * chunk_size], plan["dim"])
        ]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(missing)} chunk(s) of {parts} still missing after {merge_timeout:g} s "
                f"(first: chunk-{missing[0]:05d}): run again to resume"
            )
        time.sleep(0.2)
    return _merge(out, parts, ordered, plan, chunks)
