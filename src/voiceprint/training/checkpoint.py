"""Checkpoints that resume: one file with model, head, optimiser, scheduler, epoch, config.

Layout of the saved dict (``torch.save``; written atomically via a temporary file):

    format        int, CHECKPOINT_FORMAT
    model_id      str, stable id of these weights (sha1 of the model state), used to refuse
                  comparing embeddings made by different models
    config        the resolved ExperimentConfig as a plain dict (features travel with it)
    feat_dim      int, front-end output dimension
    model         encoder state_dict (the exported embedder)
    head          loss-head state_dict (classifier; training only)
    optimizer     optimiser state_dict | None
    scheduler     dict | None
    epoch         int, epochs completed
    speakers      list[str], training class labels in head order
    history       list[dict], one entry per epoch (epoch, loss, accuracy, lr, seconds)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


def model_id_of(state: dict[str, torch.Tensor]) -> str:
    """A short, stable id for a set of weights: sha1 over names and float32 values."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (see module doc) atomically; fills ``format`` and ``model_id``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload["format"] = CHECKPOINT_FORMAT
    payload["model_id"] = model_id_of(payload["model"])
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
    """Read a checkpoint written by :func:`save_checkpoint`; clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"checkpoint {path} cannot be read: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a voiceprint checkpoint")
    return payload
