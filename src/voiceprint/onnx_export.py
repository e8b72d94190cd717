"""Export a trained model (front-end + encoder) to one ONNX file.

    export_onnx("exp/ecapa/model.pth", "model.onnx")
    OnnxEmbedder("model.onnx").embed_file("a.wav")      # onnxruntime, no torch work

The graph maps ``wave`` (B, N) float32 zero-padded waveforms at the model's sample rate
and ``lengths`` (B,) int64 valid samples to ``embedding`` (B, D); batch and time axes are
dynamic. The file's ``metadata_props`` carry what using the model needs (keys prefixed
``voiceprint.``, written and validated by :mod:`voiceprint.artifact`): model_id,
sample_rate, embedding_dim, the scorer's back-end (JSON: mean, AS-norm cohort,
calibration, decision, provenance), decision and threshold, min_samples, max_seconds,
vad, the resolved config (JSON) and the dev-set evaluation the model carries (or, for
older checkpoints, the ``results.json`` of its evaluation beside it).

Export goes through ``torch.export`` (the dynamo exporter, which needs ``onnxscript``)
at opset 18 (the lowest the exporter implements; its DFT operator carries the
front-end's FFT).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voiceprint.artifact import evaluation_summary
from voiceprint.embedder import Embedder, load_embedder
from voiceprint.encoder import SpeakerEncoder
from voiceprint.experiment import find_model
from voiceprint.onnx_metadata import onnx_metadata
from voiceprint.runners import OnnxRunner, TorchRunner

EXPORT_FORMAT = 1


class ExportableEncoder(nn.Module):
    """The encoder's computation written for tracing with dynamic shapes.

    The front-end's own ``forward`` validates ``lengths`` against the data and counts
    frames with Python integers, which a trace with a symbolic time axis cannot follow.
    This wrapper runs the same pieces (``log_mel`` with its DFT-basis convolution,
    ``transform``, ``num_frames`` on a tensor, then the front-end's own
    ``masked_features``) with tensor arithmetic only;
    front-ends without these pieces are called as they are. Outputs are
    the encoder's, which the export test checks against :class:`SpeakerEncoder`.
    """

    def __init__(self, encoder: SpeakerEncoder) -> None:
        super().__init__()
        self.frontend = encoder.frontend
        self.model = encoder.model

    def features(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Waves (B, N) + valid samples (B,) -> features (B, T, F), valid frames (B,)."""
        fe = self.frontend
        valid = fe.num_frames(lengths)
        if not all(hasattr(fe, name) for name in ("log_mel", "transform", "masked_features")):
            return fe(wave, lengths), valid
        return fe.masked_features(fe.transform(fe.log_mel(wave, spectrum="basis")), valid), valid

    def forward(self, wave: Tensor, lengths: Tensor) -> Tensor:
        feats, frames = self.features(wave, lengths)
        return self.model(feats, frames)


def evaluation_of(checkpoint: Path, model_id: str) -> dict | None:
    """The summary of ``results.json`` beside ``checkpoint`` if it evaluated this model."""
    results = checkpoint.parent / "results.json"
    if not results.is_file():
        return None
    try:
        values = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if values.get("model_id") != model_id:
        return None
    return evaluation_summary(values)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter: per-pass INFO logs, warnings about optional ops, and the
    partial graph it prints to stderr on failure (the raised error keeps the cause)."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _metadata(embedder: Embedder, evaluation: dict | None) -> dict[str, str]:
    return onnx_metadata(
        model_id=embedder.model_id,
        sample_rate=embedder.sample_rate,
        embedding_dim=embedder.embedding_dim,
        min_samples=embedder.min_samples,
        max_seconds=embedder.max_seconds,
        vad=embedder.spec.vad,
        config=embedder.config.to_dict() if embedder.config else None,
        backend=embedder.scorer.backend,
        evaluation=evaluation,
    )


def export_onnx(
    checkpoint: str | Path | Embedder,
    out_path: str | Path,
    opset: int = 18,
    *,
    check: bool = True,
) -> Path:
    """Write the checkpoint's front-end + encoder as one ONNX file at ``out_path``.

    ``checkpoint`` is a model file (.pth), an experiment folder or a torch :class:`Embedder`.
    With ``check``, the file is run once on onnxruntime and compared with torch on a
    padded batch (ValueError when they differ by more than 1e-3).
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - the dynamo exporter's
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "export needs onnx and onnxscript: pip install 'voiceprint[onnx]'"
        ) from err
    evaluation = None
    if isinstance(checkpoint, Embedder):
        embedder = checkpoint
    else:
        path = Path(checkpoint)
        path = find_model(path)
        embedder = load_embedder(path)
        evaluation = evaluation_of(path, embedder.model_id)
    evaluation = embedder.evaluation or evaluation
    runner = embedder.runner
    if not isinstance(runner, TorchRunner):
        raise ValueError("export needs a torch checkpoint, not an ONNX model")
    module = ExportableEncoder(runner.encoder.cpu()).eval()
    sr = embedder.sample_rate
    shortest = max(embedder.min_samples, 1)
    example_n = max(2 * sr, 2 * shortest)
    wave = 0.1 * torch.randn(2, example_n, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([example_n, max(example_n * 3 // 5, shortest)])
    wave[1, int(lengths[1]) :] = 0.0
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=shortest)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                module,
                (wave, lengths),
                dynamo=True,
                opset_version=opset,
                input_names=["wave", "lengths"],
                output_names=["embedding"],
                dynamic_shapes={"wave": {0: batch, 1: samples}, "lengths": {0: batch}},
                verbose=False,
            )
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds
        raise ValueError(
            f"cannot export model {embedder.model_id} to ONNX: {_export_failure(err)}"
        ) from err
    proto = program.model_proto
    onnx.helper.set_model_props(proto, _metadata(embedder, evaluation))
    proto.doc_string = (
        "voiceprint speaker encoder: wave (B, N) float32 + lengths (B,) int64 -> embedding (B, D)"
    )
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(out_path)
    if check:
        _check(embedder, out_path, wave.numpy(), lengths.numpy())
    return out_path


def _export_failure(err: BaseException) -> str:
    """The root cause of an export error in one line, with the user code it points at."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip()
    first = text.splitlines()[0] if text else type(root).__name__
    for path, line in re.findall(r'File "([^"]+)", line (\d+)', text + "\n" + str(err)):
        if "site-packages" in path or "onnx_export.py" in path:
            continue
        with contextlib.suppress(ValueError):
            path = str(Path(path).relative_to(Path.cwd()))
        return (
            f"{first} (at {path}, line {line}: code that depends on tensor values must be "
            "skipped while exporting, e.g. under torch.compiler.is_exporting())"
        )
    return first


def _check(embedder: Embedder, path: Path, wave: np.ndarray, lengths: np.ndarray) -> None:
    expected = embedder.runner.run(wave, lengths)
    got = OnnxRunner(path).run(wave, lengths)
    diff = float(np.max(np.abs(expected - got)))
    if not diff <= 1e-3:
        raise ValueError(f"exported {path} differs from torch by {diff:.2e} (limit 1e-3)")
