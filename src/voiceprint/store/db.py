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

This module holds the store's queries (the tables: :mod:`voiceprint.store.sql`).
Identification searches an in-memory index of the speaker models' search rows, kept in
step with the database through a change log (:mod:`voiceprint.store.sync`); the best
``top + 10`` found are rescored by the scorer itself. ``db.export_to("backup.npz")``
writes this model's speakers to one NumPy archive and ``db.import_from(path)`` restores
it into a store of the same model (:mod:`voiceprint.store.backup`: the file format).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceprint.scoring import Match, Scorer
from voiceprint.store.backup import read_export, write_export
from voiceprint.store.errors import REENROLL_HOW, ModelMismatchError, UnknownSpeakerError
from voiceprint.store.index import APPROXIMATE_FROM
from voiceprint.store.rows import CHUNK, damage, stored_speakers, unit_rows
from voiceprint.store.sql import SQL, connect, create_tables, is_postgres_url
from voiceprint.store.sync import IndexSync, Transaction

log = logging.getLogger(__name__)

RERANK_MARGIN = 10  # candidates beyond ``top`` that the scorer rescores


@dataclass(frozen=True)
class SpeakerInfo:
    """One enrolled speaker: name, number of enrollment embeddings, model id, timestamps."""

    name: str
    count: int
    model_id: str
    created: float
    updated: float


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
        self._index = IndexSync(
            self._conn,
            model_id,
            self.scorer,
            location=self.location,
            approximate_from=approximate_from,
            nprobe=nprobe,
        )
        with self._lock:
            create_tables(self._conn)

    # -- housekeeping -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SpeakerDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> Transaction:
        return Transaction(self._conn, self._lock)

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
        unit_rows(embeddings)  # refuses zero and non-finite rows
        units = self.scorer.units(embeddings).astype(np.float32)
        unique, inverse = np.unique(np.asarray(names), return_inverse=True)
        unique = unique.tolist()
        sums = np.zeros((len(unique), dim), dtype=np.float32)
        np.add.at(sums, inverse, units)
        counts = np.bincount(inverse, minlength=len(unique))
        now = time.time()
        with self._transaction() as tx:
            existing = stored_speakers(self._conn, unique)
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
            return self._index.refresh().index.ntotal

    @property
    def index_kind(self) -> str:
        """The kind of index identification searches now: "exact", "ivf" or "numpy"."""
        with self._lock:
            return self._index.refresh().index.kind

    def speech_seconds(self, names: Sequence[str]) -> list[float | None]:
        """The enrolled net speech (s) of each speaker (None: not recorded)."""
        found: dict[str, float] = {}
        unique = sorted(set(names))
        with self._lock:
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start : start + CHUNK]
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
        if damage(dim, blob, dim):
            raise ValueError(f"speaker {name!r} has a damaged stored model: re-enroll it")
        model = unit_rows(np.frombuffer(blob, dtype=np.float32)[None]).astype(np.float32)
        self._check_dim(dim, probe)
        score = self.scorer.score(model, probe[None], self.scorer.norm_stats(model))[0, 0]
        return self.scorer.match(name, score, self.speech_seconds([name])[0], speech_seconds)

    def identify(
        self, embedding: np.ndarray, top: int = 5, speech_seconds: float | None = None
    ) -> list[Match]:
        """The ``top`` best-scoring speakers of this model for ``embedding`` (D,), best first
        (``speech_seconds``: the probe's net speech, as in :meth:`verify`).

        Open-set decisions take the gallery size into account:
        ``decision.for_gallery(db.gallery_size, OPEN_SET_PRIOR)``.
        """
        if top < 1:
            raise ValueError("top must be at least 1")
        probe = self._probe(embedding)
        scorer = self.scorer
        with self._lock:
            search = self._index.refresh()
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
        return write_export(path, self.model_id, rows, self.location)

    def import_from(self, path: str | Path) -> dict[str, int]:
        """Restore an :meth:`export_to` file; returns speaker/embedding counts.

        Raises ModelMismatchError for another model's file, ValueError naming the file
        for a damaged one or when a speaker in it is already enrolled here (nothing is
        stored then).
        """
        path = Path(path).expanduser()
        export = read_export(path, self.model_id)
        if not export.names:
            return {"speakers": 0, "embeddings": 0}
        with self._lock:
            present = sorted(stored_speakers(self._conn, export.speakers))
        if present:
            raise ValueError(
                f"{path}: {len(present)} of its speakers are already enrolled in {self.location} "
                f"({', '.join(present[:5])}{', ...' if len(present) > 5 else ''}); remove "
                "them or import into a new store"
            )
        self.enroll_many(export.names, export.vectors, export.sources)
        return {"speakers": len(export.speakers), "embeddings": len(export.names)}

    # -- internals ------------------------------------------------------------------------

    def _probe(self, embedding: np.ndarray) -> np.ndarray:
        probe = np.asarray(embedding, dtype=np.float32)
        if probe.ndim == 2 and probe.shape[0] == 1:
            probe = probe[0]
        if probe.ndim != 1:
            raise ValueError(f"a probe embedding must be (D,), got {probe.shape}")
        unit_rows(probe[None])  # refuses zero and non-finite probes
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
