"""The store on PostgreSQL (same interface and refusals as on SQLite), paged listings, an
O(1) /health, and two service processes sharing one PostgreSQL store.

PostgreSQL tests need $VOICEPRINT_TEST_POSTGRES (``bash scripts/postgres.sh`` prints a URL;
.ci/run sets it) and are skipped without it, except under CI where they fail."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from voiceprint.embedder import Embedder
from voiceprint.scoring import Decision
from voiceprint.service import create_app
from voiceprint.store import ModelMismatchError, SpeakerDB, UnknownSpeakerError, open_store

from .postgres import fresh_schema
from .test_onnx import make_tiny_checkpoint
from .test_service import wav_bytes

D = 16


@pytest.fixture
def postgres_url():
    with fresh_schema() as url:
        yield url


def test_same_interface_and_refusals(location) -> None:
    rng = np.random.default_rng(0)
    enroll = rng.normal(size=(3, D)).astype(np.float32)
    with open_store(location, "model-a") as a:
        assert a.enroll("alice", enroll[:2], sources=["a1.wav", "a2.wav"]) == 2
        assert a.enroll("alice", enroll[2]) == 3
        a.enroll("bob", rng.normal(size=(1, D)))
        np.testing.assert_array_equal(a.embeddings("alice"), enroll)
        probe = rng.normal(size=D)
        mean = (enroll / np.linalg.norm(enroll, axis=1, keepdims=True)).mean(0)
        want = float(mean @ probe / (np.linalg.norm(mean) * np.linalg.norm(probe)))
        assert a.verify("alice", probe).score == pytest.approx(want, abs=1e-6)
        assert [m.name for m in a.identify(enroll[0], top=2)][0] == "alice"
        assert len(a) == 2 and "bob" in a and "carol" not in a
        with pytest.raises(ValueError, match="8-dim"):
            a.enroll("alice", np.ones((1, 8)))
        with pytest.raises(ValueError, match="NUL"):  # PostgreSQL text cannot hold it
            a.enroll("eve\x00", np.ones((1, D)))
        assert a.speakers()[0].count == 3  # nothing half-written
    with SpeakerDB(location, "model-b") as b:
        with pytest.raises(ModelMismatchError, match="enrolled with model model-a, not model-b"):
            b.verify("alice", probe)
        with pytest.raises(ModelMismatchError):
            b.enroll("alice", rng.normal(size=(1, D)))
        with pytest.raises(ModelMismatchError, match="none of the 2 enrolled"):
            b.identify(probe)
        assert b.remove("bob") == 1
        with pytest.raises(UnknownSpeakerError, match="'bob' is not enrolled"):
            b.verify("bob", probe)
        assert [s.name for s in b.speakers()] == ["alice"] and len(b) == 1


def test_pages_of_speakers(location) -> None:
    rng = np.random.default_rng(1)
    names = [f"spk{i:03d}" for i in range(25)] + ["Zed", "émile", "ärger"]
    with SpeakerDB(location, "m") as db:
        db.enroll_many(names, rng.normal(size=(len(names), D)))
        pages, after = [], None
        while page := db.speakers(limit=10, after=after):
            pages.append([s.name for s in page])
            after = page[-1].name
        assert [len(p) for p in pages] == [10, 10, 8]
        assert sum(pages, []) == sorted(names) == [s.name for s in db.speakers()]


def test_a_postgres_store_on_a_wrong_url_names_it() -> None:
    with pytest.raises(ValueError, match=r"cannot connect to postgresql://nobody:\*\*\*@"):
        SpeakerDB("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2", "m")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shared_store")
    return make_tiny_checkpoint(folder / "tiny.pth", decision=Decision(0.9))


def test_service_pages_speakers_and_health_counts(tiny_model: Path, tmp_path: Path) -> None:
    embedder = Embedder.from_checkpoint(tiny_model)
    with SpeakerDB(tmp_path / "s.db", embedder.model_id) as db:
        db.enroll_many([f"s{i:02d}" for i in range(7)], np.eye(7, 32, dtype=np.float32) + 0.1)
    with TestClient(create_app(embedder, tmp_path / "s.db", rate_limit=None)) as client:
        first = client.get("/v1/speakers", params={"limit": 3}).json()
        assert [s["name"] for s in first["speakers"]] == ["s00", "s01", "s02"]
        assert first["next"] == "s02"
        rest = client.get("/v1/speakers", params={"limit": 4, "after": first["next"]}).json()
        assert [s["name"] for s in rest["speakers"]] == ["s03", "s04", "s05", "s06"]
        assert rest["next"] is None
        assert len(client.get("/v1/speakers").json()["speakers"]) == 7  # default page: 100
        assert client.get("/v1/speakers", params={"limit": 0}).status_code == 422
        assert client.get("/v1/speakers", params={"after": "s\x00"}).status_code == 422
        assert client.get("/health").json()["speakers"] == 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model: Path, url: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "voiceprint", "serve", "--model", str(model), "--db", url]
    command += ["--port", str(port), "--audit-log", "off", "--rate-limit", "0"]
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_healthy(client, port: int, process: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"service on port {port} exited: {log.read_text()[-2000:]}")
        try:
            return client.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.3)
    pytest.fail(f"service on port {port} never answered: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_two_service_processes_share_one_postgres_store(
    tiny_model: Path, postgres_url: str, tmp_path: Path
) -> None:
    """Enroll through one process, identify through the other, and back."""
    import httpx

    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"serve{i}.log" for i in range(2)]
    services = [_serve(tiny_model, postgres_url, p, g) for p, g in zip(ports, logs, strict=True)]
    one, two = (f"http://127.0.0.1:{p}" for p in ports)
    try:
        with httpx.Client(timeout=120) as client:
            for port, process, log in zip(ports, services, logs, strict=True):
                assert _wait_healthy(client, port, process, log)["speakers"] == 0
            assert "***" in logs[0].read_text() and "voiceprint-test" not in logs[0].read_text()

            def enroll(base: str, name: str, seed: int) -> None:
                files = [("file", (f"{name}.wav", wav_bytes(seed), "audio/wav"))]
                r = client.post(f"{base}/v1/enroll", data={"name": name}, files=files)
                assert r.status_code == 200, r.text

            def identify(base: str, seed: int) -> dict:
                files = {"file": ("probe.wav", wav_bytes(seed), "audio/wav")}
                r = client.post(f"{base}/v1/identify", files=files, data={"top": "3"})
                assert r.status_code == 200, r.text
                return r.json()

            enroll(one, "alice", 1)
            enroll(one, "bob", 7)
            assert identify(two, 1)["identified"] == "alice"  # enrolled through the other
            got = identify(two, 7)
            assert got["best"]["name"] == "bob" and got["gallery_size"] == 2
            assert got["best"]["score"] == pytest.approx(1.0, abs=1e-5)
            enroll(two, "carol", 11)
            assert identify(one, 11)["best"]["name"] == "carol"
            assert client.delete(f"{two}/v1/speakers/bob").status_code == 200
            assert "bob" not in [c["name"] for c in identify(one, 7)["candidates"]]
            listed = client.get(f"{one}/v1/speakers", params={"limit": 1}).json()
            assert [s["name"] for s in listed["speakers"]] == ["alice"]
            assert listed["next"] == "alice"
            assert client.get(f"{one}/health").json()["speakers"] == 2
    finally:
        for process in services:
            process.terminate()
        for process in services:
            process.wait(timeout=30)
