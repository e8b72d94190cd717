"""Embedding requests that arrive together are embedded together.

The service's endpoints run in a thread pool; each hands its wave to one
:class:`EmbeddingBatcher`, whose worker thread takes every wave waiting (up to
``max_batch``, after at most ``max_wait_ms`` for company) and embeds them in one padded
batch. On 2 cores one batch of 8 clips costs far less than 8 single calls (the encoder's
matrix products get wider, the per-call overhead is paid once), so throughput rises with
concurrency instead of every request fighting for the same cores. Padding does not change
an embedding (the models mask padded frames), so a request gets the same vector alone or
in a batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_STOP = object()


class EmbeddingBatcher:
    """``embed(wave, name)`` from any thread; one worker thread runs the batches.

    ``embedder`` is anything with ``embed_batch(waves, names) -> (N, D)``. A batch that
    fails (one wave too short, say) is retried one wave at a time, so each request gets
    its own result or its own error.
    """

    def __init__(self, embedder: Any, max_batch: int = 16, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.batches = 0  # batches run so far (tests and /health read it)
        self.items = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Start the worker thread (again, after :meth:`close`)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._work, name="embedding-batcher", daemon=True
            )
            self._thread.start()

    def embed(self, wave: np.ndarray, name: str = "upload") -> np.ndarray:
        """The embedding (D,) of ``wave``; raises what ``embed_batch`` raises for it."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the embedding batcher is closed")
        future: Future = Future()
        self._queue.put((wave, name, future))
        return future.result()

    def close(self) -> None:
        """Stop the worker after the waves already queued."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=30)

    def _collect(self, first: tuple) -> tuple[list[tuple], bool]:
        """``first`` and whatever else arrives within ``max_wait``; (batch, stop seen)."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _work(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            batch, stop = self._collect(item)
            self._run(batch)

    def _run(self, batch: list[tuple]) -> None:
        waves = [w for w, _, _ in batch]
        names = [n for _, n, _ in batch]
        self.batches += 1
        self.items += len(batch)
        try:
            vectors = self.embedder.embed_batch(waves, names)
        except Exception as err:  # noqa: BLE001 - find whose wave failed, one at a time
            if len(batch) == 1:
                batch[0][2].set_exception(err)
                return
            for wave, name, future in batch:
                self._run_one(wave, name, future)
            return
        for (_, _, future), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)

    def _run_one(self, wave: np.ndarray, name: str, future: Future) -> None:
        try:
            future.set_result(self.embedder.embed_batch([wave], [name])[0])
        except Exception as err:  # noqa: BLE001 - handed to the waiting request
            future.set_exception(err)
