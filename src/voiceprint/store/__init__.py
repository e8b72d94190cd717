"""The speaker store: SQLite (the embedded default) or PostgreSQL behind one interface.

    db = SpeakerDB("speakers.db", embedder.model_id, embedder.scorer)          # SQLite file
    db = SpeakerDB("postgresql://user:pw@host/db", embedder.model_id, embedder.scorer)

``db.py`` holds the store's logic (one class for both databases), ``sql.py`` the two
small connection adapters that differ in dialect, ``index.py`` the faiss search that
identification uses (exact below :data:`APPROXIMATE_FROM` speakers, IVF above).
"""

from voiceprint.store.db import (
    REENROLL_HOW,
    SCHEMA_VERSION,
    ModelMismatchError,
    SpeakerDB,
    SpeakerInfo,
    UnknownSpeakerError,
    open_store,
)
from voiceprint.store.index import APPROXIMATE_FROM, SpeakerIndex
from voiceprint.store.sql import display_location, is_postgres_url

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
