"""HTTP service (FastAPI): ``create_app(embedder, db_path)``; needs the [serve] extra."""

from voiceprint.service.app import create_app

__all__ = ["create_app"]
