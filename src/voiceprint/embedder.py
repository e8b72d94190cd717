"""Turn audio into speaker embeddings with a trained model.

    emb = Embedder.from_checkpoint("exp/lab/xvector_gap_softmax_checkpoint.pth")
    vector = emb.embed(wave, sr)          # (D,) float32
    matrix = emb.embed_files(paths)       # (N, D) float32, batched, with a progress bar

    emb = load_embedder("model.onnx")     # checkpoint, experiment folder or ONNX file

Features are rebuilt from the checkpoint's own settings, so training, evaluation and
serving compute them the same way. An ONNX file (``voiceprint export``) holds front-end
and encoder in one graph and runs on onnxruntime (:class:`OnnxEmbedder`) without torch
doing any work.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from voiceprint import audio, metrics
from voiceprint.config import ExperimentConfig, from_dict
from voiceprint.features import build_frontend
from voiceprint.models import build_model
from voiceprint.training.checkpoint import load_checkpoint

# Default false-accept rates of Decision.from_scores (see Decision.far_points).
FAR_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass
class Decision:
    """A verification threshold chosen at evaluation time; accept when score >= threshold.

    ``rule`` is "eer" (threshold at the EER point) or "far" (at false-accept rate ``far``).
    ``far_points``, when evaluation recorded them, are (far, threshold) pairs measured on
    its non-target trials, ascending in far, from which :meth:`at_far` picks a threshold
    for any false-accept rate in their range. Stored as ``far_thresholds``, a mapping
    from the rate as text ("0.01") to its threshold.
    """

    threshold: float
    rule: str = "eer"
    far: float | None = None
    far_points: list[tuple[float, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "rule": self.rule, "far": self.far}
        if self.far_points:
            out["far_thresholds"] = {f"{f:g}": float(t) for f, t in self.far_points}
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Decision:
        table = values.get("far_thresholds") or {}
        points = sorted((float(f), float(t)) for f, t in table.items())
        return cls(
            float(values["threshold"]),
            values.get("rule", "eer"),
            values.get("far"),
            points or None,
        )

    @classmethod
    def from_scores(
        cls, threshold: float, nontarget: np.ndarray, grid: Sequence[float] = FAR_GRID
    ) -> Decision:
        """The EER ``threshold`` plus far_points from non-target scores.

        Only rates that allow at least one false accept among the ``n`` non-target trials
        (``far * n >= 1``) are kept: smaller ones cannot be measured on this many trials.
        """
        nontarget = np.asarray(nontarget, dtype=np.float64)
        points = [
            (float(far), metrics.threshold_at_far(nontarget, far))
            for far in grid
            if far * nontarget.size >= 1.0
        ]
        return cls(float(threshold), "eer", None, points or None)

    def at_far(self, far: float) -> Decision:
        """The decision at false-accept rate ``far``, interpolated in log(far).

        Raises ValueError when no far_points were recorded or ``far`` is outside them.
        """
        if not self.far_points:
            raise ValueError(
                "this model carries no false-accept calibration (re-run evaluation with this "
                "version); use --threshold or the stored EER threshold"
            )
        fars = np.array([f for f, _ in self.far_points])
        thresholds = np.array([t for _, t in self.far_points])
        if not fars[0] <= far <= fars[-1]:
            raise ValueError(
                f"false-accept rate {far:g} is outside the calibrated range "
                f"{fars[0]:g}..{fars[-1]:g} measured at evaluation"
            )
        threshold = float(np.interp(np.log(far), np.log(fars), thresholds))
        return Decision(threshold, "far", float(far), self.far_points)


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


def min_samples_of(encoder: SpeakerEncoder) -> int:
    """Shortest input (samples) that gives the encoder enough frames (``min_frames``)."""
    frames = int(getattr(encoder.model, "min_frames", 1))
    frontend = encoder.frontend
    win = int(getattr(frontend, "win_length", 0))
    hop = int(getattr(frontend, "hop_length", 0))
    return win + max(frames - 1, 0) * hop


class Embedder:
    """Waveforms in, embeddings out, for one trained model (torch backend)."""

    backend = "torch"

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
        self.min_samples = min_samples_of(encoder)

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

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int = 2) -> OnnxEmbedder:
        """An onnxruntime embedder for a file written by ``voiceprint export``."""
        return OnnxEmbedder(path, threads=threads)

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.model.embedding_dim)

    def _crop(self, wave: np.ndarray) -> np.ndarray:
        if self.max_seconds > 0:
            return wave[: int(self.max_seconds * self.sample_rate)]
        return wave

    @torch.inference_mode()
    def _run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Zero-padded waves (B, N) float32 + valid samples (B,) int64 -> (B, D) float32."""
        wave = torch.from_numpy(batch).to(self.device)
        out = self.encoder(wave, torch.from_numpy(lengths).to(self.device))
        return out.float().cpu().numpy()

    def embed_batch(
        self, waves: Sequence[np.ndarray], names: Sequence[str] | None = None
    ) -> np.ndarray:
        """Embed 16 kHz mono waveforms of any lengths at once -> (N, D) float32.

        A wave shorter than the model's minimum (``min_samples``) raises AudioError,
        naming it by ``names[i]`` when given.
        """
        waves = [self._crop(np.asarray(w, dtype=np.float32)) for w in waves]
        for i, w in enumerate(waves):
            if len(w) < self.min_samples:
                name = names[i] if names is not None else f"waveform {i}"
                raise audio.AudioError(
                    f"{name}: {len(w) / self.sample_rate:.3f} s is shorter than this "
                    f"model's minimum of {self.min_samples / self.sample_rate:.3f} s"
                )
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        batch = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = w
        return self._run(batch, lengths)

    def embed(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """One waveform (N,) or (N, C) at rate ``sr`` -> embedding (D,)."""
        wave = audio.prepare(wave, sr, self.sample_rate)
        return self.embed_batch([wave])[0]

    def embed_file(self, path: str | Path) -> np.ndarray:
        """One audio file -> embedding (D,); AudioError names the file on bad input."""
        return self.embed_batch([audio.load(path, self.sample_rate)], [str(path)])[0]

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
                out[index] = self.embed_batch(batch, [str(paths[j]) for j in index])
                batch, index = [], []
            batch.append(wave)
            index.append(i)
        if batch:
            out[index] = self.embed_batch(batch, [str(paths[j]) for j in index])
        return out


class OnnxEmbedder(Embedder):
    """The same API on onnxruntime, for a file written by :func:`onnx_export.export_onnx`.

    The graph takes ``wave`` (B, N) float32 and ``lengths`` (B,) int64 and returns
    ``embedding`` (B, D); model id, sample rate, decision and limits come from the file's
    metadata (all of it in ``metadata``; ``evaluation`` holds the EER summary recorded at
    export, or None). ``threads`` sets onnxruntime's intra-op threads.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "running an .onnx model needs onnxruntime: pip install 'voiceprint[onnx]'"
            ) from err
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            raise ValueError(f"{path} is not a usable ONNX model: {err}") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if "voiceprint.model_id" not in meta:
            raise ValueError(f"{path} was not exported by voiceprint (no model metadata)")
        decision = json.loads(meta.get("voiceprint.decision", "null"))
        config = json.loads(meta.get("voiceprint.config", "null"))
        self.path = path
        self.metadata = dict(meta)
        self.evaluation = json.loads(meta.get("voiceprint.evaluation", "null"))
        self.encoder = None  # type: ignore[assignment]
        self.sample_rate = int(meta["voiceprint.sample_rate"])
        self.model_id = meta["voiceprint.model_id"]
        self.decision = Decision.from_dict(decision) if decision else None
        self.config = from_dict(config) if config else None
        self.max_seconds = float(meta.get("voiceprint.max_seconds", 0.0))
        self.device = "cpu"
        self.min_samples = int(meta.get("voiceprint.min_samples", 0))
        self._embedding_dim = int(meta["voiceprint.embedding_dim"])

    @property
    def embedding_dim(self) -> int:
        return self._embedding_dim

    def _run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = self.session.run(["embedding"], {"wave": batch, "lengths": lengths})[0]
        return np.asarray(out, dtype=np.float32)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the one ``*_checkpoint.pth`` in an experiment folder.

    Clear errors for a path that does not exist and for a folder with none or several.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"experiment {path} does not exist")
    found = sorted(path.glob("*_checkpoint.pth")) or sorted(path.glob("*.pth"))
    if not found:
        raise FileNotFoundError(f"no *_checkpoint.pth in experiment folder {path}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"several checkpoints in {path} ({names}): pass one of them")
    return found[0]


def load_embedder(path: str | Path, *, threads: int = 2, device: str = "cpu") -> Embedder:
    """An embedder for a checkpoint (.pth), an experiment folder or an ONNX file (.onnx)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return Embedder.from_checkpoint(find_checkpoint(path), device=device)
    if path.suffix.lower() == ".onnx":
        return OnnxEmbedder(path, threads=threads)
    return Embedder.from_checkpoint(path, device=device)
