"""Uploads: the request-size limit and the decoding of an uploaded recording.

    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 2**20))   # 413 past it
    wave = decode_upload(upload, sample_rate, max_seconds)                # 400 / 413

A body over the limit is refused before it is read whole; an upload is decoded by
:func:`voiceprint.audio.decode_bytes` (any format it reads), its duration checked from
the header before decoding: undecodable audio is a 400, audio longer than
``max_seconds`` a 413, each with the decoder's message naming the upload.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import HTTPException, UploadFile
from fastapi.responses import JSONResponse

from voiceprint import audio


class UploadLimit:
    """ASGI middleware: answer 413 when a request body exceeds ``max_bytes``.

    Checks the declared Content-Length first, then counts the bytes actually received
    (chunked uploads), buffering at most ``max_bytes`` before handing the body on.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: dict, receive: Any, send: Any) -> None:
        limit = self.max_bytes / 2**20
        response = JSONResponse(
            {"detail": f"request body larger than the upload limit of {limit:g} MB"},
            status_code=413,
        )
        await response(scope, receive, send)


def decode_upload(upload: UploadFile, sample_rate: int, max_seconds: float) -> np.ndarray:
    """The upload as float32 mono at ``sample_rate`` (HTTP 413 when longer than
    ``max_seconds``, 400 when it is not audio)."""
    data = upload.file.read()
    name = upload.filename or "upload"
    try:  # the duration is checked from the header, before decoding
        return audio.decode_bytes(data, sample_rate, name=name, max_seconds=max_seconds)
    except audio.AudioTooLongError as err:
        raise HTTPException(413, str(err)) from err
    except audio.AudioError as err:
        raise HTTPException(400, str(err)) from err
