"""Model files: what ships (``model.pth``) apart from what training resumes from
(``train_state.pth``), both read safely, every format migration in one function.

Both are one ``torch.save`` file (written atomically via a temporary file) holding only
tensors, numbers, strings, lists and dicts, so they load with
``torch.load(weights_only=True)``: a file that would run code when unpickled is refused
with an error naming it.

The model file (written by the release step only, :mod:`voiceprint.release`):

    format        int, MODEL_FORMAT
    kind          "model"
    model_id      str, sha1 of the encoder weights and of the back-end's mean, projection
                  and cohort; a store refuses embeddings of another id
    inference     dict, all inference needs besides weights and scorer (INFERENCE_KEYS):
                  sample_rate, features (FeatureConfig), model (ModelConfig), feat_dim,
                  max_seconds, vad; keys this version does not know are ignored, with a
                  warning, so a file of a newer version loads in an older one
    encoder       encoder state_dict (what ``export`` writes to ONNX)
    backend       dict | None, the scorer's back-end (scoring.Backend.to_dict): mean,
                  LDA projection, AS-norm cohort, calibration, default decision
    evaluation    dict | None, the dev-set summary measured through that back-end
    provenance    dict: the full recipe (``recipe``), epochs, history, when it was released;
                  read only by ``evaluate`` (as the default config), never by inference

The training state (written by the trainer only): config, feat_dim, model (the last
weights), head, optimizer, scheduler, epoch, speakers, history, recent (the averaging
window), averaged_epochs, rng. Files of format 1 held both in one
``<model>_<pooling>_<loss>_checkpoint.pth``: :func:`migrate_model` reads them as models
and :func:`load_train_state` resumes from them.

The same back-end and evaluation travel in an ONNX file's metadata
(:mod:`voiceprint.onnx_metadata`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voiceprint.config import ConfigError, ExperimentConfig, from_dict
from voiceprint.onnx_metadata import ONNX_FORMAT, ONNX_PREFIX, parse_onnx_metadata
from voiceprint.scoring import Backend

if TYPE_CHECKING:
    import torch

LEGACY_FORMAT = 1  # model and training state in one *_checkpoint.pth
MODEL_FORMAT = 2
TRAIN_STATE_FORMAT = 2
INFERENCE_KEYS = ("sample_rate", "features", "model", "feat_dim", "max_seconds", "vad")
# The summary of a dev-set evaluation that a model carries (model.pth "evaluation", ONNX
# metadata "voiceprint.evaluation"): a subset of an evaluation's results.json.
EVALUATION_KEYS = (
    "eer",
    "eer_ci95",
    "eer_threshold",
    "min_dcf",
    "min_dcf_ci95",
    "act_dcf",
    "act_dcf_ci95",
    "p_target",
    "n_target",
    "n_nontarget",
    "n_speakers",
    "trials",
    "test_folder",
)


def evaluation_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The part of an evaluation's results that a model carries."""
    return {key: results[key] for key in EVALUATION_KEYS if key in results}


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
    """The model's back-end (plain cosine when it has none)."""
    return Backend.from_dict(payload.get("backend"))


def _write(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` atomically: a kill during the write leaves the previous file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read(path: str | Path, what: str) -> dict[str, Any]:
    """A file written by :func:`_write`, never running code from it.

    FileNotFoundError for a missing file; ValueError naming the file for one that is not
    a voiceprint file or holds objects other than plain data.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{what} {path} holds objects other than tensors and plain data; it was "
            "refused because loading it could run code"
        ) from err
    except Exception as err:  # noqa: BLE001 - any reading failure means a bad file
        raise ValueError(f"{what} {path} cannot be read: {err}") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), int):
        raise ValueError(f"{what} {path} is not a voiceprint file")
    return payload


# ------------------------------------------------------------------------ the model file


def write_model(
    path: str | Path,
    *,
    encoder: dict[str, torch.Tensor],
    inference: dict[str, Any],
    backend: Backend,
    evaluation: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a model file (see module doc); returns its path. Only a release writes one
    (:mod:`voiceprint.release`, ``voiceprint calibrate --out`` for a user's domain)."""
    payload = {
        "format": MODEL_FORMAT,
        "kind": "model",
        "model_id": model_id_of(encoder, backend),
        "inference": {k: inference[k] for k in INFERENCE_KEYS},
        "encoder": encoder,
        "backend": backend.to_dict(),
        "evaluation": evaluation,
        "provenance": provenance or {},
    }
    return _write(path, payload)


def read_model(path: str | Path) -> dict[str, Any]:
    """A model file in the current shape (:func:`migrate_model`), its inference spec
    validated (:func:`inference_spec`). A training state is refused, naming the file."""
    payload = _read(path, "model")
    return migrate_model(payload, path)


def migrate_model(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Every format migration of model files: any format this version reads, in the
    shape of MODEL_FORMAT. Format 1 (a training checkpoint that shipped) keeps its model
    id, weights, back-end, decision and evaluation; its recipe becomes provenance."""
    version = payload.get("format")
    if payload.get("kind") == "train_state":
        raise ValueError(
            f"{path} is a training state, not a model: release it with 'voiceprint train' "
            "(it resumes and then writes model.pth)"
        )
    if version == MODEL_FORMAT:
        out = dict(payload)
    elif version == LEGACY_FORMAT:
        try:
            config = from_dict(payload["config"])
            backend = payload.get("backend")
            if payload.get("decision") and not (backend or {}).get("decision"):
                backend = {**(backend or {}), "decision": payload["decision"]}  # before scorer
            out = {
                "format": MODEL_FORMAT,
                "kind": "model",
                "model_id": payload["model_id"],
                "inference": inference_of(config, int(payload["feat_dim"])),
                "encoder": payload["model"],
                "backend": backend,
                "evaluation": payload.get("evaluation"),
                "provenance": {
                    "recipe": payload["config"],
                    "epochs": payload.get("epoch"),
                    "history": payload.get("history", []),
                },
            }
        except (KeyError, TypeError, ConfigError) as err:
            raise ValueError(f"model {path} (format 1) is incomplete: {err}") from err
    elif isinstance(version, int) and version > MODEL_FORMAT:
        raise ValueError(
            f"model {path} has format {version}, newer than this voiceprint reads "
            f"({MODEL_FORMAT}): upgrade voiceprint"
        )
    else:
        raise ValueError(f"model {path} is not a voiceprint model (format {version!r})")
    out["inference"] = inference_spec(out.get("inference"), path)
    return out


def inference_of(config: ExperimentConfig, feat_dim: int) -> dict[str, Any]:
    """The inference spec of a model trained with ``config`` (features ``feat_dim`` wide)."""
    values = config.to_dict()
    return {
        "sample_rate": config.features.sample_rate,
        "features": values["features"],
        "model": values["model"],
        "feat_dim": feat_dim,
        "max_seconds": config.eval.max_seconds,
        "vad": config.eval.vad,
    }


def inference_spec(values: Any, path: str | Path) -> dict[str, Any]:
    """``values`` with the keys this version knows; the others (of a newer version, or
    inside ``features``/``model``) are dropped with a warning naming them. ValueError
    naming the file when a needed one is missing or malformed."""
    if not isinstance(values, dict):
        raise ValueError(f"model {path} has no inference spec")
    unknown = sorted(set(values) - set(INFERENCE_KEYS))
    defaults = from_dict({})
    known = {"features": defaults.features, "model": defaults.model}
    spec = {k: values[k] for k in INFERENCE_KEYS if k in values}
    for section, default in known.items():
        part = spec.get(section)
        if not isinstance(part, dict):
            raise ValueError(f"model {path}: inference.{section} is missing or malformed")
        fields = set(vars(default))
        unknown += [f"{section}.{k}" for k in sorted(set(part) - fields)]
        spec[section] = {k: v for k, v in part.items() if k in fields}
    missing = [k for k in INFERENCE_KEYS if k not in spec]
    if missing:
        raise ValueError(f"model {path}: inference spec lacks {', '.join(missing)}")
    if unknown:
        warnings.warn(
            f"{path}: ignoring inference settings this voiceprint does not know "
            f"({', '.join(unknown)}); it was probably written by a newer version",
            UserWarning,
            stacklevel=3,
        )
    return spec


def recipe_of(values: dict[str, Any] | None, path: str | Path) -> ExperimentConfig | None:
    """The recipe a model carries as provenance, or None (with a warning) when this
    version cannot read it: inference never needs it, only ``evaluate`` defaults."""
    if not values:
        return None
    try:
        return from_dict(values)
    except (ConfigError, TypeError, ValueError) as err:
        warnings.warn(
            f"{path}: its training recipe does not parse in this version ({err}); it still "
            "runs, but evaluate needs --config",
            UserWarning,
            stacklevel=3,
        )
        return None


# ------------------------------------------------------------------------ training state


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the trainer's state (see module doc) atomically; only the trainer does."""
    return _write(path, {**state, "format": TRAIN_STATE_FORMAT, "kind": "train_state"})


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The trainer's state; a format-1 checkpoint resumes too (its last weights are
    ``model_last``)."""
    state = _read(path, "training state")
    if state["format"] == LEGACY_FORMAT:
        state = dict(state)
        state["model"] = state.pop("model_last", state["model"])
    elif state.get("kind") != "train_state":
        raise ValueError(f"{path} is not a training state")
    return state


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
    payload = read_model(model)
    if backend_of(payload).identity() != backend.identity():
        raise ValueError(f"{model}: a new back-end may change the calibration only")
    return write_model(
        out,
        encoder=payload["encoder"],
        inference=payload["inference"],
        backend=backend,
        evaluation=payload["evaluation"],
        provenance={**payload["provenance"], "recalibrated_from": str(model)},
    )
