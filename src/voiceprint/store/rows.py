"""What a stored speaker row holds, and the checks and reads every part of the store shares.

A speaker row keeps ``unit_sum``: the float32 (D,) sum of the scorer's unit embeddings
of its enrollment, as raw bytes. :func:`damage` says why such a blob cannot be used (the
wrong size, another dimension, non-finite or all-zero values), :func:`unit_rows` scales
rows to unit length and refuses zero or non-finite ones, and :func:`stored_speakers`
reads the rows of a list of names in chunks that stay below SQLite's variable limit.
"""

from __future__ import annotations

import numpy as np

from voiceprint.store.sql import SQL

CHUNK = 500  # names per "IN (...)" query, below SQLite's variable limit


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """(K, D) -> (K, D) rows scaled to unit L2 norm (same dtype); zero rows are refused."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("embeddings must be finite and non-zero")
    return embeddings / norms


def damage(dim: int, blob: bytes, expected_dim: int) -> str:
    """Why a stored speaker row cannot be used ("" when it can)."""
    if dim != expected_dim:
        return f"{dim}-dim, the others {expected_dim}-dim"
    if not isinstance(blob, bytes) or len(blob) != 4 * dim:
        return f"a {len(blob) if isinstance(blob, bytes) else '?'}-byte blob for {dim} dims"
    vector = np.frombuffer(blob, dtype=np.float32)
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        return "non-finite or all-zero values"
    return ""


def stored_speakers(conn: SQL, names: list[str]) -> dict[str, tuple[str, int, int, bytes]]:
    """name -> (model id, dim, count, unit_sum blob) of those of ``names`` stored."""
    found: dict[str, tuple[str, int, int, bytes]] = {}
    for start in range(0, len(names), CHUNK):
        chunk = names[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        query = "SELECT name, model_id, dim, count, unit_sum FROM speakers WHERE name IN "
        for name, model_id, dim, count, unit_sum in conn.execute(
            f"{query}({marks})", tuple(chunk)
        ).fetchall():
            found[name] = (model_id, dim, count, bytes(unit_sum))
    return found
