"""HTTP service: every endpoint, bad audio, oversize uploads, API keys, the page."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voiceprint.embedder import Embedder
from voiceprint.scoring import Decision
from voiceprint.service import create_app
from voiceprint.store import SpeakerDB
from voiceprint.synth import make_voice, synthesize_utterance

from .test_onnx import make_tiny_checkpoint

KEY = {"X-API-Key": "s3cret"}


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
    app = create_app(embedder, tmp_path / "speakers.db", api_key="s3cret", max_upload_mb=0.25)
    with TestClient(app) as test_client:
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

    listed = client.get("/v1/speakers").json()["speakers"]
    assert [(s["name"], s["count"], s["same_model"]) for s in listed] == [
        ("alice", 2, True),
        ("bob", 1, True),
    ]
    assert client.delete("/v1/speakers/bob", headers=KEY).json() == {"name": "bob", "removed": 1}
    assert [s["name"] for s in client.get("/v1/speakers").json()["speakers"]] == ["alice"]
    assert client.get("/health").json()["speakers"] == 1


def test_api_key_is_required_to_change_the_store(client: TestClient) -> None:
    files = _files(file=wav_bytes(1))
    missing = client.post("/v1/enroll", data={"name": "eve"}, files=files)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = client.post("/v1/enroll", data={"name": "eve"}, files=files, headers={"X-API-Key": "x"})
    assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong API key"
    assert client.delete("/v1/speakers/eve").status_code == 401
    assert client.delete("/v1/speakers/eve", headers={"X-API-Key": "nope"}).status_code == 403
    assert client.get("/v1/speakers").json()["speakers"] == []  # nothing was enrolled
    # Reading endpoints stay open.
    assert client.post("/v1/embed", files=files).status_code == 200


def test_no_key_configured_means_open_store(embedder: Embedder, tmp_path: Path) -> None:
    with TestClient(create_app(embedder, tmp_path / "open.db")) as open_client:
        r = open_client.post("/v1/enroll", data={"name": "eve"}, files=_files(file=wav_bytes(1)))
        assert r.status_code == 200
        assert open_client.get("/health").json()["api_key_required"] is False


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
    assert client.get("/v1/speakers").json()["speakers"][0]["same_model"] is False


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


def test_no_speech_is_400_and_long_audio_is_413(embedder: Embedder, tmp_path: Path) -> None:
    app = create_app(embedder, tmp_path / "s.db", max_upload_mb=5, max_audio_seconds=2.0)
    buffer = io.BytesIO()
    hiss = 0.01 * np.random.default_rng(0).standard_normal(24_000)  # no voice in it
    sf.write(buffer, hiss.astype(np.float32), 16000, format="WAV")
    with TestClient(app) as client:
        r = client.post("/v1/embed", files=_files(file=buffer.getvalue()))
        assert r.status_code == 400 and "file.wav: no speech found" in r.json()["detail"]
        r = client.post("/v1/embed", files=_files(file=wav_bytes(1, seconds=3.0)))
        assert r.status_code == 413 and "longer than this service accepts" in r.json()["detail"]
        assert client.post("/v1/embed", files=_files(file=wav_bytes(1))).status_code == 200
