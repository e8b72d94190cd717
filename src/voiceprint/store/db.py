"""A speaker store on SQLite: enroll, remove, list, verify and identify.

    db = SpeakerDB("speakers.db", embedder.model_id, embedder.scorer)
    db.enroll("alice", embedder.embed_files(["a1.wav", "a2.wav"]))   # (K, D), appended
    db.verify("alice", embedder.embed_file("probe.wav"))             # Match(name, score, llr)
    db.identify(embedder.embed_file("probe.wav"), top=3)             # [Match, ...], best first

One file, WAL mode (readers never block the writer). Each speaker keeps its enrollment
embeddings and the id of the model that made them; a speaker is scored by the model's
scorer (:class:`voiceprint.scoring.Scorer`: the same code evaluation scores with) on the
speaker model, the normalised sum of its enrollment embeddings' scorer units. Embeddings
from another model are refused with :class:`ModelMismatchError`, never compared.

Identification keeps the speaker models of this model as one (S, D) float32 matrix in
memory, with their AS-norm statistics (rebuilt after any change, by this or another
connection), so a probe costs one matrix-vector product and a partial sort: milliseconds
for 100,000 speakers. A damaged row (a blob of the wrong size, another dimension,
non-finite values) is reported in the log and left out, never breaking the others.

``db.export_to("backup.npz")`` writes this model's speakers (every enrollment embedding,
its source, the model id and the counts) to one NumPy archive that holds arrays only
(read back with ``allow_pickle=False``: it cannot run code); ``db.import_from(path)``
restores it into a store of the same model and refuses another model's file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceprint.scoring import Match, Scorer

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EXPORT_FORMAT = 1
REENROLL_HOW = (
    "embeddings of different models cannot be compared: re-enroll the speakers with this "
    "model (voiceprint enroll --model MODEL NAME FILE...), or keep using the model they "
    "were enrolled with (--model)"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS speakers (
    name TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    count INTEGER NOT NULL,
    unit_sum BLOB NOT NULL,          -- float32 (D,): sum of L2-normalised embeddings
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    speaker TEXT NOT NULL REFERENCES speakers(name) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,            -- float32 (D,) as produced by the model
    source TEXT,                     -- where it came from (a file name), optional
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_speaker ON embeddings(speaker);
CREATE INDEX IF NOT EXISTS speakers_model ON speakers(model_id);
"""

_CHUNK = 500  # names per "IN (...)" query, below SQLite's variable limit


class ModelMismatchError(ValueError):
    """Embeddings of one model were about to be compared with those of another."""


class UnknownSpeakerError(KeyError):
    """The named speaker is not enrolled."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown speaker"


@dataclass(frozen=True)
class SpeakerInfo:
    """One enrolled speaker: name, number of enrollment embeddings, model id, timestamps."""

    name: str
    count: int
    model_id: str
    created: float
    updated: float


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """(K, D) -> (K, D) rows scaled to unit L2 norm (same dtype); zero rows are refused."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("embeddings must be finite and non-zero")
    return embeddings / norms


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a speaker name must be a non-empty string")
    if len(name) > 256:
        raise ValueError("a speaker name must be at most 256 characters")
    return name.strip()


class SpeakerDB:
    """Enrolled speakers in one SQLite file, bound to the model with id ``model_id``.

    ``scorer`` is the model's (``embedder.scorer``); without one, plain cosine.
    ``path`` may be ``":memory:"``. The object is safe to share between threads.
    """

    def __init__(self, path: str | Path, model_id: str, scorer: Scorer | None = None) -> None:
        if not model_id:
            raise ValueError("SpeakerDB needs the id of the model that makes the embeddings")
        self.path = str(path)
        self.model_id = model_id
        self.scorer = scorer or Scorer()
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).expanduser())
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._conn.executescript(_SCHEMA)  # idempotent, one statement at a time
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: speaker store schema {version} is not {SCHEMA_VERSION}")
        self._cache: _Gallery | None = None
        self._cache_version: int | None = None

    # -- housekeeping -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SpeakerDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _data_version(self) -> int:
        # Changes whenever another connection commits to the file.
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _invalidate(self) -> None:
        self._cache = None

    # -- writing --------------------------------------------------------------------------

    def enroll(
        self, name: str, embeddings: np.ndarray, sources: Sequence[str] | None = None
    ) -> int:
        """Append embeddings (K, D) or (D,) to speaker ``name``; returns its new count."""
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        names = [_check_name(name)] * len(embeddings)
        self.enroll_many(names, embeddings, sources)
        return self._info(names[0]).count

    def enroll_many(
        self,
        names: Sequence[str],
        embeddings: np.ndarray,
        sources: Sequence[str | None] | None = None,
    ) -> None:
        """Bulk enrollment in one transaction: row ``i`` of (N, D) belongs to ``names[i]``.

        Names may repeat; existing speakers are appended to. Either all rows are stored
        or none (a model mismatch or a dimension mismatch stores nothing).
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise ValueError(f"embeddings must be (N, D) with N > 0, got {embeddings.shape}")
        if len(names) != len(embeddings):
            raise ValueError(f"{len(names)} names for {len(embeddings)} embeddings")
        if sources is not None and len(sources) != len(embeddings):
            raise ValueError(f"{len(sources)} sources for {len(embeddings)} embeddings")
        names = [_check_name(n) for n in names]
        dim = embeddings.shape[1]
        _unit_rows(embeddings)  # refuses zero and non-finite rows
        units = self.scorer.units(embeddings).astype(np.float32)
        unique, inverse = np.unique(np.asarray(names), return_inverse=True)
        unique = unique.tolist()
        sums = np.zeros((len(unique), dim), dtype=np.float32)
        np.add.at(sums, inverse, units)
        counts = np.bincount(inverse, minlength=len(unique))
        now = time.time()
        with self._transaction():
            existing = self._existing(unique)
            updates, inserts = [], []
            for j, speaker in enumerate(unique):
                if speaker in existing:
                    model_id, old_dim, count, unit_sum = existing[speaker]
                    self._check_model(speaker, model_id)
                    if old_dim != dim:
                        raise ValueError(
                            f"speaker {speaker!r} has {old_dim}-dim embeddings, got {dim}-dim"
                        )
                    total = np.frombuffer(unit_sum, dtype=np.float32) + sums[j]
                    updates.append((int(count + counts[j]), total.tobytes(), now, speaker))
                else:
                    inserts.append(
                        (speaker, self.model_id, dim, int(counts[j]), sums[j].tobytes(), now, now)
                    )
            self._conn.executemany(
                "INSERT INTO speakers(name, model_id, dim, count, unit_sum, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
            self._conn.executemany(
                "UPDATE speakers SET count = ?, unit_sum = ?, updated = ? WHERE name = ?", updates
            )
            self._conn.executemany(
                "INSERT INTO embeddings(speaker, model_id, vector, source, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    (n, self.model_id, row.tobytes(), None if sources is None else sources[i], now)
                    for i, (n, row) in enumerate(zip(names, embeddings, strict=True))
                ),
            )
            self._invalidate()

    def remove(self, name: str) -> int:
        """Forget speaker ``name`` and its embeddings; returns how many embeddings went."""
        name = _check_name(name)
        with self._transaction():
            info = self._info(name)
            self._conn.execute("DELETE FROM speakers WHERE name = ?", (name,))
            self._invalidate()
        return info.count

    # -- reading --------------------------------------------------------------------------

    def speakers(self) -> list[SpeakerInfo]:
        """Every enrolled speaker (of any model), sorted by name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, count, model_id, created, updated FROM speakers ORDER BY name"
            ).fetchall()
        return [SpeakerInfo(*row) for row in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM speakers").fetchone()[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM speakers WHERE name = ?", (name,)).fetchone()
        return row is not None

    def embeddings(self, name: str) -> np.ndarray:
        """The enrollment embeddings of ``name`` as stored, (K, D) float32."""
        info = self._info(_check_name(name))
        self._check_model(info.name, info.model_id)
        with self._lock:
            rows = self._conn.execute(
                "SELECT vector FROM embeddings WHERE speaker = ? ORDER BY id", (info.name,)
            ).fetchall()
        return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])

    @property
    def gallery_size(self) -> int:
        """How many speakers of this model identification searches."""
        return len(self._means().names)

    def verify(self, name: str, embedding: np.ndarray) -> Match:
        """Score ``embedding`` (D,) against speaker ``name``: its score and LLR."""
        name = _check_name(name)
        probe = self._probe(embedding)
        gallery = self._means()
        if name not in gallery.index:
            info = self._info(name)  # raises UnknownSpeakerError when absent
            self._check_model(name, info.model_id)
            raise ValueError(f"speaker {name!r} has a damaged stored model: re-enroll it")
        self._check_dim(gallery.models, probe)
        row = gallery.index[name]
        stats = None if gallery.stats is None else gallery.stats[row : row + 1]
        score = self.scorer.score(gallery.models[row : row + 1], probe[None], stats)[0, 0]
        return self.scorer.match(name, score)

    def identify(self, embedding: np.ndarray, top: int = 5) -> list[Match]:
        """The ``top`` best-scoring speakers of this model for ``embedding`` (D,), best first.

        Open-set decisions take the gallery size into account:
        ``decision.for_gallery(db.gallery_size)``.
        """
        if top < 1:
            raise ValueError("top must be at least 1")
        probe = self._probe(embedding)
        gallery = self._means()
        names = gallery.names
        if not names:
            others = len(self)
            if others:
                raise ModelMismatchError(
                    f"none of the {others} enrolled speakers were enrolled with model "
                    f"{self.model_id}; " + REENROLL_HOW
                )
            raise ValueError("no speakers are enrolled")
        self._check_dim(gallery.models, probe)
        scores = self.scorer.score(gallery.models, probe[None], gallery.stats)[:, 0]
        k = min(top, len(names))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(names) else np.arange(len(names))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [self.scorer.match(names[i], scores[i]) for i in best]

    # -- backup ---------------------------------------------------------------------------

    def export_to(self, path: str | Path) -> dict[str, int]:
        """Write this model's speakers to ``path`` (.npz); returns speaker/embedding counts.

        Speakers enrolled with another model are left out (with a warning): no model
        could score them beside these.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT e.speaker, e.vector, e.source, s.dim FROM embeddings e "
                "JOIN speakers s ON s.name = e.speaker WHERE e.model_id = ? "
                "ORDER BY e.speaker, e.id",
                (self.model_id,),
            ).fetchall()
            others = self._conn.execute(
                "SELECT COUNT(*) FROM speakers WHERE model_id != ?", (self.model_id,)
            ).fetchone()[0]
        if others:
            log.warning(
                "%s: %d speaker(s) enrolled with other models are not exported", self.path, others
            )
        kept = [r for r in rows if not _damage(r[3], r[1], r[3])]
        if len(kept) != len(rows):
            log.warning(
                "%s: %d damaged embedding(s) (wrong size, non-finite or zero) not exported",
                self.path,
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
                model_id=np.array(self.model_id),
                names=np.asarray(names, dtype=str),
                sources=np.asarray(["" if r[2] is None else r[2] for r in kept], dtype=str),
                embeddings=vectors,
                speakers=speakers,
                counts=counts,
            )
        return {"speakers": len(speakers), "embeddings": len(kept)}

    def import_from(self, path: str | Path) -> dict[str, int]:
        """Restore an :meth:`export_to` file; returns speaker/embedding counts.

        Raises ModelMismatchError for another model's file, ValueError naming the file
        for a damaged one or when a speaker in it is already enrolled here (nothing is
        stored then).
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
        model_id = str(parts["model_id"])
        if model_id != self.model_id:
            raise ModelMismatchError(
                f"{path} holds speakers of model {model_id}, not {self.model_id}: " + REENROLL_HOW
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
        if not names:
            return {"speakers": 0, "embeddings": 0}
        with self._lock:
            present = sorted(self._existing(speakers.tolist()))
        if present:
            raise ValueError(
                f"{path}: {len(present)} of its speakers are already enrolled in {self.path} "
                f"({', '.join(present[:5])}{', ...' if len(present) > 5 else ''}); remove "
                "them or import into a new store"
            )
        sources = [str(x) or None for x in parts["sources"]]
        self.enroll_many(names, vectors, sources)
        return {"speakers": len(speakers), "embeddings": len(names)}

    # -- internals ------------------------------------------------------------------------

    def _probe(self, embedding: np.ndarray) -> np.ndarray:
        probe = np.asarray(embedding, dtype=np.float32)
        if probe.ndim == 2 and probe.shape[0] == 1:
            probe = probe[0]
        if probe.ndim != 1:
            raise ValueError(f"a probe embedding must be (D,), got {probe.shape}")
        _unit_rows(probe[None])  # refuses zero and non-finite probes
        return self.scorer.units(probe)

    @staticmethod
    def _check_dim(matrix: np.ndarray, probe: np.ndarray) -> None:
        if matrix.shape[1] and matrix.shape[1] != probe.shape[0]:
            raise ValueError(
                f"probe has {probe.shape[0]} dims but enrolled speakers have {matrix.shape[1]}"
            )

    def _check_model(self, name: str, model_id: str) -> None:
        if model_id != self.model_id:
            raise ModelMismatchError(
                f"speaker {name!r} was enrolled with model {model_id}, not {self.model_id}; "
                + REENROLL_HOW
            )

    def _info(self, name: str) -> SpeakerInfo:
        with self._lock:
            row = self._conn.execute(
                "SELECT name, count, model_id, created, updated FROM speakers WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            raise UnknownSpeakerError(f"speaker {name!r} is not enrolled")
        return SpeakerInfo(*row)

    def _existing(self, names: list[str]) -> dict[str, tuple[str, int, int, bytes]]:
        found: dict[str, tuple[str, int, int, bytes]] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = "SELECT name, model_id, dim, count, unit_sum FROM speakers WHERE name IN "
            for name, model_id, dim, count, unit_sum in self._conn.execute(
                f"{query}({marks})", chunk
            ):
                found[name] = (model_id, dim, count, unit_sum)
        return found

    def _means(self) -> _Gallery:
        """Cached speaker models of this model (damaged rows reported and left out)."""
        with self._lock:
            version = self._data_version()
            if self._cache is not None and self._cache_version == version:
                return self._cache
            rows = self._conn.execute(
                "SELECT name, dim, unit_sum FROM speakers WHERE model_id = ? ORDER BY name",
                (self.model_id,),
            ).fetchall()
            dims = [r[1] for r in rows]
            dim = max(set(dims), key=dims.count) if rows else 0
            names, sums = [], []
            for name, row_dim, blob in rows:
                problem = _damage(row_dim, blob, dim)
                if problem:
                    log.warning("%s: speaker %r left out: %s", self.path, name, problem)
                    continue
                names.append(name)
                sums.append(np.frombuffer(blob, dtype=np.float32))
            if sums:
                models = _unit_rows(np.stack(sums)).astype(np.float32)
            else:
                models = np.zeros((0, dim), dtype=np.float32)
            stats = self.scorer.norm_stats(models) if len(models) else None
            self._cache = _Gallery(names, {n: i for i, n in enumerate(names)}, models, stats)
            self._cache_version = version
            return self._cache


@dataclass
class _Gallery:
    """Speaker models of one model: names, name -> row, (S, D) unit rows, AS-norm stats."""

    names: list[str]
    index: dict[str, int]
    models: np.ndarray
    stats: np.ndarray | None


def _damage(dim: int, blob: bytes, expected_dim: int) -> str:
    """Why a stored speaker row cannot be used ("" when it can)."""
    if dim != expected_dim:
        return f"{dim}-dim, the others {expected_dim}-dim"
    if not isinstance(blob, bytes) or len(blob) != 4 * dim:
        return f"a {len(blob) if isinstance(blob, bytes) else '?'}-byte blob for {dim} dims"
    vector = np.frombuffer(blob, dtype=np.float32)
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        return "non-finite or all-zero values"
    return ""


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) under the store's lock."""

    def __init__(self, db: SpeakerDB) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db._lock.acquire()
        self.db._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.db._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db._lock.release()


def brute_force_identify(
    enrolled: Iterable[tuple[str, np.ndarray]], embedding: np.ndarray, top: int = 5
) -> list[tuple[str, float]]:
    """Reference identification: a Python loop over (name, mean (D,)) pairs, cosine each."""
    probe = np.asarray(embedding, dtype=np.float64)
    probe = probe / np.linalg.norm(probe)
    scored = []
    for name, mean in enrolled:
        mean = np.asarray(mean, dtype=np.float64)
        scored.append((name, float(mean @ probe / np.linalg.norm(mean))))
    scored.sort(key=lambda item: -item[1])
    return scored[:top]
