"""The speaker store: SQLite (the embedded default) or PostgreSQL behind one interface.

    db = SpeakerDB("speakers.db", embedder.model_id, embedder.scorer)          # SQLite file
    db = SpeakerDB("postgresql://user:pw@host/db", embedder.model_id, embedder.scorer)

One job per file: ``db.py`` the store and its queries (one class for both databases),
``sql.py`` the tables and the two small connection adapters that differ in
dialect, ``index.py`` the faiss search that identification uses (exact below
:data:`APPROXIMATE_FROM` speakers, IVF above), ``sync.py`` the change log that keeps that
index in step with the database, ``backup.py`` the export file, ``rows.py`` the checks
on stored rows, ``errors.py`` the errors users see.
"""

from voiceprint.store.db import SpeakerDB, SpeakerInfo, open_store
from voiceprint.store.errors import REENROLL_HOW, ModelMismatchError, UnknownSpeakerError
from voiceprint.store.index import APPROXIMATE_FROM, SpeakerIndex
from voiceprint.store.sql import SCHEMA_VERSION, display_location, is_postgres_url

__all__ = [
    "APPROXIMATE_FROM",
    "REENROLL_HOW",
    "SCHEMA_VERSION",
    "ModelMismatchError",
    "SpeakerDB",
    "SpeakerIndex",
    "SpeakerInfo",
    "UnknownSpeakerError",
    "display_location",
    "is_postgres_url",
    "open_store",
]
