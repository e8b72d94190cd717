"""The service's embedding batcher: concurrent requests are embedded together, each gets
its own vector (the one it gets alone) or its own error."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voiceprint.audio import AudioError
from voiceprint.embedder import Embedder
from voiceprint.scoring import Decision
from voiceprint.service.batching import EmbeddingBatcher

from .test_onnx import make_tiny_checkpoint


class CountingEmbedder:
    """Wraps an embedder and records the size of each batch it is asked for."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.sizes: list[int] = []

    def embed_batch(self, waves, names=None):
        self.sizes.append(len(waves))
        return self.embedder.embed_batch(waves, names)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("b") / "tiny.pth", decision=Decision(0.5))
    return Embedder.from_checkpoint(path)


def test_concurrent_requests_share_batches_and_get_their_own_vectors(embedder) -> None:
    rng = np.random.default_rng(0)
    waves = [
        0.1 * rng.standard_normal(int(16000 * s)).astype(np.float32)
        for s in rng.uniform(0.5, 2.0, 24)
    ]
    alone = [embedder.embed_batch([w])[0] for w in waves]
    counting = CountingEmbedder(embedder)
    batcher = EmbeddingBatcher(counting, max_batch=8, max_wait_ms=50.0)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(waves))

    def request(i: int) -> None:
        start.wait()
        results[i] = batcher.embed(waves[i], f"clip{i}")

    threads = [threading.Thread(target=request, args=(i,)) for i in range(len(waves))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for i, vector in enumerate(alone):
        np.testing.assert_allclose(results[i], vector, atol=1e-5)
    assert sum(counting.sizes) == len(waves) and max(counting.sizes) <= 8
    assert len(counting.sizes) < len(waves)  # some requests were embedded together


def test_one_bad_wave_fails_only_its_own_request(embedder) -> None:
    batcher = EmbeddingBatcher(embedder, max_batch=4, max_wait_ms=100.0)
    good = 0.1 * np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    out: dict[str, object] = {}

    def request(name: str, wave: np.ndarray) -> None:
        try:
            out[name] = batcher.embed(wave, name)
        except AudioError as err:
            out[name] = err

    threads = [
        threading.Thread(target=request, args=("good.wav", good)),
        threading.Thread(target=request, args=("tiny.wav", good[:10])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert isinstance(out["good.wav"], np.ndarray)
    assert isinstance(out["tiny.wav"], AudioError) and "tiny.wav" in str(out["tiny.wav"])
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed(good)
