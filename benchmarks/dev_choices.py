"""Back-end choices of a trained model, made on the pooled dev protocol (never on test).

    python benchmarks/dev_choices.py --exp exp/shipped [--set NAME=ROOT ...]
        [--out benchmarks/results/dev_choices]

Embeds once, with the released model's encoder: the training speakers (mean and AS-norm
cohort), the held-out speakers of every training corpus (calibration,
``exp/<name>/data/calibration``) and the accuracy benchmark's five dev sets (so762 dev,
cv-zh test, dsp20 test, ar-cmd test, cv-multi-dev; all pairs, each clip's net speech
measured). Then, for every back-end variant, fits the calibration as ``release`` does
(quality-aware, thresholds per held-out corpus, the recipe's speech floor) and scores
every set through :class:`voiceprint.scoring.Scorer`: EER [95% CI], minDCF, actual DCF
of the default decision and the false-accept rate at ``--far 0.01`` per set, and the
pooled figure (each set weighted equally, :func:`benchmarks.accuracy.pooled_weights`).
Chosen: the variant with the lowest pooled actual DCF among those whose ``--far 0.01``
keeps at most 2% false accepts on every set (ties within 0.005: the simpler). Then the
default decision of that back-end: the Bayes decision at the prior (``PRIORS``) with the
lowest pooled detection cost among those that cost at most 1.0 on every set. Writes
``dev_choices.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # benchmarks.accuracy

from benchmarks.accuracy import (  # noqa: E402
    DEFAULT_SETS,
    P_TARGET,
    is_kaldi_set,
    parse_sets,
    pooled_weights,
)
from voiceprint import metrics  # noqa: E402
from voiceprint.artifact import model_id_of, read_model  # noqa: E402
from voiceprint.calibration import (  # noqa: E402
    enroll_style_trials,
    fit_calibration,
    training_stats,
)
from voiceprint.config import DataConfig  # noqa: E402
from voiceprint.data.corpus import Utterance, read_kaldi_dir  # noqa: E402
from voiceprint.data.layouts import open_corpus  # noqa: E402
from voiceprint.data.protocol import prepare_test  # noqa: E402
from voiceprint.data.trials import TrialSet  # noqa: E402
from voiceprint.embedder import Embedder  # noqa: E402
from voiceprint.evaluation import operating_points  # noqa: E402
from voiceprint.experiment import find_model  # noqa: E402
from voiceprint.scoring import Scorer  # noqa: E402

log = logging.getLogger("dev_choices")

VARIANTS = [  # (label, eval.* settings over the recipe's)
    ("raw cosine", {"mean_subtract": False, "balance_corpora": False}),
    ("mean subtraction", {"mean_subtract": True, "balance_corpora": False}),
    (
        "mean + AS-norm top 100",
        {"mean_subtract": True, "asnorm_top": 100, "balance_corpora": False},
    ),
    (
        "mean + AS-norm top 300",
        {"mean_subtract": True, "asnorm_top": 300, "balance_corpora": False},
    ),
    ("mean, corpora balanced", {"mean_subtract": True, "balance_corpora": True}),
    (
        "mean + AS-norm top 100, corpora balanced",
        {"mean_subtract": True, "asnorm_top": 100, "balance_corpora": True},
    ),
    (
        "mean, corpora balanced, --far groups of >= 5 speakers",
        {"mean_subtract": True, "balance_corpora": True, "far_min_speakers": 5},
    ),
]
PRIORS = (0.01, 0.0075, 0.005, 0.0025)  # default decision: Bayes at each of these priors
FAR_LIMIT = 0.02  # a variant must keep --far 0.01 at or below this on every set


@dataclass
class DevSet:
    """One dev set: its trials, and each clip's embedding (N, D) and net speech (N,) s."""

    name: str
    trials: TrialSet
    emb: np.ndarray
    speech: np.ndarray

    def units(self, scorer: Scorer) -> dict[str, np.ndarray]:
        return dict(zip([u.utt for u in self.trials.utts], scorer.units(self.emb), strict=True))

    def sides(self) -> tuple[np.ndarray, np.ndarray]:
        ids = [u.utt for u in self.trials.utts]
        return self.trials.side_seconds(dict(zip(ids, self.speech.tolist(), strict=True)))


def embed(
    embedder: Embedder,
    utts: list[Utterance],
    cache: Path,
    progress: bool,
    check: bool = True,
    encoder_id: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and net speech (N,) s of ``utts``, every clip scored (none
    refused), cached in ``cache`` (.npz keyed by the encoder and the utterance list)."""
    ids = "\n".join([encoder_id, *(u.utt for u in utts)])
    if cache.is_file():
        held = np.load(cache)
        if str(held["ids"]) == ids:
            return held["emb"], held["speech"]
    policy = replace(embedder.policy, refuse=False, check=check)
    emb, speech, _ = embedder.embed_files_measured(
        [u.path for u in utts], progress=progress, policy=policy
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, emb=emb, speech=speech, ids=np.array(ids))
    return emb, speech


def dev_sets(
    embedder: Embedder, sets: dict[str, Path], work: Path, progress: bool, encoder_id: str = ""
) -> list[DevSet]:
    """Each dev set's all-pairs trials (as the accuracy benchmark prepares them), embedded."""
    out = []
    for name, root in sets.items():
        folder = root if is_kaldi_set(root) else work / "data" / name
        if not is_kaldi_set(root):
            corpus = open_corpus(root, progress=False)
            prepare_test(corpus.test(), DataConfig(test_speakers=0, test_utts=0), folder)
        trials = TrialSet.read(folder, "pairs")
        cache = work / "cache" / f"{name}.npz"
        emb, speech = embed(embedder, trials.utts, cache, progress, encoder_id=encoder_id)
        out.append(DevSet(name, trials, emb, speech))
    return out


def measure(scorer: Scorer, dev: list[DevSet]) -> dict[str, Any]:
    """Every set's figures through ``scorer`` (calibrated), and the pooled ones."""
    per_set: dict[str, Any] = {}
    all_scores, all_llr = [], []
    for s in dev:
        scores = scorer.score_trials(s.units(scorer), s.trials.pairs())
        enroll_s, test_s = s.sides()
        llr = scorer.llr(scores, enroll_s, test_s)
        spk_a, spk_b = s.trials.speakers()
        labels = s.trials.labels
        report = metrics.report(
            scores, labels, spk_a, spk_b, P_TARGET, llr, n_boot=200, seed=0, n_boot_dcf=0
        )
        points = operating_points(scorer.decision, llr, labels, enroll_s, test_s, P_TARGET)
        # an oracle, not a decision: the false rejects at this set's own 1% FAR threshold
        own = metrics.threshold_at_far(llr[~labels], 0.01)
        oracle = {"threshold": own, "frr": float((llr[labels] < own).mean())}
        per_set[s.name] = {**report, "operating_points": points, "own_far_0.01": oracle}
        all_scores.append(scores)
        all_llr.append(llr)
    labels = np.concatenate([s.trials.labels for s in dev])
    pooled = metrics.weighted_summary(
        np.concatenate(all_scores),
        labels,
        pooled_weights(dev),  # type: ignore[arg-type]  # DevSet has .trials
        P_TARGET,
        np.concatenate(all_llr),
    )
    return {"sets": per_set, "pooled": pooled}


def worst_far(row: dict[str, Any]) -> float:
    """The highest false-accept rate that ``--far 0.01`` gives on any set."""
    return max(
        m["operating_points"].get("far_0.01", {}).get("far", 1.0) for m in row["sets"].values()
    )


def choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The variant with the lowest pooled actual DCF among those whose ``--far 0.01``
    holds within FAR_LIMIT on every set (all variants when none does); within 0.005 of
    the best, the earlier (simpler) one."""
    safe = [r for r in rows if worst_far(r) <= FAR_LIMIT] or rows
    best = min(r["pooled"]["act_dcf"] for r in safe)
    return next(r for r in safe if r["pooled"]["act_dcf"] <= best + 0.005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, default=Path("exp/shipped"))
    parser.add_argument("--set", action="append", default=[], help="NAME=ROOT; repeatable")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dev_choices")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    progress = not args.quiet
    model = find_model(args.exp)
    embedder = Embedder.from_checkpoint(model)
    encoder_id = model_id_of(read_model(model)["encoder"])  # the caches' key
    config = embedder.config
    ecfg = config.eval
    work = args.exp / "bench_dev_choices"
    data = args.exp / "data"
    train, heldout = read_kaldi_dir(data / "train"), read_kaldi_dir(data / "calibration")
    # as release embeds: the trainer's own clips unchecked, the held-out ones measured
    cache = work / "cache"
    train_emb, _ = embed(embedder, train, cache / "train.npz", progress, False, encoder_id)
    held_emb, held_speech = embed(
        embedder, heldout, cache / "heldout.npz", progress, True, encoder_id
    )
    spoken = [u for u, s in zip(heldout, held_speech, strict=True) if s > 0]
    held_by_utt = {u.utt: e for u, e in zip(heldout, held_emb, strict=True)}
    speech_by_utt = {u.utt: float(s) for u, s in zip(heldout, held_speech, strict=True)}
    corpora = list(config.data.corpora)
    trial_set = enroll_style_trials(spoken, ecfg.calibration_enroll_utts, corpora)
    dev = dev_sets(
        embedder,
        parse_sets(args.set) if args.set else dict(DEFAULT_SETS),
        work,
        progress,
        encoder_id,
    )

    def fit(settings: dict[str, Any]) -> Scorer:
        variant = replace(ecfg, **settings)
        stats = training_stats(train_emb, [u.speaker for u in train], variant, config.seed)
        backend = fit_calibration(
            Scorer(stats),
            trial_set,
            held_by_utt,
            variant.p_target,
            {},
            speech_by_utt=speech_by_utt if variant.quality_calibration else None,
            corpora=corpora,
            far_per_corpus=variant.far_per_corpus,
            far_min_speakers=variant.far_min_speakers,
            balance_corpora=variant.balance_corpora,
            min_speech_seconds=variant.min_speech_seconds,
            decision_prior=variant.decision_prior,
        )
        return Scorer(backend)

    rows = []
    for label, settings in VARIANTS:
        settings = {"decision_prior": 0.0, **settings}  # compared at Bayes P_target
        rows.append({"variant": label, "settings": settings, **measure(fit(settings), dev)})
        log.info("%s: pooled %s", label, rows[-1]["pooled"])
    chosen = choose(rows)
    prior_rows = []
    for prior in PRIORS:
        settings = {**chosen["settings"], "decision_prior": prior}
        measured = measure(fit(settings), dev)
        dcf = [m["operating_points"]["default"]["dcf"] for m in measured["sets"].values()]
        prior_rows.append(
            {"prior": prior, "dcf": dcf, "pooled_dcf": float(np.mean(dcf)), **measured}
        )
    safe = [r for r in prior_rows if max(r["dcf"]) <= 1.0]
    prior = min(safe or prior_rows, key=lambda r: r["pooled_dcf"] if safe else max(r["dcf"]))
    result = {
        "model": str(model),
        "model_id": embedder.model_id,
        "rows": rows,
        "chosen": chosen["variant"],
        "priors": prior_rows,
        "chosen_prior": prior["prior"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    names = [s.name for s in dev]

    def cell(m: dict[str, Any]) -> str:
        far = m.get("operating_points", {}).get("far_0.01", {}).get("far")
        far_text = "" if far is None else f" / {100 * far:.1f}"
        return f"{100 * m['eer']:.2f} / {m['min_dcf']:.3f} / {m['act_dcf']:.3f}{far_text}"

    def point(p: dict[str, Any]) -> str:
        return f"{p['dcf']:.3f} ({100 * p['far']:.2f} / {100 * p['frr']:.1f})"

    lines = [
        f"# Back-end choices on the pooled dev protocol ({model})",
        "",
        "Calibration fitted as `release` fits it (held-out training speakers of every "
        "corpus, quality-aware, thresholds per corpus); each cell: EER % / minDCF / actual "
        "DCF (P_target 0.01) / FAR % at `--far 0.01`; pooled: each set weighted equally. "
        "Chosen: the lowest pooled actual DCF among the variants whose `--far 0.01` "
        "gives at most 2% false accepts on every set (within 0.005, the simpler).",
        "",
        "| back-end | pooled | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
        *[
            f"| {r['variant']} | {cell(r['pooled'])} | "
            + " | ".join(cell(r["sets"][n]) for n in names)
            + " |"
            for r in rows
        ],
        "",
        f"Chosen on the pooled dev: **{chosen['variant']}**.",
        "",
        "What one threshold costs: FRR % of the chosen back-end at `--far 0.01` against "
        "the FRR at each set's own 1% FAR threshold (an oracle no deployed decision has):",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| `--far 0.01` (FAR / FRR %) | "
        + " | ".join(
            f"{100 * chosen['sets'][n]['operating_points']['far_0.01']['far']:.2f} / "
            f"{100 * chosen['sets'][n]['operating_points']['far_0.01']['frr']:.1f}"
            for n in names
        )
        + " |",
        "| own 1% FAR threshold (FRR %) | "
        + " | ".join(f"{100 * chosen['sets'][n]['own_far_0.01']['frr']:.1f}" for n in names)
        + " |",
        "",
        "The default decision of that back-end, Bayes at a prior of a target: its "
        "detection cost (P_target 0.01, normalised; trials refused for too little speech "
        "count as rejected) and FAR / FRR % on each set. Chosen: the lowest pooled cost "
        "among the priors that cost at most 1.0 (what rejecting everyone costs) on every set.",
        "",
        "| prior (threshold) | pooled cost | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
        *[
            f"| {r['prior']:g} ({math.log((1 - r['prior']) / r['prior']):.2f}) | "
            f"{r['pooled_dcf']:.3f} | "
            + " | ".join(point(r["sets"][n]["operating_points"]["default"]) for n in names)
            + " |"
            for r in prior_rows
        ],
        "",
        f"Chosen default: **Bayes at prior {prior['prior']:g}** (`eval.decision_prior`).",
        "",
        f"Written by `python benchmarks/dev_choices.py --exp {args.exp}`.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
