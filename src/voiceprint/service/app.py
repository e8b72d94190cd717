"""The HTTP API and the browser page, as a FastAPI app.

    keys = KeyRing.from_file("keys.txt")    # lines: <key id> <admin|client> <secret>
    app = create_app(load_embedder("model.onnx"), "speakers.db", keys, audit_log="audit.jsonl")
    uvicorn.run(app)      # or: voiceprint serve --model model.onnx --api-key-file keys.txt

Endpoints (audio travels as multipart file uploads, any format audio.decode_bytes reads;
the role is the key an endpoint needs when keys are configured, admin keys may do all):

    GET    /health                     model id, runtime, threshold, number of speakers (O(1))
    POST   /v1/embed           client  file                  -> embedding
    POST   /v1/compare         client  first, second         -> score, llr, decision
    POST   /v1/enroll          admin   name, file (1 or more) -> count
    POST   /v1/verify          client  name, file            -> score, llr, decision
    POST   /v1/identify        client  file, top             -> candidates, best first, and
                                                                who it is (or "unknown")
    GET    /v1/speakers        admin   limit, after          -> a page of enrolled speakers
    DELETE /v1/speakers/{name} admin                         -> removed count
    POST   /v1/diarize         client  file, num_speakers,   -> who spoke when: turns with
                                       min/max_speakers         enrolled names or unknown-N
    GET    /                   the browser page (voiceprint/web), /docs the OpenAPI docs

Verify and identify are rate-limited per key (per client address without keys): 429
with Retry-After past the limit. With ``audit_log``, enroll, delete, verify and identify
each append one JSON line (time, key id, speaker, score, LLR, decision; never audio).

Scores, LLRs and decisions come from the model's scorer (``voiceprint.scoring``), the
same code evaluation measures; identification is open-set (the gallery-size threshold of
``Decision.for_gallery``). Errors are JSON ``{"detail": "..."}``: 400 bad audio (the
decoder's message naming the upload) or no speech in it, 413 audio longer than
``max_audio_seconds``, 401 missing / 403 wrong ``X-API-Key`` (or a client key on an
admin endpoint) when keys are configured, 404 unknown speaker, 409 embeddings of another
model, 413 a request body over ``max_upload_mb``, 422 missing fields, 429 too many
verify/identify requests.

This module holds the endpoints and who may call them; the response bodies are in
:mod:`voiceprint.service.schemas`, the upload limit and decoding in
:mod:`voiceprint.service.uploads`, keys, rate limits and the audit log in
:mod:`voiceprint.service.access`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from voiceprint import audio
from voiceprint.embedder import Embedder
from voiceprint.scoring import ACCEPT, OPEN_SET_PRIOR, UNKNOWN, Decision, Match
from voiceprint.service.access import AuditLog, KeyRing, RateLimit, RateLimiter
from voiceprint.service.batching import EmbeddingBatcher
from voiceprint.service.schemas import (
    Diarized,
    Embedding,
    Enrollment,
    Health,
    Identification,
    Removal,
    SpeakerList,
    Verdict,
    Verification,
)
from voiceprint.service.uploads import UploadLimit, decode_upload
from voiceprint.store import ModelMismatchError, SpeakerDB, UnknownSpeakerError

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
DEFAULT_RATE_LIMIT = RateLimit(60, 60.0)  # verify + identify per key: one a second, bursts of 60


def _caller(request: Request, x_api_key: str | None, role: str) -> str:
    """The calling key's id after checking it may act as ``role`` (401/403 otherwise)."""
    keys: KeyRing | None = request.app.state.keys
    if not keys:
        host = request.client.host if request.client else "unknown"
        return f"anonymous@{host}"
    if not x_api_key:
        raise HTTPException(401, "this endpoint needs the X-API-Key header")
    key = keys.authenticate(x_api_key)
    if key is None:
        raise HTTPException(403, "wrong API key")
    if not key.may(role):
        raise HTTPException(
            403, f"key {key.key_id!r} is a {key.role} key; this endpoint needs an admin key"
        )
    return key.key_id


KeyHeader = Annotated[str | None, Header(description="an API key, when the service has keys")]


def client_key(request: Request, x_api_key: KeyHeader = None) -> str:
    """Dependency: a client (or admin) key's id."""
    return _caller(request, x_api_key, "client")


def admin_key(request: Request, x_api_key: KeyHeader = None) -> str:
    """Dependency: an admin key's id."""
    return _caller(request, x_api_key, "admin")


def limited_client_key(request: Request, key_id: Annotated[str, Depends(client_key)]) -> str:
    """Dependency: a client key's id, within the rate limit (else 429 with Retry-After)."""
    limiter: RateLimiter | None = request.app.state.limiter
    wait = limiter.check(key_id) if limiter is not None else None
    if wait is not None:
        raise HTTPException(
            429,
            f"rate limit of {limiter.limit} reached",
            headers={"Retry-After": RateLimiter.retry_after(wait)},
        )
    return key_id


ClientKey = Annotated[str, Depends(client_key)]
AdminKey = Annotated[str, Depends(admin_key)]
LimitedKey = Annotated[str, Depends(limited_client_key)]


def create_app(
    embedder: Embedder,
    db_path: str | Path,
    keys: KeyRing | None = None,
    *,
    max_upload_mb: float = 10.0,
    decision: Decision | None = None,
    max_audio_seconds: float = 300.0,
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
    audit_log: str | Path | None = None,
    max_batch: int = 16,
) -> FastAPI:
    """The service for one model and one speaker store (``db_path``: a SQLite file, or a
    ``postgresql://`` URL that several service processes share; each request sees the
    enrollments that other processes committed before it).

    ``keys`` (when given) protect every voice endpoint (header ``X-API-Key``; roles in
    the module docstring); ``decision`` overrides the model's stored decision; uploads
    longer than ``max_audio_seconds`` of audio are refused (413); ``rate_limit`` caps
    verify and identify per key (None: no cap); ``audit_log`` is a JSON-lines file;
    concurrent requests' audio is embedded in batches of up to ``max_batch`` (1: alone).
    """
    if keys is not None and not isinstance(keys, KeyRing):
        raise TypeError(
            f"keys must be a KeyRing (KeyRing.from_file, .from_env, .parse), not "
            f"{type(keys).__name__}: a key typed as a string is not accepted"
        )
    if not max_audio_seconds > 0:
        raise ValueError(f"max_audio_seconds must be positive, got {max_audio_seconds}")
    db = SpeakerDB(db_path, embedder.model_id, embedder.scorer)
    decision = decision or embedder.decision
    limiter = RateLimiter(rate_limit) if rate_limit is not None else None
    audit = AuditLog(audit_log) if audit_log is not None else None
    batcher = EmbeddingBatcher(embedder, max_batch=max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        batcher.start()
        yield
        batcher.close()  # the audit log stays open: each line is flushed as written

    app = FastAPI(
        title="voiceprint",
        summary="Speaker verification and identification (声纹识别)",
        version="1",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.db = db
    app.state.embedder = embedder
    app.state.audit = audit
    app.state.keys = keys
    app.state.limiter = limiter

    def record(event: str, key_id: str, **fields: Any) -> None:
        if audit is not None:
            audit.record(event, key_id, **fields)

    def decode(upload: UploadFile) -> np.ndarray:
        return decode_upload(upload, embedder.sample_rate, max_audio_seconds)

    def embed_wave(wave: np.ndarray, upload: UploadFile) -> tuple[np.ndarray, float]:
        """(embedding (D,), net speech in s) of one decoded upload."""
        name = upload.filename or "upload"
        try:
            kept, seconds = embedder.measured(wave, name)
            return batcher.embed(kept, name), seconds
        except audio.AudioError as err:  # no speech, or shorter than the model's minimum
            raise HTTPException(400, str(err)) from err

    def embed(upload: UploadFile) -> tuple[np.ndarray, float]:
        return embed_wave(decode(upload), upload)

    def verdict(
        match: Match, chosen: Decision | None = None, *speech_seconds: float | None
    ) -> dict[str, Any]:
        chosen = chosen or decision
        known = [s for s in speech_seconds if s is not None]
        out = {
            "score": match.score,
            "llr": match.llr,
            "speech_seconds": min(known) if known else None,
        }
        if chosen is None:
            return {**out, "threshold": None, "accepted": None, "decision": "NO THRESHOLD"}
        answer = chosen.judge(match.llr, *speech_seconds)
        return {
            **out,
            "threshold": chosen.threshold,
            "accepted": answer == ACCEPT,
            "decision": answer.upper(),
            "speech_needed": chosen.min_speech_seconds or None,
        }

    def store_errors(err: Exception) -> HTTPException:
        if isinstance(err, UnknownSpeakerError):
            return HTTPException(404, str(err))
        if isinstance(err, ModelMismatchError):
            return HTTPException(409, str(err))
        return HTTPException(400, str(err))

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and what the service runs: model, runtime, threshold, speaker count."""
        return {
            "status": "ok",
            "model_id": embedder.model_id,
            "backend": embedder.runtime,  # "torch" / "onnxruntime" (the field keeps its name)
            "sample_rate": embedder.sample_rate,
            "embedding_dim": embedder.embedding_dim,
            "threshold": None if decision is None else decision.threshold,
            "rule": None if decision is None else decision.rule,
            "speakers": len(db),
            "api_key_required": bool(keys),
            "max_upload_mb": max_upload_mb,
            "rate_limit": None if rate_limit is None else str(rate_limit),
        }

    @app.post("/v1/embed", response_model=Embedding, tags=["audio"])
    def embed_audio(
        key_id: ClientKey, file: Annotated[UploadFile, File(description="an audio file")]
    ) -> dict:
        """The speaker embedding of one recording."""
        wave = decode(file)
        vector, _ = embed_wave(wave, file)
        return {
            "model_id": embedder.model_id,
            "seconds": len(wave) / embedder.sample_rate,
            "embedding": vector.tolist(),
        }

    @app.post("/v1/compare", response_model=Verdict, tags=["audio"])
    def compare(
        key_id: ClientKey,
        first: Annotated[UploadFile, File(description="first recording")],
        second: Annotated[UploadFile, File(description="second recording")],
    ) -> dict:
        """Are two recordings of the same speaker? Score, LLR and decision."""
        (a, a_seconds), (b, b_seconds) = embed(first), embed(second)
        scorer = embedder.scorer
        match = scorer.match(
            second.filename or "second", scorer.compare(a, b), a_seconds, b_seconds
        )
        return verdict(match, None, a_seconds, b_seconds)

    @app.post("/v1/enroll", response_model=Enrollment, tags=["store"])
    def enroll(
        key_id: AdminKey,
        name: Annotated[str, Form(description="speaker name")],
        file: Annotated[list[UploadFile], File(description="one or more recordings")],
    ) -> dict:
        """Add recordings of ``name`` to the store (appends to an enrolled speaker)."""
        embedded = [embed(f) for f in file]
        vectors = np.stack([v for v, _ in embedded])
        try:
            count = db.enroll(
                name,
                vectors,
                sources=[f.filename or "upload" for f in file],
                speech_seconds=[seconds for _, seconds in embedded],
            )
        except (ValueError, KeyError) as err:
            raise store_errors(err) from err
        record("enroll", key_id, speaker=name.strip(), added=len(file))
        return {"name": name.strip(), "added": len(file), "count": count}

    @app.post("/v1/verify", response_model=Verification, tags=["store"])
    def verify(
        key_id: LimitedKey,
        name: Annotated[str, Form(description="claimed speaker")],
        file: Annotated[UploadFile, File(description="a recording")],
    ) -> dict:
        """Is this recording spoken by ``name``? Score against the speaker's enrollment."""
        probe, seconds = embed(file)
        try:
            match = db.verify(name, probe, seconds)
            enrolled = db.speech_seconds([name.strip()])[0]
        except (ValueError, KeyError) as err:
            raise store_errors(err) from err
        result = verdict(match, None, enrolled, seconds)
        record("verify", key_id, speaker=name.strip(), **_decided(result))
        return {"name": name.strip(), **result}

    @app.post("/v1/identify", response_model=Identification, tags=["store"])
    def identify(
        key_id: LimitedKey,
        file: Annotated[UploadFile, File(description="a recording")],
        top: Annotated[int, Form(ge=1, le=100, description="candidates to return")] = 5,
    ) -> dict:
        """Who among the enrolled speakers is this? The best ``top`` candidates, each
        judged against the open-set threshold for the gallery's size, and the answer:
        the best one's name when accepted, else "unknown"."""
        probe, seconds = embed(file)
        try:
            ranked = db.identify(probe, top=top, speech_seconds=seconds)
            gallery = db.gallery_size
            enrolled = db.speech_seconds([m.name for m in ranked])
        except ModelMismatchError as err:
            raise store_errors(err) from err
        except ValueError as err:
            raise HTTPException(404, str(err)) from err
        open_set = None
        if decision is not None:  # the model's own at the open-set prior, a chosen one as is
            prior = OPEN_SET_PRIOR if decision is embedder.decision else None
            open_set = decision.for_gallery(gallery, prior)
        candidates = [
            {"name": m.name, **verdict(m, open_set, e, seconds)}
            for m, e in zip(ranked, enrolled, strict=True)
        ]
        best = candidates[0]
        first = ranked[0]
        identified = (
            open_set.name(first.name, first.llr, enrolled[0], seconds) if open_set else UNKNOWN
        )
        record(
            "identify",
            key_id,
            speaker=best["name"],
            identified=identified,
            gallery_size=gallery,
            **_decided(best),
        )
        return {
            "candidates": candidates,
            "best": best,
            "identified": identified,
            "gallery_size": gallery,
        }

    @app.get("/v1/speakers", response_model=SpeakerList, tags=["store"])
    def speakers(
        key_id: AdminKey,
        limit: Annotated[int, Query(ge=1, le=1000, description="speakers per page")] = 100,
        after: Annotated[
            str | None, Query(pattern=r"^[^\x00]*$", description="the previous page's `next`")
        ] = None,
    ) -> dict:
        """Enrolled speakers sorted by name, a page at a time, with their number of
        embeddings and model; ``next`` names where the following page starts."""
        page = db.speakers(limit=limit + 1, after=after)
        return {
            "model_id": embedder.model_id,
            "next": page[limit - 1].name if len(page) > limit else None,
            "speakers": [
                {
                    "name": s.name,
                    "count": s.count,
                    "model_id": s.model_id,
                    "same_model": s.model_id == embedder.model_id,
                }
                for s in page[:limit]
            ],
        }

    @app.delete("/v1/speakers/{name}", response_model=Removal, tags=["store"])
    def remove(key_id: AdminKey, name: str) -> dict:
        """Forget a speaker and its embeddings."""
        try:
            removed = db.remove(name)
        except (ValueError, KeyError) as err:
            raise store_errors(err) from err
        record("delete", key_id, speaker=name, removed=removed)
        return {"name": name, "removed": removed}

    @app.post("/v1/diarize", response_model=Diarized, tags=["store"])
    def diarize(
        key_id: LimitedKey,
        file: Annotated[UploadFile, File(description="a recording of one or more voices")],
        num_speakers: Annotated[int | None, Form(ge=1, le=50)] = None,
        min_speakers: Annotated[int, Form(ge=1, le=50)] = 1,
        max_speakers: Annotated[int | None, Form(ge=1, le=50)] = None,
    ) -> dict:
        """Who spoke when: turns of each voice, named after the enrolled speaker whose
        voice the decision accepts (open-set, as identify), the others unknown-1, ..."""
        if max_speakers is not None and max_speakers < min_speakers:
            raise HTTPException(422, "max_speakers is smaller than min_speakers")
        try:
            from voiceprint.diarization import Diarizer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise HTTPException(501, f"diarization needs the [diarization] extra: {err}") from err
        wave = decode(file)
        try:
            chosen = None if decision is embedder.decision else decision  # else naming's own
            result = Diarizer(embedder, db, decision=chosen)(
                wave,
                file_id=Path(file.filename or "upload").stem,
                num_speakers=num_speakers,
                min_speakers=min_speakers,
                max_speakers=max_speakers,
            )
        except ModelMismatchError as err:
            raise store_errors(err) from err
        body = result.to_json()
        record("diarize", key_id, speakers=[s.speaker for s in result.speakers])
        return {k: body[k] for k in ("duration", "num_speakers", "speakers", "segments")}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 2**20))
    return app


def _decided(verdict: dict[str, Any]) -> dict[str, Any]:
    """The audit fields of a verdict: score, LLR, threshold and decision."""
    return {k: verdict[k] for k in ("score", "llr", "threshold", "decision")}
