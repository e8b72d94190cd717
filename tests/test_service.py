"""HTTP service: every endpoint, bad audio, oversize uploads, keys, roles, rate limits,
the audit log, the page."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voiceprint.embedder import Embedder
from voiceprint.scoring import Decision
from voiceprint.service import create_app
from voiceprint.service.access import KeyRing, RateLimit
from voiceprint.store import SpeakerDB
from voiceprint.synth import make_voice, synthesize_utterance

from .test_audio import flac_bomb
from .test_onnx import make_tiny_checkpoint

ADMIN_SECRET = "admin-secret-0123456789"
CLIENT_SECRET = "client-secret-0123456789"
KEYS = KeyRing.parse(f"ops admin {ADMIN_SECRET}\napp client {CLIENT_SECRET}", "test keys")
KEY = {"X-API-Key": ADMIN_SECRET}
CLIENT = {"X-API-Key": CLIENT_SECRET}


def wav_bytes(seed: int, seconds: float = 1.5, rate: int = 16000) -> bytes:
    """A synthetic voice (one per seed) speaking ``seconds``, as WAV bytes."""
    rng = np.random.default_rng(seed)
    wave = synthesize_utterance(make_voice(rng), seconds, rng, sample_rate=rate)
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    folder = tmp_path_factory.mktemp("service")
    checkpoint = make_tiny_checkpoint(folder / "tiny.pth", decision=Decision(0.9))
    return Embedder.from_checkpoint(checkpoint)


@pytest.fixture
def client(embedder: Embedder, tmp_path: Path) -> TestClient:
    """A service with keys; requests carry the client key unless they say otherwise."""
    app = create_app(
        embedder,
        tmp_path / "speakers.db",
        KEYS,
        max_upload_mb=0.25,
        audit_log=tmp_path / "audit.jsonl",
    )
    with TestClient(app, headers=CLIENT) as test_client:
        yield test_client


def _files(**named: bytes) -> dict:
    return {field: (f"{field}.wav", data, "audio/wav") for field, data in named.items()}


def test_health_and_page(client: TestClient, embedder: Embedder) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["model_id"] == embedder.model_id
    assert health["backend"] == "torch" and health["embedding_dim"] == 32
    assert health["threshold"] == 0.9 and health["speakers"] == 0
    assert health["api_key_required"] is True
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="record"' in page.text and "/static/app.js" in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "getUserMedia" in script.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/embed", "/v1/compare", "/v1/enroll", "/v1/verify", "/v1/identify"):
        assert "post" in paths[path]
    assert "delete" in paths["/v1/speakers/{name}"]


def test_embed_matches_the_python_api(client: TestClient, embedder: Embedder, tmp_path) -> None:
    data = wav_bytes(1)
    body = client.post("/v1/embed", files=_files(file=data)).json()
    (tmp_path / "a.wav").write_bytes(data)
    assert body["model_id"] == embedder.model_id
    assert body["seconds"] == pytest.approx(1.5)
    np.testing.assert_allclose(
        body["embedding"], embedder.embed_file(tmp_path / "a.wav"), atol=1e-5
    )


def test_compare(client: TestClient) -> None:
    same = client.post("/v1/compare", files=_files(first=wav_bytes(1), second=wav_bytes(1))).json()
    assert same["score"] == pytest.approx(1.0, abs=1e-5)
    assert same["accepted"] is True and same["decision"] == "ACCEPT"
    assert same["threshold"] == 0.9
    other = client.post("/v1/compare", files=_files(first=wav_bytes(1), second=wav_bytes(7)))
    assert other.json()["score"] < 1.0


def test_enroll_verify_identify_speakers_delete(
    client: TestClient, embedder: Embedder, tmp_path: Path
) -> None:
    files = [("file", ("a1.wav", wav_bytes(1), "audio/wav")), ("file", ("a2.wav", wav_bytes(2)))]
    r = client.post("/v1/enroll", data={"name": "alice"}, files=files, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "alice", "added": 2, "count": 2}
    r = client.post(
        "/v1/enroll", data={"name": "bob"}, files=_files(file=wav_bytes(7)), headers=KEY
    )
    assert r.json()["count"] == 1

    verify = client.post("/v1/verify", data={"name": "alice"}, files=_files(file=wav_bytes(3)))
    body = verify.json()
    # The score is the store's cosine against alice's mean enrollment embedding.
    (tmp_path / "p.wav").write_bytes(wav_bytes(3))
    with SpeakerDB(client.app.state.db.path, embedder.model_id) as db:
        expected = db.verify("alice", embedder.embed_file(tmp_path / "p.wav")).score
    assert body["name"] == "alice"
    assert body["score"] == pytest.approx(expected, abs=1e-5)
    assert body["decision"] == ("ACCEPT" if expected >= 0.9 else "REJECT")

    ident = client.post("/v1/identify", files=_files(file=wav_bytes(7)), data={"top": "2"}).json()
    assert [c["name"] for c in ident["candidates"]][0] == "bob"
    assert ident["best"]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(ident["candidates"]) == 2
    assert ident["candidates"][0]["score"] >= ident["candidates"][1]["score"]
    # Open set among 2 speakers: an uncalibrated model's threshold is used as it is.
    assert ident["gallery_size"] == 2 and ident["identified"] == "bob"

    listed = client.get("/v1/speakers", headers=KEY).json()["speakers"]
    assert [(s["name"], s["count"], s["same_model"]) for s in listed] == [
        ("alice", 2, True),
        ("bob", 1, True),
    ]
    assert client.delete("/v1/speakers/bob", headers=KEY).json() == {"name": "bob", "removed": 1}
    assert [s["name"] for s in client.get("/v1/speakers", headers=KEY).json()["speakers"]] == [
        "alice"
    ]
    assert client.get("/health").json()["speakers"] == 1


VOICE_ENDPOINTS = [  # (method, path, role it needs)
    ("post", "/v1/embed", "client"),
    ("post", "/v1/compare", "client"),
    ("post", "/v1/verify", "client"),
    ("post", "/v1/identify", "client"),
    ("post", "/v1/enroll", "admin"),
    ("get", "/v1/speakers", "admin"),
    ("delete", "/v1/speakers/alice", "admin"),
]


@pytest.mark.parametrize(("method", "path", "role"), VOICE_ENDPOINTS)
def test_every_voice_endpoint_needs_the_right_key(
    client: TestClient, method: str, path: str, role: str
) -> None:
    missing = client.request(method, path, headers={"X-API-Key": ""})
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = client.request(method, path, headers={"X-API-Key": "not-a-key-of-this-service"})
    assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong API key"
    as_client = client.request(method, path, headers=CLIENT)
    as_admin = client.request(method, path, headers=KEY)
    if role == "admin":
        assert as_client.status_code == 403 and "needs an admin key" in as_client.json()["detail"]
    else:  # past the key check: the empty request fails on its fields
        assert as_client.status_code == 422
    assert as_admin.status_code in (200, 404, 422)  # admin keys may do everything
    assert client.get("/health", headers={"X-API-Key": ""}).status_code == 200


def test_keys_are_refused_without_effect(client: TestClient) -> None:
    files = _files(file=wav_bytes(1))
    assert client.post("/v1/enroll", data={"name": "eve"}, files=files).status_code == 403
    assert client.get("/v1/speakers", headers=KEY).json()["speakers"] == []  # nothing enrolled
    assert not (client.app.state.audit.path.read_text(encoding="utf-8")).strip()


def test_no_key_configured_means_open_service(embedder: Embedder, tmp_path: Path) -> None:
    with TestClient(create_app(embedder, tmp_path / "open.db")) as open_client:
        r = open_client.post("/v1/enroll", data={"name": "eve"}, files=_files(file=wav_bytes(1)))
        assert r.status_code == 200
        assert open_client.get("/v1/speakers").status_code == 200
        assert open_client.get("/health").json()["api_key_required"] is False


def test_rate_limit_answers_429_with_retry_after(embedder: Embedder, tmp_path: Path) -> None:
    app = create_app(embedder, tmp_path / "r.db", KEYS, rate_limit=RateLimit(3, 3600.0))
    with TestClient(app, headers=CLIENT) as client:
        client.post("/v1/enroll", data={"name": "a"}, files=_files(file=wav_bytes(1)), headers=KEY)
        probe = _files(file=wav_bytes(2))
        codes = [
            client.post("/v1/verify", data={"name": "a"}, files=probe).status_code,
            client.post("/v1/identify", files=probe).status_code,
            client.post("/v1/verify", data={"name": "a"}, files=probe).status_code,
        ]
        assert codes == [200, 200, 200]
        limited = client.post("/v1/identify", files=probe)
        assert limited.status_code == 429 and "rate limit of 3 per 3600 s" in limited.text
        assert 1 <= int(limited.headers["Retry-After"]) <= 1200
        # The limit is per key: the admin key has its own bucket; embedding is not limited.
        assert client.post("/v1/identify", files=probe, headers=KEY).status_code == 200
        assert client.post("/v1/embed", files=probe).status_code == 200


def test_audit_log_holds_one_line_per_decision(client: TestClient) -> None:
    client.post("/v1/enroll", data={"name": "alice"}, files=_files(file=wav_bytes(1)), headers=KEY)
    client.post("/v1/verify", data={"name": "alice"}, files=_files(file=wav_bytes(1)))
    client.post("/v1/identify", files=_files(file=wav_bytes(7)))
    client.post("/v1/compare", files=_files(first=wav_bytes(1), second=wav_bytes(2)))  # no line
    client.post("/v1/verify", data={"name": "nobody"}, files=_files(file=wav_bytes(1)))  # 404
    client.delete("/v1/speakers/alice", headers=KEY)
    text = client.app.state.audit.path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(x["event"], x["key_id"], x["speaker"]) for x in lines] == [
        ("enroll", "ops", "alice"),
        ("verify", "app", "alice"),
        ("identify", "app", "alice"),
        ("delete", "ops", "alice"),
    ]
    verify = lines[1]
    assert verify["score"] == pytest.approx(1.0, abs=1e-5) and verify["decision"] == "ACCEPT"
    assert lines[2]["gallery_size"] == 1 and lines[2]["identified"] in ("alice", "unknown")
    assert lines[0]["added"] == 1 and lines[3]["removed"] == 1
    assert ADMIN_SECRET not in text and CLIENT_SECRET not in text
    assert all(len(json.dumps(x)) < 400 for x in lines)  # decisions only: no audio, no vectors


def test_bad_audio_is_a_clear_400(client: TestClient) -> None:
    junk = {"file": ("notes.txt", b"this is not audio at all", "text/plain")}
    r = client.post("/v1/embed", files=junk)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("notes.txt: cannot decode as audio")
    empty = client.post(
        "/v1/verify", data={"name": "x"}, files={"file": ("e.wav", b"", "audio/wav")}
    )
    assert empty.status_code == 400 and "empty upload" in empty.json()["detail"]
    short = wav_bytes(1, seconds=0.02)
    r = client.post("/v1/compare", files=_files(first=short, second=wav_bytes(1)))
    assert r.status_code == 400 and "too short" in r.json()["detail"]
    r = client.post("/v1/enroll", data={"name": "x"}, files=junk, headers=KEY)
    assert r.status_code == 400


def test_missing_fields_and_unknown_speakers(client: TestClient, embedder: Embedder) -> None:
    assert client.post("/v1/verify", files=_files(file=wav_bytes(1))).status_code == 422
    assert client.post("/v1/embed").status_code == 422
    r = client.post("/v1/verify", data={"name": "nobody"}, files=_files(file=wav_bytes(1)))
    assert r.status_code == 404 and "'nobody' is not enrolled" in r.json()["detail"]
    r = client.post("/v1/identify", files=_files(file=wav_bytes(1)))
    assert r.status_code == 404 and "no speakers" in r.json()["detail"]
    assert client.delete("/v1/speakers/nobody", headers=KEY).status_code == 404
    r = client.post("/v1/identify", files=_files(file=wav_bytes(1)), data={"top": "0"})
    assert r.status_code == 422


def test_speakers_of_another_model_are_refused(client: TestClient) -> None:
    with SpeakerDB(client.app.state.db.path, "another-model") as other:
        other.enroll("carol", np.ones((1, 32), dtype=np.float32))
    r = client.post("/v1/verify", data={"name": "carol"}, files=_files(file=wav_bytes(1)))
    assert r.status_code == 409 and "another-model" in r.json()["detail"]
    r = client.post(
        "/v1/enroll", data={"name": "carol"}, files=_files(file=wav_bytes(1)), headers=KEY
    )
    assert r.status_code == 409
    assert client.get("/v1/speakers", headers=KEY).json()["speakers"][0]["same_model"] is False


def test_oversize_upload_is_413(client: TestClient) -> None:
    big = wav_bytes(1, seconds=10.0)  # 320 kB > 0.25 MB
    r = client.post("/v1/embed", files=_files(file=big))
    assert r.status_code == 413 and "0.25 MB" in r.json()["detail"]
    r = client.post("/v1/enroll", data={"name": "x"}, files=_files(file=big), headers=KEY)
    assert r.status_code == 413

    # A chunked body without Content-Length is counted as it arrives.
    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    r = client.post("/v1/embed", content=chunks(), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 413
    assert client.post("/v1/embed", files=_files(file=wav_bytes(1, seconds=2.0))).status_code == 200


def test_a_flac_bomb_is_refused_before_decoding(embedder: Embedder, tmp_path: Path) -> None:
    """364 kB of FLAC holding two hours: 413 from the header, in well under a second."""
    bomb = flac_bomb(tmp_path / "bomb.flac").read_bytes()
    app = create_app(embedder, tmp_path / "s.db", max_upload_mb=1)  # 300 s of audio at most
    with TestClient(app) as client:
        files = {"file": ("bomb.flac", bomb, "audio/flac")}
        started = time.perf_counter()
        r = client.post("/v1/verify", data={"name": "alice"}, files=files)
        elapsed = time.perf_counter() - started
    assert r.status_code == 413, r.text
    assert elapsed < 1.0  # decoding it whole took 16 s of CPU and 1.8 GB
    assert r.json()["detail"] == "bomb.flac: 7200.0 s of audio is longer than the 300 s accepted"


def test_no_speech_is_400_and_long_audio_is_413(embedder: Embedder, tmp_path: Path) -> None:
    app = create_app(embedder, tmp_path / "s.db", max_upload_mb=5, max_audio_seconds=2.0)
    buffer = io.BytesIO()
    hiss = 0.01 * np.random.default_rng(0).standard_normal(24_000)  # no voice in it
    sf.write(buffer, hiss.astype(np.float32), 16000, format="WAV")
    with TestClient(app) as client:
        r = client.post("/v1/embed", files=_files(file=buffer.getvalue()))
        assert r.status_code == 400 and "file.wav: no speech found" in r.json()["detail"]
        r = client.post("/v1/embed", files=_files(file=wav_bytes(1, seconds=3.0)))
        assert (
            r.status_code == 413 and "3.0 s of audio is longer than the 2 s" in r.json()["detail"]
        )
        assert client.post("/v1/embed", files=_files(file=wav_bytes(1))).status_code == 200
