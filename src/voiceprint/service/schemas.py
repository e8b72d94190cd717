"""The service's response bodies, as pydantic models (they make the OpenAPI schema at /docs).

A verdict carries the score, the LLR, the threshold and the decision (ACCEPT, REJECT,
NOT ENOUGH SPEECH or NO THRESHOLD), with the net speech judged and the least the
decision needs; verification, identification candidates and diarization build on it.
"""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    status: str
    model_id: str
    backend: str  # the runtime, "torch" or "onnxruntime" (the name is kept)
    sample_rate: int
    embedding_dim: int
    threshold: float | None
    rule: str | None
    speakers: int
    api_key_required: bool
    max_upload_mb: float
    rate_limit: str | None


class Embedding(BaseModel):
    model_id: str
    seconds: float
    embedding: list[float]


class Verdict(BaseModel):
    score: float
    llr: float  # calibrated log-likelihood ratio (the score, for an uncalibrated model)
    threshold: float | None
    accepted: bool | None
    decision: str  # ACCEPT | REJECT | NOT ENOUGH SPEECH | NO THRESHOLD
    # net speech (s) of the recording(s) judged (the shorter side), and the least the
    # decision needs to answer; below it the decision is NOT ENOUGH SPEECH, never ACCEPT
    speech_seconds: float | None = None
    speech_needed: float | None = None


class Verification(Verdict):
    name: str


class Candidate(Verdict):
    name: str


class Identification(BaseModel):
    candidates: list[Candidate]
    best: Candidate
    identified: str  # the best candidate's name when accepted, else "unknown"
    gallery_size: int


class Enrollment(BaseModel):
    name: str
    added: int
    count: int


class Speaker(BaseModel):
    name: str
    count: int
    model_id: str
    same_model: bool


class SpeakerList(BaseModel):
    model_id: str
    speakers: list[Speaker]
    next: str | None = None  # pass as ?after= for the next page; None on the last page


class Removal(BaseModel):
    name: str
    removed: int


class DiarizedSpeaker(BaseModel):
    speaker: str  # the enrolled name, or unknown-N
    name: str  # the enrolled name, or "unknown"
    score: float | None  # the best enrolled match's score and LLR (None: nobody enrolled)
    llr: float | None
    best_match: str | None
    seconds: float


class Turn(BaseModel):
    start: float
    end: float
    speaker: str
    name: str | None
    score: float | None
    llr: float | None


class Diarized(BaseModel):
    duration: float
    num_speakers: int
    speakers: list[DiarizedSpeaker]
    segments: list[Turn]
