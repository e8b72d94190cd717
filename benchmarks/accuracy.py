"""Accuracy benchmark: the shipped model beside three references, on the same dev trials.

    python benchmarks/accuracy.py [--model src/voiceprint/assets/default.onnx ...]
        [--config configs/cpu_best.yaml ...] [--set so762-dev=../shared/data/so762 ...]
        [--train-config configs/shipped.yaml] [--only mfcc,resemblyzer,speechbrain,voiceprint]
        [--sb-minutes 60] [--sb-retrain] [--retrain] [--out benchmarks/results/accuracy.json]

Run from the repository root. Every system is scored on the same trial sets: all pairs of
the test split of each ``--set`` corpus (default: the so762 dev set, 60 speakers x 20
clips, 719,400 trials, and the cv-zh v2 test set, 20 x 10, 19,900 trials), the
``trials_pairs`` lists that ``voiceprint prepare`` writes (here into
``<work>/data/<set>``). For each system and set it prints EER with its 95% bootstrap
interval over test speakers, minDCF(0.01), the actual DCF at the Bayes threshold of its
calibrated LLRs, training minutes and the embedding real-time factor (embedding seconds /
audio seconds, utterances one at a time, on the smallest set, torch on ``--threads``
threads, decoding not counted), then writes the tables as JSON and Markdown (``--out``
and the same name with ``.md``). Rows of systems not run this time are kept from an
earlier file measured on the same trials.

Systems (``--only`` picks some):

* ``mfcc``: training-free MFCC mean+std, each dimension standardised with training-set
  statistics, cosine (benchmarks/references/mfcc_baseline.py).
* ``resemblyzer``: the pretrained GE2E encoder from PyPI (references/resemblyzer_ref.py).
* ``speechbrain``: SpeechBrain 1.1.2's ECAPA recipe trained here from scratch on the
  shipped model's training speakers for ``--sb-minutes`` on ``--threads`` cores
  (references/speechbrain_ref.py); cached in ``<work>/speechbrain/`` unless
  ``--sb-retrain``.
* ``voiceprint``: each ``--model`` file (default: the shipped model), scored through its
  own deployed scorer by ``voiceprint.evaluation.evaluate`` (what ``voiceprint evaluate
  --model`` runs); and each ``--config``, trained with voiceprint's trainer unless
  ``exp/<name>/`` holds a finished checkpoint, then evaluated the same way.

The references train on the training list of ``--train-config`` (default
configs/shipped.yaml: cv-zh train + so762 train less the held-out speakers, the list the
shipped model was trained on). Their cosine scores are calibrated the way the shipped
model is: a score-to-LLR calibration fitted on one-clip trials of the held-out speakers
(``<work>/../shipped/data/calibration``, never dev or test), so that every row has an
actual DCF.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.references` importable
    sys.path.insert(0, str(REPO))

from benchmarks.references import (  # noqa: E402
    TrialSet,
    WaveEmbedder,
    embed_waves,
    load_trial_set,
    score_trials,
    trial_metrics,
)
from voiceprint import audio, metrics  # noqa: E402
from voiceprint.allocator import keep_freed_memory  # noqa: E402
from voiceprint.calibration import enroll_style_trials  # noqa: E402
from voiceprint.config import DataConfig, ExperimentConfig, load_config  # noqa: E402
from voiceprint.data.corpus import (  # noqa: E402
    CorpusError,
    Utterance,
    by_speaker,
    write_kaldi_dir,
)
from voiceprint.data.dataset import load_waves, speaker_labels  # noqa: E402
from voiceprint.data.layouts import open_corpus  # noqa: E402
from voiceprint.data.protocol import prepare_test  # noqa: E402
from voiceprint.data.trials import enroll_trials, write_trials  # noqa: E402
from voiceprint.evaluation import write_scores  # noqa: E402
from voiceprint.experiment import Experiment  # noqa: E402
from voiceprint.scoring import ScoreCalibration  # noqa: E402

log = logging.getLogger("accuracy")

SYSTEMS = ("mfcc", "resemblyzer", "speechbrain", "voiceprint")
SHARED = REPO.parent / "shared" / "data"
# The dev protocol: every choice is made on these five sets and their pooled figure.
DEFAULT_SETS = {
    "so762-dev": SHARED / "so762",
    "cv-zh-test": SHARED / "cv-zh",
    "dsp20-test": SHARED / "dsp20",
    "ar-cmd-test": SHARED / "ar-cmd",
    "cv-multi-dev": SHARED / "cv-multi-dev",
}
POOLED = "pooled"  # each set weighted equally (metrics.weighted_summary)
ENROLL_CLIPS = (1, 3)  # operating points for one-clip and three-clip speaker models
DEFAULT_MODEL = REPO / "src" / "voiceprint" / "assets" / "default.onnx"
DEFAULT_TRAIN_CONFIG = REPO / "configs" / "shipped.yaml"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "accuracy.json"
P_TARGET = 0.01
# The data READMEs' figures for the references: {set: {system: (EER fraction, minDCF)}}.
README_FIGURES = {
    "so762-dev": {"mfcc": (0.0935, 0.788), "resemblyzer": (0.0687, 0.624)},
    "cv-zh-test": {"mfcc": (0.1144, 0.775), "resemblyzer": (0.0744, 0.391)},
    "dsp20-test": {"mfcc": (0.1293, 0.927), "resemblyzer": (0.1757, 0.960)},
    "ar-cmd-test": {"mfcc": (0.2025, 0.992), "resemblyzer": (0.1417, 0.958)},
    "cv-multi-dev": {"mfcc": (0.1833, 0.976), "resemblyzer": (0.1323, 0.831)},
}


@dataclass
class Row:
    """One system on one trial set; rates as fractions, ``rtf`` = embed s / audio s."""

    system: str
    trial_set: str
    eer: float
    eer_ci95: list[float]
    min_dcf: float
    act_dcf: float | None
    act_dcf_ci95: list[float] | None
    training_minutes: float | None  # None: not trained here (pretrained elsewhere)
    rtf: float | None
    readme_figure: list[float] | None = None  # [EER, minDCF] the data README quotes
    details: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""


@dataclass
class EvalSet:
    """One trial set: its name, corpus root, prepared folder, trials and decoded audio."""

    name: str
    root: Path
    folder: Path
    trials: TrialSet
    waves: list[np.ndarray]

    def utt_ids(self) -> list[str]:
        return [u.utt for u in self.trials.utts]


@dataclass
class SystemScores:
    """What one system produced: per set, its scores and (if calibrated) LLRs."""

    system: str
    key: str
    scores: dict[str, np.ndarray]
    llr: dict[str, np.ndarray | None]
    minutes: float | None
    rtf: float | None
    details: dict[str, Any]


@dataclass
class Context:
    """What every system shares: the trial sets and the references' training lists."""

    args: argparse.Namespace
    sets: list[EvalSet]
    train_config: ExperimentConfig
    train_utts: list[Utterance]
    calibration_utts: list[Utterance]
    _waves: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def progress(self) -> bool:
        return not self.args.quiet

    def _decoded(self, name: str, utts: list[Utterance]) -> list[np.ndarray]:
        if name not in self._waves:
            started = time.perf_counter()
            self._waves[name] = load_waves(utts, 16000, progress=self.progress)
            log.info(
                "decoded %d %s utterances in %.1f s",
                len(utts),
                name,
                time.perf_counter() - started,
            )
        return self._waves[name]

    def train_waves(self) -> list[np.ndarray]:
        """The references' training utterances at 16 kHz (decoded once, on first use)."""
        return self._decoded("training", self.train_utts)

    def calibration_waves(self) -> list[np.ndarray]:
        """The held-out speakers' utterances at 16 kHz (decoded once, on first use)."""
        return self._decoded("calibration", self.calibration_utts)

    @property
    def rtf_set(self) -> EvalSet:
        """The set the real-time factor is timed on: the one with the fewest clips."""
        return min(self.sets, key=lambda s: len(s.waves))


# ----------------------------------------------------------------------------- systems


def calibrate_cosine(ctx: Context, embedder: WaveEmbedder) -> tuple[ScoreCalibration, dict]:
    """A score-to-LLR calibration of ``embedder``'s cosine scores, fitted as the shipped
    model's is: one-clip trials among the held-out speakers, within each corpus."""
    trials = enroll_style_trials(ctx.calibration_utts, 1, list(ctx.train_config.data.corpora))
    emb, _ = embed_waves(embedder, ctx.calibration_waves(), threads=ctx.args.threads)
    scores = score_trials(emb, [u.utt for u in ctx.calibration_utts], trials.trials)
    labels = trials.labels
    calibration = ScoreCalibration().fit(scores[labels], scores[~labels], p_target=P_TARGET)
    source = {
        "speakers": len({u.speaker for u in ctx.calibration_utts}),
        "trials": int(labels.size),
        "target_trials": int(labels.sum()),
    }
    return calibration, source


def reference_scores(
    ctx: Context,
    system: str,
    key: str,
    embedder: WaveEmbedder,
    minutes: float | None,
    details: dict[str, Any],
) -> SystemScores:
    """Embed every set's clips one at a time, cosine-score its trials, calibrate."""
    calibration, source = calibrate_cosine(ctx, embedder)
    scores: dict[str, np.ndarray] = {}
    llr: dict[str, np.ndarray | None] = {}
    rtf = None
    for s in ctx.sets:
        emb, set_rtf = embed_waves(embedder, s.waves, threads=ctx.args.threads)
        if s is ctx.rtf_set:
            rtf = set_rtf
        scores[s.name] = score_trials(emb, s.utt_ids(), s.trials.trials)
        llr[s.name] = calibration.llr(scores[s.name])
    details = {"scoring": "cosine", "calibration": source, **details}
    return SystemScores(system, key, scores, llr, minutes, rtf, details)


def run_mfcc(ctx: Context) -> SystemScores:
    """Training-free MFCC mean+std (standardised with training statistics), cosine."""
    from benchmarks.references.mfcc_baseline import MfccMeanStd

    baseline = MfccMeanStd(n_mels=40, n_mfcc=30)
    started = time.perf_counter()
    baseline.fit(ctx.train_waves())
    details = {
        "features": "MFCC 30 of 40 mels, 25/10 ms, no CMN; [mean, std] over frames",
        "normalisation": f"per-dimension z-score from {len(ctx.train_utts)} training utterances",
        "fit_seconds": round(time.perf_counter() - started, 1),
    }
    return reference_scores(ctx, "MFCC mean+std (training-free)", "mfcc", baseline, 0.0, details)


def run_resemblyzer(ctx: Context) -> SystemScores:
    """Resemblyzer's pretrained GE2E encoder on 16 kHz audio from voiceprint.audio.load."""
    from benchmarks.references.resemblyzer_ref import ResemblyzerEmbedder

    details = {"weights": "pretrained GE2E (ships with resemblyzer 0.1.4), not trained here"}
    return reference_scores(
        ctx, "Resemblyzer (pretrained)", "resemblyzer", ResemblyzerEmbedder(), None, details
    )


def run_speechbrain(ctx: Context) -> SystemScores:
    """SpeechBrain's ECAPA recipe trained on the training speakers for --sb-minutes."""
    from benchmarks.references.speechbrain_ref import SBRecipe, load_or_train

    recipe = SBRecipe(minutes=ctx.args.sb_minutes, threads=ctx.args.threads)
    speakers, labels = speaker_labels(ctx.train_utts)
    model, info = load_or_train(
        Path(ctx.args.work) / "speechbrain",
        ctx.train_waves,
        labels,
        speakers,
        [u.utt for u in ctx.train_utts],
        recipe,
        retrain=ctx.args.sb_retrain,
        progress=ctx.progress,
    )
    details = {
        "recipe": asdict(recipe),
        "epochs": round(info["epochs"], 2),
        "steps": info["steps"],
        "n_params": info["n_params"],
        "train_utterances": len(ctx.train_utts),
        "train_speakers": len(speakers),
        "wall_minutes": round(info.get("wall_seconds", info["train_seconds"]) / 60, 1),
        "checkpoint": info["checkpoint"],
        "cached": info["cached"],
    }
    cpu_minutes = ctx.args.sb_minutes * ctx.args.threads
    threads = ctx.args.threads
    name = f"SpeechBrain 1.1.2 ECAPA from scratch ({cpu_minutes:g} CPU-min, {threads} thread(s))"
    return reference_scores(ctx, name, "speechbrain", model, info["train_seconds"] / 60.0, details)


class _VoiceprintWaves:
    """Adapter: a voiceprint Embedder as a WaveEmbedder (one utterance per call)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embedder.embed_batch([wave])[0]


def read_scores(path: Path, trial_set: TrialSet) -> np.ndarray:
    """The scores of a ``scores.txt`` (enroll test score label) in ``trial_set`` order.

    Raises ValueError when a trial of the set has no score in the file.
    """
    table: dict[tuple[str, str], float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 4:
            table[(parts[0], parts[1])] = float(parts[2])
    missing = [(a, b) for a, b, _ in trial_set.trials if (a, b) not in table]
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} of the benchmark's trials, e.g. {missing[0]}"
        )
    return np.array([table[(a, b)] for a, b, _ in trial_set.trials])


def read_llr(folder: Path, trial_set: TrialSet) -> np.ndarray | None:
    """The calibrated LLRs ``evaluate`` wrote into ``folder/llr.txt`` (quality terms
    included), in ``trial_set`` order; None for an uncalibrated model."""
    path = folder / "llr.txt"
    return read_scores(path, trial_set) if path.is_file() else None


def run_model_file(ctx: Context, model: Path, minutes: float | None = None) -> SystemScores:
    """A model file (checkpoint or ONNX) through its deployed scorer on every set."""
    from voiceprint.embedder import load_embedder
    from voiceprint.evaluation import evaluate

    embedder = load_embedder(model, threads=ctx.args.threads)
    scores: dict[str, np.ndarray] = {}
    llr: dict[str, np.ndarray | None] = {}
    backend = None
    points: dict[str, dict[str, Any]] = {}
    for s in ctx.sets:
        out_dir = Path(ctx.args.work) / "eval" / model.stem / s.name
        results = evaluate(
            model, data_dir=str(s.folder), trials="pairs", out_dir=out_dir, progress=ctx.progress
        )
        scores[s.name] = read_scores(out_dir / "scores.txt", s.trials)
        llr[s.name] = read_llr(out_dir, s.trials)
        backend = results.get("backend")
        points[s.name] = {"1-clip": results.get("operating_points", {})}
        for clips in ENROLL_CLIPS[1:]:
            folder = write_enroll_folder(
                s, clips, Path(ctx.args.work) / "data" / f"{s.name}-enroll{clips}"
            )
            if folder is None:
                continue
            enrolled = evaluate(
                model,
                data_dir=str(folder),
                trials="enroll",
                out_dir=out_dir.with_name(f"{s.name}-enroll{clips}"),
                progress=ctx.progress,
            )
            points[s.name][f"{clips}-clip"] = enrolled.get("operating_points", {})
    _, rtf = embed_waves(_VoiceprintWaves(embedder), ctx.rtf_set.waves, threads=ctx.args.threads)
    details = {
        "model": str(model),
        "backend": backend,
        "model_id": embedder.model_id,
        "operating_points": points,
    }
    name = f"voiceprint {model.name}" + (" (shipped default)" if model == DEFAULT_MODEL else "")
    return SystemScores(name, model.stem, scores, llr, minutes, rtf, details)


def run_recipe(ctx: Context, config_path: Path) -> SystemScores:
    """Train (unless a finished training state exists) and release one recipe; evaluate
    its model."""
    from voiceprint.artifact import load_train_state
    from voiceprint.release import release
    from voiceprint.training.trainer import train

    config = load_config(config_path, [])
    experiment = Experiment(config)
    state = experiment.resumable_state()
    total = config.train.epochs + config.train.finetune_epochs
    done = int(load_train_state(state)["epoch"]) if state is not None else 0
    if ctx.args.retrain or done < total:
        resume = done > 0 and not ctx.args.retrain
        log.info(
            "%s: %s (%d of %d epochs)",
            config.name,
            "resuming" if resume else "training",
            done,
            total,
        )
        prepared = experiment.prepare(progress=ctx.progress)
        train(config, prepared, resume=resume, progress=ctx.progress)
    if ctx.args.retrain or done < total or not experiment.model_file.is_file():
        release(config, progress=ctx.progress)
    history = load_train_state(experiment.resumable_state())["history"]
    minutes = sum(float(h["seconds"]) for h in history) / 60.0
    result = run_model_file(ctx, experiment.model_file, minutes)
    result.system = f"voiceprint {config.name}"
    result.details["config"] = str(config_path)
    return result


# ----------------------------------------------------------------------------- rows


def rows_of(ctx: Context, result: SystemScores) -> list[Row]:
    """One row per trial set: EER [CI], minDCF, actual DCF [CI] of ``result``."""
    rows = []
    for s in ctx.sets:
        scores, llr = result.scores[s.name], result.llr[s.name]
        m = trial_metrics(
            scores,
            s.trials,
            n_boot=ctx.args.bootstrap,
            seed=42,
            p_target=P_TARGET,
            llr=llr,
            n_boot_dcf=200 if llr is not None else 0,  # the actual DCF's interval
        )
        act, act_ci = m.get("act_dcf"), m.get("act_dcf_ci95")
        _write_scores(ctx, f"{result.key}_{s.name}", s, scores)
        floor = None if result.key == "mfcc" else vs_floor(ctx, s, scores)
        figure = README_FIGURES.get(s.name, {}).get(result.key)
        rows.append(
            Row(
                system=result.system,
                trial_set=s.name,
                eer=m["eer"],
                eer_ci95=m["eer_ci95"],
                min_dcf=m["min_dcf"],
                act_dcf=act,
                act_dcf_ci95=act_ci,
                training_minutes=result.minutes,
                rtf=result.rtf,
                readme_figure=list(figure) if figure else None,
                details={
                    "n_target": m["n_target"],
                    "n_nontarget": m["n_nontarget"],
                    "threads": ctx.args.threads,
                    "confusable_pairs": m["confusable_pairs"],
                    "min_dcf_without_top_pair": m["min_dcf_without_top_pair"],
                    **({"vs_mfcc": floor} if floor else {}),
                    **result.details,
                },
                measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
        )
    if len(ctx.sets) > 1:
        rows.append(pooled_row(ctx, result))
    return rows


def pooled_weights(sets: list[EvalSet], counts: list[np.ndarray] | None = None) -> np.ndarray:
    """Trial weights that count each set equally within each class: a target trial of
    set k weighs 1 / (K n_target_k), a non-target 1 / (K n_nontarget_k). ``counts``
    (per set, (S_k,) draws of each speaker) make it one speaker-bootstrap resample: a
    trial then weighs by its two speakers' draws, normalised within its set and class."""
    parts = []
    for k, s in enumerate(sets):
        labels = s.trials.labels
        if counts is None:
            w = np.ones(labels.size)
        else:
            spk_a, spk_b = s.trials.speakers()
            names, idx = np.unique(np.concatenate([spk_a, spk_b]), return_inverse=True)
            a, b = idx[: labels.size], idx[labels.size :]
            w = counts[k][a] * np.where(a == b, 1.0, counts[k][b]).astype(np.float64)
        for cls in (labels, ~labels):
            total = w[cls].sum()
            w[cls] = w[cls] / total if total > 0 else 0.0
        parts.append(w / len(sets))
    return np.concatenate(parts)


def pooled_row(ctx: Context, result: SystemScores) -> Row:
    """The system on every set at once, each set weighted equally, with 95% intervals
    from speaker resamples drawn within each set (``--bootstrap`` of them, at most 200)."""
    sets = ctx.sets
    scores = np.concatenate([result.scores[s.name] for s in sets])
    labels = np.concatenate([s.trials.labels for s in sets])
    llrs = [result.llr[s.name] for s in sets]
    llr = None if any(x is None for x in llrs) else np.concatenate(llrs)  # type: ignore[arg-type]
    point = metrics.weighted_summary(scores, labels, pooled_weights(sets), P_TARGET, llr)
    rng = np.random.default_rng(42)
    draws = []
    for _ in range(min(ctx.args.bootstrap, 200)):
        counts = []
        for s in sets:
            n_spk = len({u.speaker for u in s.trials.utts})
            counts.append(rng.multinomial(n_spk, np.full(n_spk, 1.0 / n_spk)).astype(float))
        try:
            w = pooled_weights(sets, counts)
            draws.append(metrics.weighted_summary(scores, labels, w, P_TARGET, llr))
        except ValueError:
            continue

    def ci(key: str) -> list[float]:
        values = np.array([d[key] for d in draws])
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]

    return Row(
        system=result.system,
        trial_set=POOLED,
        eer=point["eer"],
        eer_ci95=ci("eer"),
        min_dcf=point["min_dcf"],
        act_dcf=point.get("act_dcf"),
        act_dcf_ci95=ci("act_dcf") if llr is not None else None,
        training_minutes=result.minutes,
        rtf=result.rtf,
        details={"sets": [s.name for s in sets], "min_dcf_ci95": ci("min_dcf"), **result.details},
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def operating_point_table(rows: list[Row]) -> str:
    """False-accept / false-reject rates (%) of the default decision and of ``--far 0.01``
    per set, for one-clip and three-clip speaker models (systems that carry decisions)."""
    lines = [
        "| System | set | enrollment | default: FAR / FRR % (refused %) | DCF "
        "| --far 0.01: FAR / FRR % (refused %) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        for set_name, by_clips in (r.details.get("operating_points") or {}).items():
            if r.trial_set != set_name:
                continue
            for clips, points in by_clips.items():
                cells = []
                for key in ("default", "far_0.01"):
                    p = points.get(key)
                    cells.append(
                        "–"
                        if p is None
                        else f"{100 * p['far']:.2f} / {100 * p['frr']:.1f} "
                        f"({100 * p['refused']:.1f})"
                    )
                dcf = points.get("default", {}).get("dcf")
                dcf_text = "–" if dcf is None else f"{dcf:.3f}"
                lines.append(
                    f"| {r.system} | {set_name} | {clips} | {cells[0]} | {dcf_text} | {cells[1]} |"
                )
    return "\n".join(lines)


def vs_floor(ctx: Context, s: EvalSet, scores: np.ndarray) -> dict[str, list[float]] | None:
    """This system minus the training-free MFCC floor on set ``s``, paired by speaker
    resample (:func:`voiceprint.metrics.paired_bootstrap`): {"eer": [diff, low, high],
    "min_dcf": [...]}; None when the floor's scores of these trials are not in
    ``<work>/scores`` (run ``--only mfcc`` once)."""
    path = _scores_path(ctx, f"mfcc_{s.name}")
    if not path.is_file():
        return None
    try:
        floor = read_scores(path, s.trials)
    except ValueError as err:
        log.warning("no comparison with the MFCC floor: %s", err)
        return None
    spk_a, spk_b = s.trials.speakers()
    paired = metrics.paired_bootstrap(
        floor, scores, s.trials.labels, spk_a, spk_b, P_TARGET, ctx.args.bootstrap, seed=42
    )
    return {k: list(v) for k, v in paired.items()}


def _scores_path(ctx: Context, key: str) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return Path(ctx.args.work) / "scores" / f"{name}.txt"


def _write_scores(ctx: Context, key: str, s: EvalSet, scores: np.ndarray) -> Path:
    """``<work>/scores/<key>.txt``: ``enroll test score target|nontarget`` per trial."""
    path = _scores_path(ctx, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_scores(path, s.trials.trials, scores)


# ----------------------------------------------------------------------------- output


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (EER in %, with its 95% bootstrap interval)."""
    lines = [
        "| System | EER % [95% CI] | minDCF(0.01) | actual DCF [95% CI] | Training (min) "
        "| RTF | data README figure "
        "| minus the MFCC floor: EER points [95% CI] / minDCF [95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        minutes = "–" if r.training_minutes is None else f"{r.training_minutes:.1f}"
        if r.system.startswith("Resemblyzer"):
            minutes = "pretrained"
        figure = f"{_pct(r.readme_figure[0])} / {r.readme_figure[1]:.3f}" if r.readme_figure else ""
        act = "–"
        if r.act_dcf is not None:
            act = f"{r.act_dcf:.3f}"
            if r.act_dcf_ci95:
                act += f" [{r.act_dcf_ci95[0]:.2f}, {r.act_dcf_ci95[1]:.2f}]"
        rtf = "" if r.rtf is None else f"{r.rtf:.4f}"
        floor = r.details.get("vs_mfcc")
        paired = ""
        if floor:
            e, d = floor["eer"], floor["min_dcf"]
            paired = (
                f"{100 * e[0]:+.2f} [{100 * e[1]:+.2f}, {100 * e[2]:+.2f}] / "
                f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
            )
        lines.append(
            f"| {r.system} | {_pct(r.eer)} [{_pct(r.eer_ci95[0])}, {_pct(r.eer_ci95[1])}] "
            f"| {r.min_dcf:.3f} | {act} | {minutes} | {rtf} | {figure} | {paired} |"
        )
    return "\n".join(lines)


def confusion_table(rows: list[Row]) -> str:
    """Per system: the speaker pairs behind the false accepts at its minDCF threshold."""
    lines = [
        "| System | minDCF | false accepts: top speaker pairs (share) "
        "| minDCF without its top pair |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        pairs = r.details.get("confusable_pairs")
        if pairs is None:
            continue
        text = ", ".join(
            f"{'–'.join(p['speakers'])} {p['false_accepts']}/{p['trials']} ({p['share']:.0%})"
            for p in pairs
        )
        without = r.details.get("min_dcf_without_top_pair", r.min_dcf)
        lines.append(f"| {r.system} | {r.min_dcf:.3f} | {text or 'none'} | {without:.3f} |")
    return "\n".join(lines)


def _order(row: Row) -> tuple[int, str]:
    prefixes = ("MFCC", "Resemblyzer", "SpeechBrain", "voiceprint")
    rank = next((i for i, p in enumerate(prefixes) if row.system.startswith(p)), len(prefixes))
    return rank, row.system


def write_outputs(out: Path, rows: list[Row], protocol: dict[str, Any]) -> list[Row]:
    """Write ``out`` (JSON) and ``out.with_suffix('.md')``; earlier rows of other systems
    measured on the same trials stay. Returns all rows written, in table order."""
    merged = {(r.system, r.trial_set): r for r in rows}
    if out.is_file():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            if old.get("protocol", {}).get("sets") == protocol["sets"]:
                for item in old.get("systems", []):
                    merged.setdefault((item["system"], item["trial_set"]), Row(**item))
            else:
                log.info("%s was measured on other trials: not merging its rows", out)
        except (ValueError, TypeError, KeyError) as err:
            log.warning("ignoring unreadable %s: %s", out, err)
    table = sorted(merged.values(), key=_order)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"protocol": protocol, "systems": [asdict(r) for r in table]}
    out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    md = [
        "# Accuracy on the dev set and the lab's test set (all pairs)",
        "",
        f"Scores of each system's own back-end; the references score cosine, calibrated on "
        f"one-clip trials of the {protocol['calibration_speakers']} held-out training "
        f"speakers as the shipped model is. References trained here use the shipped "
        f"model's training list ({protocol['train_utterances']} utterances of "
        f"{protocol['train_speakers']} speakers). EER 95% CI from {protocol['bootstrap']} "
        f"speaker-bootstrap resamples, actual DCF CI from 200; actual DCF at the Bayes "
        f"threshold for P(target) = {P_TARGET}. RTF = embedding time / audio time on "
        f"{protocol['rtf_set']}, one utterance at a time, torch threads: "
        f"{protocol['threads']} ({protocol['machine']}).",
        "",
    ]
    for info in protocol["sets"]:
        these = [r for r in table if r.trial_set == info["name"]]
        md += [
            f"## {info['name']}: {info['n_trials']:,} trials ({info['n_target']:,} target), "
            f"{info['n_speakers']} speakers x {info['utts_per_speaker']} clips",
            "",
            markdown_table(these),
            "",
            "What sets minDCF: at its threshold each false accept costs 99/n_nontarget, so a "
            "few non-target speaker pairs can decide it; the pairs with the most false "
            "accepts, and the minDCF with the top pair left out (a sensitivity check, not "
            "a result):",
            "",
            confusion_table(these),
            "",
        ]
    pooled = [r for r in table if r.trial_set == POOLED]
    if pooled:
        md += [
            f"## {POOLED}: the {len(protocol['sets'])} sets, each weighted equally",
            "",
            "Every choice of recipe, back-end and decision is made on this figure. The "
            "95% intervals come from speaker resamples drawn within each set.",
            "",
            markdown_table(pooled),
            "",
        ]
    md += [
        "## Decisions: false-accept and false-reject rates",
        "",
        "The model's default decision and the threshold `--far 0.01` sets, measured on "
        "each set with one-clip and three-clip speaker models; trials a decision answers "
        '"not enough speech" count as rejected (refused: their share of all trials); DCF: '
        f"the default decision's detection cost at P(target) = {P_TARGET}.",
        "",
        operating_point_table(table),
        "",
        "Written by `python benchmarks/accuracy.py` (see benchmarks/README.md).",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    return table


# ----------------------------------------------------------------------------- main


def parse_sets(texts: list[str]) -> dict[str, Path]:
    """``NAME=ROOT`` pairs (default: the five dev sets); each root checked. A root is an
    AISHELL-layout corpus (its ``wav/test`` split, all pairs) or a Kaldi folder with its
    own ``trials_pairs`` (cv-multi-dev)."""
    sets = {}
    for text in texts:
        name, sep, root = text.partition("=")
        if not sep or not name or not root:
            raise SystemExit(f"accuracy benchmark: --set takes NAME=ROOT, got {text!r}")
        sets[name] = Path(root).expanduser()
    sets = sets or dict(DEFAULT_SETS)
    for name, root in sets.items():
        try:
            open_corpus(root, progress=False)
        except CorpusError as err:
            raise SystemExit(
                f"accuracy benchmark: set {name}: {err}. The default sets need "
                f"../shared/data/{{so762,cv-zh,dsp20,ar-cmd,cv-multi-dev}} beside the "
                f"repository."
            ) from err
    return sets


def is_kaldi_set(root: Path) -> bool:
    """A Kaldi test folder with its own trial list (cv-multi-dev), used as it is."""
    return (root / "wav.scp").is_file() and (root / "trials_pairs").is_file()


def trial_group(speaker: str, kaldi: bool) -> str:
    """Trials stay within a group: a Kaldi set's language (``<language>-<nnn>`` speaker
    ids, as its trials_pairs does), one group for an AISHELL-layout set."""
    return speaker.rsplit("-", 1)[0] if kaldi else ""


def write_enroll_folder(s: EvalSet, clips: int, folder: Path) -> Path | None:
    """A test folder whose ``trials_enroll`` models each speaker with more than ``clips``
    clips by its first ``clips``, against every other clip of its group; None when fewer
    than two speakers qualify."""
    groups = by_speaker(s.trials.utts)
    kept = [u for spk, g in groups.items() if len(g) > clips for u in g]
    if len({u.speaker for u in kept}) < 2:
        return None
    kaldi = is_kaldi_set(s.root)
    write_kaldi_dir(folder, kept)
    enroll, trials = enroll_trials(kept, clips)
    spk = {u.utt: u.speaker for u in kept}
    trials = [t for t in trials if trial_group(t[0], kaldi) == trial_group(spk[t[1]], kaldi)]
    (folder / "enroll").write_text(
        "".join(f"{name} {' '.join(ids)}\n" for name, ids in enroll.items()), "utf-8"
    )
    write_trials(folder / "trials_enroll", trials)
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="EER/minDCF/actual DCF of the shipped model beside MFCC, Resemblyzer "
        "and SpeechBrain references on the same dev trials.",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        type=Path,
        help="model file (.pth/.onnx) scored through its own scorer; repeatable "
        f"(default: {DEFAULT_MODEL.relative_to(REPO)})",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        help="voiceprint recipe YAML to train (if needed) and evaluate; repeatable",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="NAME=ROOT trial set; repeatable"
    )
    parser.add_argument(
        "--train-config",
        type=Path,
        default=DEFAULT_TRAIN_CONFIG,
        help="recipe whose training list (and held-out speakers) the references use",
    )
    parser.add_argument(
        "--only",
        default=",".join(SYSTEMS),
        help="comma-separated systems to run: " + ",".join(SYSTEMS) + " (default: all)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON table (and .md)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("exp") / "bench_accuracy",
        help="benchmark folder for the trial lists, scores and the SpeechBrain cache",
    )
    parser.add_argument("--sb-minutes", type=float, default=60.0, help="SpeechBrain budget")
    parser.add_argument("--sb-retrain", action="store_true", help="ignore the cached SB model")
    parser.add_argument("--retrain", action="store_true", help="retrain the --config recipes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SYSTEMS))
    if unknown:
        parser.error(f"--only: unknown system(s) {unknown}; valid: {', '.join(SYSTEMS)}")
    for path in [*args.config, *args.model, args.train_config]:
        if not path.is_file():
            parser.error(f"{path} does not exist")
    if not args.model and not args.config:
        args.model = [DEFAULT_MODEL]
    args.only = only
    args.sets = parse_sets(args.set)
    return args


def build_context(args: argparse.Namespace) -> Context:
    """Prepare each trial set, decode its audio, read the references' training lists."""
    sets = []
    data = DataConfig(test_speakers=0, test_utts=0)  # every test speaker, every clip
    for name, root in args.sets.items():
        folder = root if is_kaldi_set(root) else Path(args.work) / "data" / name
        if not is_kaldi_set(root):
            prepare_test(open_corpus(root, progress=not args.quiet).test(), data, folder)
        trials = load_trial_set(folder, "pairs")
        waves = [audio.load(u.path, 16000) for u in trials.utts]
        sets.append(EvalSet(name, root.resolve(), folder, trials, waves))
    config = load_config(args.train_config, [])
    experiment = Experiment(config)
    prepared = experiment.prepare(progress=not args.quiet)
    if not experiment.calibration_dir.is_dir():
        raise SystemExit(
            f"accuracy benchmark: {args.train_config} holds out no speakers "
            "(data.heldout_share): the references would have nothing to calibrate on"
        )
    return Context(args, sets, config, prepared.train, prepared.heldout)


def protocol_summary(ctx: Context) -> dict[str, Any]:
    sets = []
    for s in ctx.sets:
        labels = s.trials.labels
        speakers = {u.speaker for u in s.trials.utts}
        sets.append(
            {
                "name": s.name,
                "root": str(s.root),
                "trials_sha": hashlib.sha1((s.folder / "trials_pairs").read_bytes()).hexdigest()[
                    :12
                ],
                "n_trials": int(labels.size),
                "n_target": int(labels.sum()),
                "n_speakers": len(speakers),
                "utts_per_speaker": len(s.trials.utts) // max(len(speakers), 1),
                "audio_seconds": round(sum(len(w) for w in s.waves) / 16000, 1),
            }
        )
    return {
        "sets": sets,
        "train_config": str(ctx.args.train_config),
        "train_utterances": len(ctx.train_utts),
        "train_speakers": len({u.speaker for u in ctx.train_utts}),
        "calibration_speakers": len({u.speaker for u in ctx.calibration_utts}),
        "bootstrap": ctx.args.bootstrap,
        "threads": ctx.args.threads,
        "rtf_set": ctx.rtf_set.name,
        "machine": f"{platform.machine()}, torch {torch.__version__}",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    # Every system below runs in this process with the same allocator setting as
    # voiceprint's trainer, so none of them pays the kernel page-fault cost the others skip.
    keep_freed_memory()
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores - 0.5:
        log.warning(
            "load average %.1f on %d cores: other jobs share the CPU, so RTF will read "
            "slow (accuracy is unaffected; SpeechBrain's budget is CPU time)",
            load,
            cores,
        )
    ctx = build_context(args)
    for s in ctx.sets:
        log.info("%s: %d trials over %d clips", s.name, s.trials.labels.size, len(s.waves))
    jobs: list[tuple[str, Callable[[], SystemScores]]] = []
    runners = {"mfcc": run_mfcc, "resemblyzer": run_resemblyzer, "speechbrain": run_speechbrain}
    for name in SYSTEMS[:3]:
        if name in args.only:
            jobs.append((name, lambda f=runners[name]: f(ctx)))
    if "voiceprint" in args.only:
        for model in args.model:
            jobs.append((str(model), lambda m=model: run_model_file(ctx, m)))
        for path in args.config:
            jobs.append((str(path), lambda p=path: run_recipe(ctx, p)))
    if not jobs:
        log.warning("nothing to run: pick systems with --only")
        return 1
    protocol = protocol_summary(ctx)
    rows: list[Row] = []
    table: list[Row] = []
    for name, job in jobs:
        log.info("--- %s", name)
        these = rows_of(ctx, job())
        rows.extend(these)
        table = write_outputs(args.out, rows, protocol)  # after each system: a crash keeps it
        for row in these:
            log.info(
                "%s on %s: EER %s%% [%s, %s], minDCF %.3f, actual DCF %s",
                row.system,
                row.trial_set,
                _pct(row.eer),
                _pct(row.eer_ci95[0]),
                _pct(row.eer_ci95[1]),
                row.min_dcf,
                "–" if row.act_dcf is None else f"{row.act_dcf:.3f}",
            )
    for name in [info["name"] for info in protocol["sets"]] + [POOLED]:
        print(f"\n{name}\n" + markdown_table([r for r in table if r.trial_set == name]))
    print("\n" + operating_point_table(table))
    print(f"\nwritten: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
