"""Release: the one writer of the model that ships (``exp/<name>/model.pth``).

    path, results = release(config)   # after ``train``: fit, measure, write

From the experiment's training state (:mod:`voiceprint.training.trainer`) it takes the
final weights (the average of the last ``train.average_last`` epochs once training is
complete), fits the scorer's back-end and calibration on the prepared lists
(:func:`voiceprint.calibration.fit_backend`: training speakers, held-out speakers),
evaluates the model on the experiment's dev set through that scorer (``results.json``
and pictures beside it) and writes one model file with its inference spec, back-end,
dev-set summary and the full recipe as provenance (:func:`voiceprint.artifact.write_model`).
``evaluate`` and ``export`` only read it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from voiceprint import __version__
from voiceprint.artifact import (
    evaluation_summary,
    inference_of,
    load_train_state,
    model_id_of,
    write_model,
)
from voiceprint.calibration import fit_backend
from voiceprint.config import ExperimentConfig
from voiceprint.embedder import Embedder
from voiceprint.evaluation import evaluate
from voiceprint.experiment import Experiment
from voiceprint.scoring import Backend
from voiceprint.training.trainer import average_states

log = logging.getLogger(__name__)


def final_weights(state: dict[str, Any], total_epochs: int) -> tuple[dict[str, torch.Tensor], int]:
    """The encoder weights to ship from a training state, and how many epochs they
    average: the averaging window's mean once all ``total_epochs`` ran, else the last."""
    recent = state.get("recent") or []
    if state["epoch"] >= total_epochs and len(recent) > 1:
        return average_states(list(recent)), len(recent)
    return state["model"], 1


def release(config: ExperimentConfig, progress: bool = True) -> tuple[Path, dict[str, Any] | None]:
    """Write ``model.pth`` of the trained experiment ``config``; returns its path and
    the dev-set results it carries (None when the experiment has no prepared dev set)."""
    experiment = Experiment(config)
    source = experiment.resumable_state()
    if source is None:
        raise FileNotFoundError(f"{experiment.folder} holds no training state: train it first")
    state = load_train_state(source)
    total = config.train.epochs + config.train.finetune_epochs
    encoder, averaged = final_weights(state, total)
    inference = inference_of(config, int(state["feat_dim"]))
    payload = {
        "model_id": model_id_of(encoder),
        "inference": inference,
        "encoder": encoder,
        "backend": None,
    }
    lists = experiment.lists
    plain = Embedder.from_model(payload, config=config)
    backend = fit_backend(
        plain,
        lists.train,
        lists.heldout,
        config.eval,
        corpora=list(config.data.corpora),
        seed=config.seed,
        progress=progress,
        source={"folder": str(lists.calibration_dir)},
    )
    payload.update(model_id=model_id_of(encoder, backend), backend=backend.to_dict())
    embedder = Embedder.from_model(payload, config=config)
    out = experiment.model_file
    results = None
    if (lists.test_dir / "wav.scp").is_file():
        results = evaluate(out, out_dir=experiment.folder, progress=progress, embedder=embedder)
    else:
        log.info("no dev set in %s: %s carries no evaluation", lists.test_dir, out.name)
    provenance = {
        "recipe": config.to_dict(),
        "epochs": int(state["epoch"]),
        "averaged_epochs": averaged,
        "history": state.get("history", []),
        "training_speakers": len(state.get("speakers", [])),
        "released": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "voiceprint": __version__,
    }
    write_model(
        out,
        encoder=encoder,
        inference=inference,
        backend=Backend.from_dict(payload["backend"]),
        evaluation=None if results is None else evaluation_summary(results),
        provenance=provenance,
    )
    log.info("released %s (model %s)", out, payload["model_id"])
    return out, results
