"""int8 copies of an exported model: static quantization calibrated on training audio.

    quantize_model("model.onnx", "model.int8.onnx", waves)  # waves: training clips only

The encoder's convolutions and linear layers get int8 weights (per output channel) and
uint8 activations, with scales measured on ``waves`` (onnxruntime's static QDQ
quantization; on CPUs with VNNI its integer kernels run the dot products). The
front-end (the DFT-basis convolution of the waveform, the Mel matrix) stays float32:
its dynamic range spans the log. The copy keeps every ``voiceprint.`` metadata entry,
model id included, and adds ``voiceprint.precision = int8``: its embeddings stand for
the float32 model's (the test bounds their distance), so stores need no re-enrollment.

:func:`int8_pays_off` says whether this CPU has the integer dot-product instructions
that make the copy faster; :func:`voiceprint.embedder.load_embedder` uses it to pick
``<name>.int8.onnx`` beside ``<name>.onnx`` when ``precision="auto"``, but only when that
file carries the same model id, sample rate, embedding size and back-end as ``<name>.onnx``
(:func:`copy_mismatch`): a stale or foreign copy is passed over with a warning.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from voiceprint.onnx_metadata import ONNX_PREFIX, read_onnx_metadata

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "int8")
PRECISION_KEY = "voiceprint.precision"
INT8_SUFFIX = ".int8.onnx"
VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
# Metadata a precision copy must share with its model: what its embeddings are comparable
# with (the model id: enrolled speakers) and how they are scored (back-end, decision).
SAME_MODEL_KEYS = ("model_id", "sample_rate", "embedding_dim", "backend", "decision")


def int8_path(model: str | Path) -> Path:
    """Where the int8 copy of ``model`` lives: ``x.onnx`` -> ``x.int8.onnx``."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".onnx") + INT8_SUFFIX)


def int8_pays_off(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU has VNNI/AMX integer dot products (where int8 beats float32)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(set(line.split(":", 1)[1].split()) & VNNI_FLAGS)
    return False


def copy_mismatch(model: Path, copy: Path) -> str | None:
    """Why ``copy`` cannot run in place of the ONNX ``model`` (another model id, sample
    rate, embedding size, back-end or decision in its metadata; unreadable metadata), or
    None when it carries the same model."""
    try:
        ours, theirs = read_onnx_metadata(model), read_onnx_metadata(copy)
    except (OSError, ValueError) as err:
        return f"its metadata cannot be read: {err}"
    for key in SAME_MODEL_KEYS:
        a, b = ours.get(ONNX_PREFIX + key), theirs.get(ONNX_PREFIX + key)
        if a == b:
            continue
        if key in ("backend", "decision"):  # long JSON: named, not shown
            return f"its {key} differs from that of {model.name}"
        return f"it holds {key} {b}, {model.name} {a}"
    return None


def choose_precision(model: Path, precision: str = "auto") -> Path:
    """The file to run for ``model`` at ``precision`` (auto: int8 where it pays off and a
    copy of the same model exists; ``$VOICEPRINT_PRECISION`` overrides auto).

    A ``.int8.onnx`` file that is not a copy of ``model`` (:func:`copy_mismatch`) is
    passed over with a warning under auto; ValueError when int8 is asked for. ValueError
    for an unknown precision, FileNotFoundError when int8 is asked for and there is no
    copy."""
    if precision == "auto":
        precision = os.environ.get("VOICEPRINT_PRECISION", "auto") or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if model.name.endswith(INT8_SUFFIX) or precision == "fp32":
        return model
    copy = int8_path(model)
    remedy = "make one with voiceprint export --int8-data DIR (or --int8-root DIR)"
    if precision == "int8":
        if not copy.is_file():
            raise FileNotFoundError(f"no int8 copy of {model} ({copy.name}): {remedy}")
        mismatch = copy_mismatch(model, copy)
        if mismatch:
            raise ValueError(f"{copy} is not an int8 copy of {model} ({mismatch}): {remedy}")
        return copy
    if not (copy.is_file() and int8_pays_off()):
        return model
    mismatch = copy_mismatch(model, copy)
    if mismatch:
        log.warning(
            "%s is not an int8 copy of %s (%s): running %s itself", copy, model, mismatch, model
        )
        return model
    return copy


def quantize_model(
    model: str | Path,
    out: str | Path,
    waves: Sequence[np.ndarray],
    *,
    seconds: float = 3.0,
    sample_rate: int = 16000,
) -> Path:
    """Write an int8 copy of the ONNX ``model`` at ``out``, calibrated on ``waves``.

    ``waves`` are float32 (N,) clips at ``sample_rate`` from *training* data (never the
    trials the model is evaluated on); each is cut to ``seconds``. Raises ValueError when
    there are none.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not waves:
        raise ValueError("int8 calibration needs at least one training clip")
    limit = int(seconds * sample_rate)
    clips = [np.ascontiguousarray(w[:limit], dtype=np.float32) for w in waves]

    class Clips(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(clips)

        def get_next(self) -> dict[str, np.ndarray] | None:
            clip = next(self.items, None)
            if clip is None:
                return None
            return {"wave": clip[None], "lengths": np.array([clip.size], dtype=np.int64)}

    source = onnx.load(str(model))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        quantize_static(
            str(prepared),
            str(Path(tmp) / "int8.onnx"),
            Clips(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            nodes_to_exclude=_frontend_nodes(graph),
            calibrate_method=CalibrationMethod.MinMax,
        )
        result = onnx.load(str(Path(tmp) / "int8.onnx"))
    meta = {p.key: p.value for p in source.metadata_props}
    meta[PRECISION_KEY] = "int8"
    onnx.helper.set_model_props(result, meta)
    result.doc_string = source.doc_string + " (int8)"
    tmp_out = out.with_name(out.name + ".tmp")
    onnx.save_model(result, str(tmp_out))
    tmp_out.replace(out)
    return out


def _frontend_nodes(graph: object) -> list[str]:
    """Names of the front-end's nodes: convolutions of the 1-channel waveform (the DFT
    basis) and matrix products with a constant (the Mel filters) before the first
    convolution of the encoder."""
    shapes = {t.name: list(t.dims) for t in graph.initializer}  # type: ignore[attr-defined]
    names = []
    for node in graph.node:  # type: ignore[attr-defined]
        weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "Conv" and weight is not None and len(weight) == 3 and weight[1] == 1:
            names.append(node.name)
        elif node.op_type == "MatMul" and weight is not None:
            names.append(node.name)  # the Mel filterbank (the encoder uses Conv/Gemm)
    return names
