"""A speaker store on SQLite or PostgreSQL: enroll, remove, list, verify and identify.

    db = SpeakerDB("speakers.db", embedder.model_id, embedder.scorer)   # or "postgresql://..."
    db.enroll("alice", embedder.embed_files(["a1.wav", "a2.wav"]))   # (K, D), appended
    db.verify("alice", embedder.embed_file("probe.wav"))             # Match(name, score, llr)
    db.identify(embedder.embed_file("probe.wav"), top=3)             # [Match, ...], best first

The database is the source of truth: each speaker keeps its enrollment embeddings, the id
of the model that made them and the sum of their scorer units; a speaker is scored by the
model's scorer (:class:`voiceprint.scoring.Scorer`: the same code evaluation scores with)
on its speaker model, that sum normalised. Embeddings from another model are refused with
:class:`ModelMismatchError`, never compared. One class serves both databases; the
dialects differ only in :mod:`voiceprint.store.sql`.

Identification searches a faiss index (:mod:`voiceprint.store.index`: exact below
``approximate_from`` speakers, IVF above) of the speaker models' search rows, whose inner
products are the scorer's scores (AS-norm included); the best ``top + 10`` found are
rescored by the scorer itself. The index lives in this process's memory and follows the
database through a change log: every write transaction bumps one counter row (which also
serialises writers, so counter order is commit order) and logs the names it changed.
Before each identification the store reads the log past its own version (one indexed
query that usually returns nothing) and updates the index in place for the speakers
named there: its own writes and those of any other connection or process (another
service replica) are seen by the next request. A gap in the log (more than
``CHANGE_LOG_KEEP`` writes behind) or a bulk write (over ``CHANGE_LOG_NAMES`` speakers)
rebuilds the index from the database instead. A damaged row (a blob of the wrong size,
another dimension, non-finite values) is reported in the log and left out, never
breaking the others.

``db.export_to("backup.npz")`` writes this model's speakers (every enrollment embedding,
its source, the model id and the counts) to one NumPy archive that holds arrays only
(read back with ``allow_pickle=False``: it cannot run code); ``db.import_from(path)``
restores it into a store of the same model and refuses another model's file.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiceprint.scoring import Match, Scorer
from voiceprint.store.index import APPROXIMATE_FROM, SpeakerIndex
from voiceprint.store.sql import SQL, connect, is_postgres_url

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the change counter and change log (a version-1 store is upgraded)
EXPORT_FORMAT = 1
CHANGE_LOG_KEEP = 10_000  # write transactions kept in the change log
CHANGE_LOG_NAMES = 1_000  # a transaction changing more speakers logs "rebuild" instead
RERANK_MARGIN = 10  # candidates beyond ``top`` that the scorer rescores
REENROLL_HOW = (
    "embeddings of different models cannot be compared: re-enroll the speakers with this "
    "model (voiceprint enroll --model MODEL NAME FILE...), or keep using the model they "
    "were enrolled with (--model)"
)

_CHUNK = 500  # names per "IN (...)" query, below SQLite's variable limit
_FETCH = 50_000  # rows per fetch when the index is rebuilt


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
    if "\x00" in name:  # PostgreSQL's text cannot hold it: refused on both databases
        raise ValueError("a speaker name must not contain NUL characters")
    return name.strip()


def open_store(
    location: str | Path, model_id: str, scorer: Scorer | None = None, **options: int
) -> SpeakerDB:
    """The store at a SQLite path or a ``postgresql://`` URL (``options``: SpeakerDB's)."""
    return SpeakerDB(location, model_id, scorer, **options)


class SpeakerDB:
    """Enrolled speakers in a SQLite file or a PostgreSQL database, bound to the model
    with id ``model_id``.

    ``location`` is a path (or ``":memory:"``) or a ``postgresql://`` URL; ``scorer`` is
    the model's (``embedder.scorer``), without one plain cosine. Galleries of at least
    ``approximate_from`` speakers are searched by IVF reading ``nprobe`` cells (default:
    :func:`voiceprint.store.index.ivf_probes`). The object is safe to share between threads.
    """

    def __init__(
        self,
        location: str | Path,
        model_id: str,
        scorer: Scorer | None = None,
        *,
        approximate_from: int = APPROXIMATE_FROM,
        nprobe: int | None = None,
    ) -> None:
        if not model_id:
            raise ValueError("SpeakerDB needs the id of the model that makes the embeddings")
        self.model_id = model_id
        self.scorer = scorer or Scorer()
        self.approximate_from = approximate_from
        self.nprobe = nprobe
        self._lock = threading.RLock()
        self._conn: SQL = connect(location)
        self.location = self._conn.location  # printable: no password
        self.path = str(location) if is_postgres_url(location) else self._conn.location
        self._search: _Search | None = None
        with self._lock:
            self._setup()

    def _setup(self) -> None:
        """Create or upgrade the tables (idempotent; safe with concurrent openers)."""
        conn = self._conn
        conn.begin(write=True)
        try:
            for statement in conn.schema():
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = SCHEMA_VERSION if row is None else int(row[0])
            if row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(version),))
            elif version == 1:  # the tables above are all version 2 adds
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
                )
                version = SCHEMA_VERSION
            if version != SCHEMA_VERSION:
                raise ValueError(
                    f"{self.location}: speaker store schema {version} is not {SCHEMA_VERSION}"
                )
            if conn.execute("SELECT 1 FROM counters WHERE key = 'version'").fetchone() is None:
                conn.execute("INSERT INTO counters(key, value) VALUES ('version', 0)")
            if conn.execute("SELECT 1 FROM counters WHERE key = 'speakers'").fetchone() is None:
                count = conn.execute("SELECT COUNT(*) FROM speakers").fetchone()[0]
                conn.execute("INSERT INTO counters(key, value) VALUES ('speakers', ?)", (count,))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

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

    # -- writing --------------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: Sequence[str] | None = None,
        speech_seconds: Sequence[float] | None = None,
    ) -> int:
        """Append embeddings (K, D) or (D,) to speaker ``name``; returns its new count.

        ``speech_seconds``: each clip's net speech (s), summed into the speaker's, which
        the scorer's quality-aware LLR and the decision's speech floor use."""
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        names = [_check_name(name)] * len(embeddings)
        self.enroll_many(names, embeddings, sources, speech_seconds)
        return self._info(names[0]).count

    def enroll_many(
        self,
        names: Sequence[str],
        embeddings: np.ndarray,
        sources: Sequence[str | None] | None = None,
        speech_seconds: Sequence[float] | None = None,
    ) -> None:
        """Bulk enrollment in one transaction: row ``i`` of (N, D) belongs to ``names[i]``.

        Names may repeat; existing speakers are appended to. Either all rows are stored
        or none (a model mismatch or a dimension mismatch stores nothing).
        ``speech_seconds`` (N,): net speech of each row's clip, added to its speaker's.
        """
        if speech_seconds is not None and len(speech_seconds) != len(names):
            raise ValueError(f"{len(speech_seconds)} speech durations for {len(names)} names")
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
        with self._transaction() as tx:
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
            if speech_seconds is not None:
                added = np.zeros(len(unique))
                np.add.at(added, inverse, np.asarray(speech_seconds, dtype=np.float64))
                self._conn.executemany(
                    "INSERT INTO speech(speaker, seconds) VALUES (?, ?) ON CONFLICT(speaker) "
                    "DO UPDATE SET seconds = speech.seconds + excluded.seconds",
                    [(n, float(added[j])) for j, n in enumerate(unique)],
                )
            tx.changed(unique, added=len(inserts))

    def remove(self, name: str) -> int:
        """Forget speaker ``name`` and its embeddings; returns how many embeddings went."""
        name = _check_name(name)
        with self._transaction() as tx:
            info = self._info(name)
            self._conn.execute("DELETE FROM speakers WHERE name = ?", (name,))
            tx.changed([name], added=-1)
        return info.count

    # -- reading --------------------------------------------------------------------------

    def speakers(self, limit: int | None = None, after: str | None = None) -> list[SpeakerInfo]:
        """Enrolled speakers (of any model) sorted by name: all of them, or a page of at
        most ``limit`` whose names sort after ``after`` (pass the last name of one page
        to get the next; each page is one index range scan)."""
        query = "SELECT name, count, model_id, created, updated FROM speakers"
        params: list[object] = []
        if after is not None:
            if "\x00" in after:
                raise ValueError("no speaker name contains NUL characters")
            query += " WHERE name > ?"
            params.append(after)
        query += " ORDER BY name"
        if limit is not None:
            if limit < 1:
                raise ValueError("limit must be at least 1")
            query += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            rows = self._conn.execute(query, tuple(params)).fetchall()
        return [SpeakerInfo(*row) for row in rows]

    def __len__(self) -> int:
        """How many speakers are enrolled (any model): one counter row, O(1)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM counters WHERE key = 'speakers'")
            return int(row.fetchone()[0])

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
        with self._lock:
            return self._refresh().index.ntotal

    @property
    def index_kind(self) -> str:
        """The kind of index identification searches now: "exact", "ivf" or "numpy"."""
        with self._lock:
            return self._refresh().index.kind

    def speech_seconds(self, names: Sequence[str]) -> list[float | None]:
        """The enrolled net speech (s) of each speaker (None: not recorded)."""
        found: dict[str, float] = {}
        unique = sorted(set(names))
        with self._lock:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT speaker, seconds FROM speech WHERE speaker IN ({marks})", tuple(chunk)
                ).fetchall()
                found.update({n: float(sec) for n, sec in rows})
        return [found.get(n) for n in names]

    def verify(
        self, name: str, embedding: np.ndarray, speech_seconds: float | None = None
    ) -> Match:
        """Score ``embedding`` (D,) against speaker ``name``: its score and LLR (with the
        probe's net speech ``speech_seconds`` and the speaker's enrolled speech, when
        known, for a quality-aware calibration)."""
        name = _check_name(name)
        probe = self._probe(embedding)
        with self._lock:
            row = self._conn.execute(
                "SELECT model_id, dim, unit_sum FROM speakers WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise UnknownSpeakerError(f"speaker {name!r} is not enrolled")
        model_id, dim, blob = row
        self._check_model(name, model_id)
        blob = bytes(blob)
        if _damage(dim, blob, dim):
            raise ValueError(f"speaker {name!r} has a damaged stored model: re-enroll it")
        model = _unit_rows(np.frombuffer(blob, dtype=np.float32)[None]).astype(np.float32)
        self._check_dim(dim, probe)
        score = self.scorer.score(model, probe[None], self.scorer.norm_stats(model))[0, 0]
        return self.scorer.match(name, score, self.speech_seconds([name])[0], speech_seconds)

    def identify(
        self, embedding: np.ndarray, top: int = 5, speech_seconds: float | None = None
    ) -> list[Match]:
        """The ``top`` best-scoring speakers of this model for ``embedding`` (D,), best first
        (``speech_seconds``: the probe's net speech, as in :meth:`verify`).

        Open-set decisions take the gallery size into account:
        ``decision.for_gallery(db.gallery_size)``.
        """
        if top < 1:
            raise ValueError("top must be at least 1")
        probe = self._probe(embedding)
        scorer = self.scorer
        with self._lock:
            search = self._refresh()
            n = search.index.ntotal
            if not n:
                others = len(self)
                if others:
                    raise ModelMismatchError(
                        f"none of the {others} enrolled speakers were enrolled with model "
                        f"{self.model_id}; " + REENROLL_HOW
                    )
                raise ValueError("no speakers are enrolled")
            self._check_dim(search.dim, probe)
            probe_stats = scorer.norm_stats(probe[None])
            query, _ = scorer.search_probe(probe[None], probe_stats)
            _, found = search.index.search(query, min(n, top + RERANK_MARGIN))
            ids = found[0][found[0] >= 0]
            models = scorer.search_units(search.index.rows(ids))
            names = [search.names[int(i)] for i in ids]
        # The scorer itself scores the candidates: the same numbers verify gives.
        scores = scorer.score(models, probe[None], scorer.norm_stats(models), probe_stats)[:, 0]
        best = np.argsort(-scores, kind="stable")[:top]
        enrolled = self.speech_seconds([names[i] for i in best])
        return [
            scorer.match(names[i], scores[i], seconds, speech_seconds)
            for i, seconds in zip(best, enrolled, strict=True)
        ]

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
                "%s: %d speaker(s) enrolled with other models are not exported",
                self.location,
                others,
            )
        kept = [r for r in rows if not _damage(r[3], r[1], r[3])]
        if len(kept) != len(rows):
            log.warning(
                "%s: %d damaged embedding(s) (wrong size, non-finite or zero) not exported",
                self.location,
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
                f"{path}: {len(present)} of its speakers are already enrolled in {self.location} "
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
    def _check_dim(dim: int, probe: np.ndarray) -> None:
        if dim and dim != probe.shape[0]:
            raise ValueError(f"probe has {probe.shape[0]} dims but enrolled speakers have {dim}")

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
                f"{query}({marks})", tuple(chunk)
            ).fetchall():
                found[name] = (model_id, dim, count, bytes(unit_sum))
        return found

    # -- the index ------------------------------------------------------------------------

    def _refresh(self) -> _Search:
        """The index, brought up to the database's latest commit (call under the lock)."""
        search = self._search
        if search is None or not search.dim:
            return self._rebuild()
        rows = self._conn.execute(
            "SELECT version, name FROM changes WHERE version > ? ORDER BY version",
            (search.version,),
        ).fetchall()
        if not rows:
            return search
        versions = sorted({int(v) for v, _ in rows})
        contiguous = versions[0] == search.version + 1 and len(versions) == (
            versions[-1] - search.version
        )
        if not contiguous or any(name is None for _, name in rows):
            return self._rebuild()  # log pruned past us, or a bulk write
        self._apply(search, sorted({name for _, name in rows}))
        search.version = versions[-1]
        if search.index.stale_for(search.index.ntotal, self.approximate_from):
            return self._rebuild()
        return search

    def _apply(self, search: _Search, names: list[str]) -> None:
        """Update the index in place for the speakers ``names`` (now as stored)."""
        gone = [search.ids.pop(n) for n in names if n in search.ids]
        for i in gone:
            del search.names[i]
        search.index.remove(np.asarray(gone, dtype=np.int64))
        stored = self._existing(names)
        kept, sums = [], []
        for name in names:
            if name not in stored or stored[name][0] != self.model_id:
                continue
            _, dim, _, blob = stored[name]
            problem = _damage(dim, blob, search.dim)
            if problem:
                log.warning("%s: speaker %r left out: %s", self.location, name, problem)
                continue
            kept.append(name)
            sums.append(np.frombuffer(blob, dtype=np.float32))
        if not kept:
            return
        ids = np.arange(search.next_id, search.next_id + len(kept), dtype=np.int64)
        search.next_id += len(kept)
        search.index.add(ids, self._search_rows(np.stack(sums)))
        for i, name in zip(ids.tolist(), kept, strict=True):
            search.ids[name], search.names[i] = i, name

    def _search_rows(self, sums: np.ndarray) -> np.ndarray:
        models = _unit_rows(sums).astype(np.float32)
        return self.scorer.search_rows(models, self.scorer.norm_stats(models))

    def _rebuild(self) -> _Search:
        """Read every speaker model of this model from the database; index them afresh."""
        started = time.perf_counter()
        conn = self._conn
        conn.begin(write=False)  # the counter and the rows from one snapshot
        try:
            version = int(
                conn.execute("SELECT value FROM counters WHERE key = 'version'").fetchone()[0]
            )
            dims = conn.execute(
                "SELECT dim, COUNT(*) FROM speakers WHERE model_id = ? GROUP BY dim",
                (self.model_id,),
            ).fetchall()
            dim = max(dims, key=lambda r: (r[1], r[0]))[0] if dims else 0
            cursor = conn.execute(
                "SELECT name, dim, unit_sum FROM speakers WHERE model_id = ? ORDER BY name",
                (self.model_id,),
            )
            names: list[str] = []
            parts: list[np.ndarray] = []
            while batch := cursor.fetchmany(_FETCH):
                good = []
                for name, row_dim, blob in batch:
                    problem = _damage(row_dim, bytes(blob), dim)
                    if problem:
                        log.warning("%s: speaker %r left out: %s", self.location, name, problem)
                        continue
                    good.append((name, bytes(blob)))
                if good:
                    names += [name for name, _ in good]
                    flat = np.frombuffer(b"".join(blob for _, blob in good), dtype=np.float32)
                    parts.append(self._search_rows(flat.reshape(len(good), dim)))
        finally:
            conn.commit()
        width = parts[0].shape[1] if parts else self.scorer.search_width(dim)
        rows = np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)
        ids = np.arange(len(names), dtype=np.int64)
        index = SpeakerIndex.build(rows, ids, self.approximate_from, self.nprobe, dim=width)
        self._search = _Search(
            index, version, dim, dict(zip(names, ids.tolist(), strict=True)), dict(enumerate(names))
        )
        self._search.next_id = len(names)
        log.info(
            "%s: %s index of %d speakers built in %.2f s",
            self.location,
            index.kind,
            len(names),
            time.perf_counter() - started,
        )
        return self._search


@dataclass
class _Search:
    """The index of one model's speakers and what maps its ids to names."""

    index: SpeakerIndex
    version: int  # the change counter it reflects
    dim: int  # the embedding dimension (0: nothing indexed yet)
    ids: dict[str, int]
    names: dict[int, str]
    next_id: int = field(default=0)


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
    """One write transaction under the store's lock: it bumps the change counter first
    (serialising writers: the counter's order is the commit order) and, through
    :meth:`changed`, logs the speakers it touched; ``ROLLBACK`` on error."""

    def __init__(self, db: SpeakerDB) -> None:
        self.db = db
        self.version = 0

    def __enter__(self) -> _Transaction:
        self.db._lock.acquire()
        conn = self.db._conn
        try:
            conn.begin(write=True)
            conn.execute("UPDATE counters SET value = value + 1 WHERE key = 'version'")
            row = conn.execute("SELECT value FROM counters WHERE key = 'version'").fetchone()
            self.version = int(row[0])
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            self.db._lock.release()
            raise
        return self

    def changed(self, names: Sequence[str], added: int) -> None:
        """Log ``names`` as changed by this transaction; ``added`` speakers more (or fewer)."""
        conn = self.db._conn
        rows = [(self.version, n) for n in names] if len(names) <= CHANGE_LOG_NAMES else []
        conn.executemany(
            "INSERT INTO changes(version, name) VALUES (?, ?)", rows or [(self.version, None)]
        )
        conn.execute("DELETE FROM changes WHERE version <= ?", (self.version - CHANGE_LOG_KEEP,))
        if added:
            conn.execute(
                "UPDATE counters SET value = value + ? WHERE key = 'speakers'", (int(added),)
            )

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type:
                self.db._conn.rollback()
            else:
                self.db._conn.commit()
        finally:
            self.db._lock.release()
