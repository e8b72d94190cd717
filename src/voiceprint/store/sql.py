"""The two databases the store runs on, as small adapters with one interface.

    sql = connect("speakers.db")                       # SQLite file (or ":memory:")
    sql = connect("postgresql://user:pw@host/db")      # PostgreSQL (the [postgres] extra)
    sql.execute("SELECT ... WHERE name = ?", (name,)).fetchall()

:func:`create_tables` creates the tables or upgrades them to :data:`SCHEMA_VERSION`.
The store (:mod:`voiceprint.store.db`) writes its SQL once, with ``?`` placeholders and
the syntax both databases share (``ON CONFLICT DO NOTHING``, ``IN (...)``); an adapter
differs only in how it connects, its table definitions (BLOB / BYTEA, the embedding id
column), how a write transaction starts, and its placeholders. Writers are serialised by
the store's change counter row (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the row lock of
its first ``UPDATE``), so the counter's order is the order of commits.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

SCHEMA_VERSION = 2  # 2: the change counter and change log (a version-1 store is upgraded)

_COMMON_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    version BIGINT NOT NULL,         -- the write transaction's counter value
    name TEXT                        -- the speaker it changed; NULL: too many, rebuild
);
CREATE INDEX IF NOT EXISTS changes_version ON changes(version);
CREATE INDEX IF NOT EXISTS embeddings_speaker ON embeddings(speaker);
CREATE INDEX IF NOT EXISTS speakers_model ON speakers(model_id);
"""

_SQLITE_TABLES = """
CREATE TABLE IF NOT EXISTS speakers (
    name TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    count INTEGER NOT NULL,
    unit_sum BLOB NOT NULL,          -- float32 (D,): sum of the scorer's unit embeddings
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
CREATE TABLE IF NOT EXISTS speech (  -- added later: speakers enrolled before have no row
    speaker TEXT PRIMARY KEY REFERENCES speakers(name) ON DELETE CASCADE,
    seconds REAL NOT NULL            -- net speech of the enrollment clips (s)
);
"""

_POSTGRES_TABLES = """
CREATE TABLE IF NOT EXISTS speakers (
    name TEXT COLLATE "C" PRIMARY KEY,   -- byte order, as SQLite sorts
    model_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    count INTEGER NOT NULL,
    unit_sum BYTEA NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id BIGSERIAL PRIMARY KEY,
    speaker TEXT COLLATE "C" NOT NULL REFERENCES speakers(name) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BYTEA NOT NULL,
    source TEXT,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS speech (
    speaker TEXT COLLATE "C" PRIMARY KEY REFERENCES speakers(name) ON DELETE CASCADE,
    seconds DOUBLE PRECISION NOT NULL
);
"""


def is_postgres_url(location: str | Path) -> bool:
    """Whether a ``--db`` value names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def display_location(location: str | Path) -> str:
    """``location`` fit to print: a URL's password replaced by ``***``."""
    text = str(location)
    if not is_postgres_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SQL(Protocol):
    """What the store needs of a database connection."""

    dialect: str
    location: str  # printable (no password)

    def execute(self, sql: str, params: Any = ()) -> Any: ...
    def executemany(self, sql: str, rows: Any) -> None: ...
    def begin(self, write: bool) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def schema(self) -> list[str]: ...
    def close(self) -> None: ...


def _statements(script: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


class SQLite:
    """A SQLite file (WAL: readers never block the writer) or ``":memory:"``."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        path = str(path)
        if path.startswith("sqlite:///"):
            path = path[len("sqlite:///") :]
        if path != ":memory:":
            resolved = Path(path).expanduser()
            resolved.parent.mkdir(parents=True, exist_ok=True)
            path = str(resolved)
        self.location = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA busy_timeout = 10000")
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        self.conn.executemany(sql, rows)

    def begin(self, write: bool) -> None:
        # IMMEDIATE takes the write lock now: two writers never read-then-write past
        # each other. A deferred read transaction is one snapshot (WAL).
        self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def schema(self) -> list[str]:
        return _statements(_SQLITE_TABLES + _COMMON_TABLES)

    def close(self) -> None:
        self.conn.close()


class Postgres:
    """A PostgreSQL database through psycopg 3, in autocommit mode with explicit
    transactions; ``?`` placeholders become ``%s``."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as err:
            raise ImportError(
                "a PostgreSQL store needs psycopg: pip install 'voiceprint[postgres]'"
            ) from err
        self.location = display_location(url)
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as err:
            reason = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
            raise ValueError(f"cannot connect to {self.location}: {reason}".strip()) from err

    @staticmethod
    def _translate(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(self._translate(sql), params or None)

    def executemany(self, sql: str, rows: Any) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(self._translate(sql), rows)

    def begin(self, write: bool) -> None:
        # Reads that must agree with each other (a full index rebuild) share one snapshot.
        self.conn.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def schema(self) -> list[str]:
        # Concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog: one at a time.
        lock = "SELECT pg_advisory_xact_lock(7318305)"
        return [lock, *_statements(_POSTGRES_TABLES + _COMMON_TABLES)]

    def close(self) -> None:
        self.conn.close()


def connect(location: str | Path) -> SQL:
    """The adapter for a SQLite path (or ``sqlite:///path``) or a ``postgresql://`` URL."""
    if is_postgres_url(location):
        return Postgres(str(location))
    return SQLite(location)


def create_tables(conn: SQL) -> None:
    """Create or upgrade the store's tables (idempotent; safe with concurrent openers)."""
    conn.begin(write=True)
    try:
        for statement in conn.schema():
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = SCHEMA_VERSION if row is None else int(row[0])
        if row is None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(version),))
        elif version == 1:  # the tables above are all version 2 adds
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{conn.location}: speaker store schema {version} is not {SCHEMA_VERSION}"
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
