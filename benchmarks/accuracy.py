"""Accuracy benchmark: voiceprint recipes beside three references, on the same trials.

    python benchmarks/accuracy.py [--config configs/cpu_best.yaml ...]
        [--root ../shared/data/cv-zh] [--only mfcc,resemblyzer,speechbrain,voiceprint]
        [--sb-minutes 41] [--sb-retrain] [--retrain] [--out benchmarks/results/accuracy.json]

Run from the repository root. Every system is scored on one trial list: all 19,900 pairs
of the cv-zh test speakers (20 x 10 utterances), the ``trials_pairs`` list that
``voiceprint prepare`` writes (here into ``<work>/data/test``). For each system it prints
EER with its 95% bootstrap interval over test speakers, minDCF(0.01), training minutes and
the embedding real-time factor (embedding seconds / audio seconds, utterances one at a
time, torch on ``--threads`` threads, decoding not counted), then writes the table as
JSON and Markdown (``--out`` and the same name with ``.md``). Rows of systems not run
this time are kept from an earlier file.

Systems (``--only`` picks some):

* ``mfcc``: training-free MFCC mean+std, each dimension standardised with training-set
  statistics, cosine (benchmarks/references/mfcc_baseline.py).
* ``resemblyzer``: the pretrained GE2E encoder from PyPI (references/resemblyzer_ref.py).
* ``speechbrain``: SpeechBrain 1.1.2's ECAPA recipe trained here from scratch on the
  training speakers for ``--sb-minutes`` (references/speechbrain_ref.py); the model is
  cached in ``<work>/speechbrain/`` and reused unless ``--sb-retrain``.
* ``voiceprint``: each ``--config``, trained with voiceprint's own trainer unless
  ``exp/<name>/`` holds a finished checkpoint (``--retrain`` forces; an unfinished one is
  resumed), evaluated with ``voiceprint.evaluation.evaluate`` (its own back-end: mean
  subtraction, AS-norm) on the same trials; training time is the checkpoint history's sum
  of epoch seconds.

The training list of the references is the protocol's (``DataConfig`` defaults: every
training speaker, at most ``--train-utts`` utterances each, seed 1234), the list
``voiceprint prepare`` writes for the lab recipes.
"""

from __future__ import annotations

import argparse
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
    embed_waves,
    load_trial_set,
    score_trials,
    trial_metrics,
)
from voiceprint import audio  # noqa: E402
from voiceprint.allocator import keep_freed_memory  # noqa: E402
from voiceprint.config import DataConfig  # noqa: E402
from voiceprint.data.corpus import CorpusError, Utterance, find_wav_root, scan_split  # noqa: E402
from voiceprint.data.dataset import load_waves, speaker_labels  # noqa: E402
from voiceprint.data.protocol import prepare_test, select  # noqa: E402
from voiceprint.evaluation import write_scores  # noqa: E402

log = logging.getLogger("accuracy")

SYSTEMS = ("mfcc", "resemblyzer", "speechbrain", "voiceprint")
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "cv-zh"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "accuracy.json"
# Issue 3's figures for the references on this protocol: (EER fraction, minDCF(0.01)).
ISSUE_FIGURES = {
    "mfcc": (0.110, 0.838),
    "resemblyzer": (0.0722, 0.669),
    "speechbrain": (0.0589, 0.569),
}


@dataclass
class Row:
    """One system's line of the table; rates as fractions, ``rtf`` = embed s / audio s."""

    system: str
    eer: float
    eer_ci95: list[float]
    min_dcf: float
    training_minutes: float | None  # None: not trained here (pretrained elsewhere)
    rtf: float
    issue_figure: list[float] | None = None  # [EER, minDCF] that issue 3 quotes
    details: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""


@dataclass
class Context:
    """What every system shares: the trials, the decoded test audio, the training list."""

    args: argparse.Namespace
    root: Path
    test_folder: Path
    trial_set: TrialSet
    test_waves: list[np.ndarray]
    train_utts: list[Utterance]
    _train_waves: list[np.ndarray] | None = None

    @property
    def progress(self) -> bool:
        return not self.args.quiet

    def train_waves(self) -> list[np.ndarray]:
        """The training utterances decoded at 16 kHz (once, on first use)."""
        if self._train_waves is None:
            started = time.perf_counter()
            self._train_waves = load_waves(self.train_utts, 16000, progress=self.progress)
            log.info(
                "decoded %d training utterances in %.1f s",
                len(self._train_waves),
                time.perf_counter() - started,
            )
        return self._train_waves

    def metrics(self, scores: np.ndarray) -> dict[str, Any]:
        return trial_metrics(scores, self.trial_set, n_boot=self.args.bootstrap, seed=42)

    def utt_ids(self) -> list[str]:
        return [u.utt for u in self.trial_set.utts]


# ----------------------------------------------------------------------------- systems


def _row(
    ctx: Context,
    system: str,
    scores: np.ndarray,
    minutes: float | None,
    rtf: float,
    details: dict[str, Any],
    figure_key: str | None = None,
) -> Row:
    m = ctx.metrics(scores)
    figure = ISSUE_FIGURES.get(figure_key or system)
    details = {
        "n_target": m["n_target"],
        "n_nontarget": m["n_nontarget"],
        "threads": ctx.args.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),  # just after the RTF run
        "confusable_pairs": m["confusable_pairs"],
        "min_dcf_without_top_pair": m["min_dcf_without_top_pair"],
        **details,
    }
    _write_scores(ctx, figure_key or system, scores)
    return Row(
        system=system,
        eer=m["eer"],
        eer_ci95=m["eer_ci95"],
        min_dcf=m["min_dcf"],
        training_minutes=minutes,
        rtf=rtf,
        issue_figure=list(figure) if figure else None,
        details=details,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def run_mfcc(ctx: Context) -> Row:
    """Training-free MFCC mean+std (standardised with training statistics), cosine."""
    from benchmarks.references.mfcc_baseline import MfccMeanStd

    baseline = MfccMeanStd(n_mels=40, n_mfcc=30)
    started = time.perf_counter()
    baseline.fit(ctx.train_waves())
    fit_seconds = time.perf_counter() - started
    emb, rtf = embed_waves(baseline, ctx.test_waves, threads=ctx.args.threads)
    scores = score_trials(emb, ctx.utt_ids(), ctx.trial_set.trials)
    details = {
        "features": "MFCC 30 of 40 mels, 25/10 ms, no CMN; [mean, std] over frames",
        "normalisation": f"per-dimension z-score from {len(ctx.train_utts)} training utterances",
        "fit_seconds": round(fit_seconds, 1),
    }
    return _row(ctx, "MFCC mean+std (training-free)", scores, 0.0, rtf, details, "mfcc")


def run_resemblyzer(ctx: Context) -> Row:
    """Resemblyzer's pretrained GE2E encoder on 16 kHz audio from voiceprint.audio.load."""
    from benchmarks.references.resemblyzer_ref import ResemblyzerEmbedder

    embedder = ResemblyzerEmbedder()
    emb, rtf = embed_waves(embedder, ctx.test_waves, threads=ctx.args.threads)
    scores = score_trials(emb, ctx.utt_ids(), ctx.trial_set.trials)
    details = {"weights": "pretrained GE2E (ships with resemblyzer 0.1.4), not trained here"}
    return _row(ctx, "Resemblyzer (pretrained)", scores, None, rtf, details, "resemblyzer")


def run_speechbrain(ctx: Context) -> Row:
    """SpeechBrain's ECAPA recipe trained on the training speakers for --sb-minutes."""
    from benchmarks.references.speechbrain_ref import SBRecipe, load_or_train

    recipe = SBRecipe(minutes=ctx.args.sb_minutes)
    speakers, labels = speaker_labels(ctx.train_utts)
    if ctx.args.threads:
        torch.set_num_threads(ctx.args.threads)
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
    emb, rtf = embed_waves(model, ctx.test_waves, threads=ctx.args.threads)
    scores = score_trials(emb, ctx.utt_ids(), ctx.trial_set.trials)
    details = {
        "recipe": asdict(recipe),
        "epochs": round(info["epochs"], 2),
        "steps": info["steps"],
        "n_params": info["n_params"],
        "train_utterances": len(ctx.train_utts),
        "train_speakers": len(speakers),
        "checkpoint": info["checkpoint"],
        "cached": info["cached"],
        "issue_rtf": 0.0049,
    }
    minutes = info["train_seconds"] / 60.0
    name = f"SpeechBrain 1.1.2 ECAPA ({ctx.args.sb_minutes:g} min budget)"
    return _row(ctx, name, scores, minutes, rtf, details, "speechbrain")


class _VoiceprintWaves:
    """Adapter: a voiceprint Embedder as a WaveEmbedder (one utterance per call)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embedder.embed_batch([wave])[0]


def read_scores(path: Path, trial_set: TrialSet) -> np.ndarray:
    """Scores from a ``scores.txt`` (enroll test score label) in ``trial_set`` order.

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


def run_voiceprint(ctx: Context, config_path: Path) -> Row:
    """Train (unless a finished checkpoint exists) and evaluate one voiceprint recipe."""
    from voiceprint.artifact import load_checkpoint
    from voiceprint.config import load_config
    from voiceprint.data.protocol import prepare
    from voiceprint.embedder import Embedder
    from voiceprint.evaluation import evaluate
    from voiceprint.training.trainer import train

    config = load_config(config_path, [f"data.root={ctx.root}"])
    checkpoint = config.out_dir / config.checkpoint_name
    total = config.train.epochs + config.train.finetune_epochs
    done = int(load_checkpoint(checkpoint)["epoch"]) if checkpoint.is_file() else 0
    if ctx.args.retrain or done < total:
        resume = done > 0 and not ctx.args.retrain
        log.info(
            "%s: %s (%d of %d epochs in %s)",
            config.name,
            "resuming" if resume else "training",
            done,
            total,
            checkpoint,
        )
        prepared = prepare(config, progress=ctx.progress)
        train(config, prepared, resume=resume, progress=ctx.progress)
    else:
        log.info(
            "%s: using %s (%d epochs; --retrain to train again)", config.name, checkpoint, done
        )
    payload = load_checkpoint(checkpoint)
    minutes = sum(float(h["seconds"]) for h in payload["history"]) / 60.0
    out_dir = config.out_dir / "eval" / "bench_accuracy"
    results = evaluate(
        checkpoint,
        data_dir=str(ctx.test_folder),
        trials="pairs",
        out_dir=out_dir,
        progress=ctx.progress,
    )
    scores = read_scores(out_dir / "scores.txt", ctx.trial_set)
    embedder = Embedder.from_checkpoint(checkpoint)
    _, rtf = embed_waves(_VoiceprintWaves(embedder), ctx.test_waves, threads=ctx.args.threads)
    n_params = sum(p.numel() for p in embedder.encoder.model.parameters())
    details = {
        "config": str(config_path),
        "checkpoint": str(checkpoint),
        "epochs": int(payload["epoch"]),
        "averaged_epochs": int(payload.get("averaged_epochs", 1)),
        "n_params": n_params,
        "backend": results.get("backend"),
        "model_id": payload.get("model_id"),
    }
    return _row(ctx, f"voiceprint {config.name}", scores, minutes, rtf, details)


# ----------------------------------------------------------------------------- output


def _write_scores(ctx: Context, key: str, scores: np.ndarray) -> Path:
    """``<work>/scores/<key>.txt``: ``enroll test score target|nontarget`` per trial."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    path = Path(ctx.args.work) / "scores" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_scores(path, ctx.trial_set.trials, scores)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (EER in %, with its 95% bootstrap interval)."""
    lines = [
        "| System | EER % [95% CI] | minDCF(0.01) | Training (min) | RTF | Issue 3 figure |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        minutes = "pretrained" if r.training_minutes is None else f"{r.training_minutes:.1f}"
        figure = f"{_pct(r.issue_figure[0])} / {r.issue_figure[1]:.3f}" if r.issue_figure else ""
        lines.append(
            f"| {r.system} | {_pct(r.eer)} [{_pct(r.eer_ci95[0])}, {_pct(r.eer_ci95[1])}] "
            f"| {r.min_dcf:.3f} | {minutes} | {r.rtf:.4f} | {figure} |"
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
    """Write ``out`` (JSON) and ``out.with_suffix('.md')``; earlier rows of other systems stay.

    Returns all rows written, in table order.
    """
    merged = {r.system: r for r in rows}
    if out.is_file():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            if old.get("protocol", {}).get("trials_sha") == protocol["trials_sha"]:
                for item in old.get("systems", []):
                    merged.setdefault(item["system"], Row(**item))
            else:
                log.info("%s was measured on other trials: not merging its rows", out)
        except (ValueError, TypeError, KeyError) as err:
            log.warning("ignoring unreadable %s: %s", out, err)
    table = sorted(merged.values(), key=_order)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"protocol": protocol, "systems": [asdict(r) for r in table]}
    out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    md = [
        "# Accuracy on cv-zh (all test pairs)",
        "",
        f"{protocol['n_trials']} trials ({protocol['n_target']} target) over "
        f"{protocol['n_speakers']} test speakers x {protocol['utts_per_speaker']} utterances; "
        f"cosine scoring; EER 95% CI from {protocol['bootstrap']} speaker-bootstrap resamples; "
        f"RTF = embedding time / audio time, one utterance at a time, torch threads: "
        f"{protocol['threads']} ({protocol['machine']}).",
        "",
        markdown_table(table),
        "",
        "## What sets minDCF",
        "",
        "At the minDCF(0.01) threshold each false accept costs 99/n_nontarget, so a few "
        "non-target speaker pairs can decide it. Below, for each system, the speaker pairs "
        "with the most false accepts at its own minDCF threshold (false accepts / trials of "
        "the pair, share of all false accepts), and the minDCF with that one pair's trials "
        "left out: a sensitivity check, not a result.",
        "",
        confusion_table(table),
        "",
        "Written by `python benchmarks/accuracy.py` (see benchmarks/README.md).",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    return table


# ----------------------------------------------------------------------------- main


def resolve_root(text: str | None) -> Path:
    """The corpus root (default ../shared/data/cv-zh beside the repository); clear error."""
    root = Path(text).expanduser() if text else DEFAULT_ROOT
    try:
        find_wav_root(root)
    except CorpusError as err:
        raise SystemExit(
            f"accuracy benchmark: {err}. Pass --root with the cv-zh corpus "
            f"(default {DEFAULT_ROOT})."
        ) from err
    return root.resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="EER/minDCF of voiceprint recipes beside MFCC, Resemblyzer and "
        "SpeechBrain references on the same trials.",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        help="voiceprint recipe YAML to train (if needed) and evaluate; repeatable",
    )
    parser.add_argument("--root", help=f"cv-zh corpus root (default {DEFAULT_ROOT})")
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
        help="benchmark folder for the trial list and the SpeechBrain cache",
    )
    parser.add_argument("--sb-minutes", type=float, default=41.0, help="SpeechBrain budget")
    parser.add_argument("--sb-retrain", action="store_true", help="ignore the cached SB model")
    parser.add_argument("--retrain", action="store_true", help="retrain the --config recipes")
    parser.add_argument(
        "--train-utts",
        type=int,
        default=DataConfig.train_utts,
        help="training utterances per speaker for the references; 0 = all (default %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SYSTEMS))
    if unknown:
        parser.error(f"--only: unknown system(s) {unknown}; valid: {', '.join(SYSTEMS)}")
    if "voiceprint" in only and not args.config and args.only != parser.get_default("only"):
        parser.error("--only voiceprint needs at least one --config")
    for path in args.config:
        if not path.is_file():
            parser.error(f"--config {path} does not exist")
    args.only = only
    return args


def build_context(args: argparse.Namespace) -> Context:
    """Prepare the trial list, decode the test audio, select the training list."""
    root = resolve_root(args.root)
    data = DataConfig(root=str(root), train_utts=args.train_utts)
    test_folder = Path(args.work) / "data" / "test"
    prepare_test(scan_split(root, "test"), data, test_folder)
    trial_set = load_trial_set(test_folder, "pairs")
    test_waves = [audio.load(u.path, 16000) for u in trial_set.utts]
    train_pool = scan_split(root, "train")
    train_utts = select(train_pool, data.train_speakers, data.train_utts, data.seed, "train")
    return Context(args, root, test_folder, trial_set, test_waves, train_utts)


def protocol_summary(ctx: Context) -> dict[str, Any]:
    import hashlib

    trials_text = (ctx.test_folder / "trials_pairs").read_bytes()
    labels = ctx.trial_set.labels
    speakers = {u.speaker for u in ctx.trial_set.utts}
    return {
        "root": str(ctx.root),
        "trials": str(ctx.test_folder / "trials_pairs"),
        "trials_sha": hashlib.sha1(trials_text).hexdigest()[:12],
        "n_trials": int(labels.size),
        "n_target": int(labels.sum()),
        "n_speakers": len(speakers),
        "utts_per_speaker": len(ctx.trial_set.utts) // max(len(speakers), 1),
        "test_audio_seconds": round(sum(len(w) for w in ctx.test_waves) / 16000, 1),
        "train_utterances": len(ctx.train_utts),
        "bootstrap": ctx.args.bootstrap,
        "threads": ctx.args.threads,
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
            "load average %.1f on %d cores: other jobs share the CPU, so training minutes "
            "and RTF will read slow (accuracy is unaffected)",
            load,
            cores,
        )
    ctx = build_context(args)
    log.info(
        "trials: %s (%d trials, %d target); %d test utterances, %d training utterances",
        ctx.test_folder / "trials_pairs",
        ctx.trial_set.labels.size,
        int(ctx.trial_set.labels.sum()),
        len(ctx.test_waves),
        len(ctx.train_utts),
    )
    jobs: list[tuple[str, Callable[[], Row]]] = []
    runners = {"mfcc": run_mfcc, "resemblyzer": run_resemblyzer, "speechbrain": run_speechbrain}
    for name in SYSTEMS[:3]:
        if name in args.only:
            jobs.append((name, lambda f=runners[name]: f(ctx)))
    if args.config and "voiceprint" not in args.only:
        log.warning("--only leaves out voiceprint: the --config recipes are not run")
    if "voiceprint" in args.only:
        for path in args.config:
            jobs.append((str(path), lambda p=path: run_voiceprint(ctx, p)))
    protocol = protocol_summary(ctx)
    rows: list[Row] = []
    table: list[Row] = []
    for name, job in jobs:
        log.info("--- %s", name)
        row = job()
        rows.append(row)
        table = write_outputs(args.out, rows, protocol)  # after each system: a crash keeps it
        log.info(
            "%s: EER %s%% [%s, %s], minDCF %.3f, RTF %.4f",
            row.system,
            _pct(row.eer),
            _pct(row.eer_ci95[0]),
            _pct(row.eer_ci95[1]),
            row.min_dcf,
            row.rtf,
        )
    if not jobs:
        log.warning("nothing to run: pick systems with --only, recipes with --config")
        return 1
    print(markdown_table(table))
    print(f"\nwritten: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
