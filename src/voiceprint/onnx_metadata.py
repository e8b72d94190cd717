"""The metadata of an exported ONNX model: written, validated and read without onnx.

An ONNX file's ``metadata_props`` (keys prefixed ``voiceprint.``, :data:`ONNX_KEYS`) carry
all a user of the file needs besides the graph: model id, sample rate, embedding size,
limits, the speech policy, the scorer's back-end, the recipe and the dev-set summary.
Keys of a newer version are ignored with a warning.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from voiceprint.scoring import Backend, Decision

ONNX_FORMAT = 2  # 2: the back-end (scorer) travels in "voiceprint.backend"
ONNX_PREFIX = "voiceprint."
ONNX_KEYS = (
    "format",
    "model_id",
    "sample_rate",
    "embedding_dim",
    "min_samples",
    "max_seconds",
    "vad",
    "config",
    "backend",
    "decision",
    "threshold",
    "evaluation",
    "precision",  # written by voiceprint.quantize on an int8 copy
)


def onnx_metadata(
    *,
    model_id: str,
    sample_rate: int,
    embedding_dim: int,
    min_samples: int,
    max_seconds: float,
    vad: bool,
    config: dict[str, Any] | None,
    backend: Backend,
    evaluation: dict[str, Any] | None,
) -> dict[str, str]:
    """The ``metadata_props`` of an exported model: all a user of the file needs."""
    decision = backend.decision
    values = {
        "format": str(ONNX_FORMAT),
        "model_id": model_id,
        "sample_rate": str(sample_rate),
        "embedding_dim": str(embedding_dim),
        "min_samples": str(min_samples),
        "max_seconds": str(max_seconds),
        "vad": "true" if vad else "false",
        "config": json.dumps(config),
        "backend": json.dumps(backend.to_dict()),
        "decision": json.dumps(None if decision is None else decision.to_dict()),
        "threshold": "" if decision is None else f"{decision.threshold:.6f}",
        "evaluation": json.dumps(evaluation),
    }
    return {ONNX_PREFIX + k: v for k, v in values.items()}


def parse_onnx_metadata(meta: dict[str, str], path: str | Path) -> dict[str, Any]:
    """Validated values of an exported model's metadata; ValueError naming ``path`` and
    the key for anything missing, malformed or out of range (never used half-read)."""

    def get(key: str, default: str | None = None) -> str:
        value = meta.get(ONNX_PREFIX + key, default)
        if value is None:
            raise ValueError(f"{path}: model metadata lacks {ONNX_PREFIX}{key}")
        return value

    if ONNX_PREFIX + "model_id" not in meta:
        raise ValueError(f"{path} was not exported by voiceprint (no model metadata)")
    try:
        out: dict[str, Any] = {
            "format": int(get("format", "1")),
            "model_id": get("model_id"),
            "sample_rate": int(get("sample_rate")),
            "embedding_dim": int(get("embedding_dim")),
            "min_samples": int(get("min_samples", "0")),
            "max_seconds": float(get("max_seconds", "0")),
            "vad": get("vad", "false") == "true",
            "config": json.loads(get("config", "null")),
            "evaluation": json.loads(get("evaluation", "null")),
        }
        backend = Backend.from_dict(json.loads(get("backend", "null")))
        if backend.decision is None:  # files before the scorer kept only a decision
            stored = json.loads(get("decision", "null"))
            backend.decision = Decision.from_dict(stored) if stored else None
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: malformed voiceprint metadata: {err}") from err
    if out["format"] > ONNX_FORMAT:
        raise ValueError(
            f"{path}: metadata format {out['format']} is newer than this voiceprint reads "
            f"({ONNX_FORMAT}): upgrade voiceprint"
        )
    if not 0 < out["sample_rate"] <= 192_000 or not 0 < out["embedding_dim"] <= 65_536:
        raise ValueError(
            f"{path}: implausible metadata (sample_rate {out['sample_rate']}, "
            f"embedding_dim {out['embedding_dim']})"
        )
    if backend.dim not in (None, out["embedding_dim"]):
        raise ValueError(
            f"{path}: back-end is for {backend.dim}-dim embeddings, the model gives "
            f"{out['embedding_dim']}"
        )
    if not isinstance(out["evaluation"], (dict, type(None))):
        raise ValueError(f"{path}: {ONNX_PREFIX}evaluation must be a mapping")
    unknown = [
        k for k in meta if k.startswith(ONNX_PREFIX) and k[len(ONNX_PREFIX) :] not in ONNX_KEYS
    ]
    if unknown:
        warnings.warn(
            f"{path}: ignoring metadata this voiceprint does not know "
            f"({', '.join(sorted(unknown))}); it was probably written by a newer version",
            UserWarning,
            stacklevel=3,
        )
    out["backend"] = backend
    return out


_METADATA_FIELD = 14  # ModelProto.metadata_props (repeated StringStringEntryProto)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (key -> value), read from the top-level protobuf
    fields of its ModelProto without loading the graph (milliseconds, no onnx or
    onnxruntime needed). ValueError naming ``path`` when it is not a well-formed model."""
    path = Path(path)
    meta: dict[str, str] = {}
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            while f.tell() < size:
                _, value = _proto_field(f, wanted=(_METADATA_FIELD,))
                if value is not None:
                    entry = io.BytesIO(value)
                    pair = {1: b"", 2: b""}  # StringStringEntryProto: key = 1, value = 2
                    while entry.tell() < len(value):
                        number, text = _proto_field(entry, wanted=(1, 2))
                        if text is not None:
                            pair[number] = text
                    meta[pair[1].decode("utf-8")] = pair[2].decode("utf-8")
            if f.tell() > size:
                raise ValueError("truncated")
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a well-formed ONNX model ({err})") from err
    return meta


def _proto_field(f: BinaryIO, wanted: tuple[int, ...]) -> tuple[int, bytes | None]:
    """Read one protobuf field at ``f``'s position: (its number, its bytes when it is a
    length-delimited field in ``wanted``, else None: skipped without reading)."""
    tag = _varint(f)
    number, wire = tag >> 3, tag & 7
    if wire == 0:
        _varint(f)
    elif wire == 2:
        length = _varint(f)
        if number not in wanted:
            f.seek(length, os.SEEK_CUR)  # e.g. the graph: never read
            return number, None
        data = f.read(length)
        if len(data) != length:
            raise ValueError("truncated")
        return number, data
    elif wire in (1, 5):
        f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
    else:
        raise ValueError(f"unexpected protobuf wire type {wire}")
    return number, None


def _varint(f: BinaryIO) -> int:
    """A protobuf base-128 varint."""
    value = shift = 0
    while shift < 64:
        byte = f.read(1)
        if not byte:
            raise ValueError("truncated")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise ValueError("varint too long")
