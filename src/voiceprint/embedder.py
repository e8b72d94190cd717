"""Turn audio into speaker embeddings with a trained model.

    emb = Embedder.from_checkpoint("exp/lab/xvector_gap_softmax_checkpoint.pth")
    vector = emb.embed(wave, sr)          # (D,) float32
    matrix = emb.embed_files(paths)       # (N, D) float32, batched, with a progress bar

Features are rebuilt from the checkpoint's own settings, so training, evaluation and
serving compute them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from voiceprint import audio
from voiceprint.config import ExperimentConfig, from_dict
from voiceprint.features import build_frontend
from voiceprint.models import build_model
from voiceprint.training.checkpoint import load_checkpoint


@dataclass
class Decision:
    """A verification threshold chosen at evaluation time.

    ``rule`` is "eer" (threshold at the EER point) or "far" (at false-accept rate ``far``).
    """

    threshold: float
    rule: str = "eer"
    far: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "rule": self.rule, "far": self.far}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Decision:
        return cls(float(values["threshold"]), values.get("rule", "eer"), values.get("far"))


class SpeakerEncoder(torch.nn.Module):
    """Front-end + encoder in one module: waveform (B, N) [+ lengths] -> embeddings (B, D)."""

    def __init__(self, frontend: torch.nn.Module, model: torch.nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.frontend(wave, lengths)
        frames = None if lengths is None else self.frontend.num_frames(lengths)
        return self.model(feats, frames)


class Embedder:
    """Waveforms in, embeddings out, for one trained model (torch backend)."""

    def __init__(
        self,
        encoder: SpeakerEncoder,
        *,
        sample_rate: int,
        model_id: str,
        decision: Decision | None = None,
        config: ExperimentConfig | None = None,
        max_seconds: float = 0.0,
        device: str = "cpu",
    ) -> None:
        self.encoder = encoder.to(device).eval()
        self.sample_rate = sample_rate
        self.model_id = model_id
        self.decision = decision
        self.config = config
        self.max_seconds = max_seconds
        self.device = device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Embedder:
        """Rebuild front-end and encoder from a checkpoint alone."""
        payload = load_checkpoint(path)
        config = from_dict(payload["config"])
        frontend = build_frontend(config.features)
        model = build_model(config.model, frontend.dim)
        model.load_state_dict(payload["model"])
        decision = payload.get("decision")
        return cls(
            SpeakerEncoder(frontend, model),
            sample_rate=config.features.sample_rate,
            model_id=payload["model_id"],
            decision=Decision.from_dict(decision) if decision else None,
            config=config,
            max_seconds=config.eval.max_seconds,
            device=device,
        )

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.model.embedding_dim)

    def _crop(self, wave: np.ndarray) -> np.ndarray:
        if self.max_seconds > 0:
            return wave[: int(self.max_seconds * self.sample_rate)]
        return wave

    @torch.inference_mode()
    def embed_batch(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Embed 16 kHz mono waveforms of any lengths at once -> (N, D) float32."""
        waves = [self._crop(w) for w in waves]
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
        batch = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        out = self.encoder(batch.to(self.device), lengths.to(self.device))
        return out.float().cpu().numpy()

    def embed(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """One waveform (N,) or (N, C) at rate ``sr`` -> embedding (D,)."""
        wave = audio.prepare(wave, sr, self.sample_rate)
        return self.embed_batch([wave])[0]

    def embed_file(self, path: str | Path) -> np.ndarray:
        """One audio file -> embedding (D,); AudioError names the file on bad input."""
        return self.embed_batch([audio.load(path, self.sample_rate)])[0]

    def embed_files(
        self,
        paths: Sequence[str | Path],
        *,
        batch_seconds: float = 120.0,
        progress: bool = True,
        loader: Any = None,
    ) -> np.ndarray:
        """Many files -> (N, D), batched by total duration, in input order.

        ``loader(path) -> wave`` replaces :func:`audio.load` (e.g. a decoded-audio cache).
        """
        load = loader or (lambda p: audio.load(p, self.sample_rate))
        out = np.zeros((len(paths), self.embedding_dim), dtype=np.float32)
        batch: list[np.ndarray] = []
        index: list[int] = []
        budget = batch_seconds * self.sample_rate
        for i, path in enumerate(tqdm(paths, desc="embedding", unit="utt", disable=not progress)):
            wave = self._crop(load(path))
            if batch and (len(batch) + 1) * max(len(wave), *(len(b) for b in batch)) > budget:
                out[index] = self.embed_batch(batch)
                batch, index = [], []
            batch.append(wave)
            index.append(i)
        if batch:
            out[index] = self.embed_batch(batch)
        return out
