"""The store's search index, kept in step with the database through a change log.

    with Transaction(conn, lock) as tx:                # every write transaction
        ...; tx.changed(names, added=1)                # logs the speakers it touched
    state = IndexSync(conn, model_id, scorer, location=...).refresh()   # before a search

Identification searches a faiss index (:mod:`voiceprint.store.index`: exact below
``approximate_from`` speakers, IVF above) of the speaker models' search rows, whose inner
products are the scorer's scores (AS-norm included). The index lives in this process's
memory and follows the database through a change log: every write transaction bumps one
counter row (which also serialises writers, so counter order is commit order) and logs
the names it changed. Before each identification the store reads the log past its own
version (one indexed query that usually returns nothing) and updates the index in place
for the speakers named there: its own writes and those of any other connection or
process (another service replica) are seen by the next request. A gap in the log (more
than ``CHANGE_LOG_KEEP`` writes behind) or a bulk write (over ``CHANGE_LOG_NAMES``
speakers) rebuilds the index from the database instead. A damaged row (a blob of the
wrong size, another dimension, non-finite values) is reported in the log and left out,
never breaking the others.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from voiceprint.scoring import Scorer
from voiceprint.store.index import APPROXIMATE_FROM, SpeakerIndex
from voiceprint.store.rows import damage, stored_speakers, unit_rows
from voiceprint.store.sql import SQL

log = logging.getLogger(__name__)

CHANGE_LOG_KEEP = 10_000  # write transactions kept in the change log
CHANGE_LOG_NAMES = 1_000  # a transaction changing more speakers logs "rebuild" instead
FETCH = 50_000  # rows per fetch when the index is rebuilt


class Transaction:
    """One write transaction under the store's lock: it bumps the change counter first
    (serialising writers: the counter's order is the commit order) and, through
    :meth:`changed`, logs the speakers it touched; ``ROLLBACK`` on error."""

    def __init__(self, conn: SQL, lock: threading.RLock) -> None:
        self.conn = conn
        self.lock = lock
        self.version = 0

    def __enter__(self) -> Transaction:
        self.lock.acquire()
        conn = self.conn
        try:
            conn.begin(write=True)
            conn.execute("UPDATE counters SET value = value + 1 WHERE key = 'version'")
            row = conn.execute("SELECT value FROM counters WHERE key = 'version'").fetchone()
            self.version = int(row[0])
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            self.lock.release()
            raise
        return self

    def changed(self, names: Sequence[str], added: int) -> None:
        """Log ``names`` as changed by this transaction; ``added`` speakers more (or fewer)."""
        conn = self.conn
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
                self.conn.rollback()
            else:
                self.conn.commit()
        finally:
            self.lock.release()


@dataclass
class IndexState:
    """The index of one model's speakers and what maps its ids to names."""

    index: SpeakerIndex
    version: int  # the change counter it reflects
    dim: int  # the embedding dimension (0: nothing indexed yet)
    ids: dict[str, int]
    names: dict[int, str]
    next_id: int = field(default=0)


class IndexSync:
    """The in-memory index of model ``model_id``'s speakers in the database behind
    ``conn``, brought up to date by :meth:`refresh` (call it under the store's lock).

    ``location`` names the store in log lines; ``approximate_from`` and ``nprobe`` are
    :class:`voiceprint.store.index.SpeakerIndex`'s."""

    def __init__(
        self,
        conn: SQL,
        model_id: str,
        scorer: Scorer,
        *,
        location: str,
        approximate_from: int = APPROXIMATE_FROM,
        nprobe: int | None = None,
    ) -> None:
        self.conn = conn
        self.model_id = model_id
        self.scorer = scorer
        self.location = location
        self.approximate_from = approximate_from
        self.nprobe = nprobe
        self.state: IndexState | None = None

    def refresh(self) -> IndexState:
        """The index, brought up to the database's latest commit."""
        state = self.state
        if state is None or not state.dim:
            return self.rebuild()
        rows = self.conn.execute(
            "SELECT version, name FROM changes WHERE version > ? ORDER BY version",
            (state.version,),
        ).fetchall()
        if not rows:
            return state
        versions = sorted({int(v) for v, _ in rows})
        contiguous = versions[0] == state.version + 1 and len(versions) == (
            versions[-1] - state.version
        )
        if not contiguous or any(name is None for _, name in rows):
            return self.rebuild()  # log pruned past us, or a bulk write
        self._apply(state, sorted({name for _, name in rows}))
        state.version = versions[-1]
        if state.index.stale_for(state.index.ntotal, self.approximate_from):
            return self.rebuild()
        return state

    def _apply(self, state: IndexState, names: list[str]) -> None:
        """Update the index in place for the speakers ``names`` (now as stored)."""
        gone = [state.ids.pop(n) for n in names if n in state.ids]
        for i in gone:
            del state.names[i]
        state.index.remove(np.asarray(gone, dtype=np.int64))
        stored = stored_speakers(self.conn, names)
        kept, sums = [], []
        for name in names:
            if name not in stored or stored[name][0] != self.model_id:
                continue
            _, dim, _, blob = stored[name]
            problem = damage(dim, blob, state.dim)
            if problem:
                log.warning("%s: speaker %r left out: %s", self.location, name, problem)
                continue
            kept.append(name)
            sums.append(np.frombuffer(blob, dtype=np.float32))
        if not kept:
            return
        ids = np.arange(state.next_id, state.next_id + len(kept), dtype=np.int64)
        state.next_id += len(kept)
        state.index.add(ids, self._search_rows(np.stack(sums)))
        for i, name in zip(ids.tolist(), kept, strict=True):
            state.ids[name], state.names[i] = i, name

    def _search_rows(self, sums: np.ndarray) -> np.ndarray:
        models = unit_rows(sums).astype(np.float32)
        return self.scorer.search_rows(models, self.scorer.norm_stats(models))

    def rebuild(self) -> IndexState:
        """Read every speaker model of this model from the database; index them afresh."""
        started = time.perf_counter()
        conn = self.conn
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
            while batch := cursor.fetchmany(FETCH):
                good = []
                for name, row_dim, blob in batch:
                    problem = damage(row_dim, bytes(blob), dim)
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
        self.state = IndexState(
            index, version, dim, dict(zip(names, ids.tolist(), strict=True)), dict(enumerate(names))
        )
        self.state.next_id = len(names)
        log.info(
            "%s: %s index of %d speakers built in %.2f s",
            self.location,
            index.kind,
            len(names),
            time.perf_counter() - started,
        )
        return self.state
