"""Verification evaluation through the deployed scorer: embed, score, report, plot.

Any model file works (an experiment folder, a checkpoint or an ONNX file, the packaged
default too): its embedder and its own scorer (back-end, calibration, decision) score
the trials exactly as ``verify`` does, so the figures are those of what a user runs.
Outputs, in the experiment folder (or ``<exp>/eval/<tag>/`` for another corpus or other
back-end settings, or ``--out``): ``results.json``, ``scores.txt`` (enroll test score
target), ``llr.txt`` (the same with each trial's calibrated LLR, for a calibrated
model), ``roc.png``, ``det.png``, ``scores.png`` (score histograms).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceprint import metrics, plots
from voiceprint.config import ExperimentConfig, apply_overrides
from voiceprint.data.corpus import CorpusError, by_speaker
from voiceprint.data.layouts import open_corpus
from voiceprint.data.protocol import prepare_test, write_test_folder
from voiceprint.data.trials import Trial, TrialSet
from voiceprint.embedder import Embedder, load_embedder
from voiceprint.experiment import LLR_FILE, RESULTS_FILE, SCORES_FILE, Experiment, find_model
from voiceprint.scoring import Decision, Scorer

log = logging.getLogger(__name__)


def resolve_test_folder(
    config: ExperimentConfig,
    out_dir: Path,
    root: str | None,
    data_dir: str | None,
    trial_list: str | None = None,
) -> Path:
    """The prepared test folder; for another corpus, prepare it under ``out_dir/data``.

    ``root`` is opened in its layout (:func:`voiceprint.data.layouts.open_corpus`): a
    VoxCeleb1 or CN-Celeb root is scored on its official trial list (``trial_list`` picks
    another one, e.g. ``list_test_hard2.txt``), another on the lab protocol over its test
    part. A Kaldi folder ``data_dir`` with its own trial list is scored as it is.
    """
    if data_dir:
        corpus = open_corpus(data_dir, layout="kaldi")
        if corpus.trials_file is not None:
            return corpus.root
        return prepare_test(corpus.test(), config.data, out_dir / "data")
    if root:
        rate = config.features.sample_rate
        return write_test_folder(open_corpus(root), config.data, out_dir / "data", rate, trial_list)
    folder = Experiment(config).test_dir
    if not (folder / "wav.scp").is_file():
        raise CorpusError(f"{folder} is missing: run 'voiceprint prepare' first")
    return folder


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


# eval.* settings that change the back-end: with any of them overridden, the back-end is
# fitted anew from the experiment's prepared lists (train/ and calibration/).
BACKEND_KEYS = (
    "mean_subtract",
    "lda_dim",
    "asnorm_top",
    "calibrate",
    "calibration_enroll_utts",
    "p_target",
    "quality_calibration",
    "far_per_corpus",
    "far_min_speakers",
    "balance_corpora",
    "decision_prior",
    "min_speech_seconds",
)


@dataclass
class ScoredTrials:
    """A test set scored through a scorer: (n,) scores, plain-cosine ``raw`` scores of the
    same embeddings, the net speech (s) of each trial's enrollment and test side, and the
    clips in which no speech was found (embedded whole where the policy refuses none)."""

    scores: np.ndarray
    raw: np.ndarray
    enroll_seconds: np.ndarray
    test_seconds: np.ndarray
    no_speech: list[str] = field(default_factory=list)


def score_test_set(
    embedder: Embedder, scorer: Scorer, test: TrialSet, progress: bool = True
) -> ScoredTrials:
    """Embed every test clip and score every trial through ``scorer``.

    A speaker of enroll trials is modelled as ``verify`` models it
    (:meth:`Scorer.speaker_model` of its enrollment clips; its speech is theirs summed).
    """
    emb, speech, no_speech = embedder.embed_files_measured(
        [u.path for u in test.utts], progress=progress
    )
    index = {u.utt: i for i, u in enumerate(test.utts)}
    pairs = test.pairs()
    out = []
    for s in (scorer, Scorer()):
        units = dict(zip(index, s.units(emb), strict=True))
        for spk, ids in test.enroll.items():
            units[spk] = s.speaker_model(emb[[index[i] for i in ids]])
        out.append(s.score_trials(units, pairs))
    seconds = {u.utt: float(speech[i]) for i, u in enumerate(test.utts)}
    return ScoredTrials(out[0], out[1], *test.side_seconds(seconds), no_speech)


def operating_points(
    decision: Decision | None,
    llr: np.ndarray,
    labels: np.ndarray,
    enroll_seconds: np.ndarray,
    test_seconds: np.ndarray,
    p_target: float,
) -> dict[str, dict[str, float]]:
    """``decision`` (the model's default) and its ``--far 0.01`` threshold measured on the
    trials (:meth:`Decision.rates`), plus each one's detection cost (normalised like
    minDCF, at ``p_target``)."""
    if decision is None:
        return {}
    chosen = {"default": decision}
    try:
        chosen["far_0.01"] = decision.at_far(0.01)
    except ValueError as err:
        log.warning("no --far 0.01 operating point: %s", err)
    out = {}
    for name, d in chosen.items():
        point = d.rates(llr, labels, enroll_seconds, test_seconds)
        point["dcf"] = (p_target * point["frr"] + (1 - p_target) * point["far"]) / min(
            p_target, 1 - p_target
        )
        out[name] = point
    return out


def refit_backend(embedder: Embedder, config: ExperimentConfig, progress: bool) -> Scorer:
    """The back-end of ``config.eval`` fitted anew on the experiment's prepared lists."""
    from voiceprint.calibration import fit_backend

    lists = Experiment(config).lists
    if not (lists.train_dir / "wav.scp").is_file():
        raise CorpusError(
            f"back-end overrides need the experiment's prepared lists; {lists.train_dir} is "
            "missing (run 'voiceprint prepare' with the model's config)"
        )
    backend = fit_backend(
        embedder,
        lists.train,
        lists.heldout,
        config.eval,
        corpora=list(config.data.corpora),
        seed=config.seed,
        progress=progress,
    )
    return Scorer(backend)


def _output_folder(
    model: Path,
    config: ExperimentConfig,
    checkpoint: Path | None,
    default_set: bool,
    tag: str,
    out_dir: str | Path | None,
) -> Path:
    """``out_dir``, else the folder of the experiment the checkpoint lies in (``eval/<tag>/``
    unless it is the dev set with the model's own back-end), else ``exp/eval/<model>/``."""
    if out_dir is not None:
        return Path(out_dir)
    if checkpoint is not None:
        experiment = Experiment(config, checkpoint.parent)
        return experiment.folder if default_set else experiment.eval_dir(tag)
    return Path("exp") / "eval" / model.stem / (tag or "default")


def evaluate(
    model: str | Path,
    *,
    root: str | None = None,
    data_dir: str | None = None,
    trials: str | None = None,
    out_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    trial_list: str | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Evaluate a model file through its own scorer; returns (and writes) the results.

    ``model``: an experiment folder, a checkpoint (.pth) or an ONNX file. The trials are
    the experiment's prepared dev set, or the test split of ``root`` (AISHELL layout), or
    a Kaldi folder ``data_dir`` (with ``trials_pairs``/``trials`` or made by the config's
    protocol), or a VoxCeleb1/CN-Celeb ``root``'s official list (``trial_list`` names another
    one). ``overrides`` change evaluation settings only (``eval.asnorm_top=0``);
    back-end ones refit the back-end from the experiment's lists. The model file is only
    read: the summary a model carries is written by the release step
    (:mod:`voiceprint.release`), which passes the ``embedder`` it is about to write to
    ``model``.
    """
    model = Path(model).expanduser()
    is_onnx = model.suffix.lower() == ".onnx"
    checkpoint = None if is_onnx else (model if embedder is not None else find_model(model))
    if embedder is None:
        embedder = load_embedder(model if is_onnx else checkpoint)  # type: ignore[arg-type]
    config = embedder.config
    if config is None:
        raise ValueError(f"{model} carries no config: it cannot be evaluated")
    for text in overrides or []:
        if not text.startswith("eval."):
            raise ValueError(f"evaluate takes eval.* overrides only, got {text!r}")
    apply_overrides(config, overrides or [])
    # score every trial; report what a user gets refused
    embedder = embedder.with_policy(trim=config.eval.vad, refuse=False)
    kind = trials or config.eval.trials
    if kind not in ("pairs", "enroll"):
        raise ValueError(f"unknown trial list {kind!r}; valid: pairs, enroll")
    refit = any(o.split("=")[0].split(".")[-1] in BACKEND_KEYS for o in overrides or [])
    default_set = root is None and data_dir is None and not overrides and trials is None
    tag = "" if root is None and data_dir is None else Path(root or data_dir or "").name
    tag += f"_{Path(trial_list).stem}" if trial_list else ""
    tag = "_".join([tag] * bool(tag) + [o.split(".", 1)[1] for o in overrides or []])
    tag = tag or (kind if trials else "")
    out = _output_folder(model, config, checkpoint, default_set, tag, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = resolve_test_folder(config, out, root, data_dir, trial_list)
    if kind == "enroll" and not (folder / "trials_enroll").is_file():
        if trials == "enroll":
            raise CorpusError(f"{folder} has no enroll trials (trials_enroll + enroll)")
        kind = "pairs"  # an official list: recording against recording
    test = TrialSet.read(folder, kind)
    scorer = refit_backend(embedder, config, progress) if refit else embedder.scorer
    log.info(
        "evaluating %s on %d utterances, %d %s trials (%s)",
        model.name,
        len(test.utts),
        len(test.trials),
        kind,
        describe(scorer),
    )
    scored = score_test_set(embedder, scorer, test, progress)
    scores, raw = scored.scores, scored.raw
    labels = test.labels
    target, nontarget = scores[labels], scores[~labels]
    if not len(target) or not len(nontarget):
        raise ValueError(f"trial list in {test.folder} needs both target and nontarget trials")
    p_target = config.eval.p_target
    spk_a, spk_b = test.speakers()
    llr = scorer.llr(scores, scored.enroll_seconds, scored.test_seconds)
    points = operating_points(
        scorer.decision, llr, labels, scored.enroll_seconds, scored.test_seconds, p_target
    )
    llr = llr if scorer.calibrated else None
    results = metrics.report(
        scores,
        labels,
        spk_a,
        spk_b,
        p_target,
        llr,
        n_boot=config.eval.bootstrap,
        seed=config.seed,
        n_boot_dcf=200,
    )
    low, high = results["eer_ci95"]
    results.update(
        {
            "trials": kind,
            "n_speakers": len(by_speaker(test.utts)),
            "n_utterances": len(test.utts),
            "model": str(model),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "model_id": embedder.model_id,
            # the file that ran (an ONNX model's int8 copy where load_embedder chose it)
            "model_file": str(embedder.runner.path or model),
            "precision": embedder.runner.precision,
            "test_folder": str(test.folder),
            "backend": describe(scorer),
            "vad": embedder.policy.trim,
            # clips the deployed speech check would refuse (embedded whole here)
            "no_speech": sorted(set(scored.no_speech)),
            "raw_cosine": metrics.summarize(raw[labels], raw[~labels], p_target),
        }
    )
    if llr is not None:
        results["calibration"] = scorer.backend.provenance
    if points:
        results["operating_points"] = points
    # Which speaker pairs the false accepts at the minDCF operating point come from: with
    # few test speakers one confusable (or mislabelled) pair can set most of the cost.
    results["confusable_pairs"] = metrics.confusable_pairs(
        scores, labels, spk_a, spk_b, results["min_dcf_threshold"], top=5
    )
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_scores(out / SCORES_FILE, test.trials, scores)
    if llr is not None:  # the calibrated LLR of each trial, its speech durations included
        write_scores(out / LLR_FILE, test.trials, llr)
    if plots.can_draw(f"roc.png, det.png, scores.png in {out}"):
        fpr, tpr, _ = metrics.roc(scores, labels)
        plots.plot_roc(
            fpr, tpr, results["eer"], out / "roc.png", title=f"ROC — {config.name} ({kind} trials)"
        )
        far, frr, _ = metrics.det_curve(target, nontarget)
        plots.plot_det(far, frr, out / "det.png", eer=results["eer"])
        plots.plot_score_histogram(
            target, nontarget, out / "scores.png", threshold=results["eer_threshold"]
        )
    log.info(
        "EER %.2f%% (95%% CI %.2f-%.2f), minDCF(%.2g) %.4f%s -> %s",
        100 * results["eer"],
        100 * low,
        100 * high,
        p_target,
        results["min_dcf"],
        f", actual DCF {results['act_dcf']:.4f}" if "act_dcf" in results else "",
        out / RESULTS_FILE,
    )
    if results["confusable_pairs"]:
        worst = results["confusable_pairs"][0]
        log.info(
            "at the minDCF threshold %.0f%% of the false accepts pair %s with %s",
            100 * worst["share"],
            *worst["speakers"],
        )
    return results


def describe(scorer: Scorer) -> dict[str, Any]:
    """The back-end in a few JSON-ready words: what the scores went through."""
    backend = scorer.backend
    return {
        "mean_subtract": backend.mean is not None,
        "lda_dim": 0
        if backend.projection is None
        else int(np.any(backend.projection != 0, axis=0).sum()),
        "asnorm_top": backend.asnorm_top if backend.asnorm else 0,
        "cohort": 0 if backend.cohort is None else int(backend.cohort.shape[0]),
        "calibrated": scorer.calibrated,
    }
