"""What runs a model: zero-padded waves in, embeddings out, on one runtime.

    runner = TorchRunner(encoder, device="cpu")      # a SpeakerEncoder (imports torch)
    runner = OnnxRunner("model.onnx", threads=2)     # onnxruntime, no torch
    runner.run(batch, lengths)                       # (B, N) float32 + (B,) int64 -> (B, D)

Both say what they run on (``runtime``: "torch" or "onnxruntime"), the embedding size
(``embedding_dim``), the shortest input they take (``min_samples``), the precision of the
weights (``precision``) and the file they run (``path``, None for a model in memory).
:class:`voiceprint.embedder.Embedder` wraps one with the speech policy, the batching and
the model's scorer. "Back-end" names the scorer's part only, never the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from voiceprint.onnx_metadata import parse_onnx_metadata
from voiceprint.quantize import PRECISION_KEY

if TYPE_CHECKING:
    from voiceprint.encoder import SpeakerEncoder


class Runner(Protocol):
    """The one contract of a runtime (see the module docstring)."""

    runtime: str
    precision: str
    path: Path | None

    @property
    def embedding_dim(self) -> int: ...

    @property
    def min_samples(self) -> int: ...

    def run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...


class TorchRunner:
    """Front-end + encoder (:class:`voiceprint.encoder.SpeakerEncoder`) on a torch device,
    in inference mode. torch is imported when one is built, never by this module."""

    runtime = "torch"
    precision = "fp32"
    path: Path | None = None

    def __init__(self, encoder: SpeakerEncoder, device: str = "cpu") -> None:
        from voiceprint.encoder import min_samples_of

        self.encoder = encoder.to(device).eval()
        self.device = device
        self._min_samples = min_samples_of(encoder)

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.model.embedding_dim)

    @property
    def min_samples(self) -> int:
        return self._min_samples

    def run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Zero-padded waves (B, N) float32 + valid samples (B,) int64 -> (B, D) float32."""
        import torch

        with torch.inference_mode():
            wave = torch.from_numpy(batch).to(self.device)
            out = self.encoder(wave, torch.from_numpy(lengths).to(self.device))
            return out.float().cpu().numpy()


class OnnxRunner:
    """An onnxruntime session on a file written by :func:`onnx_export.export_onnx`.

    The graph takes ``wave`` (B, N) float32 and ``lengths`` (B,) int64 and returns
    ``embedding`` (B, D). The file's metadata is validated when it opens: ``metadata``
    holds it as stored, ``settings`` as :func:`onnx_metadata.parse_onnx_metadata` reads it
    (model id, sample rate, back-end, limits, config, evaluation). ``threads`` sets
    onnxruntime's intra-op threads; ``precision`` is "int8" for a quantized copy.
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "running an .onnx model needs onnxruntime, a core dependency of voiceprint: "
                "pip install onnxruntime"
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
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.settings: dict[str, Any] = parse_onnx_metadata(self.metadata, path)
        self.path: Path | None = path
        self.precision: str = self.metadata.get(PRECISION_KEY, "fp32")

    @property
    def embedding_dim(self) -> int:
        return int(self.settings["embedding_dim"])

    @property
    def min_samples(self) -> int:
        return int(self.settings["min_samples"])

    def run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Zero-padded waves (B, N) float32 + valid samples (B,) int64 -> (B, D) float32."""
        out = self.session.run(["embedding"], {"wave": batch, "lengths": lengths})[0]
        return np.asarray(out, dtype=np.float32)
