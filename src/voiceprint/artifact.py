"""Model files: checkpoints that resume and carry their scorer, read safely.

A checkpoint is one ``torch.save`` file (written atomically via a temporary file) holding
only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: a file that would run code when unpickled is refused
with an error naming it. Its dict:

    format        int, CHECKPOINT_FORMAT
    model_id      str, stable id of what scores depend on: sha1 of the encoder weights
                  and of the back-end's mean, projection and cohort; a store refuses embeddings of
                  another id
    config        the resolved ExperimentConfig as a plain dict (features travel with it)
    feat_dim      int, front-end output dimension
    model         encoder state_dict (the exported embedder)
    head          loss-head state_dict (classifier; training only)
    optimizer     optimiser state_dict | None
    scheduler     dict | None
    epoch         int, epochs completed
    speakers      list[str], training class labels in head order
    history       list[dict], one entry per epoch (epoch, loss, accuracy, lr, seconds)
    backend       dict | None, the scorer's back-end (scoring.Backend.to_dict): mean,
                  LDA projection, AS-norm cohort, calibration, default decision, provenance
    evaluation    dict | None, the dev-set summary measured through that back-end

The same back-end and evaluation travel in an ONNX file's metadata (``onnx_export``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from voiceprint.scoring import Backend, Decision

if TYPE_CHECKING:
    import torch

CHECKPOINT_FORMAT = 1


def model_id_of(state: dict[str, torch.Tensor], backend: Backend | None = None) -> str:
    """A short, stable id: sha1 over the weights' names and float32 values and, when
    given, the back-end's mean, projection and cohort (what the scores of stored
    embeddings use)."""
    import torch

    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    if backend is not None and (
        backend.mean is not None or backend.projection is not None or backend.asnorm
    ):
        digest.update(backend.identity())
    return digest.hexdigest()[:16]


def backend_of(payload: dict[str, Any]) -> Backend:
    """The checkpoint's back-end (plain cosine when it has none)."""
    return Backend.from_dict(payload.get("backend"))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (see module doc) atomically; fills ``format`` and ``model_id``.

    A kill during the write leaves the previous file as it was.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload["format"] = CHECKPOINT_FORMAT
    payload["model_id"] = model_id_of(payload["model"], backend_of(payload))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, never running code from it.

    Raises FileNotFoundError for a missing file and ValueError naming the file for one
    that is not a voiceprint checkpoint or holds objects other than plain data.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"checkpoint {path} holds objects other than tensors and plain data; it was "
            "refused because loading it could run code"
        ) from err
    except Exception as err:  # noqa: BLE001 - any reading failure means a bad file
        raise ValueError(f"checkpoint {path} cannot be read: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a voiceprint checkpoint")
    return payload


# ------------------------------------------------------------------------ ONNX metadata

ONNX_FORMAT = 2  # 2: the back-end (scorer) travels in "voiceprint.backend"
ONNX_PREFIX = "voiceprint."


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


def write_backend(model: str | Path, backend: Backend, out: str | Path) -> Path:
    """A copy of the model file ``model`` (checkpoint or ONNX) at ``out`` whose scorer is
    ``backend``; the weights are untouched. The mean, projection and cohort must stay those of the
    model (its id, and so every enrolled speaker, stays valid)."""
    model, out = Path(model), Path(out)
    if model.suffix.lower() == ".onnx":
        try:
            import onnx
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "writing an ONNX model needs onnx: pip install 'voiceprint[onnx]'"
            ) from err
        proto = onnx.load(str(model))
        props = {p.key: p.value for p in proto.metadata_props}
        current = parse_onnx_metadata(props, model)["backend"]
        if current.identity() != backend.identity():
            raise ValueError(f"{model}: a new back-end may change the calibration only")
        decision = backend.decision
        props[ONNX_PREFIX + "backend"] = json.dumps(backend.to_dict())
        props[ONNX_PREFIX + "decision"] = json.dumps(
            None if decision is None else decision.to_dict()
        )
        props[ONNX_PREFIX + "threshold"] = "" if decision is None else f"{decision.threshold:.6f}"
        props[ONNX_PREFIX + "format"] = str(ONNX_FORMAT)
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, props)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        onnx.save_model(proto, str(tmp))
        os.replace(tmp, out)
        return out
    payload = load_checkpoint(model)
    if backend_of(payload).identity() != backend.identity():
        raise ValueError(f"{model}: a new back-end may change the calibration only")
    payload["backend"] = backend.to_dict()
    payload.pop("decision", None)
    return save_checkpoint(out, payload)
