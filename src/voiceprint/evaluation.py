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
from voiceprint.config import ExperimentConfig, apply_overrides
from voiceprint.data.corpus import CorpusError, Utterance, by_speaker, read_kaldi_dir, scan_split
from voiceprint.data.protocol import Trial, pair_trials, prepare_test, read_trials
from voiceprint.embedder import Decision, Embedder, find_checkpoint
from voiceprint.training.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


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


@dataclass
class Backend:
    """Training-data statistics for scoring: embedding mean, AS-norm cohort, calibration."""

    mean: np.ndarray | None = None
    cohort: np.ndarray | None = None
    asnorm_top: int = 0
    calibration: scoring.ScoreCalibration | None = None

    @property
    def changes_scores(self) -> bool:
        """Whether scores differ from plain cosine (calibration maps them later, apart)."""
        return self.mean is not None or (self.cohort is not None and self.asnorm_top > 0)

    def score(self, by_utt: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> np.ndarray:
        """Cosine scores of ``pairs`` after mean subtraction and AS-norm (when set)."""
        if self.mean is not None:
            by_utt = {k: scoring.mean_subtract(v[None], self.mean)[0] for k, v in by_utt.items()}
        scores = scoring.score_trials(by_utt, pairs)
        if self.cohort is not None and self.asnorm_top > 0:
            enroll_emb = np.stack([by_utt[a] for a, _ in pairs])
            test_emb = np.stack([by_utt[b] for _, b in pairs])
            scores = scoring.asnorm(scores, enroll_emb, test_emb, self.cohort, self.asnorm_top)
        return scores


def embed_test_set(
    embedder: Embedder, test: TestSet, progress: bool = True
) -> dict[str, np.ndarray]:
    """Embeddings of every test utterance and, for enroll trials, of every enrolled speaker.

    A speaker model is the mean of its length-normalised enrollment embeddings.
    """
    emb = embedder.embed_files([u.path for u in test.utts], progress=progress)
    by_utt = {u.utt: emb[i] for i, u in enumerate(test.utts)}
    for spk, ids in (test.enroll or {}).items():
        by_utt[spk] = scoring.length_norm(np.stack([by_utt[i] for i in ids])).mean(0)
    return by_utt


def build_backend(
    embedder: Embedder, config: ExperimentConfig, progress: bool = True, max_pairs_utts: int = 600
) -> Backend:
    """Embed the training data when the config's back-end needs it.

    * ``eval.mean_subtract``: the mean training embedding is subtracted before cosine.
    * ``eval.asnorm_top``: the cohort is one mean embedding per training speaker.
    * ``eval.calibrate``: a linear score -> LLR map fitted on all pairs of up to
      ``max_pairs_utts`` training utterances scored with the same back-end. The model has
      seen these speakers, so their scores are better separated than unseen speakers':
      the calibration is over-confident, and ``act_dcf`` in the results shows how much.
    """
    ecfg = config.eval
    backend = Backend(asnorm_top=ecfg.asnorm_top)
    if not (ecfg.mean_subtract or ecfg.asnorm_top > 0 or ecfg.calibrate):
        return backend
    train = read_kaldi_dir(config.out_dir / "data" / "train")
    emb = embedder.embed_files([u.path for u in train], progress=progress)
    if ecfg.mean_subtract:
        backend.mean = emb.mean(0)
    if ecfg.asnorm_top > 0:
        centred = emb if backend.mean is None else scoring.mean_subtract(emb, backend.mean)
        groups: dict[str, list[np.ndarray]] = {}
        for u, e in zip(train, centred, strict=True):
            groups.setdefault(u.speaker, []).append(e)
        backend.cohort = np.stack(
            [scoring.length_norm(np.stack(groups[s])).mean(0) for s in sorted(groups)]
        )
    if ecfg.calibrate:
        rng = np.random.default_rng(config.seed)
        pick = np.sort(rng.permutation(len(train))[:max_pairs_utts])
        by_utt = {train[i].utt: emb[i] for i in pick}
        chosen = [train[i] for i in pick]
        trials = pair_trials(chosen)
        scores = backend.score(by_utt, [(a, b) for a, b, _ in trials])
        labels = np.array([t for _, _, t in trials], dtype=bool)
        backend.calibration = scoring.ScoreCalibration().fit(
            scores[labels], scores[~labels], p_target=ecfg.p_target
        )
    return backend


def actual_dcf(llr: np.ndarray, labels: np.ndarray, p_target: float) -> float:
    """Normalised DCF at the Bayes threshold ``-logit(p_target)`` on calibrated LLRs."""
    threshold = -np.log(p_target / (1 - p_target))
    p_miss = float(np.mean(llr[labels] < threshold))
    p_fa = float(np.mean(llr[~labels] >= threshold))
    return (p_target * p_miss + (1 - p_target) * p_fa) / min(p_target, 1 - p_target)


def trial_speakers(test: TestSet, trials: list[Trial]) -> tuple[np.ndarray, np.ndarray]:
    """The speaker on each side of each trial (enroll ids may already be speakers)."""
    spk_of = {u.utt: u.speaker for u in test.utts}
    if test.enroll is not None:
        spk_of.update({spk: spk for spk in test.enroll})
    return (
        np.array([spk_of[a] for a, _, _ in trials]),
        np.array([spk_of[b] for _, b, _ in trials]),
    )


def write_scores(path: Path, trials: list[Trial], scores: np.ndarray) -> Path:
    """A ``scores.txt``: one ``enroll test score target|nontarget`` line per trial."""
    path.write_text(
        "".join(
            f"{a} {b} {s:.6f} {'target' if t else 'nontarget'}\n"
            for (a, b, t), s in zip(trials, scores, strict=True)
        ),
        "utf-8",
    )
    return path


def evaluate(
    experiment: str | Path,
    *,
    root: str | None = None,
    data_dir: str | None = None,
    trials: str | None = None,
    out_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained experiment; returns (and writes) the results dict.

    ``overrides`` change evaluation settings only (``eval.asnorm_top=100``); with any,
    results go to ``<exp>/eval/<tag>/`` so the experiment's own results stay as they are.
    """
    checkpoint = find_checkpoint(experiment)
    embedder = Embedder.from_checkpoint(checkpoint)
    config = embedder.config
    assert config is not None
    for text in overrides or []:
        if not text.startswith("eval."):
            raise ValueError(f"evaluate takes eval.* overrides only, got {text!r}")
    apply_overrides(config, overrides or [])
    kind = trials or config.eval.trials
    if kind not in ("pairs", "enroll"):
        raise ValueError(f"unknown trial list {kind!r}; valid: pairs, enroll")
    default_set = root is None and data_dir is None and not overrides
    if out_dir is None:
        tag = "" if default_set else Path(root or data_dir or "").name
        tag = "_".join([tag] * bool(tag) + [o.split(".", 1)[1] for o in overrides or []])
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
    by_utt = embed_test_set(embedder, test, progress)
    pairs = [(a, b) for a, b, _ in test.trials]
    labels = np.array([t for _, _, t in test.trials], dtype=bool)
    raw = Backend().score(by_utt, pairs)
    backend = build_backend(embedder, config, progress)
    scores = backend.score(by_utt, pairs) if backend.changes_scores else raw
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
                "calibrate": config.eval.calibrate,
            },
            "raw_cosine": metrics.summarize(raw[labels], raw[~labels], config.eval.p_target),
        }
    )
    # Which speaker pairs the false accepts at the minDCF operating point come from: with
    # few test speakers one confusable (or mislabelled) pair can set most of the cost.
    results["confusable_pairs"] = metrics.confusable_pairs(
        scores, labels, spk_a, spk_b, results["min_dcf_threshold"], top=5
    )
    if backend.calibration is not None:
        results["calibration"] = backend.calibration.to_dict()
        results["act_dcf"] = actual_dcf(
            backend.calibration.llr(scores), labels, config.eval.p_target
        )
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_scores(out / "scores.txt", test.trials, scores)
    fpr, tpr, _ = metrics.roc(scores, labels)
    plots.plot_roc(
        fpr, tpr, results["eer"], out / "roc.png", title=f"ROC — {config.name} ({kind} trials)"
    )
    far, frr, _ = metrics.det_curve(target, nontarget)
    plots.plot_det(far, frr, out / "det.png", eer=results["eer"])
    plots.plot_score_histogram(
        target, nontarget, out / "scores.png", threshold=results["eer_threshold"]
    )
    if default_set:
        # The embedder scores with plain cosine, so its threshold comes from the raw scores.
        raw_non = raw[~labels]
        far_thresholds = {
            f"{far:g}": metrics.threshold_at_far(raw_non, far) for far in (0.1, 0.05, 0.01, 0.001)
        }
        decision = Decision(float(results["raw_cosine"]["eer_threshold"]), "eer").to_dict()
        _store_decision(checkpoint, {**decision, "far_thresholds": far_thresholds})
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
    if results["confusable_pairs"]:
        worst = results["confusable_pairs"][0]
        log.info(
            "at the minDCF threshold %.0f%% of the false accepts pair %s with %s",
            100 * worst["share"],
            *worst["speakers"],
        )
    return results


def _store_decision(checkpoint: Path, decision: dict[str, Any]) -> None:
    """Keep the evaluation's thresholds with the model, for enroll/verify decisions.

    ``threshold`` is the raw-cosine EER threshold; ``far_thresholds`` maps a false-accept
    rate (as text, e.g. "0.01") to the raw-cosine threshold that gives it on the test trials.
    """
    payload = load_checkpoint(checkpoint)
    payload["decision"] = decision
    save_checkpoint(checkpoint, payload)
