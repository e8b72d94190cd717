"""The store's backup file: one model's speakers in one NumPy archive.

    counts = write_export("backup.npz", model_id, rows, location)   # SpeakerDB.export_to
    export = read_export("backup.npz", model_id)                    # SpeakerDB.import_from

The archive holds every enrollment embedding of the model's speakers, its source, the
model id and the counts, as arrays only: it is read back with ``allow_pickle=False``, so
it cannot run code. A file of another model is refused (:class:`ModelMismatchError`), a
damaged one is a ValueError naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceprint.store.errors import REENROLL_HOW, ModelMismatchError
from voiceprint.store.rows import damage

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1


@dataclass(frozen=True)
class SpeakerExport:
    """The content of an export file, checked: row ``i`` of ``vectors`` is ``names[i]``'s."""

    model_id: str
    names: list[str]
    vectors: np.ndarray  # (N, D) float32
    sources: list[str | None]
    speakers: list[str]  # the distinct names, sorted


def write_export(
    path: str | Path,
    model_id: str,
    rows: Sequence[tuple[str, bytes, str | None, int]],
    location: str,
) -> dict[str, int]:
    """Write ``rows`` (speaker, float32 vector blob, source, dim; sorted by speaker) of
    model ``model_id`` to ``path``; damaged rows are left out with a warning naming the
    store ``location``. Returns speaker/embedding counts."""
    kept = [r for r in rows if not damage(r[3], r[1], r[3])]
    if len(kept) != len(rows):
        log.warning(
            "%s: %d damaged embedding(s) (wrong size, non-finite or zero) not exported",
            location,
            len(rows) - len(kept),
        )
    dim = kept[0][3] if kept else 0
    vectors = np.zeros((0, dim), dtype=np.float32)
    if kept:
        vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in kept])
    names = [r[0] for r in kept]
    speakers, counts = np.unique(np.asarray(names, dtype=str), return_counts=True)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # np.savez on a path would append ".npz" to other names
        np.savez(
            f,
            format=np.array(EXPORT_FORMAT),
            model_id=np.array(model_id),
            names=np.asarray(names, dtype=str),
            sources=np.asarray(["" if r[2] is None else r[2] for r in kept], dtype=str),
            embeddings=vectors,
            speakers=speakers,
            counts=counts,
        )
    return {"speakers": len(speakers), "embeddings": len(kept)}


def read_export(path: str | Path, model_id: str) -> SpeakerExport:
    """The checked content of an export file of model ``model_id``.

    Raises ModelMismatchError for another model's file, ValueError naming the file for a
    damaged one.
    """
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as data:
            parts = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a voiceprint speaker export: {err}") from err
    needed = {"format", "model_id", "names", "sources", "embeddings", "speakers", "counts"}
    if not needed <= set(parts) or int(parts["format"]) != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a voiceprint speaker export (format {EXPORT_FORMAT})")
    found = str(parts["model_id"])
    if found != model_id:
        raise ModelMismatchError(
            f"{path} holds speakers of model {found}, not {model_id}: " + REENROLL_HOW
        )
    names = [str(n) for n in parts["names"]]
    vectors = np.asarray(parts["embeddings"], dtype=np.float32)
    speakers, counts = np.unique(np.asarray(names, dtype=str), return_counts=True)
    if (
        vectors.ndim != 2
        or len(vectors) != len(names)
        or len(parts["sources"]) != len(names)
        or speakers.tolist() != parts["speakers"].tolist()
        or counts.tolist() != parts["counts"].tolist()
    ):
        raise ValueError(f"{path}: its embeddings, names and counts do not agree")
    sources = [str(x) or None for x in parts["sources"]]
    return SpeakerExport(found, names, vectors, sources, speakers.tolist())
