"""Verification evaluation: embed the test data, score trials, report EER/minDCF and plots.

Everything is rebuilt from the checkpoint alone (features, model, protocol settings).
Outputs, in the experiment folder (or ``<exp>/eval/<tag>/`` for another corpus):
``results.json``, ``scores.txt`` (enroll test score target), ``roc.png``, ``det.png``,
``scores.png`` (score histograms).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceprint import metrics, plots, scoring
from voiceprint.config import ExperimentConfig
from voiceprint.data.corpus import CorpusError, Utterance, by_speaker, read_kaldi_dir, scan_split
from voiceprint.data.protocol import Trial, prepare_test, read_trials
from voiceprint.embedder import Decision, Embedder
from voiceprint.training.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the one ``*_checkpoint.pth`` inside an experiment folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"experiment {path} does not exist")
    found = sorted(path.glob("*_checkpoint.pth"))
    if len(found) != 1:
        what = "no" if not found else "several"
        raise FileNotFoundError(f"experiment folder {path} holds {what} *_checkpoint.pth files")
    return found[0]


@dataclass
class TestSet:
    """Test utterances, their trial list and, for enroll trials, the enrollment lists."""

    utts: list[Utterance]
    trials: list[Trial]
    enroll: dict[str, list[str]] | None
    folder: Path


def load_test_set(folder: Path, kind: str) -> TestSet:
    """Read a prepared test folder (wav.scp, utt2spk, trials_<kind>[, enroll])."""
    utts = read_kaldi_dir(folder)
    trials_path = folder / f"trials_{kind}"
    if not trials_path.is_file() and (folder / "trials").is_file():
        trials_path = folder / "trials"
    trials = read_trials(trials_path)
    enroll = None
    if kind == "enroll":
        enroll = {}
        for line in (folder / "enroll").read_text(encoding="utf-8").splitlines():
            spk, *ids = line.split()
            enroll[spk] = ids
    return TestSet(utts, trials, enroll, folder)


def resolve_test_folder(
    config: ExperimentConfig, out_dir: Path, root: str | None, data_dir: str | None
) -> Path:
    """The prepared test folder; for another corpus, prepare it under ``out_dir/data``."""
    if data_dir:
        folder = Path(data_dir)
        if (folder / "trials_pairs").is_file() or (folder / "trials").is_file():
            return folder
        return prepare_test(read_kaldi_dir(folder), config.data, out_dir / "data")
    if root:
        return prepare_test(scan_split(root, "test"), config.data, out_dir / "data")
    folder = config.out_dir / "data" / "test"
    if not (folder / "wav.scp").is_file():
        raise CorpusError(f"{folder} is missing: run 'voiceprint prepare' first")
    return folder


def _speaker_embeddings(names: list[str], groups: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([scoring.length_norm(groups[n]).mean(0) for n in names])


def score_test_set(
    embedder: Embedder,
    test: TestSet,
    config: ExperimentConfig,
    cohort: np.ndarray | None,
    train_mean: np.ndarray | None,
    progress: bool = True,
) -> np.ndarray:
    """Cosine scores of ``test.trials`` with the configured back-end (mean, AS-norm)."""
    emb = embedder.embed_files([u.path for u in test.utts], progress=progress)
    if train_mean is not None:
        emb = scoring.mean_subtract(emb, train_mean)
    by_utt = {u.utt: emb[i] for i, u in enumerate(test.utts)}
    if test.enroll is not None:
        for spk, ids in test.enroll.items():
            by_utt[spk] = scoring.length_norm(np.stack([by_utt[i] for i in ids])).mean(0)
    pairs = [(a, b) for a, b, _ in test.trials]
    scores = scoring.score_trials(by_utt, pairs)
    if cohort is not None and config.eval.asnorm_top > 0:
        enroll_emb = np.stack([by_utt[a] for a, _ in pairs])
        test_emb = np.stack([by_utt[b] for _, b in pairs])
        scores = scoring.asnorm(scores, enroll_emb, test_emb, cohort, config.eval.asnorm_top)
    return scores


def _backend_statistics(
    embedder: Embedder, config: ExperimentConfig, progress: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Training-embedding mean and per-speaker cohort embeddings, when the config asks."""
    ecfg = config.eval
    if not (ecfg.mean_subtract or ecfg.asnorm_top > 0):
        return None, None
    train = read_kaldi_dir(config.out_dir / "data" / "train")
    emb = embedder.embed_files([u.path for u in train], progress=progress)
    mean = emb.mean(0) if ecfg.mean_subtract else None
    if mean is not None:
        emb = scoring.mean_subtract(emb, mean)
    groups: dict[str, list[np.ndarray]] = {}
    for u, e in zip(train, emb, strict=True):
        groups.setdefault(u.speaker, []).append(e)
    cohort = _speaker_embeddings(sorted(groups), {k: np.stack(v) for k, v in groups.items()})
    return mean, cohort


def trial_speakers(test: TestSet, trials: list[Trial]) -> tuple[np.ndarray, np.ndarray]:
    """The speaker on each side of each trial (enroll ids may already be speakers)."""
    spk_of = {u.utt: u.speaker for u in test.utts}
    if test.enroll is not None:
        spk_of.update({spk: spk for spk in test.enroll})
    return (
        np.array([spk_of[a] for a, _, _ in trials]),
        np.array([spk_of[b] for _, b, _ in trials]),
    )


def evaluate(
    experiment: str | Path,
    *,
    root: str | None = None,
    data_dir: str | None = None,
    trials: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained experiment; returns (and writes) the results dict."""
    checkpoint = find_checkpoint(experiment)
    embedder = Embedder.from_checkpoint(checkpoint)
    config = embedder.config
    assert config is not None
    kind = trials or config.eval.trials
    if kind not in ("pairs", "enroll"):
        raise ValueError(f"unknown trial list {kind!r}; valid: pairs, enroll")
    default_set = root is None and data_dir is None
    if out_dir is None:
        tag = "" if default_set else Path(root or data_dir or "").name
        out_dir = checkpoint.parent if default_set else checkpoint.parent / "eval" / tag
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = load_test_set(resolve_test_folder(config, out, root, data_dir), kind)
    log.info(
        "evaluating %s on %d utterances, %d %s trials",
        checkpoint.name,
        len(test.utts),
        len(test.trials),
        kind,
    )
    train_mean, cohort = _backend_statistics(embedder, config, progress)
    scores = score_test_set(embedder, test, config, cohort, train_mean, progress)
    labels = np.array([t for _, _, t in test.trials], dtype=bool)
    target, nontarget = scores[labels], scores[~labels]
    if not len(target) or not len(nontarget):
        raise ValueError(f"trial list in {test.folder} needs both target and nontarget trials")
    results: dict[str, Any] = metrics.summarize(target, nontarget, p_target=config.eval.p_target)
    spk_a, spk_b = trial_speakers(test, test.trials)
    low, high = metrics.bootstrap_eer(
        scores, labels, spk_a, spk_b, n_boot=config.eval.bootstrap, seed=config.seed
    )
    results.update(
        {
            "eer_ci95": [low, high],
            "trials": kind,
            "n_speakers": len(by_speaker(test.utts)),
            "n_utterances": len(test.utts),
            "checkpoint": str(checkpoint),
            "model_id": embedder.model_id,
            "test_folder": str(test.folder),
            "backend": {
                "mean_subtract": config.eval.mean_subtract,
                "asnorm_top": config.eval.asnorm_top,
            },
        }
    )
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "scores.txt").write_text(
        "".join(
            f"{a} {b} {s:.6f} {'target' if t else 'nontarget'}\n"
            for (a, b, t), s in zip(test.trials, scores, strict=True)
        ),
        "utf-8",
    )
    fpr, tpr, _ = metrics.roc(scores, labels)
    plots.plot_roc(
        fpr, tpr, results["eer"], out / "roc.png", title=f"ROC — {config.name} ({kind} trials)"
    )
    far, frr, _ = metrics.det_curve(target, nontarget)
    plots.plot_det(far, frr, out / "det.png", eer=results["eer"])
    plots.plot_score_histogram(
        target, nontarget, out / "scores.png", threshold=results["eer_threshold"]
    )
    if default_set and train_mean is None and cohort is None:
        _store_decision(checkpoint, Decision(float(results["eer_threshold"]), "eer"))
    log.info(
        "EER %.2f%% (95%% CI %.2f-%.2f) at threshold %.4f, minDCF(%.2g) %.4f -> %s",
        100 * results["eer"],
        100 * low,
        100 * high,
        results["eer_threshold"],
        config.eval.p_target,
        results["min_dcf"],
        out / "results.json",
    )
    return results


def _store_decision(checkpoint: Path, decision: Decision) -> None:
    """Keep the evaluation's threshold with the model, for enroll/verify decisions."""
    payload = load_checkpoint(checkpoint)
    payload["decision"] = decision.to_dict()
    save_checkpoint(checkpoint, payload)
